"""The fused ConvFirst kernel against the reference (CPU, Pallas interpret mode), its lowering for an
abstract H100, and the implementation registry / autotune cache around it.

Interpret mode fills unwritten outputs with NaN, so `assert_close`'s finiteness check proves every
pixel and channel was stored. Odd H/W exercise partial tiles and image borders.
"""
import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernel_checks import (assert_close, assert_grads_close, normal, random_params, reference_grads, rounded,
                           seed_of)
from pallas_kernels import AUTO, CONVFIRST_BLOCK, UnsupportedError, autotune, convfirst_block
from pallas_kernels.common import compiling_for_gpu, lower_for_h100
from pallas_kernels.convfirst_block import configs, fused_triton
from pallas_kernels.convfirst_block.configs import FusedConfig
from pallas_kernels.convfirst_block.reference import (compute_conv_weight, compute_grouped_conv, grouped_conv,
                                                      widen_groups)
from pallas_kernels.layers.gconv import block_diagonal_conv_weights
from pallas_kernels.problems import BlockProblem

BF16, F16 = jnp.bfloat16, jnp.float16


def cf(batch, h, w, c, hidden, k=3, gw=8, **kw) -> BlockProblem:
    return BlockProblem("convfirst_block", batch, h, w, c, hidden, kernel_size=k, group_width=gw, **kw)


CASES = [  # every supported k x group width, LN on/off, residual on/off, batch 1 and 2, odd sizes
    (cf(2, 7, 9, 32, 128), None),
    (cf(1, 5, 11, 64, 128, gw=16, act="relu"), FusedConfig(4, 8, 32, 32, 4, 2)),
    (cf(1, 9, 6, 32, 64, k=7, gw=1, act="gelu", layer_norm=True), None),
    (cf(2, 3, 5, 16, 64, k=5, gw=8, act="gelu_tanh", residual=False), FusedConfig(2, 8, 16, 16, 4, 2)),
    (cf(1, 1, 1, 32, 64, k=3, gw=8, layer_norm=True), FusedConfig(4, 4, 16, 32, 4, 2)),
    (cf(1, 6, 5, 64, 256, k=3, gw=32, act="silu"), FusedConfig(2, 8, 64, 128, 4, 3)),
    # flat tiles: 16 pixels span image borders of a 3x5x5 batch, the last tile is partial
    (cf(3, 5, 5, 32, 64, k=3, gw=8, layer_norm=True), FusedConfig(conv_chunk=16, hidden_chunk=32, flat_pixels=16)),
    (cf(2, 7, 9, 32, 128, k=5, gw=16, act="gelu"), FusedConfig(conv_chunk=32, hidden_chunk=64, num_warps=8,
                                                              flat_pixels=64)),
]


def _inputs(prob, dtype):
    seed = seed_of(prob.label(), jnp.dtype(dtype).name, prob.residual)
    params = rounded(random_params(prob, seed), dtype)
    x = normal(seed + 1, prob.x_shape()).astype(dtype)
    return x, params


# bf16 on every case, fp16 on the 3x3 ones (interpret mode is slow on 2 CPU cores)
RUNS = [(p, cfg, BF16) for p, cfg in CASES] + [(p, cfg, F16) for p, cfg in CASES if p.kernel_size == 3]


@pytest.mark.parametrize("prob,config,dtype", RUNS, ids=[
    f"{p.label()}{'' if p.residual else '_nores'}_{jnp.dtype(d).name}" for p, _, d in RUNS])
def test_fused_matches_reference(prob, config, dtype):
    x, params = _inputs(prob, dtype)
    fn = jax.jit(functools.partial(convfirst_block, impl="pallas_fused", config=config, **prob.static()))
    with jax.default_matmul_precision("highest"):
        ref = CONVFIRST_BLOCK.reference(x.astype(jnp.float32), params, **prob.static())
    assert_close(fn(x, params), ref, dtype, prob.hidden)


@pytest.mark.parametrize("prob,dtype", [(p, d) for p, _ in CASES for d in (BF16, F16)],
                         ids=lambda v: v.label() if isinstance(v, BlockProblem) else jnp.dtype(v).name)
def test_xla_native_matches_reference_and_trains(prob, dtype):
    """The compute-dtype XLA baseline: within the kernels' tolerance of the f32-intermediate reference,
    and differentiable on its own (xla_native forward and backward = plain autodiff)."""
    x, params = _inputs(prob, dtype)
    fn = functools.partial(convfirst_block, impl="xla_native", bwd_impl="xla_native", **prob.static())
    precise = functools.partial(convfirst_block, impl="xla", bwd_impl="xla", **prob.static())
    # every conv and matmul returns the compute dtype (the reference: float32)
    assert "preferred_element_type=float32" not in str(jax.make_jaxpr(fn)(x, params))
    assert "preferred_element_type=float32" in str(jax.make_jaxpr(precise)(x, params))
    with jax.default_matmul_precision("highest"):
        ref = CONVFIRST_BLOCK.reference(x.astype(jnp.float32), params, **prob.static())
    y = jax.jit(fn)(x, params)
    assert y.dtype == dtype
    assert_close(y, ref, dtype, prob.hidden)
    dy = normal(seed_of(prob.label(), "dy"), prob.x_shape()).astype(dtype)
    _, vjp = jax.vjp(fn, x, params)  # autodiff in the compute dtype rounds every cotangent: 2x tolerance
    got, ref_grads = vjp(dy), reference_grads(CONVFIRST_BLOCK, prob, x, params, dy)
    if prob.act == "relu":  # relu' of a bf16-rounded pre-activation flips whole hidden channels of the
        assert_close(got[0], ref_grads[0], dtype, prob.hidden, scale=4.0)  # bias gradients: dx only
    else:
        assert_grads_close(got, ref_grads, prob, dtype, scale=2.0)


def test_join_order_is_a_permutation_matching_the_kernel_join():
    order = fused_triton.join_order(4, 8)
    assert sorted(order.tolist()) == list(range(32))
    t = jnp.arange(2 * 32, dtype=jnp.float32).reshape(2, 32)
    joined = fused_triton._join(jnp.split(t, 4, axis=1))
    np.testing.assert_array_equal(np.asarray(joined), np.asarray(t)[:, order])


def test_block_diagonal_weights_reproduce_the_grouped_conv():
    k, g, c, chunk = 3, 8, 32, 16
    w = normal(3, (k, k, g, c))
    dense = block_diagonal_conv_weights(w, g, chunk).reshape(k, k, c // chunk, chunk, chunk)
    for j in range(c // chunk):
        for o in range(chunk):
            for i in range(chunk):
                ci, co = j * chunk + i, j * chunk + o
                want = w[:, :, ci % g, co] if ci // g == co // g else jnp.zeros((k, k))
                np.testing.assert_array_equal(dense[:, :, j, i, o], want)


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_widened_groups_compute_the_same_conv(width):
    x, w = normal(4, (2, 7, 9, 64)), normal(5, (3, 3, 8, 64))
    wide = widen_groups(w, 8, width)
    assert wide.shape == (3, 3, width, 64)
    with jax.default_matmul_precision("highest"):
        assert_close(grouped_conv(x, wide, width), grouped_conv(x, w, 8), jnp.float32, depth=9 * width)
    with pytest.raises(ValueError, match="multiple of 8 dividing C=64"):
        widen_groups(w, 8, 24)


def test_compute_dtype_conv_widens_on_the_gpu_and_keeps_values_and_gradients():
    """On a GPU the compute-dtype graph's forward runs group width 8 at 16 (cuDNN's faster engine), its
    backward at 8; same values, and autodiff gives the native weight's gradient."""
    x, w = normal(6, (2, 6, 5, 32)).astype(BF16), rounded(normal(7, (3, 3, 8, 32)), BF16)
    conv = lambda wc, widen: compute_grouped_conv(x, wc, 8, out_dtype=jnp.float32, widen=widen)  # noqa: E731
    assert_close(conv(w, True), conv(w, False), BF16, depth=9 * 8)
    g_wide, g_native = (jax.grad(lambda wc, v=v: jnp.sum(conv(wc, v) ** 2))(w) for v in (True, False))
    assert g_wide.shape == w.shape
    assert_close(g_wide, g_native, BF16, depth=2 * 6 * 5)
    tangent = rounded(normal(8, w.shape), BF16)  # forward mode too
    jvp_wide, jvp_native = (jax.jvp(lambda wc, v=v: conv(wc, v), (w,), (tangent,))[1] for v in (True, False))
    assert_close(jvp_wide, jvp_native, BF16, depth=9 * 8)

    def groups(fn):  # feature_group_count of every conv in the traced graph, nested ones included
        return sorted(int(n) for n in re.findall(r"feature_group_count=(\d+)", str(jax.make_jaxpr(fn)(x, w))))
    def forward(a, wc):  # a new function per trace: jax caches traces by function, not by this context
        return compute_grouped_conv(a, wc, 8, out_dtype=BF16)

    assert groups(lambda a, wc: forward(a, wc)) == [4]  # CPU: native width
    with compiling_for_gpu():
        assert groups(lambda a, wc: forward(a, wc)) == [2]  # lowered for the GPU: width 16
        step = groups(jax.grad(lambda a, wc: jnp.sum(forward(a, wc).astype(jnp.float32) ** 2), argnums=(0, 1)))
        assert step.count(2) == 1 and 4 in step  # forward widened; the data gradient native


@pytest.mark.parametrize("prob,reason", [
    (cf(1, 8, 8, 48, 192), "power of two"),
    (cf(1, 8, 8, 512, 2048), "registers"),
    (cf(1, 8, 8, 64, 256, k=4), "kernel size"),
    (cf(1, 8, 8, 64, 256, gw=12), "group width"),
])
def test_forced_fused_on_unsupported_shapes_says_why(prob, reason):
    x, params = _inputs(prob, BF16) if prob.kernel_size != 4 else (None, None)
    if x is None:  # an even kernel: build the params by hand (BlockProblem would build them fine)
        x = normal(1, prob.x_shape()).astype(BF16)
        params = prob.make_params(jax.random.key(0))
    with pytest.raises(UnsupportedError, match=reason):
        convfirst_block(x, params, impl="pallas_fused", **prob.static())


def test_float32_input_is_refused_with_the_dtype_named():
    prob = cf(1, 4, 4, 32, 64)
    x, params = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match="float32"):
        convfirst_block(x.astype(jnp.float32), params, impl="pallas_fused", **prob.static())


def test_bad_config_is_refused():
    prob = cf(1, 4, 4, 32, 64)
    x, params = _inputs(prob, BF16)
    with pytest.raises(UnsupportedError, match="power of two"):
        convfirst_block(x, params, impl="pallas_fused", config=FusedConfig(3, 8, 16, 32, 4, 2), **prob.static())


def test_unknown_implementation_lists_the_valid_ones():
    prob = cf(1, 4, 4, 32, 64)
    x, params = _inputs(prob, BF16)
    with pytest.raises(ValueError, match="valid: xla, xla_native, pallas_fused"):
        convfirst_block(x, params, impl="triton_magic", **prob.static())


def test_auto_on_cpu_runs_the_reference_and_a_sequence_falls_back():
    prob = cf(1, 5, 5, 48, 96)  # C=48: the fused kernel cannot run it
    x, params = _inputs(prob, BF16)
    ref = CONVFIRST_BLOCK.reference(x, params, **prob.static())
    np.testing.assert_array_equal(convfirst_block(x, params, impl=AUTO, **prob.static()), ref)
    y = convfirst_block(x, params, impl=("pallas_fused", "xla"), **prob.static())
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("c,hidden", [(64, 256), (128, 512), (256, 1024)])
def test_heuristic_and_first_candidates_lower_for_h100(c, hidden):
    prob = cf(128, 28, 28, c, hidden)
    params = jax.eval_shape(prob.make_params, jax.random.key(0))
    x = jax.ShapeDtypeStruct(prob.x_shape(), BF16)
    space = configs.candidates(c, hidden, 8, 28, 28)
    flat = [cfg for cfg in space if cfg.flat_pixels][:1]
    assert flat, "the search space has flat tiles"
    for cfg in [configs.heuristic(c, hidden, 8, 28, 28)] + space[:3] + flat:
        text = lower_for_h100(functools.partial(fused_triton.convfirst_fused, config=cfg, **prob.static()),
                              x, params)
        assert "triton" in text.lower()


@pytest.mark.parametrize("cache", sorted(p.name for p in autotune.TUNING_DIR.glob("*.json")))
def test_shipped_tuning_cache_configs_lower_for_h100(cache):
    """Every tuned config in every shipped cache (H100, H200: the same GH100 chip) is valid for its
    implementation and lowers at the shape it was tuned for (catches stale or hand-edited entries)."""
    from pallas_kernels.common import compiling_for_gpu
    from pallas_kernels.convfirst_block import mlp_mosaic

    kernels = {"pallas_fused": (fused_triton.convfirst_fused, FusedConfig, "triton"),
               "mosaic_mlp": (mlp_mosaic.convfirst_mosaic_mlp, mlp_mosaic.MosaicMLPConfig, "mosaic_gpu")}
    entries = json.loads((autotune.TUNING_DIR / cache).read_text())["entries"]
    checked = 0
    for key, by_batch in entries.items():
        if not key.startswith("convfirst_block|"):
            continue
        _, dtype, shape, pshapes, opts = key.split("|")
        h, w, c = map(int, shape.split("x"))
        k, _, gw, _ = map(int, pshapes.split(",")[0].split("x"))
        hidden = int(pshapes.split(",")[2].split("x")[1])
        static = dict(kv.split("=") for kv in opts.split(","))
        for entry in by_batch.values():
            for impl, cfg in entry.get("configs", {}).items():
                assert impl in kernels, f"{cache}: {impl} has a config but no lowering check here"
                fn, config_cls, marker = kernels[impl]
                prob = cf(8, h, w, c, hidden, k=k, gw=gw, act=static["act"],
                          layer_norm=pshapes.split(",")[6] != "-", residual=static["residual"] == "True")
                params = jax.eval_shape(prob.make_params, jax.random.key(0))
                with compiling_for_gpu():  # the GPU's code paths (mosaic_mlp's register operand)
                    text = lower_for_h100(functools.partial(fn, config=config_cls.from_dict(cfg), **prob.static()),
                                          jax.ShapeDtypeStruct(prob.x_shape(), BF16), params)
                assert marker in text.lower()
                checked += 1
    assert checked > 0


def test_autotune_cache_lookup_uses_nearest_batch(tmp_path, monkeypatch):
    prob = cf(8, 8, 8, 32, 64)
    x, params = _inputs(prob, BF16)
    monkeypatch.setenv(autotune.ENV_CACHE, str(tmp_path / "cache.json"))
    result = {"best_impl": "pallas_fused", "times_ms": {"pallas_fused": 1.0, "xla": 2.0},
              "configs": {"pallas_fused": FusedConfig(4, 8, 16, 32, 4, 2).to_dict()},
              "_key": autotune.shape_key("convfirst_block", x, params, prob.static())}
    autotune.write_entries([result], batch=128, device_kind="Test GPU")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert autotune.cached_best("convfirst_block", x, params, prob.static()) == "pallas_fused"
    assert autotune.cached_config("convfirst_block", "pallas_fused", x, params, prob.static())["tile_h"] == 4
    other = cf(8, 8, 8, 32, 128)  # another hidden width: no entry
    ox, op = _inputs(other, BF16)
    assert autotune.cached_best("convfirst_block", ox, op, other.static()) is None


def test_autotune_retuning_some_implementations_keeps_the_others(tmp_path, monkeypatch):
    """`convfirst tune --impls mosaic_mlp` replaces that implementation's time and config and keeps
    the others' (each with its date) from the entry it updates; the best is chosen over both. A
    wall-clock figure added to the protocol since does not stop the merge; another kernel-time protocol
    does, and an implementation the op no longer has is dropped."""
    monkeypatch.setenv(autotune.ENV_CACHE, str(tmp_path / "cache.json"))
    key = "convfirst_block|bfloat16|8x8x32|k"
    p = "warmup=3,iters=20,median,rotate>=200MiB,cupti-kernel-sum"
    p2 = p + "+wallclock+pipelined"
    first = {"best_impl": "pallas_fused", "times_ms": {"pallas_fused": 1.0, "xla": 2.0, "mosaic_mlp": 1.5, "gone": 0.1},
             "configs": {"pallas_fused": {"a": 1}, "mosaic_mlp": {"b": 1}}, "errors": {"mosaic_mlp:old": "x"},
             "protocol": p, "measured": "2026-11-30", "_key": key, "_tuned": ["xla", "pallas_fused", "mosaic_mlp"]}
    retuned = {"best_impl": "mosaic_mlp", "times_ms": {"mosaic_mlp": 0.5}, "configs": {"mosaic_mlp": {"b": 2}},
               "errors": {}, "protocol": p2, "measured": "2026-12-01", "_key": key, "_tuned": ["mosaic_mlp"]}
    path = autotune.write_entries([first], batch=128, device_kind="Test GPU")
    autotune.write_entries([retuned], batch=128, device_kind="Test GPU")
    entry = json.loads(path.read_text())["entries"][key]["128"]
    assert entry["times_ms"] == {"pallas_fused": 1.0, "xla": 2.0, "mosaic_mlp": 0.5}
    assert entry["configs"] == {"pallas_fused": {"a": 1}, "mosaic_mlp": {"b": 2}}
    assert entry["errors"] == {} and entry["best_impl"] == "mosaic_mlp"
    assert entry["measured_by_impl"] == {"pallas_fused": "2026-11-30", "xla": "2026-11-30", "mosaic_mlp": "2026-12-01"}
    slower = dict(retuned, times_ms={"mosaic_mlp": 3.0}, measured="2026-12-02")
    autotune.write_entries([slower], batch=128, device_kind="Test GPU")
    entry = json.loads(path.read_text())["entries"][key]["128"]
    assert entry["best_impl"] == "pallas_fused" and entry["measured_by_impl"]["xla"] == "2026-11-30"
    other_protocol = dict(retuned, protocol="warmup=1,iters=5,median,cupti-kernel-sum")
    with pytest.raises(ValueError, match="do not compare: retune every implementation"):
        autotune.write_entries([other_protocol], batch=128, device_kind="Test GPU")
    assert json.loads(path.read_text())["entries"][key]["128"]["best_impl"] == "pallas_fused"  # unchanged


def test_autotune_reads_a_sibling_parts_cache_with_a_warning(tmp_path, monkeypatch, caplog):
    """An H200 (same GH100 chip as the H100) without its own cache reads the H100's and says so;
    tuning writes its own file, which lookups then prefer."""
    monkeypatch.delenv(autotune.ENV_CACHE, raising=False)
    monkeypatch.setattr(autotune, "TUNING_DIR", tmp_path)
    autotune._warn_sibling.cache_clear()  # warned once per process
    h100, h200 = "NVIDIA H100 80GB HBM3", "NVIDIA H200"
    assert autotune.SIBLING_KINDS[h200] == h100
    assert autotune.read_path(h200) == tmp_path / "nvidia_h200.json"  # no sibling cache either
    autotune.write_entries([], batch=128, device_kind=h100)
    with caplog.at_level("WARNING"):
        assert autotune.read_path(h200) == tmp_path / "nvidia_h100_80gb_hbm3.json"
    assert "using the one tuned on NVIDIA H100 80GB HBM3" in caplog.text
    autotune.write_entries([], batch=128, device_kind=h200)
    assert autotune.read_path(h200) == tmp_path / "nvidia_h200.json"
    assert autotune.read_path("Test GPU") == tmp_path / "test_gpu.json"  # no sibling: its own path


def test_partial_retune_under_another_protocol_is_refused_before_timing(tmp_path, monkeypatch):
    """`--impls` against an entry timed under another kernel-time protocol fails before any timing."""
    prob = cf(1, 8, 8, 32, 64)
    x, params = _inputs(prob, BF16)
    key = autotune.shape_key("convfirst_block", x, params, prob.static())
    monkeypatch.setenv(autotune.ENV_CACHE, str(tmp_path / "cache.json"))
    autotune.write_entries([{"best_impl": "xla", "times_ms": {"xla": 1.0}, "configs": {}, "errors": {},
                             "protocol": "warmup=1,iters=5,median,cupti-kernel-sum", "_key": key}],
                           batch=1, device_kind="Test GPU")

    def time_call(*_, **__):
        raise AssertionError("timed before refusing")

    monkeypatch.setattr("pallas_kernels.timing.time_call", time_call)
    with pytest.raises(ValueError, match="do not compare"):
        autotune.tune(prob, dtype=BF16, impls=["xla"], log=lambda *_: None)


def test_autotune_never_caches_a_fast_but_wrong_config(monkeypatch):
    """The tuner checks each implementation's fastest config against the reference before taking it:
    a config that drops one pixel of 4096 (invisible in the relative L2 error, caught by the
    worst-element bound) is rejected with the error, and the next fastest is checked."""
    import dataclasses

    from pallas_kernels import OPS
    from pallas_kernels.timing import Timing

    prob = cf(1, 64, 64, 32, 64)
    good, broken, slow = FusedConfig(4, 4, 16, 32, 4, 2), FusedConfig(4, 8, 16, 32, 4, 2), FusedConfig(8, 8, 16, 32)
    real = OPS["convfirst_block"].implementations["pallas_fused"]
    reference = CONVFIRST_BLOCK.plain["xla"]  # fast on CPU; the configs only select the breakage

    def fn(x, params, *, config, **static):
        y = reference(x, params, **static)
        return y.at[0, 63, 63].set(0) if config == broken else y  # a dropped last pixel

    monkeypatch.setitem(OPS["convfirst_block"].implementations, "pallas_fused", dataclasses.replace(
        real, fn=fn, candidates=lambda problem, params: [broken, good, slow]))
    fake_ms = {broken: 1.0, good: 2.0, slow: 3.0, None: 5.0}

    def time_call(fn, make, *, protocol):  # the broken config is the fastest; tune's fn binds cfg=...
        ms = fake_ms[fn.__defaults__[0]]
        return Timing(ms, ms, ms, ms, ms, "fake", 1, 1)

    monkeypatch.setattr("pallas_kernels.timing.time_call", time_call)
    result = autotune.tune(prob, dtype=BF16, impls=["pallas_fused", "xla"], log=lambda *_: None)
    assert result["configs"]["pallas_fused"] == good.to_dict() and result["times_ms"]["pallas_fused"] == 2.0
    assert result["best_impl"] == "pallas_fused" and result["times_ms"]["xla"] == 5.0
    assert "wrong result: max error" in result["errors"][f"pallas_fused:{broken}"]
    assert f"pallas_fused:{slow}" not in result["errors"]  # checked in speed order: never reached


def test_conv_bias_folded_form_runs_on_every_implementation():
    """Inference copies hold the conv bias folded into the expand bias (b_conv None): every
    implementation accepts that form and matches the reference of the unfolded parameters, mosaic_mlp
    bit for bit (it folds the same way per call), and the tuning cache keys both forms alike."""
    prob = cf(1, 5, 7, 64, 128)
    x, params = _inputs(prob, BF16)
    folded = params.with_conv_bias_folded()
    assert folded.b_conv is None and params.b_conv is not None
    with jax.default_matmul_precision("highest"):
        ref = CONVFIRST_BLOCK.reference(x.astype(jnp.float32), params, **prob.static())
    static = prob.static()
    for impl in CONVFIRST_BLOCK.names:
        out = jax.jit(functools.partial(convfirst_block, impl=impl, **static))(x, folded)
        assert_close(out, ref, BF16, prob.hidden)
        if impl == "mosaic_mlp":
            same = jax.jit(functools.partial(convfirst_block, impl=impl, **static))(x, params)
            np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(same, np.float32))
    assert autotune.shape_key("convfirst_block", x, folded, static) == \
        autotune.shape_key("convfirst_block", x, params, static)
    ln = _inputs(cf(1, 3, 3, 32, 64, layer_norm=True), BF16)[1]
    assert ln.with_conv_bias_folded() is ln  # a LayerNorm between conv and expand: nothing to fold


def test_widened_conv_weight_runs_on_every_implementation():
    """GPU inference copies hold the group-width-8 conv weight widened to 16 for cuDNN
    (compute_conv_weight): every implementation accepts that form (the Triton kernels narrow it back)
    and matches the reference, and the tuning cache keys it like the native weight."""
    prob = cf(1, 5, 7, 64, 128)
    x, params = _inputs(prob, BF16)
    wide = params._replace(w_conv=compute_conv_weight(params.w_conv, 8, BF16, widen=True))
    assert wide.w_conv.shape == (3, 3, 16, 64)
    np.testing.assert_array_equal(np.asarray(wide.with_native_conv(8).w_conv, np.float32),
                                  np.asarray(params.w_conv, np.float32))
    with jax.default_matmul_precision("highest"):
        ref = CONVFIRST_BLOCK.reference(x.astype(jnp.float32), params, **prob.static())
    static = prob.static()
    for impl in CONVFIRST_BLOCK.names:
        assert_close(jax.jit(functools.partial(convfirst_block, impl=impl, **static))(x, wide), ref, BF16, prob.hidden)
    assert autotune.shape_key("convfirst_block", x, wide, static) == \
        autotune.shape_key("convfirst_block", x, params, static)
    # the Triton backward narrows too and widens its weight gradient back (block-diagonal)
    dy = normal(11, x.shape).astype(BF16)
    bwd = functools.partial(convfirst_block, impl="xla", bwd_impl="pallas_fused", **static)
    _, vjp = jax.vjp(bwd, x, wide)
    g_wide = vjp(dy)[1].w_conv
    _, vjp = jax.vjp(bwd, x, params)
    g_native = vjp(dy)[1].w_conv
    assert g_wide.shape == wide.w_conv.shape
    np.testing.assert_array_equal(np.asarray(g_wide, np.float32),
                                  np.asarray(widen_groups(g_native, 8, 16), np.float32))
    # any other width is not taken for a widened weight: the Triton kernels refuse it, XLA computes it
    other = params._replace(w_conv=normal(12, (3, 3, 32, 64)).astype(BF16))
    assert "groups of 32 input channels" in CONVFIRST_BLOCK.why_unsupported("pallas_fused", x, other, "cpu", **static)


def test_inference_copy_holds_the_conv_weight_as_the_gpu_conv_takes_it():
    """Frozen for a GPU (here: lowering for one), the grouped conv weight is stored cast and widened,
    and the copy computes what the trained model does."""
    from flax import nnx

    from convfirst.models import create_model
    from convfirst.models.blocks import ConvFirstBlock

    model = create_model("convfirst_pico", rngs=nnx.Rngs(0), dtype=BF16, impl="xla_native")
    model.eval()
    x = normal(9, (2, 16, 16, model.spec.in_chans))
    with compiling_for_gpu():
        frozen = model.for_inference()
    w = next(layer for layer in frozen.layers if isinstance(layer, ConvFirstBlock)).frozen_params.get_value().w_conv
    assert w.dtype == BF16 and w.shape[2] == 16
    assert_close(frozen(x), model(x).astype(jnp.float32), BF16, 1024, scale=2.0)


def test_inference_copy_folds_the_conv_bias_before_casting():
    """The frozen block folds b_conv through the float32 expand weights (as mosaic_mlp does per call),
    then casts: unrounded float32 weights make the order visible."""
    from flax import nnx

    from convfirst.models import create_model
    from convfirst.models.blocks import ConvFirstBlock

    model = create_model("convfirst_pico", rngs=nnx.Rngs(0), dtype=BF16, impl="xla_native")
    model.eval()
    block = next(layer for layer in model.layers if isinstance(layer, ConvFirstBlock))
    p = block.op_params()
    expected = p.b_expand + jnp.dot(p.b_conv, p.w_expand, precision="highest")
    frozen = next(layer for layer in model.for_inference().layers if isinstance(layer, ConvFirstBlock))
    got = frozen.frozen_params.get_value()
    assert got.b_conv is None and got.w_expand.dtype == BF16 and got.b_expand.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got.b_expand), np.asarray(expected))


def test_fused_backward_accepts_the_folded_form():
    """Gradients through an inference copy's parameters (b_conv folded away) keep their structure."""
    prob = cf(1, 3, 5, 32, 64)
    x, params = _inputs(prob, BF16)
    folded = params.with_conv_bias_folded()
    loss = lambda p: convfirst_block(x, p, impl="xla", bwd_impl="pallas_fused", **prob.static()).astype(
        jnp.float32).sum()  # noqa: E731
    grads = jax.grad(loss)(folded)
    assert grads.b_conv is None and grads.b_expand.shape == folded.b_expand.shape
