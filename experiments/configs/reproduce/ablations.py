"""Ablations of what makes a block fast, all inference, one table and plot per group:

- impl: fused Pallas vs layer-wise Pallas vs XLA (float32 intermediates, `xla`, and compute-dtype
  intermediates, `xla_native`), per distinct block of ConvFirst-T and MBConvNet-B0;
- group width: ConvFirst-T's blocks with depthwise, 8- and 16-wide groups; MBConvNet-B0 (depthwise,
  gw8, gw16) as whole models;
- expansion: ConvFirst-T's blocks with E = 4 and 6;
- batch: img/s of whole models from batch 1 to 256;
- tiles: every candidate tile config of the fused kernels on each block (the autotuner's search space);
- training: forward + backward of ConvFirst-T-LN's blocks for every pairing of the forwards xla,
  xla_native, pallas_fused, mosaic_mlp with the same four backwards (`impl` /
  `bwd_impl`; what fusion buys in training, against both XLA baselines).

Run (H100 or H200; about 30 min in all, --time-limit splits it into commands that resume):

    convfirst reproduce ablations --out benchmarks/results/ablations --time-limit 420

Arguments: quick (ConvFirst-T only, batches 1/32/128/256; about 10 min), cpu (convfirst_pico only,
one cell per setting, batch 8, for CPU tests with --timing fake), dtype (bf16), warmup (3), iters (20),
max_configs (8 tile configs per block).
"""
from __future__ import annotations

from experiments.configs.reproduce import experiment, group
from train.config_utils import parse_arg

IMPLS = ("xla", "xla_native", "pallas_fused", "mosaic_mlp", "pallas_layerwise")
TRAIN_FWD = TRAIN_BWD = ("xla", "xla_native", "pallas_fused", "mosaic_mlp")


def get_config(arg=None):
    a = parse_arg(arg, quick=False, cpu=False, dtype="bf16", warmup=3, iters=20, max_configs=8)
    if a.cpu:  # one tiny model, one cell per setting: every table and plot of the report, quickly
        cf, batch, timing = "convfirst_pico", 8, dict(dtype=a.dtype, warmup=1, iters=2)
        train_model = "convfirst_pico_ln"
        impl_models, compare, whole, batches, mbconv = (cf,), ("xla",), (cf,), (1, 8), ()
    else:
        cf, batch, timing = "convfirst_tiny", 128, dict(dtype=a.dtype, warmup=a.warmup, iters=a.iters)
        train_model = "convfirst_tiny_ln"
        impl_models, compare = ((cf,) if a.quick else (cf, "mbconvnet_b0")), ("xla", "auto")
        whole = (cf,) if a.quick else (cf, "convnext_tiny", "efficientnet_b0")
        batches = (1, 32, 128, 256) if a.quick else (1, 8, 32, 128, 256)
        mbconv = () if a.quick else ("mbconvnet_b0", "mbconvnet_b0_gw8", "mbconvnet_b0_gw16")
    groups = [
        group("impl", "bench_block", {"model": impl_models, "impl": IMPLS}, batch=batch, **timing),
        group("group_width", "bench_block",
              {"model": (f"{cf}:group_width=1", cf, f"{cf}:group_width=16"), "impl": compare}, batch=batch, **timing),
        group("expansion", "bench_block", {"model": (cf, f"{cf}:expand_ratio=6.0"), "impl": compare},
              batch=batch, **timing),
        group("batch", "bench_model", {"model": whole, "impl": compare, "batch": batches}, oom_retry=False, **timing),
        group("tiles", "tile_sweep", {"model": impl_models}, impl="pallas_fused", batch=batch,
              max_configs=a.max_configs, **timing),
        group("training", "bench_block_train", {"model": (train_model,), "impl": TRAIN_FWD,
                                                "bwd_impl": TRAIN_BWD}, batch=batch, **timing),
    ]
    if mbconv:
        groups.insert(2, group("group_width_mbconv", "bench_model", {"model": mbconv, "impl": compare},
                               batch=batch, oom_retry=True, **timing))
    return experiment("ablations", "Ablations: implementation, group width, expansion, batch, tile config",
                      groups=groups, cell_timeout_s=400)
