"""Quick GPU probe: correctness and timing of block implementations on ConvFirst/ConvNeXt stage shapes.

    python scripts/gpu_probe_blocks.py --batch 128 --tune 8 --out $OUT/probe.json
"""
import argparse, json, time
import jax, jax.numpy as jnp, numpy as np
from pallas_kernels import OPS
from pallas_kernels.problems import BlockProblem
from pallas_kernels.timing import time_call, matmul_peak_tmacs
from pallas_kernels import autotune

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--tune", type=int, default=0, help="configs per shape to autotune (0: heuristic only)")
ap.add_argument("--out", default="probe.json")
ap.add_argument("--shapes", default="cf")
args = ap.parse_args()
B = args.batch
probs = []
if "cf" in args.shapes:
    probs += [BlockProblem("convfirst_block", B, s, s, c, 4 * c) for s, c in [(56, 64), (28, 128), (14, 256), (7, 512)]]
if "cn" in args.shapes:
    probs += [BlockProblem("convfirst_block", B, s, s, c, 4 * c, kernel_size=7, group_width=1, act="gelu", layer_norm=True)
              for s, c in [(56, 96), (28, 192)]]
if "diag" in args.shapes:  # k=1 isolates the MLP part of the fused kernel from the grouped conv
    probs += [BlockProblem("convfirst_block", B, s, s, c, 4 * c, kernel_size=kk) for s, c in [(56, 64), (28, 192)] for kk in (1, 3)]
if "mb" in args.shapes:
    probs += [BlockProblem("mbconv_block", B, s, s, c, 6 * c, kernel_size=k, group_width=1) for s, c, k in [(56, 24, 3), (28, 40, 5), (14, 80, 3)]]
dt = jnp.bfloat16
print(jax.devices()[0].device_kind, jax.__version__, flush=True)
peak = matmul_peak_tmacs()
print(f"matmul peak {peak:.1f} TMAC/s", flush=True)
rows = []
for prob in probs:
    op = OPS[prob.op]
    params = prob.make_params(jax.random.key(1))
    x = prob.make_x(jax.random.key(2), dt)
    st = prob.static()
    ref = np.asarray(op.reference(x.astype(jnp.float32), params, **st), np.float32)
    for name in op.names:
        reason = op.why_unsupported(name, x, params, jax.default_backend(), **st)
        if reason:
            print(f"{prob.label()} {name}: unsupported: {reason}", flush=True); continue
        t0 = time.time()
        try:
            y = jax.jit(lambda x: op(x, params, impl=name, **st))(x)
            y = np.asarray(y.astype(jnp.float32))
        except Exception as e:
            print(f"{prob.label()} {name}: FAILED {type(e).__name__}: {str(e)[:400]}", flush=True); continue
        err = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
        t = time_call(lambda x: op(x, params, impl=name, **st), lambda i: (prob.make_x(jax.random.key(10 + i), dt),))
        tm = prob.macs() / (t.median_ms * 1e-3) / 1e12
        row = dict(label=prob.label(), impl=name, rel_err=err, nan=bool(np.isnan(y).any()), ms=t.median_ms,
                   wall_ms=t.wall_median_ms, tmacs=tm, eff_datasheet=tm / 494.7, eff_measured=tm / peak,
                   compile_s=time.time() - t0, kernels=t.per_kernel)
        rows.append(row)
        print(f"{prob.label():48s} {name:16s} err={err:.2e} {t.median_ms:8.4f} ms  {tm:6.1f} TMAC/s  {100*tm/494.7:5.1f}%", flush=True)
    if args.tune:
        r = autotune.tune(prob, dtype=dt, impls=[n for n in op.names if n != "xla"], max_configs=args.tune)
        rows.append(dict(label=prob.label(), tune=r))
        print("  best:", r["best_impl"], r["times_ms"], r["configs"], flush=True)
json.dump(dict(device=jax.devices()[0].device_kind, peak_tmacs=peak, batch=B, rows=rows), open(args.out, "w"), indent=1, default=str)
