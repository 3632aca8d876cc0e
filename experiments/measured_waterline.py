"""Measured waterline: one forward pass split into layers, each with its measured time T_l next to
the cost model's bounds (convfirst.cost.waterline), so the efficiency gap splits into
recompute, memory-bound loss (fusion removes it) and kernel loss (better kernels remove it).

Method (documented in docs/results.md):
- T_model: the whole forward (bench_model, CUPTI kernel time per batch).
- Residual blocks: each distinct block call timed alone (bench_block) at the implementation the model
  runs it with; every occurrence of the block gets that time.
- Stem, downsampling and head layers: the remainder R = T_model - sum of block times, shared in
  proportion to their cost-model bounds. If R < 0 (blocks alone sum to more than the forward), they
  get 0 and the block times are scaled by T_model / sum, so the layers always add up to T_model.
- Cost model per layer: the kernels of its execution (block-fused where the block ran the fused
  kernel, else layer-wise): compute C/P, memory D/B, bound L_l = sum_i max(C_i/P, D_i/B). As one
  `KernelBound` per layer: compute_s = sum C_i/P (executed MACs), memory_s = compute_s + the layer's
  memory-bound excess sum_i max(0, D_i/B - C_i/P), so its bound_s is exactly L_l.
- In-model fused kernels: CUPTI kernels of the whole forward whose names start with
  'convfirst_fused'/'mbconv_fused' (pallas_fused) or 'body_mosaic_gpu' (mosaic_mlp, its only Mosaic GPU
  kernel: Mosaic names kernels after their body function) are matched by order to the blocks that
  ran with the hidden activation on chip (reported beside the isolated times, which for mosaic_mlp
  also include XLA's grouped conv; they do not enter the split).
"""
from __future__ import annotations

from dataclasses import dataclass

from convfirst.cost.analysis import ModelAnalysis, analyze
from convfirst.cost.hardware import device_from_jax, get_device
from convfirst.cost.waterline import KernelBound, KernelLoad, Waterline
from experiments.cells import model_spec_of
from pallas_kernels.registry import HIDDEN_ON_CHIP

# CUPTI names of the kernels that run a block with its hidden activation on chip (HIDDEN_ON_CHIP):
# the Triton kernels carry their op's name, Mosaic GPU names each kernel after its body function.
PALLAS_FUSED_KERNELS = {"convfirst_block": "convfirst_fused", "mbconv_block": "mbconv_fused"}
MOSAIC_MLP_KERNEL = "body_mosaic_gpu_kernel"
FUSED_KERNEL_PREFIXES = (*PALLAS_FUSED_KERNELS.values(), MOSAIC_MLP_KERNEL)


def fused_kernel_name(impl: str, op: str) -> str:
    """The name prefix of the kernel that runs `op` fused under `impl` (one of HIDDEN_ON_CHIP)."""
    return MOSAIC_MLP_KERNEL if impl == "mosaic_mlp" else PALLAS_FUSED_KERNELS[op]


def _execution(impl: str) -> str:
    """How a block ran. mosaic_mlp blocks are compared with the fused bound too (the hidden activation
    stays on chip; their conv output's HBM round trip, 2C per pixel, is not in that bound)."""
    return {"pallas_fused": "block-fused", "mosaic_mlp": "mlp-fused"}.get(impl, "layer-wise")


@dataclass(frozen=True)
class LayerTime:
    name: str  # cost-model layer name, e.g. '05.convfirst'
    kind: str
    block: str | None  # block-call label, None for stem/downsampling/head
    impl: str  # implementation that ran it ('xla' for non-block layers)
    execution: str  # 'block-fused' or 'layer-wise' (the cost model compared with)
    measured_s: float
    isolated_s: float | None  # the block alone (per call), before any scaling
    in_model_s: float | None  # the block's fused kernel inside the whole forward (CUPTI), if matched
    memory_s: float  # sum_i D_i/B of the layer's kernels
    bound: KernelBound


@dataclass(frozen=True)
class MeasuredWaterline:
    model: str
    impl: str
    batch: int
    dtype: str
    device: str
    layers: tuple[LayerTime, ...]
    waterline: Waterline  # one KernelBound per layer, measured times attached
    analysis: ModelAnalysis
    model_s: float
    block_sum_s: float
    remainder_s: float
    block_scale: float  # 1, or T_model / block sum when the remainder was negative
    fused_matched: int
    fused_kernels: int  # fused kernels found in the CUPTI list
    fused_blocks: int  # block occurrences that ran the fused kernel

    def summary(self) -> dict:
        w = self.waterline
        lw, fu = self.analysis.layerwise, self.analysis.fused
        return {"model": self.model, "impl": self.impl, "batch": self.batch, "dtype": self.dtype, "device": self.device,
                "measured_ms": 1e3 * self.model_s, "ideal_ms": 1e3 * w.ideal_s, "waterline_ms": 1e3 * w.waterline_s,
                "recompute_loss_ms": 1e3 * w.recompute_loss_s, "memory_bound_loss_ms": 1e3 * w.memory_bound_loss_s,
                "kernel_loss_ms": 1e3 * w.kernel_loss_s, "efficiency": w.measured_efficiency,
                "efficiency_bound": w.efficiency_bound, "block_sum_ms": 1e3 * self.block_sum_s,
                "remainder_ms": 1e3 * self.remainder_s, "block_scale": self.block_scale,
                "fused_blocks": self.fused_blocks, "fused_kernels_matched": self.fused_matched,
                "layerwise_waterline_ms": 1e3 * lw.waterline_s, "fused_waterline_ms": 1e3 * fu.waterline_s,
                "layerwise_memory_bound_loss_ms": 1e3 * lw.memory_bound_loss_s,
                "fused_memory_bound_loss_ms": 1e3 * fu.memory_bound_loss_s}


class SplitUnavailable(ValueError):
    """No split for this cell: a block has no measured time (unsupported or failed), or the device has
    no hardware-table entry (peak and bandwidth unknown, e.g. a CPU)."""


def device_key(device_kind: str) -> str:
    """Hardware-table key of a result's device ('FAKE ...' rows use the H100 their numbers come from)."""
    if device_kind.startswith("FAKE"):
        return "h100"
    try:
        return device_from_jax(device_kind).key
    except ValueError as e:
        raise SplitUnavailable(str(e)) from None


def measure(cell: dict, result: dict) -> MeasuredWaterline:
    """The measured waterline of one waterline cell's result."""
    model_row, block_rows = result["model"], {b["block"]: b for b in result["blocks"]}
    bad = [f"{label}: {b['status']}" for label, b in block_rows.items() if b.get("status") != "ok"]
    if bad:
        raise SplitUnavailable("blocks without a measured time: " + "; ".join(bad))
    batch, dtype = model_row["infer_batch_size"], model_row["dtype"]
    device = get_device(device_key(model_row["device"]))
    analysis = analyze(model_spec_of(cell["model"]), device, batch, dtype)
    if len(result["layer_blocks"]) != len(analysis.blocks):
        raise ValueError(f"{cell['model']}: the result lists {len(result['layer_blocks'])} layers, the spec has "
                         f"{len(analysis.blocks)} (was the model changed since the run?)")

    rows = []  # (BlockAnalysis, label, impl, isolated seconds or None)
    for b, label in zip(analysis.blocks, result["layer_blocks"]):
        row = block_rows.get(label) if label else None
        rows.append((b, label, row["impl"] if row else "xla", row["infer_step_time"] * 1e-3 if row else None))
    model_s = model_row["infer_step_time"] * 1e-3
    block_sum = sum(t for *_, t in rows if t is not None)
    remainder = model_s - block_sum
    scale = 1.0 if remainder >= 0 else model_s / block_sum
    execs = [(b.fused if impl in HIDDEN_ON_CHIP else b.layerwise) for b, _, impl, _ in rows]
    other_bound = sum(w.waterline_s for w, (_, label, _, _) in zip(execs, rows) if label is None)

    fused_kernels = [ms * 1e-3 for name, ms in (model_row.get("per_kernel") or [])
                     if str(name).startswith(FUSED_KERNEL_PREFIXES)]
    fused_layers = [i for i, (_, label, impl, _) in enumerate(rows) if label and impl in HIDDEN_ON_CHIP]
    in_model = dict(zip(fused_layers, fused_kernels)) if len(fused_kernels) == len(fused_layers) else {}

    layers, bounds = [], []
    for i, ((b, label, impl, isolated), w) in enumerate(zip(rows, execs)):
        if label:
            measured = isolated * scale
        else:
            share = w.waterline_s / other_bound if other_bound else 0.0
            measured = max(remainder, 0.0) * share
        compute = sum(k.compute_s for k in w.kernels)
        bound = KernelBound(KernelLoad(b.layer.name, w.macs, w.dram_bytes, w.executed_macs - w.macs),
                            compute, compute + w.memory_bound_loss_s, w.ideal_s, measured)
        bounds.append(bound)
        layers.append(LayerTime(b.layer.name, b.layer.kind, label, impl,
                                _execution(impl) if b.tile is not None else "layer-wise",
                                measured, isolated, in_model.get(i), sum(k.memory_s for k in w.kernels), bound))
    waterline = Waterline(tuple(bounds), device.peak_macs(dtype), device.dram_bytes_per_s)
    return MeasuredWaterline(cell["model"], cell["impl"], batch, dtype, device.name, tuple(layers), waterline,
                             analysis, model_s, block_sum, remainder, scale, len(in_model), len(fused_kernels),
                             len(fused_layers))
