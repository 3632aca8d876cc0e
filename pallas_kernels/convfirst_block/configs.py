"""Tile configurations of the fused ConvFirst kernel: a heuristic default and the autotuner's space."""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from pallas_kernels.layers.configs import Serializable, ranked


@dataclass(frozen=True)
class FusedConfig(Serializable):
    """One program computes a tile_h x tile_w pixel tile of one image, all C channels.

    conv_chunk: channels per block-diagonal MMA of the grouped conv (a multiple of the group width;
        wasted MACs on the conv = conv_chunk / group_width; fewer, larger dots can still win).
        Depthwise convs use CUDA-core FMAs and ignore it.
    hidden_chunk: hidden channels per step of the streamed MLP (workspace O(pixels x hidden_chunk)).
    flat_pixels: when > 0, a program computes this many consecutive pixels of the flattened N*H*W
        index space instead of a tile_h x tile_w tile (tile_h/tile_w are then ignored): no padding
        waste where H, W are not multiples of the tile (14x14, 7x7) and 128-pixel MMA tiles at any
        width, for more halo re-reads (served by L1/L2).
    """

    tile_h: int = 8
    tile_w: int = 8
    conv_chunk: int = 32
    hidden_chunk: int = 64
    num_warps: int = 4
    num_stages: int = 3
    flat_pixels: int = 0

    @property
    def pixels(self) -> int:
        return self.flat_pixels or self.tile_h * self.tile_w


# f32 projection accumulators (pixels x C) live in registers: at most 128 per thread
# (4 warps: 64 KiB, a 64-pixel tile at C=256; 8 warps: a 128-pixel tile at C=256).
ACCUMULATORS_PER_WARP = 128 * 32


def max_accumulators(num_warps: int) -> int:
    return ACCUMULATORS_PER_WARP * num_warps


# The widest stage the kernel takes: a 64-pixel tile of 4 warps (wider stages are compute-bound
# layer-wise and XLA runs them well).
MAX_CHANNELS = max_accumulators(4) // 64


def _pow2_divisor(c: int, cap: int) -> int:
    """Largest power of two <= cap dividing c."""
    p = 1
    while p * 2 <= cap and c % (p * 2) == 0:
        p *= 2
    return p


def heuristic(c: int, hidden: int, group_width: int, h: int, w: int) -> FusedConfig:
    """Default from the H200 sweep of convfirst_tiny's stages (bf16, batch 128,
    benchmarks/results/fused_sweep): flat tiles of 128 pixels at C <= 64 and 64 pixels above
    (56x56x64: 0.249 ms vs 0.276 for 8x8 tiles; 28x28x128: 0.181 vs 0.249; 14x14x256: 0.225 vs
    0.307), conv_chunk 64 (fewer, larger block-diagonal dots beat less waste), hidden chunks of 64,
    4 warps, 3 stages. tile_h/tile_w keep the old 2-D default for configs that set flat_pixels=0."""
    conv_chunk = min(c, max(64, group_width))
    tile_w = 8 if w >= 8 else 4
    tile_h = 8
    while tile_h * tile_w * c > max_accumulators(4) and tile_h > 2:
        tile_h //= 2
    flat = 128 if c <= 64 else 64
    return FusedConfig(tile_h, tile_w, conv_chunk, _pow2_divisor(hidden, 64), 4, 3, flat)


def candidates(c: int, hidden: int, group_width: int, h: int, w: int) -> list[FusedConfig]:
    """The autotuner's search space, nearest to the heuristic first (so a budget of N configs
    explores one-knob changes before combinations)."""
    base = heuristic(c, hidden, group_width, h, w)
    chunks = [cc for cc in (16, 32, 64, 128) if cc <= c and cc >= group_width] if group_width > 1 else [32]
    tiles = [(4, 8, 0), (8, 8, 0), (8, 16, 0), (16, 8, 0), (base.tile_h, base.tile_w, 64),
             (base.tile_h, base.tile_w, 128)]
    out = set()
    for (th, tw, flat), cc, he, nw, ns in itertools.product(tiles, chunks, [32, 64, 128], [4, 8], [2, 3]):
        cfg = dataclasses.replace(base, tile_h=th, tile_w=tw, conv_chunk=cc, hidden_chunk=he,
                                  num_warps=nw, num_stages=ns, flat_pixels=flat)
        if c % cc or hidden % he or cc % max(group_width, 1) or cfg.pixels * c > max_accumulators(nw):
            continue
        out.add(cfg)
    return ranked(base, out)


@dataclass(frozen=True)
class BwdConfig(Serializable):
    """Tiles of the fused backward (fused_bwd_triton.py).

    dgrad (one program per `block_pixels` pixels): the hidden width streamed in `hidden_chunk` steps.
    wgrad (one program per `wgrad_chunk` hidden channels x pixel split): K-steps of `wgrad_pixels`
        pixels; `wgrad_splits` pixel ranges per hidden chunk, each writing one partial sum
        (0: enough programs to fill 132 SMs about 4 times).
    """

    block_pixels: int = 64
    hidden_chunk: int = 64
    num_warps: int = 4
    wgrad_chunk: int = 64
    wgrad_pixels: int = 64
    wgrad_splits: int = 0
    wgrad_warps: int = 4
    num_stages: int = 2


# wgrad accumulators (2 x C x wgrad_chunk f32) and dgrad tiles (block_pixels x C) stay in registers.
MAX_BWD_TILE_ELEMS = 64 * 128


def bwd_heuristic(c: int, hidden: int) -> BwdConfig:
    """Register budget first: block_pixels x C <= 8K elements (and <= 64 pixels), 2 x C x wgrad_chunk
    <= 16K. From the H100 sweep (benchmarks/results/fused_backward, bf16, batch 128): 64-pixel dgrad
    tiles beat 128 at C=64 (1.61 vs 1.71 ms); 128-pixel wgrad K-steps beat 64 at C=128 (1.20 vs
    1.38 ms) but overflow shared memory at C=256."""
    block_pixels = max(16, min(64, MAX_BWD_TILE_ELEMS // c))
    wgrad_chunk = max(16, min(64, MAX_BWD_TILE_ELEMS // c))
    return BwdConfig(block_pixels=block_pixels, hidden_chunk=_pow2_divisor(hidden, 64),
                     num_warps=4 if c <= 64 else 8, wgrad_chunk=_pow2_divisor(hidden, wgrad_chunk),
                     wgrad_pixels=128 if c == 128 else 64, wgrad_splits=0, wgrad_warps=4 if c <= 64 else 8)


def bwd_candidates(c: int, hidden: int) -> list[BwdConfig]:
    """The autotuner's space for the backward, one-knob changes from the heuristic first."""
    base = bwd_heuristic(c, hidden)
    out = set()
    for bp, he, nw, wc, wp, ws in itertools.product(
            [32, 64, 128], [32, 64], [4, 8], [32, 64], [32, 64, 128], [0]):
        # over these sizes the H100 ran out of shared memory (bp=64 or wp=128 at C=256)
        too_big = bp * c > MAX_BWD_TILE_ELEMS or wp * c > 2 * MAX_BWD_TILE_ELEMS or wc * c > 2 * MAX_BWD_TILE_ELEMS
        if too_big or hidden % he or hidden % wc:
            continue
        out.add(dataclasses.replace(base, block_pixels=bp, hidden_chunk=he, num_warps=nw, wgrad_chunk=wc,
                                    wgrad_pixels=wp, wgrad_splits=ws, wgrad_warps=nw))
    return ranked(base, out)
