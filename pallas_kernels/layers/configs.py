"""Tile configurations of the layer-wise kernels (1x1 GEMM, k x k grouped conv) and of a layer-wise
block (one config per layer): a heuristic default and the autotuner's candidate list for each."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from pallas_kernels.common import is_pow2, next_pow2

MIN_DOT = 16  # Triton tensor-core dots need every dimension >= 16


def check_pow2(cfg, names, minimum: int = 1) -> None:
    for name in names:
        v = getattr(cfg, name)
        if not is_pow2(v) or v < minimum:
            raise ValueError(f"{type(cfg).__name__}.{name}={v} must be a power of two >= {minimum}")


def clamp_pow2(n: int, lo: int, hi: int) -> int:
    return min(hi, max(lo, next_pow2(n)))


def ranked(base, configs) -> list:
    """`configs` deduplicated, the base first, then by how many fields differ from it (so a prefix
    of the list holds the single-field perturbations an autotuner should try first)."""
    def distance(c):
        a, b = dataclasses.astuple(c), dataclasses.astuple(base)
        return sum(x != y for x, y in zip(a, b)), a
    return sorted({base, *configs}, key=distance)


class Serializable:
    """to_dict/from_dict for the autotuner's JSON cache (unknown fields are an error, not ignored)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        valid = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(d) - valid:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**d)


@dataclass(frozen=True)
class GemmConfig(Serializable):
    """One program computes a block_m x block_n output tile, looping over K in block_k steps."""

    block_m: int = 64
    block_n: int = 64
    block_k: int = 32
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self):
        check_pow2(self, ("block_m", "block_n", "block_k"), MIN_DOT)


def fit_pow2(n: int, cap: int) -> int:
    """The largest power-of-two block in [16, cap] padding n by at most 1/8, else the one padding
    least (e.g. N = 144 -> 32: five blocks of 160, not two of 256)."""
    sizes = [b for b in (16, 32, 64, 128, 256) if b <= max(cap, MIN_DOT)]
    padded = {b: -(-n // b) * b for b in sizes}
    good = [b for b in sizes if padded[b] * 8 <= n * 9]
    return max(good) if good else min(sizes, key=lambda b: (padded[b], -b))


def gemm_heuristic(m: int, k: int, n: int) -> GemmConfig:
    """N tiles up to 128 and K steps up to 64 with little padding, 128-row tiles once there are
    >= 2 waves of programs on 132 SMs."""
    block_n = fit_pow2(n, 128)
    block_k = fit_pow2(k, 64)
    n_tiles = -(-n // block_n)
    block_m = 128 if (m // 128) * n_tiles >= 2 * 132 else 64
    num_warps = 8 if block_m * block_n >= 128 * 128 else 4
    return GemmConfig(block_m, block_n, block_k, num_warps, 3 if k > block_k else 2)


def gemm_candidates(m: int, k: int, n: int) -> list[GemmConfig]:
    configs = [GemmConfig(bm, bn, bk, nw, ns) for bm, bn, bk, nw, ns in itertools.product(
        (32, 64, 128), (16, 32, 64, 128), (16, 32, 64), (4, 8), (2, 3))
        if bn <= clamp_pow2(n, MIN_DOT, 128) and bk <= clamp_pow2(k, MIN_DOT, 64)]
    return ranked(gemm_heuristic(m, k, n), configs)


@dataclass(frozen=True)
class GConvConfig(Serializable):
    """One program computes a tile_h x tile_w output-pixel tile of one image for block_c channels,
    each tap one wide (pixels, block_c) load.

    Depthwise: CUDA-core FMAs on (pixels, block_c) f32 accumulators (conv_chunk unused). Grouped:
    the load is split into conv_chunk-wide parts, one tensor-core dot each with a block-diagonal
    (conv_chunk, conv_chunk) weight; wasted MACs: a factor conv_chunk / group_width.
    """

    tile_h: int = 8
    tile_w: int = 8
    block_c: int = 64
    conv_chunk: int = 32
    num_warps: int = 4
    num_stages: int = 2  # pipelines the loop over tap rows

    def __post_init__(self):
        check_pow2(self, ("tile_h", "tile_w", "block_c", "conv_chunk"))

    @property
    def pixels(self) -> int:
        return self.tile_h * self.tile_w

    def reason(self, group_width: int) -> str | None:
        """None when this config can run a conv of this group width, else why not."""
        if group_width > 1:
            if self.pixels < MIN_DOT or self.conv_chunk < MIN_DOT:
                return f"grouped conv needs >= {MIN_DOT} pixels and conv_chunk >= {MIN_DOT} (tensor-core dot)"
            if self.conv_chunk % group_width or self.block_c % self.conv_chunk:
                return (f"conv_chunk={self.conv_chunk} must be a multiple of group_width={group_width} "
                        f"and divide block_c={self.block_c}")
        return None


def tile_shape(h: int, w: int, pixels: int) -> tuple[int, int]:
    """A tile_h x tile_w tile of `pixels` pixels, no wider than the (power-of-two padded) image."""
    tw = min(next_pow2(w), 8 if pixels <= 64 else 16)
    return max(1, pixels // tw), tw


def gconv_heuristic(h: int, w: int, c: int, group_width: int) -> GConvConfig:
    """64-pixel tiles; up to 64 (depthwise) or 128 (grouped) channels per load; 32-wide
    block-diagonal dots (the fused ConvFirst kernel measured one wide load per tap split into
    32-wide dots fastest on the H100, despite the wasted MACs)."""
    th, tw = tile_shape(h, w, 64)
    if group_width == 1:
        return GConvConfig(th, tw, fit_pow2(c, 64), 32, 4)
    chunk = max(32, group_width)
    return GConvConfig(th, tw, max(chunk, fit_pow2(c, 128)), chunk, 4)


def gconv_candidates(h: int, w: int, c: int, group_width: int) -> list[GConvConfig]:
    chunks = (32,) if group_width == 1 else (16, 32)
    configs = [GConvConfig(*tile_shape(h, w, pixels), bc, cc, nw, ns)
               for pixels, bc, cc, nw, ns in itertools.product(
                   (32, 64, 128), (16, 32, 64, 128), chunks, (4, 8), (1, 2, 3))
               if bc <= clamp_pow2(c, MIN_DOT, 128)]
    return ranked(gconv_heuristic(h, w, c, group_width),
                  [cfg for cfg in configs if cfg.reason(group_width) is None])


@dataclass(frozen=True)
class LayerwiseConfig:
    """A layer-wise block: one config per kernel (expand is None when the block has no expansion)."""

    gconv: GConvConfig
    expand: GemmConfig | None
    project: GemmConfig

    def to_dict(self) -> dict:
        return {"gconv": self.gconv.to_dict(), "expand": self.expand and self.expand.to_dict(),
                "project": self.project.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerwiseConfig":
        return cls(GConvConfig.from_dict(d["gconv"]),
                   d["expand"] and GemmConfig.from_dict(d["expand"]), GemmConfig.from_dict(d["project"]))


def layerwise_heuristic(gconv_args, expand_args, project_args) -> LayerwiseConfig:
    """gconv_args = (h, w, c, group_width) of the conv output; *_args = (m, k, n) of the GEMMs."""
    return LayerwiseConfig(gconv_heuristic(*gconv_args), expand_args and gemm_heuristic(*expand_args),
                           gemm_heuristic(*project_args))


def layerwise_candidates(gconv_args, expand_args, project_args, per_layer: int = 6) -> list[LayerwiseConfig]:
    """Coordinate-wise search space: the heuristic, then each layer's first `per_layer` candidates
    with the other layers at their heuristic (layers run as separate kernels, so their tile choices
    are nearly independent and the product space would be wasted time)."""
    base = layerwise_heuristic(gconv_args, expand_args, project_args)
    out = [base]
    out += [dataclasses.replace(base, gconv=c) for c in gconv_candidates(*gconv_args)[1:per_layer]]
    if expand_args:
        out += [dataclasses.replace(base, expand=c) for c in gemm_candidates(*expand_args)[1:per_layer]]
    out += [dataclasses.replace(base, project=c) for c in gemm_candidates(*project_args)[1:per_layer]]
    return list(dict.fromkeys(out))
