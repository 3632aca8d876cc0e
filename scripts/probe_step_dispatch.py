"""Where the training step's host time goes (run Z: 45.9 ms of host time per call for 21.9 ms of kernels).

    python scripts/probe_step_dispatch.py --out probe.json [--train]

Three measurements, each the host's time until the call returns (dispatch) and the blocked wall time,
medians of `iters` calls after warm-up, and the same calls back to back (steady):
- chain: one array through K tiny ops of one kind (XLA fusion, GEMM, cuDNN grouped conv, Mosaic GPU
  kernel) kept apart by optimization barriers, so the executable launches K of them: the host's cost
  per launch of each kind in XLA's GPU runtime.
- leaves N: a donated pytree of N small arrays, each updated in place: the per-buffer cost of a call's
  arguments and results (the train state has about a thousand).
- train (--train): the framework's convfirst_tiny_ln step (xla_native) and its state's leaf count.
Run once per XLA_FLAGS setting (a fresh process each): the flags are read when the backend starts.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]


def timed(call, warmup: int, iters: int) -> dict:
    """Median host dispatch and blocked wall time of `call()` (which returns what to block on), and the
    same calls back to back with one block at the end (steady), in ms: bench_train_step's protocol."""
    from bench_train_step import time_steady, time_steps
    dispatch = []
    wall = time_steps(call, warmup, iters, dispatch)
    steady, steady_dispatch = time_steady(call, iters, repeats=1)
    return {"dispatch_ms": 1e3 * statistics.median(dispatch), "wall_ms": 1e3 * statistics.median(wall),
            "steady_ms": 1e3 * steady, "steady_dispatch_ms": 1e3 * steady_dispatch}


def _ops():
    """Tiny ops of each kind the step launches, (name, op(x) -> x like x, x)."""
    from pallas_kernels.convfirst_block.mlp_mosaic import INTERPRET_PARAMS, heuristic, mlp_mosaic
    key = jax.random.key(0)
    cfg = heuristic(64, 256)
    interpret = INTERPRET_PARAMS() if jax.default_backend() == "cpu" else None  # CPU: a check of this script
    w1, w2 = (0.05 * jax.random.normal(key, s, jnp.bfloat16) for s in ((64, 256), (256, 64)))
    b1, b2 = jnp.zeros((256,), jnp.float32), jnp.zeros((64,), jnp.float32)
    wc = 0.1 * jax.random.normal(key, (3, 3, 8, 64), jnp.bfloat16)
    conv = lambda x: jax.lax.conv_general_dilated(  # noqa: E731 - the block's grouped conv, cuDNN
        x, wc, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=8)
    return [("fusion", lambda x: jnp.sin(x) * 1.0001, jnp.ones((256,), jnp.float32)),
            ("gemm", lambda x: x @ w2[:64], jnp.ones((128, 64), jnp.bfloat16)),
            ("cudnn_conv", conv, jnp.ones((1, 8, 8, 64), jnp.bfloat16)),
            ("mosaic", lambda x: mlp_mosaic(x, None, w1, b1, w2, b2, act="silu", config=cfg, interpret=interpret),
             jnp.ones((cfg.rows * cfg.cluster, 64), jnp.bfloat16))]


def chain(name, op, x, k: int, warmup: int, iters: int) -> dict:
    """k launches of `op` kept apart by optimization barriers: the host's cost per launch of that kind."""
    def f(x):
        for _ in range(k):
            x = jax.lax.optimization_barrier(op(x))
        return x
    compiled = jax.jit(f).lower(x).compile()
    r = timed(lambda: compiled(x), warmup, iters)
    return dict(r, op=name, launches=k, dispatch_us_per_launch=1e3 * r["dispatch_ms"] / k)


def leaves(n: int, warmup: int, iters: int) -> dict:
    fn = jax.jit(lambda t: jax.tree.map(lambda a: a * 0.999 + 1.0, t), donate_argnums=0)
    holder = {"t": [jnp.ones((1024,), jnp.float32) + i for i in range(n)]}
    compiled = fn.lower(holder["t"]).compile()

    def call():
        holder["t"] = compiled(holder["t"])
        return holder["t"]
    r = timed(call, warmup, iters)
    return dict(r, leaves=n, dispatch_us_per_leaf=1e3 * r["dispatch_ms"] / n)


def train(out: str) -> dict:
    import bench_train_step
    bench_train_step.main(["--models", "convfirst_tiny_ln", "--impl", "xla_native", "--bwd_impl", "xla_native",
                           "--framework_only", "--warmup", "3", "--iters", "10", "--out", out])
    row = json.loads(Path(out).read_text())["results"][0]
    return {k: v for k, v in row.items() if k.endswith("_ms") or k == "state_leaves"}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--train", action="store_true")
    p.add_argument("--launches", type=int, nargs="+", default=[100, 400])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    report = {"xla_flags": os.environ.get("XLA_FLAGS", ""), "device": jax.devices()[0].device_kind,
              "jax_version": jax.__version__, "chain": [], "leaves": []}
    for name, op, x in _ops():
        for k in a.launches:
            report["chain"].append(chain(name, op, x, k, a.warmup, a.iters))
            print("chain", report["chain"][-1], flush=True)
    for n in (10, 300, 1000):
        report["leaves"].append(leaves(n, a.warmup, a.iters))
        print("leaves", report["leaves"][-1], flush=True)
    if a.train:
        report["train"] = train(a.out.replace(".json", "_train_step.json"))
        print("train", report["train"], flush=True)
    Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
