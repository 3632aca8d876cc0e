"""A model's cost on a device: per-block traffic and intensity, layer-wise vs block-fused waterline.

Layer-wise execution runs every layer as its XLA-like kernel sequence (layers.py). Block-fused
execution runs each ConvFirst/MBConv block as one tensor-machine kernel (tensor_machine.py) with the
tile that fits on chip; stem, downsampling and head layers, and blocks whose smallest tile does not
fit, run layer-wise in both.
"""
from __future__ import annotations

from dataclasses import dataclass

from convfirst.cost.hardware import Device, get_device, get_dtype
from convfirst.cost.layers import LayerCost, layer_costs
from convfirst.cost.tensor_machine import TileCost, choose_tile, split_fused, tile_cost
from convfirst.cost.waterline import KernelLoad, Waterline, waterline
from convfirst.models.specs import ModelSpec


@dataclass(frozen=True)
class BlockAnalysis:
    layer: LayerCost
    layerwise: Waterline
    fused: Waterline
    tile: TileCost | None  # the fused kernel's tile, None when the layer runs layer-wise
    note: str  # how the layer runs in fused execution

    def to_dict(self, batch: int, element_bytes: int) -> dict:
        lc, lw, fu = self.layer, self.layerwise, self.fused
        d = {"name": lc.name, "kind": lc.kind, "in_shape": list(lc.in_shape), "out_shape": list(lc.out_shape),
             "macs": lc.macs, "params": lc.params, "act_bytes": lc.out_elements * element_bytes,
             "layerwise": _summary(lw), "fused": _summary(fu), "fused_as": self.note}
        if self.tile is not None:
            t = self.tile
            d["tile"] = {"tile": str(t.tile), "tiles_per_image": t.tiles_per_image, "in_tile": list(t.in_tile),
                         "halo_read_bytes": batch * t.halo_read_bytes, "recompute_macs": batch * t.recompute_macs,
                         "workspace_bytes": t.workspace_bytes, "workspace": t.workspace,
                         "l2_weight_bytes": t.l2_weight_bytes(batch),
                         # executed MACs per byte of weights re-read from L2 (not in the DRAM waterline):
                         # = tile pixels / element bytes; low for wide blocks with small tiles
                         "l2_weight_intensity": (t.macs + t.recompute_macs) / (t.tiles_per_image * t.weight_bytes)}
        return d


def _bound(w: Waterline) -> str:
    memory = [k.memory_bound for k in w.kernels]
    return "memory" if all(memory) else "compute" if not any(memory) else "mixed"


def _summary(w: Waterline) -> dict:
    return {"dram_bytes": w.dram_bytes, "intensity": w.intensity, "bound": _bound(w),
            "waterline_s": w.waterline_s, "kernels": len(w.kernels)}


@dataclass(frozen=True)
class ModelAnalysis:
    spec: ModelSpec
    device: Device
    dtype: str
    batch: int
    blocks: tuple[BlockAnalysis, ...]

    @property
    def macs(self) -> int:
        """MACs per image."""
        return sum(b.layer.macs for b in self.blocks)

    @property
    def params(self) -> int:
        return sum(b.layer.params for b in self.blocks)

    @property
    def peak(self) -> float:
        return self.device.peak_macs(self.dtype)

    def _sequence(self, execution: str) -> Waterline:
        ws = [getattr(b, execution) for b in self.blocks]
        return Waterline(tuple(k for w in ws for k in w.kernels), self.peak, self.device.dram_bytes_per_s)

    @property
    def layerwise(self) -> Waterline:
        return self._sequence("layerwise")

    @property
    def fused(self) -> Waterline:
        return self._sequence("fused")

    @property
    def ideal_s(self) -> float:
        return self.batch * self.macs / self.peak

    def to_dict(self) -> dict:
        eb = get_dtype(self.dtype).element_bytes
        lw, fu = self.layerwise, self.fused
        return {"model": self.spec.name, "family": self.spec.family, "resolution": self.spec.resolution,
                "batch": self.batch, "dtype": self.dtype, "device": self.device.to_dict(self.dtype),
                "params": self.params, "macs_per_image": self.macs, "gmacs": self.macs / 1e9,
                "ideal_latency_s": self.ideal_s,
                "ridge_macs_per_byte": self.device.ridge(self.dtype),
                "layerwise": lw.to_dict(), "fused": fu.to_dict(),
                "blocks": [b.to_dict(self.batch, eb) for b in self.blocks]}


def _loads(layer: LayerCost, kernels, batch: int, element_bytes: int) -> list[KernelLoad]:
    return [KernelLoad(f"{layer.name}.{k.name}", batch * k.macs, k.dram_bytes(batch, element_bytes)) for k in kernels]


def analyze_block(layer: LayerCost, device: Device, dtype: str, batch: int,
                  tile_shape: tuple[int, int] | None = None) -> BlockAnalysis:
    dt = get_dtype(dtype)
    peak, bw = device.peak_macs(dtype), device.dram_bytes_per_s
    layerwise = _loads(layer, layer.kernels, batch, dt.element_bytes)
    fused, cost, note = layerwise, None, "layer-wise (not a residual block)"
    if layer.fusable:
        tile = choose_tile(layer, dt, device.on_chip_bytes_per_sm, *([(tile_shape,)] if tile_shape else []))
        if tile is None:
            note = f"layer-wise (tile workspace exceeds {device.on_chip_bytes_per_sm // 1024} KiB on chip)"
        else:
            cost = tile_cost(layer, tile, dt)
            _, rest = split_fused(layer)
            fused = [KernelLoad(f"{layer.name}.fused", batch * cost.macs, cost.dram_bytes(batch),
                                batch * cost.recompute_macs)] + _loads(layer, rest, batch, dt.element_bytes)
            note = "fused" if not rest else "fused up to the global pool; SE and projection layer-wise"
    return BlockAnalysis(layer, waterline(layerwise, peak, bw), waterline(fused, peak, bw), cost, note)


def analyze(spec: ModelSpec, device: str | Device = "h100", batch: int = 128, dtype: str = "bf16",
            tile: tuple[int, int] | None = None) -> ModelAnalysis:
    """Cost of running `spec` at its resolution on `device` for a batch of `batch` images; `tile`
    (rows, cols) forces the fused kernels' output tile instead of the largest that fits."""
    device = get_device(device) if isinstance(device, str) else device
    get_dtype(dtype)
    if batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch}")
    if tile is not None and (len(tile) != 2 or min(tile) < 1):
        raise ValueError(f"tile must be two positive integers (rows, cols), got {tile}")
    blocks = tuple(analyze_block(lc, device, dtype, batch, tile) for lc in layer_costs(spec))
    return ModelAnalysis(spec, device, dtype, batch, blocks)
