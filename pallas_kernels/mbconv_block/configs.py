"""Tile configurations of the fused MBConv kernel: a heuristic default and the autotuner's space."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from pallas_kernels.common import next_pow2
from pallas_kernels.layers.configs import (MIN_DOT, Serializable, check_pow2, clamp_pow2, fit_pow2, ranked,
                                          tile_shape)


@dataclass(frozen=True)
class FusedConfig(Serializable):
    """One program computes a tile_h x tile_w output tile of one image, all output channels.

    block_e: hidden channels per step of the streamed block (expand chunk -> conv -> project
        accumulate); workspace O(pixels x block_e). Grouped convs use one block-diagonal
        (block_e x block_e) tensor-core dot per tap (wasted conv MACs: block_e / group width).
    """

    tile_h: int = 8
    tile_w: int = 8
    block_e: int = 32
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self):
        check_pow2(self, ("tile_h", "tile_w"))
        check_pow2(self, ("block_e",), MIN_DOT)
        if self.pixels < MIN_DOT:
            raise ValueError(f"FusedConfig tile {self.tile_h}x{self.tile_w} has < {MIN_DOT} pixels "
                             f"(tensor-core dot minimum)")

    @property
    def pixels(self) -> int:
        return self.tile_h * self.tile_w

    def reason(self, group_width: int) -> str | None:
        if self.block_e % group_width:
            return f"block_e={self.block_e} must be a multiple of group_width={group_width}"
        return None


def _shapes(x_shape, params):
    _, h, w, c_in = x_shape
    return h, w, params.w_conv.shape[-1], params.w_project.shape[1]


def heuristic(x_shape, params, *, group_width: int = 1, **_) -> FusedConfig:
    """64-pixel tiles (32 when the f32 output accumulators are wide); hidden chunks up to 64 wide
    for depthwise convs, up to 32 for grouped ones (block-diagonal dots; 32 measured faster than 16
    in the fused ConvFirst kernel on the H100), sized to pad the hidden width little."""
    h, w, hidden, c_out = _shapes(x_shape, params)
    acc_width = clamp_pow2(c_out, MIN_DOT, 1 << 30)
    pixels = 64 if acc_width <= 128 else 32
    block_e = fit_pow2(hidden, 64 if group_width == 1 else 32)  # little padding: 144 -> 32, 672 -> 64
    num_warps = 4 if pixels * acc_width <= 64 * 128 else 8
    return FusedConfig(*tile_shape(h, w, pixels), block_e, num_warps, 2)


def candidates(x_shape, params, *, group_width: int = 1, **_) -> list[FusedConfig]:
    """The autotuner's search space, the heuristic first, then its nearest neighbours."""
    h, w, hidden, c_out = _shapes(x_shape, params)
    configs = []
    for pixels, be, nw, ns in itertools.product((32, 64, 128), (16, 32, 64), (4, 8), (1, 2, 3)):
        cfg = FusedConfig(*tile_shape(h, w, pixels), be, nw, ns)
        if (cfg.reason(group_width) is None and be <= clamp_pow2(hidden, MIN_DOT, 64)
                and pixels * next_pow2(c_out) <= 128 * 256):
            configs.append(cfg)
    return ranked(heuristic(x_shape, params, group_width=group_width), configs)
