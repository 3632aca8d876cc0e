"""The functional train step, precision policy, optimizers, schedules, EMA and remat, against
straightforward references on a tiny NNX model (fast to compile) and on convfirst_pico."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from train import optim
from train.mixed_precision import DynamicLossScale, all_finite, get_policy
from train.state import FlatParams, ParamLayout, create_train_state
from train.step import StepSettings, make_eval_step, make_train_step, mix, normalize, sample_beta
from train_helpers import Tiny

SETTINGS = StepSettings(num_classes=5, mean=(100.0, 120.0), std=(50.0, 60.0))


def batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (n, 6, 6, 2), dtype=np.uint8)),
            "label": jnp.asarray(rng.integers(0, 5, n, dtype=np.int32))}


def test_train_step_matches_a_hand_written_step():
    """Same loss, gradients, update and BatchNorm statistics as value_and_grad + optax by hand."""
    tx = optim.make_optimizer("adamw", 1e-2, weight_decay=0.1)
    schedule = optax.constant_schedule(1e-2)
    s = StepSettings(num_classes=5, mean=SETTINGS.mean, std=SETTINGS.std, label_smoothing=0.1)
    model_def, state = create_train_state(Tiny(), tx)
    step = jax.jit(make_train_step(model_def, tx, schedule, get_policy("f32"), s))
    b = batch()
    new_state, metrics = step(state, b)

    ref = Tiny()  # same seed: same parameters and dropout stream
    ref.train()
    x = (b["image"].astype(jnp.float32) - jnp.array(s.mean)) / jnp.array(s.std)
    targets = optax.smooth_labels(jax.nn.one_hot(b["label"], 5), 0.1)

    @nnx.jit
    def reference_step(m):
        loss, grads = nnx.value_and_grad(lambda m: optax.softmax_cross_entropy(m(x), targets).mean())(m)
        params = nnx.state(m, nnx.Param)
        updates, _ = tx.update(grads, tx.init(params), params)
        return loss, grads, optax.apply_updates(params, updates)

    loss, grads, want_params = reference_step(ref)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(want_params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    for got, want in zip(jax.tree.leaves(new_state.batch_stats), jax.tree.leaves(nnx.state(ref, nnx.BatchStat))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(new_state.batch_stats["bn"]["mean"][...], 0)  # statistics did move
    assert int(new_state.step) == 1 and float(metrics["learning_rate"]) == pytest.approx(1e-2)
    # the dropout stream advanced, so the next step drops differently
    assert int(new_state.rest["drop"]["rngs"]["count"][...]) == int(state.rest["drop"]["rngs"]["count"][...]) + 1


def test_bf16_policy_keeps_f32_params_stats_logits_and_loss():
    policy = get_policy("bf16")
    tx = optim.make_optimizer("adamw", 1e-3, mu_dtype="bfloat16")
    model_def, state = create_train_state(Tiny(dtype=policy.compute_dtype), tx, ema=True)
    step = jax.jit(make_train_step(model_def, tx, optax.constant_schedule(1e-3), policy, SETTINGS))
    new_state, metrics = step(state, batch())
    assert {x.dtype for x in jax.tree.leaves(new_state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(new_state.batch_stats)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(new_state.ema_params)} == {jnp.dtype(jnp.float32)}
    mus = [s.mu for s in jax.tree.leaves(new_state.opt_state, is_leaf=lambda s: hasattr(s, "mu")) if hasattr(s, "mu")]
    assert mus and {x.dtype for x in jax.tree.leaves(mus)} == {jnp.dtype(jnp.bfloat16)}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(metrics["loss"])
    sums = jax.jit(make_eval_step(model_def, policy, SETTINGS))(new_state.params, new_state.batch_stats,
                                                                new_state.rest, batch() | {"mask": jnp.ones(16)})
    assert float(sums["count"]) == 16 and 0 <= float(sums["correct"]) <= 16


def test_param_layout_groups_by_weight_decay_and_round_trips():
    params = nnx.to_pure_dict(nnx.state(Tiny(), nnx.Param))
    layout = ParamLayout.of(params)
    flat = layout.flatten(params)
    leaves = jax.tree.leaves(params)
    assert flat.decay.size == sum(x.size for x in leaves if x.ndim > 1) > 0
    assert flat.no_decay.size == sum(x.size for x in leaves if x.ndim <= 1) > 0
    jax.tree.map(np.testing.assert_array_equal, layout.unflatten(flat), params)
    assert ParamLayout.of(params, flat=False).flatten(params) is params
    with pytest.raises(ValueError, match="float32 master weights"):
        ParamLayout.of(jax.tree.map(lambda x: x.astype(jnp.bfloat16), params))


@pytest.mark.parametrize("name", ["adamw", "rmsprop", "sgd"])
def test_flat_parameter_step_matches_the_per_parameter_step(name):
    """Same parameters, EMA and gradient norm after two steps whether the optimizer sees FlatParams or
    one leaf per parameter (weight decay on kernels only in both)."""
    tx = optim.make_optimizer(name, 1e-2, weight_decay=0.1)
    s = StepSettings(num_classes=5, mean=SETTINGS.mean, std=SETTINGS.std, ema_decay=0.9)
    results = []
    for flat in (True, False):
        model_def, state = create_train_state(Tiny(), tx, ema=True, flat_params=flat)
        assert isinstance(state.ema_params, FlatParams) == flat
        step = jax.jit(make_train_step(model_def, tx, optax.constant_schedule(1e-2), get_policy("f32"), s))
        state, _ = step(state, batch(0))
        state, metrics = step(state, batch(1))
        results.append((state.params, model_def.layout.unflatten(state.ema_params), metrics["grad_norm"]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *results)


def test_lamb_refuses_flat_parameters():
    """LAMB's trust ratio is per parameter: over FlatParams it would silently be per group."""
    tx = optim.make_optimizer("lamb", 1e-2, weight_decay=0.1)
    with pytest.raises(ValueError, match="not elementwise"):
        create_train_state(Tiny(), tx)
    model_def, state = create_train_state(Tiny(), tx, flat_params=False)
    step = jax.jit(make_train_step(model_def, tx, optax.constant_schedule(1e-2), get_policy("f32"), SETTINGS))
    new_state, metrics = step(state, batch())
    assert np.isfinite(metrics["loss"]) and not np.array_equal(jax.tree.leaves(new_state.params)[0],
                                                               jax.tree.leaves(state.params)[0])


def test_fp16_loss_scaling_skips_overflowing_steps_and_adapts():
    policy = get_policy("fp16")
    assert policy.loss_scaling and not get_policy("bf16").loss_scaling
    tx = optim.make_optimizer("sgd", 0.1)
    model_def, state = create_train_state(Tiny(dtype=policy.compute_dtype), tx, ema=True,
                                          loss_scale=DynamicLossScale.create(2.0 ** 120, period=2))
    step = jax.jit(make_train_step(model_def, tx, optax.constant_schedule(0.1), policy, SETTINGS))
    new_state, metrics = step(state, batch())  # 2**120 overflows fp16/f32 gradients
    assert float(metrics["skipped"]) == 1 and float(new_state.loss_scale.scale) == 2.0 ** 119
    kept = lambda s: jax.tree.leaves((s.params, s.opt_state, s.ema_params))  # noqa: E731
    for a, b in zip(kept(new_state), kept(state), strict=True):
        np.testing.assert_array_equal(a, b)
    ok = state.replace(loss_scale=DynamicLossScale.create(8.0, period=2))
    s1, m1 = step(ok, batch(1))
    s2, m2 = step(s1, batch(2))
    assert float(m1["skipped"]) == float(m2["skipped"]) == 0
    assert float(s1.loss_scale.scale) == 8.0 and float(s2.loss_scale.scale) == 16.0  # doubled after 2 good steps
    assert not np.array_equal(jax.tree.leaves(s1.params)[0], jax.tree.leaves(ok.params)[0])


def test_loss_scale_floor_and_all_finite():
    ls = DynamicLossScale.create(2.0)
    assert float(ls.update(jnp.bool_(False)).update(jnp.bool_(False)).scale) == 1.0
    assert bool(all_finite({"a": jnp.ones(3)})) and not bool(all_finite({"a": jnp.array([1.0, jnp.inf])}))


def test_normalize_and_mixup_cutmix():
    img = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 6, 6, 2), dtype=np.uint8))
    x = normalize(img, (100.0, 120.0), (50.0, 60.0), jnp.float32)
    np.testing.assert_allclose(x[..., 1], (img[..., 1].astype(np.float32) - 120) / 60, rtol=1e-6)
    targets = jax.nn.one_hot(jnp.arange(8) % 5, 5)
    s = StepSettings(5, (0.0,), (1.0,), mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5)
    mix_jit = jax.jit(mix, static_argnums=3)
    kinds = set()
    for seed in range(8):
        mixed, t = mix_jit(jax.random.key(seed), x, targets, s)
        np.testing.assert_allclose(t.sum(-1), 1.0, rtol=1e-6)
        lam = float(t[0, 0])  # sample 0 has class 0 and is mixed with sample 7 (class 2)
        own, partner = jnp.all(mixed == x, axis=-1), jnp.all(mixed == x[::-1], axis=-1)
        if bool(jnp.all(own | partner)) and 0 < lam < 1:  # cutmix: own or partner pixels; lam = own area
            assert float(own[0].mean()) == pytest.approx(lam, abs=1e-6)
            kinds.add("cutmix")
        else:  # mixup: a convex combination with the same lam as the targets
            np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-5)
            kinds.add("mixup")
    assert kinds == {"cutmix", "mixup"}
    never = StepSettings(5, (0.0,), (1.0,), mixup_alpha=0.8, mix_prob=0.0)
    mixed, t = mix(jax.random.key(0), x, targets, never)
    np.testing.assert_array_equal(mixed, x)
    np.testing.assert_array_equal(t, targets)


@pytest.mark.parametrize("alpha", [0.2, 0.8, 1.0, 3.0])
def test_loop_free_beta_sampler_has_the_beta_distribution(alpha):
    """Two-sample Kolmogorov-Smirnov distance to jax.random.beta over 20k samples each (1 % critical
    value 0.0163; at small alpha float32 rounds much mass onto 0 and 1, so no continuous CDF fits)."""
    from scipy import stats
    keys = jax.random.split(jax.random.key(1), 20_000)
    ours = np.asarray(jax.jit(jax.vmap(sample_beta, (0, None)))(keys, jnp.float32(alpha)))
    ref = np.asarray(jax.jit(jax.vmap(lambda k: jax.random.beta(k, alpha, alpha)))(jax.random.split(keys[0], 20_000)))
    assert np.all((ours >= 0) & (ours <= 1))
    assert stats.ks_2samp(ours, ref).statistic < 0.0163
    np.testing.assert_allclose([ours.mean(), ours.std()], [0.5, (4 * (2 * alpha + 1)) ** -0.5], atol=0.01)


def test_beta_sampler_is_finite_for_the_degenerate_alpha():
    """mix() passes alpha=1e-6 for a disabled mixup/cutmix branch: the sample must stay a number."""
    lam = jax.vmap(sample_beta, (0, None))(jax.random.split(jax.random.key(0), 64), jnp.float32(1e-6))
    assert np.all(np.isfinite(lam)) and np.all((lam >= 0) & (lam <= 1))


def test_mixing_train_step_has_no_while_loop():
    """A while loop's predicate goes to the host every iteration and stalls the launch of the step."""
    tx = optim.make_optimizer("adamw", 1e-2)
    s = StepSettings(num_classes=5, mean=SETTINGS.mean, std=SETTINGS.std, mixup_alpha=0.8, cutmix_alpha=1.0)
    model_def, state = create_train_state(Tiny(), tx)
    step = make_train_step(model_def, tx, optax.constant_schedule(1e-2), get_policy("f32"), s)
    assert loops_outside_threefry(jax.jit(step).lower(state, batch())) == []
    beta = jax.jit(jax.random.beta).lower(jax.random.key(0), 0.8, 0.8)
    assert loops_outside_threefry(beta) != []  # the check sees the rejection loop of jax.random.beta


def loops_outside_threefry(lowered) -> list[str]:
    """The functions of a lowered program that hold a while loop, except threefry's fixed 5-round loop
    (a constant trip count that XLA unrolls)."""
    funcs = lowered.as_text().split("func.func ")[1:]
    return [f.split("(")[0] for f in funcs if "stablehlo.while" in f and "@threefry2x32" not in f.split("(")[0]]


def test_weight_decay_skips_biases_and_norms():
    params = {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3), "scale": jnp.ones(3)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    for name in optim.OPTIMIZERS:
        tx = optim.make_optimizer(name, 0.1, weight_decay=0.5)
        updates, _ = tx.update(zeros, tx.init(params), params)
        assert float(jnp.abs(updates["kernel"]).max()) > 0, name
        assert float(jnp.abs(updates["bias"]).max()) == 0 and float(jnp.abs(updates["scale"]).max()) == 0, name


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_minimizes_a_quadratic(name):
    target = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)), jnp.float32)
    params = {"w": jnp.zeros((4, 4))}
    lr = {"adamw": 0.1, "lamb": 0.05, "sgd": 0.1, "rmsprop": 0.01}[name]
    tx = optim.make_optimizer(name, lr, grad_clip=10.0)
    state = tx.init(params)
    loss = lambda p: jnp.sum((p["w"] - target) ** 2)
    first = float(loss(params))
    for _ in range(100):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.05 * first


def test_rmsprop_is_tensorflow_style():
    """One step: ms = 0.9 * 1 + 0.1 g^2; update = -lr g / sqrt(ms + eps) (momentum buffer starts at 0)."""
    g = jnp.array([0.5, -2.0])
    tx = optim.make_optimizer("rmsprop", 0.1, eps=1e-3, momentum=0.9, rms_decay=0.9)
    updates, _ = tx.update({"w": g}, tx.init({"w": jnp.zeros(2)}), {"w": jnp.zeros(2)})
    np.testing.assert_allclose(updates["w"], -0.1 * g / jnp.sqrt(0.9 + 0.1 * g ** 2 + 1e-3), rtol=1e-6)


def test_gradient_clipping():
    tx = optim.make_optimizer("sgd", 1.0, momentum=0.0, grad_clip=1.0)
    g = {"w": jnp.array([3.0, 4.0])}
    updates, _ = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)


def test_schedules():
    cos = optim.make_schedule("cosine", lr=1.0, total_steps=110, warmup_steps=10, end_lr=0.1)
    assert float(cos(0)) == 0 and float(cos(5)) == pytest.approx(0.5) and float(cos(10)) == pytest.approx(1.0)
    assert float(cos(60)) == pytest.approx(0.55) and float(cos(110)) == pytest.approx(0.1)
    exp = optim.make_schedule("exponential", lr=1.0, total_steps=100, warmup_steps=5, decay_every=10,
                              decay_rate=0.5)
    assert float(exp(5)) == pytest.approx(1.0) and float(exp(14)) == pytest.approx(1.0)
    assert float(exp(15)) == pytest.approx(0.5) and float(exp(35)) == pytest.approx(0.125)
    const = optim.make_schedule("constant", lr=0.3, total_steps=10)
    assert float(const(0)) == float(const(9)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="valid: cosine, exponential, constant"):
        optim.make_schedule("step", lr=1.0, total_steps=10)
    with pytest.raises(ValueError, match="valid: adamw, lamb, sgd, rmsprop"):
        optim.make_optimizer("adam", 0.1)
    with pytest.raises(ValueError, match="valid: f32, bf16, fp16"):
        get_policy("fp8")


def test_ema_update():
    ema = optim.ema_update({"w": jnp.array(1.0)}, {"w": jnp.array(3.0)}, 0.75)
    assert float(ema["w"]) == pytest.approx(1.5)


class ResBlock(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(8, 8, (3, 3), use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.3, broadcast_dims=(1, 2, 3), rngs=rngs)

    def __call__(self, x):
        return x + self.drop(nnx.gelu(self.bn(self.conv(x))))


class TinyRes(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(2, 8, (3, 3), rngs=rngs)
        self.blocks = nnx.List([ResBlock(rngs) for _ in range(2)])

    def __call__(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x.mean((1, 2))


def test_remat_blocks_keep_loss_gradients_and_statistics():
    """Per-block rematerialization changes memory, not math: same loss, gradients, BatchNorm statistics
    and dropout stream; parameter paths unchanged (checkpoints stay interchangeable)."""
    from train.remat import remat_blocks

    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 2))
    results = []
    for remat in (False, True):
        model = TinyRes(nnx.Rngs(0))
        if remat:
            assert remat_blocks(model, (ResBlock,)) == 2
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(p, r):
            m = nnx.merge(graphdef, p, r, copy=True)
            out = jnp.sum(m(x) ** 2)
            return out, nnx.split(m, nnx.Param, ...)[2]

        grad = jax.grad(loss, has_aux=True)
        results.append((jax.jit(grad)(params, rest), params, str(jax.make_jaxpr(grad)(params, rest))))
    (g0, r0), p0, plain = results[0]
    (g1, r1), p1, rematted = results[1]
    assert "remat" in rematted and "remat" not in plain
    assert jax.tree.structure(p0) == jax.tree.structure(p1)
    for a, b in zip(jax.tree.leaves(g0) + jax.tree.leaves(r0), jax.tree.leaves(g1) + jax.tree.leaves(r1)):
        a, b = (jax.random.key_data(a), jax.random.key_data(b)) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) \
            else (a, b)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_remat_finds_the_model_zoo_blocks():
    """Default block types: every ConvFirst/MBConv block of a registered model (traced abstractly)."""
    from convfirst.models import create_model
    from train.remat import remat_blocks

    model = nnx.eval_shape(lambda: create_model("convfirst_pico", rngs=nnx.Rngs(0)))
    assert remat_blocks(model) == 4
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jax.ShapeDtypeStruct((2, 8, 8, 1), jnp.float32)
    jaxpr = jax.make_jaxpr(jax.grad(lambda p, r, x: jnp.sum(nnx.merge(graphdef, p, r, copy=True)(x))))(params, rest, x)
    assert str(jaxpr).count("remat") >= 4


def test_gpu_code_paths_import_without_data_and_config_libraries():
    """The GPU machine has no tensorflow_datasets, grain, ml_collections (nor orbax): the step modules
    and scripts/bench_train_step.py must import without them."""
    import subprocess
    import sys

    from train_helpers import REPO

    code = """
import sys, runpy
for m in ("tensorflow_datasets", "grain", "ml_collections", "orbax", "tensorflow"):
    sys.modules[m] = None
import train.step, train.state, train.optim, train.sharding, train.mixed_precision, train.remat
sys.argv = ["bench_train_step.py", "--help"]
runpy.run_path("scripts/bench_train_step.py", run_name="__main__")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--models" in proc.stdout


def test_kernel_phases_attribute_the_compiled_step():
    """The compiled step's HLO sorts its instructions into forward, backward, optimizer and EMA (by
    op_name and stack frames); a kernel list takes those phases by name, and a library kernel without
    an HLO instruction of its name takes the phase of the kernel launched before it."""
    import re

    from convfirst.cost import kernel_phases as kp

    tx = optim.make_optimizer("adamw", 1e-2, weight_decay=0.1)
    s = StepSettings(num_classes=5, mean=SETTINGS.mean, std=SETTINGS.std, ema_decay=0.9)
    model_def, state = create_train_state(Tiny(), tx, ema=True)
    step = make_train_step(model_def, tx, optax.constant_schedule(1e-2), get_policy("f32"), s)
    hlo = jax.jit(step).lower(state, batch()).compile().as_text()
    phases = kp.kernel_phases(hlo)
    entry = hlo[hlo.index("ENTRY"):]
    fusion = r"^\s*(?:ROOT\s+)?%([\w.\-]+) = (?:\([^=]*\)|\S+) fusion\("  # tuple-shaped ones too
    fusions = [re.sub(r"[.\-]", "_", n) for n in re.findall(fusion, entry, re.M)]
    by_phase = {p: [n for n in fusions if phases.get(n) == p] for p in kp.PHASES}
    for p in ("forward", "backward", "optimizer", "ema"):
        assert by_phase[p], f"no fusion of the step was attributed to {p}: {phases}"
    assert len(by_phase["ema"]) <= len(jax.tree.leaves(state.params))  # at most one per parameter
    fwd, bwd = by_phase["forward"][0], by_phase["backward"][0]
    rows = {r["phase"]: r for r in kp.phase_breakdown(
        [(fwd, 1.0), ("nvjet_sm90_gemm", 2.0), (bwd, 4.0), ("sm90_xmma_wgrad", 8.0)], hlo)}
    assert (rows["forward"]["kernels"], rows["forward"]["named"], rows["forward"]["ms"]) == (2, 1, 3.0)
    assert (rows["backward"]["kernels"], rows["backward"]["named"], rows["backward"]["ms"]) == (2, 1, 12.0)
    assert rows["backward"]["share"] == pytest.approx(0.8)
    assert kp.phase_of("jit(step)/transpose(jvp(conv))/dot", []) == "backward"
    assert kp.phase_of("jit(step)/add", [("/x/optax/_src/transform.py", "update_fn")]) == "optimizer"
    assert kp.phase_of("jit(step)/log", [("/x/optax/losses/_classification.py", "f")]) == "other"
    assert kp.phase_of("jit(step)/concatenate", [("/r/train/state.py", "ParamLayout.flatten")]) == "optimizer"
