"""The model zoo: every registered model runs; parameter counts and GMACs equal the published figures;
ConvFirstNet stays within its MAC budget; the registry gives clear errors.

Big models are never materialized: parameter counts and MACs come from abstract models
(`nnx.eval_shape`) and traced forwards (`jax.eval_shape` / `jax.make_jaxpr`).
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import convfirst
from convfirst.cost.jaxpr_macs import jaxpr_macs, traced_macs
from convfirst.models import blocks as model_blocks
from convfirst.models import create_model, list_models, model_info, model_spec
from convfirst.models.efficientnet import efficientnet_spec
from convfirst.models.layers import conv_init, dense_init
from convfirst.models.net import ConvNet
from convfirst.models.specs import Conv, Head, MBConvBlock, ModelSpec

# Exact parameter counts (timm param_count; anchors.md) and MACs per image at native resolution:
# (params, our reference walker GMACs measured on an independent Flax implementation, timm GMACs).
PUBLISHED = {
    "convnext_tiny": (28_589_128, 4.456, 4.47),
    "convnext_small": (50_223_688, 8.684, 8.71),
    "convnext_base": (88_591_464, 15.355, 15.38),
    "convnext_large": (197_767_336, 34.361, 34.40),
    "efficientnet_b0": (5_288_548, 0.386, 0.40),
    "efficientnet_b1": (7_794_184, 0.687, 0.71),
    "efficientnet_b2": (9_109_994, 0.994, 1.02),
    "efficientnet_b3": (12_233_232, 1.827, 1.87),
    "efficientnet_b4": (19_341_616, 4.394, 4.49),
    "efficientnet_b5": (30_389_784, 10.266, 10.46),
    "efficientnet_b6": (43_040_704, 19.068, 19.40),
    "efficientnet_b7": (66_347_960, 37.746, 38.33),
}


@functools.cache
def abstract(name: str, **overrides) -> ConvNet:
    """The model with abstract parameters (shapes only; cached per test worker, so set its mode)."""
    return nnx.eval_shape(lambda: create_model(name, **overrides))


def forward(model: ConvNet):
    """A pure function (state, x) -> logits of `model` in its current mode."""
    graphdef, _ = nnx.split(model)
    return lambda state, x: nnx.merge(graphdef, state)(x)


@functools.cache
def native_eval_jaxpr(name: str):
    """The eval-mode forward at batch 1 and native resolution, traced (the MAC count's graph)."""
    model = abstract(name)
    model.eval()
    r = model.spec.resolution
    x = jax.ShapeDtypeStruct((1, r, r, model.spec.in_chans), jnp.float32)
    return jax.make_jaxpr(forward(model))(nnx.state(model), x)


def gmacs(name: str) -> float:
    return jaxpr_macs(native_eval_jaxpr(name).jaxpr) / 1e9


def count_params(model: ConvNet) -> int:
    return sum(v.size for v in jax.tree.leaves(nnx.state(model, nnx.Param)))


# --- every registered model ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_every_model_traces_in_train_and_eval_mode(name):
    """Abstract forwards (no memory, no compile): train mode at small resolution, eval mode at native
    resolution (for the published models test_params_and_gmacs_equal_published does that). Numerical
    execution of every layer and block variant is covered by the executed models below."""
    model = abstract(name)
    model.train()
    size = min(model.spec.resolution, 32)
    x = jax.ShapeDtypeStruct((2, size, size, model.spec.in_chans), jnp.float32)
    out = jax.eval_shape(forward(model), nnx.state(model), x)
    assert out.shape == (2, model.spec.num_classes) and out.dtype == jnp.float32, out
    if name not in PUBLISHED:
        assert_eval_output(name)
    assert model_info(name)["resolution"] == model.spec.resolution


def assert_eval_output(name: str):
    (out,) = native_eval_jaxpr(name).out_avals
    assert out.shape == (1, model_spec(name).num_classes) and out.dtype == jnp.float32, out


def mbconv_mini() -> ModelSpec:
    """MBConv blocks covering expand/no-expand, SE, groups, a rounded hidden width, stride 2, drop-connect."""
    return ModelSpec("mbconv_mini", "test", 16, (
        Conv(3, 16, 3, 2, norm="batch", norm_eps=1e-3, act="silu"),
        MBConvBlock(16, 16, 3, 1, 1.0, se_ratio=0.25, drop_path=0.2),
        MBConvBlock(16, 24, 5, 2, 6.0, se_ratio=0.25, group_width=8),
        MBConvBlock(24, 24, 3, 1, 3.5, se_ratio=0.0, group_width=16, hidden_channels=96, drop_path=0.2),
        Conv(24, 32, 1, norm="batch", norm_eps=1e-3, act="silu"),
        Head(32, 5, dropout=0.2)), bn_momentum=0.99, weight_init="fan_out")


# Executed: every layer and block variant (ConvFirst with BatchNorm, ConvFirst/ConvNeXt-style with
# LayerNorm + layer scale, MBConv with SE/groups/stride) at sizes whose CPU compile fits CI.
@pytest.mark.slow  # 10-30 s each on two idle cores, mostly XLA compiles
@pytest.mark.parametrize("make", [lambda: create_model("convfirst_pico", drop_path_rate=0.2),
                                  lambda: create_model("convfirst_pico_ln", drop_path_rate=0.2),
                                  lambda: ConvNet(mbconv_mini(), rngs=nnx.Rngs(0))],
                         ids=["convfirst_pico", "convfirst_pico_ln", "mbconv_mini"])
def test_trains_and_evaluates_with_finite_outputs(make):
    model = make()
    spec = model.spec
    x = jax.random.normal(jax.random.key(2), (4, spec.resolution, spec.resolution, spec.in_chans))
    labels = jnp.arange(4) % spec.num_classes
    optimizer = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)  # stateless: no extra compiles

    def loss_fn(m):
        logits = m(x)
        assert logits.shape == (4, spec.num_classes) and logits.dtype == jnp.float32
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @nnx.jit
    def step(m, opt):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        opt.update(m, grads)
        return loss, grads

    losses = []
    for _ in range(5):
        loss, grads = step(model, optimizer)
        losses.append(float(loss))
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.isfinite(g).all()) for g in leaves)
    assert sum(bool(jnp.any(g != 0)) for g in leaves) > 0.9 * len(leaves)
    assert losses[-1] < losses[0]
    model.eval()
    out = model(x)
    assert out.shape == (4, spec.num_classes) and bool(jnp.isfinite(out).all())


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model = create_model("convfirst_pico", dtype=jnp.bfloat16)
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}
    x = jax.random.normal(jax.random.key(3), (4, 8, 8, 1))
    ref = create_model("convfirst_pico")
    for m in (model, ref):
        m.eval()
    out, expected = model(x), ref(x)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, atol=0.05 * float(jnp.abs(expected).max()))


# --- published figures -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PUBLISHED))
def test_params_and_gmacs_equal_published(name):
    params, walker_gmacs, timm_gmacs = PUBLISHED[name]
    assert count_params(abstract(name)) == params
    assert_eval_output(name)
    g = gmacs(name)
    # Our convention (1 MAC per multiply-add, padding taps counted, conv/dense only) = the papers'.
    assert g == pytest.approx(walker_gmacs, rel=2e-4, abs=6e-4)
    # timm's counter (fvcore) also counts 2 MACs per BatchNorm element and 5 per LayerNorm element:
    # +0.3 % on ConvNeXt, +1.5-3.6 % on EfficientNet (B0: 0.386 + 2 x 6.8 M BN elements = 0.40).
    assert g == pytest.approx(timm_gmacs, rel=0.02 if name.startswith("convnext") else 0.04)


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_convfirst_uses_at_most_90_percent_of_convnext_macs(size):
    budget = 0.9 * PUBLISHED[f"convnext_{size}"][1]
    for name in (f"convfirst_{size}", f"convfirst_{size}_ln"):
        assert gmacs(name) <= budget, name


def test_walker_counts_the_same_macs_in_train_and_eval_mode():
    """BatchNorm folding and the block op change no MAC (the cost model reads the same spec)."""
    model = abstract("mbconvnet_b0_gw8")
    model.train()
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    train_macs = traced_macs(forward(model), nnx.state(model), x) / 1e9
    assert train_macs == pytest.approx(gmacs("mbconvnet_b0_gw8"), rel=1e-9)


def test_weight_inits_follow_convnext_and_timm_goog():
    key = jax.random.key(8)
    depthwise = conv_init("fan_out", groups=256)(key, (5, 5, 1, 256))  # timm: fan_out = k*k*cout/groups
    assert float(depthwise.std()) == pytest.approx(np.sqrt(2 / 25), rel=0.05)
    pointwise = conv_init("fan_out")(key, (64, 512))  # 1x1 conv stored as dense: fan_out = cout
    assert float(pointwise.std()) == pytest.approx(np.sqrt(2 / 512), rel=0.05)
    classifier = dense_init("fan_out")(key, (256, 1000))  # U(+-1/sqrt(num_classes))
    assert float(jnp.abs(classifier).max()) <= 1 / np.sqrt(1000)
    assert float(classifier.std()) == pytest.approx(1 / np.sqrt(3000), rel=0.05)
    convnext = conv_init("trunc_normal")(key, (7, 7, 1, 512))  # N(0, 0.02) truncated at 2 sigma
    assert float(jnp.abs(convnext).max()) <= 0.04 and float(convnext.std()) == pytest.approx(0.02 * 0.88, rel=0.05)


# --- specs and options -------------------------------------------------------------------------------

def test_group_width_rounds_hidden_up_or_uses_gcd_without_expand():
    spec = efficientnet_spec("b3", group_width=32)
    blocks = [layer for layer in spec.layers if isinstance(layer, MBConvBlock)]
    for b in blocks:
        if b.has_expand:
            assert b.group_width == 32 and b.hidden % 32 == 0
            assert int(b.cin * b.expand_ratio) <= b.hidden < int(b.cin * b.expand_ratio) + 32
        else:  # B3 stage 1: 40 -> 24 and 24 -> 24 channels, no expand conv to widen
            assert b.hidden == b.cin and b.group_width == np.gcd(32, b.cin)
    assert any(b.hidden_channels is not None for b in blocks)
    model = abstract("efficientnet_b0", group_width=32)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    assert jax.eval_shape(forward(model), nnx.state(model), x).shape == (1, 1000)


def test_overrides_reach_the_spec():
    spec = model_spec("convfirst_tiny", num_classes=10, resolution=64, group_width=16, expand_ratio=6,
                      drop_path_rate=0.3, act="gelu", norm="layer")
    blocks = [layer for layer in spec.layers if hasattr(layer, "dim")]
    assert spec.name == "convfirst_tiny" and spec.num_classes == 10 and spec.resolution == 64
    assert {(b.group_width, b.expand_ratio, b.act, b.norm) for b in blocks} == {(16, 6, "gelu", "layer")}
    assert blocks[0].drop_path == 0.0 and blocks[-1].drop_path == pytest.approx(0.3)
    effnet = model_spec("efficientnet_b0", drop_path_rate=0.2)
    rates = [layer.drop_path for layer in effnet.layers if isinstance(layer, MBConvBlock)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2 * 15 / 16)


def test_model_info_carries_published_top1_with_source():
    info = model_info("convnext_tiny")
    assert (info["family"], info["resolution"], info["top1"]) == ("convnext", 224, 82.07)
    assert "convnext_tiny.fb_in1k" in info["top1_source"]
    assert model_info("efficientnet_b7")["resolution"] == 600
    assert model_info("convfirst_tiny")["top1"] is None
    assert convfirst.model_info is model_info and convfirst.create_model is create_model


def test_drop_path_is_random_in_train_mode_and_off_in_eval_mode():
    model = create_model("convfirst_pico_ln", drop_path_rate=0.9, layer_scale=None)
    x = jax.random.normal(jax.random.key(4), (4, 8, 8, 1))
    assert not np.allclose(model(x), model(x))
    view = nnx.view(model, deterministic=True)  # the functional eval() (no BatchNorm in this model)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))
    np.testing.assert_array_equal(view(x), model(x))


def test_impl_per_block_type_and_set_impl():
    model = nnx.eval_shape(lambda: create_model("convfirst_pico", impl={"convfirst_block": "xla"}))
    block_layers = [layer for layer in model.layers if hasattr(layer, "impl")]
    assert block_layers and {b.impl for b in block_layers} == {"xla"}
    model.set_impl(["pallas_fused", "xla"])
    assert {b.impl for b in block_layers} == {("pallas_fused", "xla")}


def test_training_with_batchnorm_and_a_kernel_impl_warns_once(caplog):
    model_blocks._note_batchnorm_fallback.cache_clear()  # warned at most once per process
    model = create_model("convfirst_pico", impl="pallas_fused")
    x = jax.random.normal(jax.random.key(5), (4, 8, 8, 1))
    with caplog.at_level(logging.WARNING, logger="convfirst.models.blocks"):
        model(x)
        model(x)
    warnings = [r for r in caplog.records if "training with BatchNorm" in r.getMessage()]
    assert len(warnings) == 1 and "pallas_fused" in warnings[0].getMessage()


# --- errors ------------------------------------------------------------------------------------------

def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'convnext_tinny'.*convnext_tiny"):
        create_model("convnext_tinny")
    with pytest.raises(ValueError, match=r"unknown model 'efficientnet_b9'.*efficientnet_b"):
        model_spec("efficientnet_b9")


def test_unknown_override_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['depth'\] for convnext_tiny; valid: .*num_cl"):
        model_spec("convnext_tiny", depth=3)


@pytest.mark.parametrize("impl, match", [({"conv_block": "xla"}, r"unknown block op.*conv_block.*convfirst_block"),
                                         ("pallas_fusd", r"unknown implementation 'pallas_fusd'.*valid: xla"),
                                         ({"mbconv_block": "nope"}, r"unknown implementation 'nope' for mbconv"),
                                         (None, r"unknown implementation None")])
def test_bad_impl_is_a_clear_error(impl, match):
    name = "mbconvnet_b0" if isinstance(impl, dict) and "mbconv_block" in impl else "convfirst_pico"
    with pytest.raises(ValueError, match=match):
        create_model(name, impl=impl)


def test_impl_text_syntax():
    """Configs and command lines: a name, 'a+b' (tried in order), per op with '='."""
    from convfirst.models.net import parse_impl

    assert parse_impl("auto") == "auto"
    assert parse_impl("mosaic_mlp+xla_native") == ("mosaic_mlp", "xla_native")
    assert parse_impl("convfirst_block=mosaic_mlp+xla,mbconv_block=xla") == {
        "convfirst_block": ("mosaic_mlp", "xla"), "mbconv_block": "xla"}
    assert parse_impl(" mosaic_mlp + xla ") == ("mosaic_mlp", "xla")
    for bad, match in (("convfirst_block=xla,", "no op= in ''"), ("convfirst_block=xla,convfirst_block=auto", "duplicate")):
        with pytest.raises(ValueError, match=match):
            parse_impl(bad)
    with pytest.raises(ValueError, match="'auto' stands alone"):
        create_model("convfirst_pico", impl=parse_impl("mosaic_mlp+auto"))
    model = create_model("convfirst_pico", impl=parse_impl("pallas_fused+xla"), bwd_impl=parse_impl("mosaic_mlp+xla"))
    assert {(b.impl, b.bwd_impl) for b in model.layers if hasattr(b, "bwd_impl")} == {
        (("pallas_fused", "xla"), ("mosaic_mlp", "xla"))}


def test_bwd_impl_is_chosen_separately_and_checked():
    model = create_model("convfirst_pico", impl="pallas_fused", bwd_impl="xla")
    blocks = [l for l in model.layers if hasattr(l, "bwd_impl")]
    assert {(b.impl, b.bwd_impl) for b in blocks} == {("pallas_fused", "xla")}
    model.set_impl(bwd_impl="pallas_fused")
    assert {(b.impl, b.bwd_impl) for b in blocks} == {("pallas_fused", "pallas_fused")}
    with pytest.raises(ValueError, match=r"unknown backward implementation 'pallas_layerwise' for "
                                         r"convfirst_block; valid: xla, xla_native, pallas_fused, mosaic_mlp, auto"):
        create_model("convfirst_pico", bwd_impl="pallas_layerwise")
    with pytest.raises(ValueError, match=r"unknown backward implementation 'pallas_fused' for mbconv_block"):
        create_model("mbconvnet_b0", bwd_impl={"mbconv_block": "pallas_fused"})


def test_bad_options_and_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="not divisible by group_width"):
        model_spec("convfirst_pico", group_width=24)
    with pytest.raises(ValueError, match="unknown norm 'group'; valid: batch, layer, none"):
        model_spec("convfirst_tiny", norm="group")
    with pytest.raises(ValueError, match="unknown activation"):
        model_spec("efficientnet_b0", act="swishy")
    model = create_model("convfirst_pico")
    with pytest.raises(ValueError, match="expects NHWC images with 1 channels"):
        model(jnp.ones((1, 8, 8, 3)))


# --- on an NVIDIA GPU: the models' op calls through the kernels ----------------------------------------
# python -m pytest tests/test_models.py -q -m gpu     (on the H100; skipped on CPU)

needs_gpu = pytest.mark.skipif(jax.default_backend() != "gpu",
                               reason=f"needs an NVIDIA GPU; jax backend is {jax.default_backend()!r}")


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name, overrides, impl", [
    ("convfirst_tiny", {}, "auto"), ("convfirst_tiny_ln", {}, "auto"), ("mbconvnet_b0_gw8", {}, "auto"),
    # auto runs every block of these two on XLA (C=96 is not a power of two; squeeze-excite): force
    # the layer-wise kernels so the comparison exercises Pallas
    ("convnext_tiny", {"layer_scale": 1.0}, "pallas_layerwise"), ("efficientnet_b0", {}, "pallas_layerwise")])
def test_eval_with_kernels_matches_xla_in_bfloat16(name, overrides, impl):
    """Pallas kernels (auto: fused where it wins, else XLA) vs 'xla', whole model, eval mode:
    checks what the model hands the op (folded BN, LayerNorm, residual flags, strides)."""
    from experiments.cell import distinct_blocks, selected_impl

    ran = {selected_impl(p, impl, jnp.bfloat16, "gpu") for p, _, _ in distinct_blocks(model_spec(name), 8)}
    assert ran - {"xla"}, f"{name} with impl={impl!r} would run no Pallas kernel"
    model = create_model(name, dtype=jnp.bfloat16, impl="xla", **overrides)
    model.eval()
    r = model.spec.resolution
    x = jax.random.normal(jax.random.key(6), (8, r, r, model.spec.in_chans))
    run = nnx.jit(lambda m, x: m(x))
    expected = run(model, x)
    model.set_impl(impl)
    assert relative_error(run(model, x), expected) < 3e-2


@pytest.mark.gpu
@needs_gpu
def test_training_without_batchnorm_through_kernels_matches_xla():
    """convfirst_tiny_ln trains through the op (custom_vjp): loss and gradients as with 'xla'."""
    model = create_model("convfirst_tiny_ln", dtype=jnp.bfloat16, impl="xla", layer_scale=1.0)
    x = jax.random.normal(jax.random.key(7), (8, 224, 224, 3))
    labels = jnp.arange(8)

    @nnx.jit
    def loss_and_grads(m):
        return nnx.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), labels).mean())(m)

    loss_ref, grads_ref = loss_and_grads(model)
    model.set_impl("auto")
    loss, grads = loss_and_grads(model)
    assert abs(float(loss) - float(loss_ref)) < 2e-2 * abs(float(loss_ref))
    assert relative_error(jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)]),
                          jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads_ref)])) < 5e-2


@pytest.mark.parametrize("cin,hw,dtype", [(3, (30, 31), jnp.float32), (3, (224, 224), jnp.bfloat16),
                                          (1, (9, 10), jnp.float32)])
def test_narrow_patchify_stem_runs_as_a_gemm_equal_to_the_conv(cin, hw, dtype):
    """The 4x4/4 stem on RGB runs as one GEMM (cuDNN has no tensor-core kernel for it): the same
    outputs as the layer's nnx.Conv, remainder pixels dropped as VALID does, in value and gradient."""
    from convfirst.models import specs
    from convfirst.models.layers import ConvNormAct

    spec = specs.Conv(cin, 64, 4, 4, padding="VALID", bias=True, norm="none")
    layer = ConvNormAct(spec, model=model_spec("convfirst_tiny"), dtype=dtype, rngs=nnx.Rngs(0))
    layer.conv.bias[...] = jax.random.normal(jax.random.key(3), (64,))
    assert layer._is_narrow_patchify()
    x = jax.random.normal(jax.random.key(1), (2, *hw, cin))
    y, ref = layer(x), layer.conv(x)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    tol = 2e-3 if dtype == jnp.float32 else 1e-2  # two sum orders (TF32 on a GPU), bf16 ulps
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref, np.float32), atol=tol * 4, rtol=tol)
    gw = nnx.grad(lambda m: m(x).astype(jnp.float32).sum())(layer)
    gw_ref = nnx.grad(lambda m: m.conv(x).astype(jnp.float32).sum())(layer)
    np.testing.assert_allclose(np.asarray(gw.conv.kernel[...]), np.asarray(gw_ref.conv.kernel[...]),
                               rtol=2e-2 if dtype != jnp.float32 else 1e-5, atol=1e-3)
    wide = ConvNormAct(specs.Conv(64, 128, 2, 2, padding="VALID", norm="none"), model=model_spec("convfirst_tiny"),
                       dtype=dtype, rngs=nnx.Rngs(0))
    assert not wide._is_narrow_patchify()  # 2x2/2 downsampling keeps cuDNN's tensor-core conv


def _count_primitive(model, x, name: str) -> int:
    """Occurrences of a primitive in the forward's jaxpr, inside the block ops' sub-jaxprs too."""
    def count(jaxpr) -> int:
        n = 0
        for e in jaxpr.eqns:
            n += e.primitive.name == name
            for v in e.params.values():
                for sub in v if isinstance(v, (tuple, list)) else (v,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        n += count(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        n += count(sub)
        return n

    graphdef, state = nnx.split(model)
    return count(jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, x).jaxpr)


@pytest.mark.parametrize("name,kw", [("convfirst_pico", {}), ("convfirst_pico_ln", {}),
                                     ("efficientnet_b0", dict(resolution=32))])
def test_for_inference_folds_once_and_computes_the_same(name, kw):
    """The inference copy computes what the eval-mode model computes (within the bf16 rounding of the
    folded weights: every BatchNorm, the blocks' and the stem's, downsampling and head convs', and
    ConvFirst's conv bias moved into the expand bias) without folding BatchNorm or casting the 1x1
    weights inside the forward, and refuses training while the original still trains."""
    from test_folding import randomize

    model = randomize(create_model(name, dtype=jnp.bfloat16, impl="xla_native", **kw), 3)  # real statistics:
    spec = model.spec  # a fresh BatchNorm (mean 0, var 1, no shift) would hide a dropped or misplaced bias
    x = jax.random.normal(jax.random.key(0), (2, spec.resolution, spec.resolution, spec.in_chans))
    model.eval()
    frozen = model.for_inference()
    out, ref = np.asarray(frozen(x), np.float32), np.asarray(model(x), np.float32)
    np.testing.assert_allclose(out, ref, rtol=0.05, atol=0.05 * np.abs(ref).max())
    batchnorms = sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_graph(model))
    assert batchnorms > 0 or name == "convfirst_pico_ln"  # LayerNorm throughout
    assert not any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_graph(frozen))  # every one folded
    assert _count_primitive(model, x, "rsqrt") - _count_primitive(frozen, x, "rsqrt") == batchnorms
    # the expand and project weights are cast once, not in every forward (one convert each)
    weights = sum(2 - (layer.expand is None) for layer in model.layers if isinstance(layer, model_blocks._ResidualBlock))
    assert _count_primitive(model, x, "convert_element_type") - \
        _count_primitive(frozen, x, "convert_element_type") >= weights
    sizes = [sum(v.size for v in jax.tree.leaves(nnx.state(m))) for m in (model, frozen)]
    assert sizes[1] < sizes[0]  # the blocks' raw layers are gone, not kept next to the folded ones
    assert all(layer.conv is None for layer in frozen.layers if isinstance(layer, model_blocks._ResidualBlock))
    frozen.train()
    with pytest.raises(RuntimeError, match="frozen for inference"):
        frozen(x)
    model.train()
    assert model(x).shape == (2, spec.num_classes)
