"""Tile configurations of the fused ConvFirst kernel: a heuristic default and the autotuner's space."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class FusedConfig:
    """One program computes a tile_h x tile_w pixel tile of one image, all C channels.

    conv_chunk: channels per block-diagonal MMA of the grouped conv (a multiple of the group width;
        wasted MACs on the conv = conv_chunk / group_width). Depthwise convs use CUDA-core FMAs
        over chunks of this width instead.
    out_chunk: channels per projection accumulator (C itself when C is a power of two).
    hidden_chunk: hidden channels per step of the streamed MLP (workspace O(pixels x hidden_chunk)).
    """

    tile_h: int = 8
    tile_w: int = 8
    conv_chunk: int = 16
    out_chunk: int = 64
    hidden_chunk: int = 64
    num_warps: int = 4
    num_stages: int = 2

    @property
    def pixels(self) -> int:
        return self.tile_h * self.tile_w

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FusedConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ValueError(f"unknown FusedConfig fields {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**d)


# f32 projection accumulators (pixels x C) live in registers: 64 KiB per program at most.
MAX_ACCUMULATOR_ELEMS = 128 * 128


def _pow2_divisor(c: int, cap: int) -> int:
    """Largest power of two <= cap dividing c."""
    p = 1
    while p * 2 <= cap and c % (p * 2) == 0:
        p *= 2
    return p


def heuristic(c: int, hidden: int, group_width: int, h: int, w: int) -> FusedConfig:
    """A sensible default: 64-128 pixel tiles, accumulators within ~128 f32 registers per thread."""
    conv_chunk = max(16, group_width) if group_width > 1 else 32
    conv_chunk = min(conv_chunk, _pow2_divisor(c, 64)) if c % conv_chunk else conv_chunk
    out_chunk = _pow2_divisor(c, 256)
    tile_w = 8 if w >= 8 else 4
    tile_h = 8 if c <= 128 else 4
    hidden_chunk = _pow2_divisor(hidden, 64)
    num_warps = 4 if c <= 128 else 8
    return FusedConfig(tile_h, tile_w, conv_chunk, out_chunk, hidden_chunk, num_warps, 2)


def candidates(c: int, hidden: int, group_width: int, h: int, w: int) -> list[FusedConfig]:
    """The autotuner's search space, nearest to the heuristic first (so a budget of N configs
    explores one-knob changes before combinations)."""
    base = heuristic(c, hidden, group_width, h, w)
    chunks = [16, 32, 64] if group_width > 1 else [32, 64]
    out = set()
    for (th, tw), cc, he, nw, ns in itertools.product(
            [(4, 8), (8, 8), (8, 16), (16, 8)], chunks, [32, 64, 128], [4, 8], [2, 3]):
        if c % cc or hidden % he or cc % max(group_width, 1) or th * tw * c > MAX_ACCUMULATOR_ELEMS:
            continue
        out.add(dataclasses.replace(base, tile_h=th, tile_w=tw, conv_chunk=cc, hidden_chunk=he,
                                    num_warps=nw, num_stages=ns))
    out.add(base)

    def distance(cfg):
        return sum(a != b for a, b in zip(cfg.to_dict().values(), base.to_dict().values()))

    return sorted(out, key=lambda cfg: (distance(cfg), tuple(cfg.to_dict().values())))
