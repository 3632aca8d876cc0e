"""Computational-efficiency table: EfficientNet B0-B7, ConvNeXt T/S/B/L and ConvFirstNet T/S/B with
block implementations xla and auto (the fused Pallas kernel wherever it runs the block, else XLA):
GMACs, latency, img/s and efficiency against the datasheet and the measured matmul peak, next to the
paper's ranges and the RTX 3090 cross-check from timm's benchmark.

Run (H100 or H200, about 20 min in all; each command stops starting cells after --time-limit seconds and
the same command continues where the last one stopped):

    convfirst reproduce efficiency-table --out benchmarks/results/efficiency_table --time-limit 420

Arguments (`efficiency-table:a=1,b=2`): quick (B0, B2, B4, ConvNeXt T/S, ConvFirst T/S: the first
14 cells of the full run, so a full run later reuses them), cpu (convfirst_pico and 32-px B0 and
ConvNeXt-T at batch 8 for CPU tests, normally with --timing fake), batch (128; halved on
out-of-memory like timm's benchmark, the row records the batch that ran), dtype (bf16), warmup (3),
iters (20), fold_ahead (False; True: the inference copy, ConvNet.for_inference: every BatchNorm folded
and 1x1 weights cast once before timing, weights in the compiled forward's layouts; its cells get
their own ids, e.g. `efficiency-table:fold_ahead --out benchmarks/results/efficiency_table_folded`).
"""
from __future__ import annotations

from experiments.configs.reproduce import experiment, group
from train.config_utils import parse_arg

QUICK = ("efficientnet_b0", "convnext_tiny", "convfirst_tiny", "efficientnet_b2", "convnext_small",
         "convfirst_small", "efficientnet_b4")
REST = ("efficientnet_b1", "efficientnet_b3", "convfirst_base", "convnext_base", "efficientnet_b5",
        "efficientnet_b6", "convnext_large", "efficientnet_b7")
CPU = ("convfirst_pico", "efficientnet_b0:resolution=32", "convnext_tiny:resolution=32")
IMPLS = ("xla", "auto")


def models_and_params(arg):
    """Shared with the efficiency-gap experiment, whose cells are these."""
    a = parse_arg(arg, quick=False, cpu=False, batch=128, dtype="bf16", warmup=3, iters=20, fold_ahead=False)
    folded = {"fold_ahead": True} if a.fold_ahead else {}  # absent when False: earlier cells keep their ids
    if a.cpu:
        return CPU, dict(batch=8, dtype=a.dtype, warmup=1, iters=2, oom_retry=False, **folded)
    return (QUICK if a.quick else QUICK + REST), dict(batch=a.batch, dtype=a.dtype, warmup=a.warmup,
                                                      iters=a.iters, oom_retry=True, **folded)


def get_config(arg=None):
    models, params = models_and_params(arg)
    return experiment(
        "efficiency-table", "Computational efficiency of whole models (inference)",
        groups=[group("models", "bench_model", {"model": models, "impl": IMPLS}, **params)],
        cell_timeout_s=300)
