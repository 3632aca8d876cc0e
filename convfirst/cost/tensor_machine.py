"""The block-fusion kernel as a small "tensor machine" (paper.md 1.4 and 5, reconstructed).

The machine has a DRAM and, per SM, an on-chip memory (registers + shared memory). A fused block
kernel is a program over output tiles of TH x TW pixels; each tile

1. loads its input tile with the conv halo, ((TH-1)s+k) x ((TW-1)s+k) x Cin, from DRAM (pixels
   outside the image are zero-filled, not read). Neighbouring tiles re-read the overlapping halo:
   counted as DRAM traffic here, although part of it hits L2;
2. ConvFirst: grouped conv -> t (TH*TW x C, kept on chip) -> [LayerNorm]; then streams the hidden
   dim in chunks of m: h = act(t W_exp[:, chunk]), acc += h W_prj[chunk, :] (fp32 accumulators);
   MBConv: per chunk of m hidden channels, expands the whole input tile *including the halo*
   (the recompute: the expansion of halo pixels is also done by the neighbouring tiles), runs the
   k x k conv on it and accumulates the projection;
3. writes acc (+ residual, the centre of the input tile) once.

Weights go to DRAM once per kernel launch and are re-read from L2 by every tile (reported apart).
Squeeze-excite needs a global pool of the hidden map, which no tile can see: an MBConv with SE is
fused only up to the conv, writes its hidden map and pooled sums, and runs SE and the projection
as layer-wise kernels afterwards (`split_fused`).

Workspace per tile counts the input tile, the ConvFirst conv output, the hidden chunk (with its
halo for MBConv), the fp32 accumulators and the expand/project weight slices of one chunk; the
k x k conv weights stream from L2 per channel group and are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from convfirst.cost.hardware import DType
from convfirst.cost.layers import Kernel, LayerCost
from convfirst.models.specs import ConvFirstBlock, MBConvBlock

# Square tile sides tried, largest first: 8x8 = 64 pixels is the paper's minimum for C <= 192 (paper.md 5)
# and the fused Pallas kernel's default tile; larger tiles need more registers than a CTA can hold.
TILE_SIDES = (8, 4, 2, 1)
CHUNKS = (64, 32)  # narrower hidden chunks under-fill the MMA N dimension


@dataclass(frozen=True)
class Tile:
    h: int  # output rows per tile
    w: int  # output columns per tile
    chunk: int  # hidden channels per step

    def __str__(self) -> str:
        return f"{self.h}x{self.w}/m{self.chunk}"


@dataclass(frozen=True)
class TileCost:
    """What one fused kernel of a block moves and computes. DRAM terms are bytes per image."""

    tile: Tile
    tiles_per_image: int
    in_tile: tuple[int, int, int]  # (rows, cols, channels) of an interior input tile with halo
    read_bytes: int  # input tiles with halo, all tiles of one image
    compulsory_read_bytes: int  # the input read exactly once
    write_bytes: int
    weight_bytes: int  # per launch; each tile re-reads them from L2
    macs: int  # useful MACs per image (as counted in the model's MACs)
    recompute_macs: int  # per image: MBConv expansion redone on halo pixels
    workspace: dict[str, int]  # bytes per tile on chip, by buffer

    @property
    def halo_read_bytes(self) -> int:
        return self.read_bytes - self.compulsory_read_bytes

    @property
    def workspace_bytes(self) -> int:
        return sum(self.workspace.values())

    def dram_bytes(self, batch: int) -> int:
        return batch * (self.read_bytes + self.write_bytes) + self.weight_bytes

    def l2_weight_bytes(self, batch: int) -> int:
        return batch * self.tiles_per_image * self.weight_bytes

    def intensity(self, batch: int) -> float:
        """Executed MACs per DRAM byte."""
        return batch * (self.macs + self.recompute_macs) / self.dram_bytes(batch)


def _axis(n: int, k: int, s: int, t: int) -> tuple[int, int, int]:
    """Along one spatial axis of size n ('SAME' conv, TF padding): input rows read summed over the
    output tiles of size t, rows read at least once, and the number of tiles."""
    no = -(-n // s)
    before = max((no - 1) * s + k - n, 0) // 2
    total, covered, tiles = 0, bytearray(n), 0
    for o0 in range(0, no, t):
        o1 = min(o0 + t, no)
        a, b = max(o0 * s - before, 0), min((o1 - 1) * s - before + k, n)
        total += b - a
        covered[a:b] = b"\1" * (b - a)
        tiles += 1
    return total, sum(covered), tiles


def split_fused(layer: LayerCost) -> tuple[tuple[Kernel, ...], tuple[Kernel, ...]]:
    """The layer-wise kernels of a block that its fused kernel replaces, and those that still run
    afterwards: SE and projection of an MBConv with squeeze-excite (the global pool moves into the
    fused kernel's epilogue, so SE reads only the pooled vector)."""
    if not layer.fusable:
        raise TypeError(f"only ConvFirst and MBConv blocks are fused, not {type(layer.spec).__name__}")
    if isinstance(layer.spec, MBConvBlock) and layer.spec.se_channels:
        *fused, se, project = layer.kernels
        return tuple(fused), (Kernel(se.name, se.macs, layer.spec.hidden, se.writes, se.weights), project)
    return layer.kernels, ()


def tile_cost(layer: LayerCost, tile: Tile, dtype: DType) -> TileCost:
    """Per-image DRAM traffic, recompute and per-tile workspace of the fused kernel of a block."""
    block, (h, w, c) = layer.spec, layer.in_shape
    fused, rest = split_fused(layer)
    eb, ab = dtype.element_bytes, dtype.accumulator_bytes
    k, s, m = block.kernel_size, block.stride, tile.chunk
    rows, rows_once, th_n = _axis(h, k, s, tile.h)
    cols, cols_once, tw_n = _axis(w, k, s, tile.w)
    in_r, in_c = min((tile.h - 1) * s + k, h), min((tile.w - 1) * s + k, w)
    p, (ho, wo, cout) = tile.h * tile.w, layer.out_shape
    if isinstance(block, ConvFirstBlock):
        recompute, out_elems = 0, ho * wo * cout
        workspace = {"input_tile": in_r * in_c * c * eb, "conv_out": p * c * eb, "hidden_chunk": p * m * eb,
                     "accumulators": p * c * ab, "weight_chunk": 2 * c * m * eb}
    else:  # MBConv: the expansion runs on every input pixel of every tile, halo included
        expand = c * block.hidden if block.has_expand else 0
        project = not rest
        recompute = (rows * cols - h * w) * expand
        out_elems = ho * wo * (cout if project else block.hidden)
        workspace = {"input_tile": in_r * in_c * (c if expand else m) * eb,
                     "hidden_chunk": (in_r * in_c * m * eb if expand else 0) + p * m * eb,
                     "accumulators": p * cout * ab if project else 0,
                     "weight_chunk": ((c * m if expand else 0) + (m * cout if project else 0)) * eb}
    return TileCost(tile, th_n * tw_n, (in_r, in_c, c), rows * cols * c * eb, rows_once * cols_once * c * eb,
                    out_elems * eb, sum(kn.weights for kn in fused) * eb, sum(kn.macs for kn in fused),
                    recompute, workspace)


def choose_tile(layer: LayerCost, dtype: DType, on_chip_bytes: int,
                sides: tuple[tuple[int, int], ...] = tuple((s, s) for s in TILE_SIDES)) -> Tile | None:
    """The first tile of `sides` (clipped to the output size), with the largest hidden chunk, whose
    workspace fits in one SM's on-chip memory: larger tiles re-read less halo and re-read weights
    from L2 fewer times. None when none fits (the block then runs layer-wise)."""
    block, (ho, wo, _) = layer.spec, layer.out_shape
    chunks = [m for m in CHUNKS if m % block.group_width == 0 and m <= block.hidden] or [block.group_width]
    for th, tw in sides:
        for m in chunks:
            tile = Tile(min(th, ho), min(tw, wo), m)
            if tile_cost(layer, tile, dtype).workspace_bytes <= on_chip_bytes:
                return tile
    return None
