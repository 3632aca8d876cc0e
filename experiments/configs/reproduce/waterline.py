"""Measured waterline: where the time of one forward pass goes, layer by layer, against the cost
model's compute time C/P and memory time D/B (layer-wise and block-fused), and the efficiency gap
split into recompute, memory-bound loss (what fusion removes) and kernel loss (what better kernels
remove). Method: docs/results.md, "Measured waterline".

Each cell (model x impl) times the whole forward (`bench_model`, CUPTI kernel list included) and
every distinct residual block alone (`bench_block` at the implementation the model picks for it).

Run (H100 or H200, about 6 min):

    convfirst reproduce waterline --out benchmarks/results/waterline --time-limit 420

Arguments: quick (convfirst_tiny and mbconvnet_b0 only), cpu (convfirst_pico and a 32-px
mbconvnet_b0 at batch 8, for CPU tests with --timing fake), batch (128), dtype (bf16), warmup (3),
iters (20).
"""
from __future__ import annotations

from experiments.configs.reproduce import experiment, group
from train.config_utils import parse_arg

MODELS = ("convfirst_tiny", "mbconvnet_b0", "convnext_tiny", "efficientnet_b0")
CPU = ("convfirst_pico", "mbconvnet_b0:resolution=32")


def get_config(arg=None):
    a = parse_arg(arg, quick=False, cpu=False, batch=128, dtype="bf16", warmup=3, iters=20)
    if a.cpu:
        models, params = CPU, dict(batch=8, dtype=a.dtype, warmup=1, iters=2)
    else:
        models = MODELS[:2] if a.quick else MODELS
        params = dict(batch=a.batch, dtype=a.dtype, warmup=a.warmup, iters=a.iters)
    return experiment(
        "waterline", "Measured waterline (reconstructed): per-layer time against the cost model",
        groups=[group("models", "waterline", {"model": models, "impl": ("xla", "auto")}, **params)],
        cell_timeout_s=400)
