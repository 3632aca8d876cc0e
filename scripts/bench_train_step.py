"""Framework train step vs a bare `nnx.value_and_grad` + optax step, on one GPU.

    python scripts/bench_train_step.py --models convnext_tiny efficientnet_b0 --batch 128 --precision bf16 \
        --out benchmarks/results/train_step_overhead.json

Both steps train the same model (same create_model call, compute dtype, block impl, drop path) on
synthetic batches that already live on the device, so only the step itself is timed: `warmup`
steps, then `iters` steps each timed with block_until_ready; medians are reported.

- framework: train.step.make_train_step exactly as the trainer jits it (state donated, 1-device mesh
  shardings): uint8 -> normalize on device, the published recipe's step options (ConvNeXt: AdamW with
  the no-decay mask, warm-up cosine schedule, label smoothing 0.1, mixup 0.8 / cutmix 1.0, EMA
  0.9999; EfficientNet: TF-style RMSProp, exponential schedule, label smoothing 0.1, EMA 0.9999),
  global gradient norm and metrics.
- bare (functional): jax.jit of merge -> nnx.value_and_grad(cross entropy) -> optax.adamw -> split.
- bare (nnx.jit): nnx.jit + nnx.Optimizer, the NNX tutorial style.
The overhead is framework / fastest bare - 1 (target: <= 10 %).

Synthetic data is used here only (never in training). Imports nothing from tensorflow_datasets, grain
or ml_collections, which the GPU machine does not have.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import flax
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convfirst.cost.host_trace import format_summary, trace_calls  # noqa: E402
from convfirst.cost.kernel_breakdown import format_breakdown  # noqa: E402
from convfirst.cost.kernel_phases import format_phases, phase_breakdown  # noqa: E402
from convfirst.models import create_model, model_spec  # noqa: E402
from convfirst.models.net import parse_impl  # noqa: E402
from pallas_kernels.timing import Precompiled  # noqa: E402
from train import optim, sharding  # noqa: E402
from train.mixed_precision import get_policy  # noqa: E402
from train.state import create_train_state  # noqa: E402
from train.step import StepSettings, make_train_step  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def recipe(name: str) -> dict:
    """The step options of the published recipe for the model's family (see experiments/configs)."""
    if name.startswith("efficientnet"):
        return dict(optimizer="rmsprop", opt=dict(weight_decay=1e-5, eps=1e-3, momentum=0.9, rms_decay=0.9),
                    schedule=dict(name="exponential", lr=0.016, warmup_steps=1000, decay_every=750,
                                  decay_rate=0.97), mixup=0.0, cutmix=0.0)
    return dict(optimizer="adamw", opt=dict(weight_decay=0.05),
                schedule=dict(name="cosine", lr=4e-3, warmup_steps=1000, end_lr=1e-6), mixup=0.8, cutmix=1.0)


def time_steps(run_step, warmup: int, iters: int, dispatch: list | None = None) -> list[float]:
    """Per-step wall-clock, blocking after each step; `dispatch` (if given) collects the host's share:
    the time until the step call returns (JAX dispatch, XLA's launches of the step's kernels)."""
    for _ in range(warmup):
        jax.block_until_ready(run_step())
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = run_step()
        if dispatch is not None:
            dispatch.append(time.perf_counter() - t0)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return times


def time_steady(run_step, iters: int, repeats: int = 3) -> tuple[float, float]:
    """Median over `repeats` of (time of `iters` steps dispatched back to back) / iters, in seconds: the
    trainer's loop, which blocks only every log_every steps, so the host's dispatch of one step overlaps
    the GPU's work on the previous one. Per-step blocking (time_steps) exposes that dispatch. Also the
    host's share: the time until the last step call returned, per step. Close to the total either way
    once the launch queue fills (the host then waits for the GPU), so the evidence for a host-paced
    step is the blocked one: its call time against the CUPTI kernel sum (--breakdown)."""
    samples, dispatch = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = run_step()
        dispatch.append((time.perf_counter() - t0) / iters)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / iters)
    return statistics.median(samples), statistics.median(dispatch)


@contextlib.contextmanager
def timing_turn(sync: str):
    """--sync DIR:N: N processes started together compile in parallel (most of a run's time: 100-250 s
    for a Mosaic step), wait until all N have compiled (XLA's autotuner runs kernels on the GPU while
    compiling), then time one at a time under a file lock. Empty: no coordination."""
    if not sync:
        yield
        return
    folder, count = sync.rsplit(":", 1)
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, f"{os.getpid()}.compiled").touch()
    deadline = time.monotonic() + 600
    while len(list(Path(folder).glob("*.compiled"))) < int(count):
        if time.monotonic() > deadline:
            raise TimeoutError(f"--sync {sync}: fewer than {count} processes compiled within 600 s")
        time.sleep(0.5)
    with open(Path(folder, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def make_model(name, args, dtype):
    kwargs = {"resolution": args.resolution} if args.resolution else {}
    model = create_model(name, rngs=nnx.Rngs(0), dtype=dtype, impl=parse_impl(args.impl),
                         bwd_impl=parse_impl(args.bwd_impl), **kwargs)
    model.train()
    return model


def memory(compiled) -> dict:
    """XLA's buffer assignment of the compiled step (exact, per program) and the device's peak."""
    m = compiled.memory_analysis()
    out = {"temp_mib": m.temp_size_in_bytes / 2**20, "argument_mib": m.argument_size_in_bytes / 2**20,
           "output_mib": m.output_size_in_bytes / 2**20, "alias_mib": m.alias_size_in_bytes / 2**20}
    out["step_peak_mib"] = out["temp_mib"] + out["argument_mib"] + out["output_mib"] - out["alias_mib"]
    return out


def bench_framework(name, args, images_u8, labels) -> tuple[list[float], dict]:
    """The blocked per-step times and the row's other framework fields (memory, steady state, kernels)."""
    policy = get_policy(args.precision)
    r = recipe(name)
    model = make_model(name, args, policy.compute_dtype)
    schedule = optim.make_schedule(total_steps=100_000, **r["schedule"])
    tx = optim.make_optimizer(r["optimizer"], schedule, **r["opt"])
    settings = StepSettings(num_classes=model.spec.num_classes, mean=IMAGENET_MEAN[:model.spec.in_chans],
                            std=IMAGENET_STD[:model.spec.in_chans], label_smoothing=0.1, mixup_alpha=r["mixup"],
                            cutmix_alpha=r["cutmix"], ema_decay=0.9999)
    model_def, state = create_train_state(model, tx, ema=True)
    mesh = sharding.make_mesh(1)
    state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    state = jax.device_put(state, state_sharding)
    step = jax.jit(make_train_step(model_def, tx, schedule, policy, settings), donate_argnums=0,
                   out_shardings=(state_sharding, sharding.replicated(mesh)))
    batches = [{"image": jax.device_put(i, sharding.batch_sharding(mesh)),
                "label": jax.device_put(l, sharding.batch_sharding(mesh))} for i, l in zip(images_u8, labels)]
    compiled = step.lower(state, batches[0]).compile()
    if args.hlo:
        path = Path(args.hlo) / f"{name}_{args.impl}_{args.bwd_impl}.hlo.txt.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(compiled.as_text().encode()))
    with timing_turn(args.sync):
        return time_framework(compiled, state, batches, name, args)


def time_framework(compiled, state, batches, name, args) -> tuple[list[float], dict]:
    """Blocked and steady step times, memory, and (on request) the kernel list and host trace."""
    holder = {"state": state, "i": 0}

    def run():
        holder["state"], metrics = compiled(holder["state"], batches[holder["i"] % len(batches)])
        holder["i"] += 1
        return holder["state"].params, metrics

    dispatch = []
    times = time_steps(run, args.warmup, args.iters, dispatch)
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use", 0) / 2**20
    steady, steady_dispatch = time_steady(run, args.iters)
    fields = {"framework_memory": dict(memory(compiled), device_peak_mib=peak),
              "framework_dispatch_ms": 1e3 * statistics.median(dispatch),
              "framework_steady_ms": 1e3 * steady, "framework_steady_dispatch_ms": 1e3 * steady_dispatch,
              "state_leaves": len(jax.tree.leaves(state))}  # buffers passed in and out of each call
    if args.breakdown:
        fields["per_kernel"] = kernel_list(lambda: run()[1])
        fields["per_phase"] = phase_breakdown(fields["per_kernel"], compiled.as_text())
    if args.host_trace:
        fields["host_trace"] = trace_calls(run, 3, f"{args.host_trace}/{name}_{args.impl}_{args.bwd_impl}")
    return times, fields


def kernel_list(run) -> list[tuple[str, float]]:
    """CUPTI's kernel list of one step, (name, ms) in launch order: where the step's time goes."""
    from jax.experimental.mosaic.gpu import profiler

    _, kernels = profiler.measure(Precompiled(run), aggregate=False)()
    if not kernels:
        raise RuntimeError("CUPTI recorded no kernel launches for the step")
    return [(str(name), float(ms)) for name, ms in kernels]


def _loss(model, x, y):
    logits = model(x).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def bench_bare_functional(name, args, images, labels) -> list[float]:
    model = make_model(name, args, get_policy(args.precision).compute_dtype)
    tx = optax.adamw(1e-3, weight_decay=0.05)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = tx.init(params)

    def step(params, rest, opt_state, x, y):
        m = nnx.merge(graphdef, params, rest, copy=True)
        loss, grads = nnx.value_and_grad(_loss)(m, x, y)
        _, _, rest = nnx.split(m, nnx.Param, ...)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    holder = {"s": (params, rest, opt_state), "i": 0}

    def run():
        i = holder["i"] % len(images)
        *s, loss = step(*holder["s"], images[i], labels[i])
        holder["s"], holder["i"] = tuple(s), holder["i"] + 1
        return s[0], loss

    return time_steps(run, args.warmup, args.iters)


def bench_bare_nnx_jit(name, args, images, labels) -> list[float]:
    model = make_model(name, args, get_policy(args.precision).compute_dtype)
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3, weight_decay=0.05), wrt=nnx.Param)

    @nnx.jit(donate_argnums=(0, 1))
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(_loss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    counter = {"i": 0}

    def run():
        i = counter["i"] % len(images)
        counter["i"] += 1
        return step(model, optimizer, images[i], labels[i])

    return time_steps(run, args.warmup, args.iters)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["convnext_tiny", "efficientnet_b0"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", default="bf16", choices=["f32", "bf16", "fp16"])
    p.add_argument("--resolution", type=int, default=0, help="0: the model's native resolution")
    p.add_argument("--impl", default="auto",
                   help="block-op implementation for both steps (convfirst.models.net.parse_impl: 'a+b' = a where it "
                        "runs the block, else b)")
    p.add_argument("--bwd_impl", default="auto", help="block-op backward implementation for both steps (as --impl)")
    p.add_argument("--framework_only", action="store_true",
                   help="time the framework step only (fused-backward comparisons; device peak memory is "
                        "then this step's alone)")
    p.add_argument("--breakdown", action="store_true",
                   help="profile two more framework steps with CUPTI (a warm-up and the profiled one): the "
                        "latter's kernel list goes into the JSON and its time is printed by kernel kind "
                        "(convfirst.cost.kernel_breakdown) and by phase: forward, backward, optimizer, EMA "
                        "(convfirst.cost.kernel_phases, from the compiled step's HLO; JSON: per_phase)")
    p.add_argument("--host_trace", default="", metavar="DIR",
                   help="trace three more framework steps with jax.profiler into DIR and total the host's events "
                        "per step by thread and kind (convfirst.cost.host_trace; JSON: host_trace)")
    p.add_argument("--hlo", default="", metavar="DIR",
                   help="write the compiled step's optimized HLO to DIR/<model>_<impl>_<bwd_impl>.hlo.txt.gz: what "
                        "each fusion in --breakdown's kernel list computes")
    p.add_argument("--sync", default="", metavar="DIR:N",
                   help="N processes of this script (one model each) on one GPU: compile in parallel, then time one "
                        "at a time")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--num_batches", type=int, default=4, help="distinct device-resident batches, cycled")
    p.add_argument("--out", default="benchmarks/results/train_step_overhead.json")
    args = p.parse_args(argv)

    results = []
    for name in args.models:
        spec = model_spec(name, **({"resolution": args.resolution} if args.resolution else {}))
        res, chans = spec.resolution, spec.in_chans
        keys = jax.random.split(jax.random.key(0), 2 * args.num_batches)
        images_u8 = [jax.random.randint(k, (args.batch, res, res, chans), 0, 256, jnp.int32).astype(jnp.uint8)
                     for k in keys[:args.num_batches]]
        labels = [jax.random.randint(k, (args.batch,), 0, spec.num_classes, jnp.int32) for k in keys[args.num_batches:]]
        images_f = [(x.astype(jnp.float32) - 127.5) / 64.0 for x in images_u8]
        jax.block_until_ready((images_u8, labels, images_f))
        row = {"model": name, "img_size": res, "batch_size": args.batch, "precision": args.precision,
               "impl": args.impl, "bwd_impl": args.bwd_impl}
        times, fields = bench_framework(name, args, images_u8, labels)
        row.update(fields)
        row["framework_ms"], row["framework_ms_mean"] = 1e3 * statistics.median(times), 1e3 * statistics.fmean(times)
        row["framework_img_per_sec"] = args.batch / row["framework_ms"] * 1e3
        results.append(row)
        if args.breakdown:
            print(format_breakdown(dict(row, impl=f"{args.impl} bwd_impl={args.bwd_impl}",
                                        device=jax.devices()[0].device_kind, infer_batch_size=args.batch,
                                        dtype=args.precision), top=3), flush=True)
            print(format_phases(row["per_phase"]), flush=True)
        if args.host_trace:
            print(format_summary(row["host_trace"]), flush=True)
        if args.framework_only:
            print(f"{name} impl={args.impl} bwd_impl={args.bwd_impl}: framework {row['framework_ms']:.2f} ms "
                  f"(host dispatch {row['framework_dispatch_ms']:.2f}; steady state {row['framework_steady_ms']:.2f} ms, "
                  f"host dispatch {row['framework_steady_dispatch_ms']:.2f}), "
                  f"step peak {row['framework_memory']['step_peak_mib']:.0f} MiB", flush=True)
            continue
        for key, fn in [("bare_functional", bench_bare_functional), ("bare_nnx_jit", bench_bare_nnx_jit)]:
            times = fn(name, args, images_f, labels)
            row[f"{key}_ms"] = 1e3 * statistics.median(times)
            row[f"{key}_ms_mean"] = 1e3 * statistics.fmean(times)
        bare = min(row["bare_functional_ms"], row["bare_nnx_jit_ms"])
        row["overhead_pct"] = 100 * (row["framework_ms"] / bare - 1)
        print(f"{name}: framework {row['framework_ms']:.2f} ms, bare functional {row['bare_functional_ms']:.2f} ms, "
              f"bare nnx.jit {row['bare_nnx_jit_ms']:.2f} ms -> overhead {row['overhead_pct']:+.1f} %", flush=True)

    report = {"command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
              "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
              "jax_version": jax.__version__, "flax_version": flax.__version__,
              "python": platform.python_version(), "warmup": args.warmup, "iters": args.iters,
              "timing": "framework_ms: per step, block_until_ready, median; framework_steady_ms: "
              "iters steps dispatched back to back then one block, per step, median of 3; *_dispatch_ms: the host's "
              "share, until the step call(s) returned", "results": results}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
