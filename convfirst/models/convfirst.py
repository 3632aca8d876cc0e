"""ConvFirstNet: ConvNeXt's macro layout with ConvFirst blocks, at <= 90 % of ConvNeXt's MACs.

The paper (Lavin 2024) does not publish its stage table, so this family is our design, made so that
ConvFirst can be compared with ConvNeXt size for size and run by the block-fusion kernels.

Block (specs.ConvFirstBlock): grouped 3x3 conv, group width 8 -> BN -> 1x1 expand (E=4) -> BN -> SiLU
-> 1x1 project -> BN -> +x. That is spio's `ConvFirst` module (the author's code); E=4 is its default.

Macro layout (as ConvNeXt, `convnext.convnext_layout`): patchify 4x4/4 stem conv -> norm; four stages at
1/4, 1/8, 1/16, 1/32 resolution separated by 2x2/2 convs; pool -> LayerNorm -> FC. With BatchNorm
the stem and downsampling norms sit after their convs (foldable at inference); the head keeps a
LayerNorm (a BatchNorm on pooled features would depend on the batch). Stochastic depth rises
linearly as in ConvNeXt.

Widths and depths, and why:
- Every width is a power of two. The block-fusion kernel (pallas_kernels/convfirst_block/
  fused_triton.py) keeps a whole (pixels x C) tile in registers and Pallas-Triton values must have
  power-of-two shapes, so it runs power-of-two C only (its first, channel-chunked version, which
  took any multiple of 16, was 2.5x slower than XLA at 28x28x192: benchmarks/results/probe/).
- Stage 1 is where fusion matters most (56x56 maps, memory bound layer by layer: fused intensity
  18 + E*C/2 MAC/B = 146 at C=64, the H100 ridge), so tiny starts at 64 = all of C in one tile.
- A ConvFirst block costs 9*8*C + 8*C^2 MACs per pixel vs ConvNeXt's 49*C + 8*C^2. Each model takes
  the largest stage-3 depth (ConvNeXt's deepest stage, 14x14) that keeps it <= 90 % of the ConvNeXt
  of its size: tiny is ConvNeXt-S's depth pattern at half ConvNeXt's widths (deep and narrow: the
  accuracy-per-MAC regime the paper argues for); small and base use ConvNeXt-B's widths with fewer
  blocks (small: 2-2-11-2, base: 3-3-23-3).

MACs at 224 (analytic cost model = jaxpr walker, paper convention; ConvNeXt T 4.456, S 8.684,
B 15.355 G):

| model | widths | depths | stage GMACs (1/2/3/4) | stem+down+head | total | vs ConvNeXt | params |
|---|---|---|---|---|---|---|---|
| convfirst_tiny | 64-128-256-512 | 3-3-27-3 | 0.352/0.330/2.872/0.314 | 0.087 | 3.955 | 88.7 % | 22.9 M |
| convfirst_small | 128-256-512-1024 | 2-2-11-2 | 0.880/0.851/4.601/0.829 | 0.329 | 7.490 | 86.2 % | 45.7 M |
| convfirst_base | 128-256-512-1024 | 3-3-23-3 | 1.320/1.276/9.620/1.244 | 0.329 | 13.789 | 89.8 % | 80.5 M |

One more stage-3 block would exceed 90 % in every size. (tests/test_models.py checks the bound.)

Unknown from the paper: its stage table, resolution, norm (BN or a per-pixel norm), activation, E,
layer scale and stochastic depth, and its accuracy. spio benchmarks the block at C=64 on 64x64 maps
(= stage 1 of a 256x256 input), consistent with our stage-1 width but not proof of it.

Variants: `*_ln` use a per-pixel LayerNorm after the gconv and ConvNeXt's layer scale 1e-6 (no
batch statistics, so the fused kernel can also run training); `convfirst_pico` is a 1-channel 8x8
model for the sklearn-digits demo: 3x3 stem to 32 channels, two stages of two blocks (32, 64),
0.1 M parameters, small enough to train on a CPU.
"""
from __future__ import annotations

import functools

from convfirst.models.convnext import convnext_layout
from convfirst.models.registry import register_model
from convfirst.models.specs import ModelSpec

# variant -> layout: widths, depths, stem (kernel, stride), native resolution, classes, input channels
VARIANTS = {
    "pico": dict(dims=(32, 64), depths=(2, 2), stem=(3, 1), resolution=8, num_classes=10, in_chans=1),
    "tiny": dict(dims=(64, 128, 256, 512), depths=(3, 3, 27, 3), stem=(4, 4), resolution=224,
                 num_classes=1000, in_chans=3),
    "small": dict(dims=(128, 256, 512, 1024), depths=(2, 2, 11, 2), stem=(4, 4), resolution=224,
                  num_classes=1000, in_chans=3),
    "base": dict(dims=(128, 256, 512, 1024), depths=(3, 3, 23, 3), stem=(4, 4), resolution=224,
                 num_classes=1000, in_chans=3),
}
NORM_EPS = {"batch": 1e-5, "layer": 1e-6, "none": 1e-6}  # PyTorch BN default; ConvNeXt LN


def convfirst_spec(variant: str, *, num_classes: int | None = None, resolution: int | None = None,
                   in_chans: int | None = None, drop_path_rate: float = 0.0, norm: str = "batch",
                   act: str = "silu", expand_ratio: float = 4.0, kernel_size: int = 3, group_width: int = 8,
                   layer_scale: float | None = None) -> ModelSpec:
    """ConvFirstNet `variant` (pico/tiny/small/base); None picks the variant's default."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ConvFirstNet variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if norm not in NORM_EPS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORM_EPS)}")
    v = VARIANTS[variant]
    block = dict(kernel_size=kernel_size, group_width=group_width, expand_ratio=expand_ratio, norm=norm,
                 norm_eps=NORM_EPS[norm], act=act, layer_scale=layer_scale)
    return convnext_layout(
        name=f"convfirst_{variant}", family="convfirst", depths=v["depths"], dims=v["dims"], block=block,
        in_chans=v["in_chans"] if in_chans is None else in_chans,
        num_classes=v["num_classes"] if num_classes is None else num_classes,
        resolution=v["resolution"] if resolution is None else resolution,
        drop_path_rate=drop_path_rate, stem_kernel=v["stem"][0], stem_stride=v["stem"][1])


for _variant in VARIANTS:
    register_model(f"convfirst_{_variant}")(functools.partial(convfirst_spec, _variant))
    # per-pixel LayerNorm, no BatchNorm anywhere (the fused kernels can run training), ConvNeXt's layer scale
    register_model(f"convfirst_{_variant}_ln")(
        functools.partial(convfirst_spec, _variant, norm="layer", layer_scale=1e-6))
