"""EfficientNet B0-B7 (Tan & Le, ICML 2019) as TF's reference and timm's `tf_efficientnet_b*`, and
MBConvNet: the same networks without squeeze-excite and optionally with grouped convs (the paper's
fusable MBConv).

- Stem Conv 3x3/2 -> BN -> swish; 16 MBConv stages scaled from B0's table; head Conv 1x1 -> BN ->
  swish -> pool -> dropout -> FC. TF 'SAME' padding (asymmetric for stride 2), BN eps 1e-3, momentum 0.99.
- MBConv: [1x1 expand -> BN -> swish] -> depthwise kxk -> BN -> swish -> SE -> 1x1 project -> BN
  [-> drop-connect -> +x]; SE width = max(1, int(block input channels * 0.25)).
- round_filters / round_repeats scale widths and depths; drop-connect rises linearly over the global
  block index to 0.2 (TF: rate * idx / num_blocks).
- Parameter counts equal timm's tf_efficientnet_b* (B0 5,288,548; tests/test_models.py checks all).

Group widths (`group_width` > 1, MBConvNet *_gw8/_gw16): the kxk conv runs on the expanded width in
groups of `group_width` channels. If int(cin * expand_ratio) is not a multiple of it, the hidden width
is rounded up to one (the expand conv produces the extra channels). Blocks without an expand conv
(expand_ratio 1, stage 1) cannot widen, so they use the largest group width dividing their channels
(gcd), e.g. 8 instead of 16 on 24 or 40 channels.
"""
from __future__ import annotations

import functools
import math

from convfirst.models.registry import TIMM_RESULTS, register_model
from convfirst.models.specs import Conv, Head, MBConvBlock, ModelSpec

# B0: (expand_ratio, kernel, stride of the first block, out channels, repeats) per stage
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.99

# variant -> (width mult, depth mult, resolution, dropout, timm weights, their ImageNet top-1)
VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2, "tf_efficientnet_b0.in1k", 76.54),
    "b1": (1.0, 1.1, 240, 0.2, "tf_efficientnet_b1.in1k", 78.56),
    "b2": (1.1, 1.2, 260, 0.3, "tf_efficientnet_b2.in1k", 79.61),
    "b3": (1.2, 1.4, 300, 0.3, "tf_efficientnet_b3.in1k", 80.88),
    "b4": (1.4, 1.8, 380, 0.4, "tf_efficientnet_b4.in1k", 82.61),
    "b5": (1.6, 2.2, 456, 0.4, "tf_efficientnet_b5.in1k", 83.17),
    "b6": (1.8, 2.6, 528, 0.5, "tf_efficientnet_b6.aa_in1k", 84.12),
    "b7": (2.0, 3.1, 600, 0.5, "tf_efficientnet_b7.aa_in1k", 84.44),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF `round_filters`: scale, round to a multiple of 8, never more than 10 % down."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def grouped_hidden(cin: int, expand_ratio: float, group_width: int) -> tuple[int, int | None]:
    """(group width, hidden_channels override or None) for a block; see the module docstring."""
    hidden = int(cin * expand_ratio)
    if group_width == 1:
        return 1, None
    if expand_ratio == 1:
        return math.gcd(group_width, hidden), None
    rounded = -(-hidden // group_width) * group_width
    return group_width, (rounded if rounded != hidden else None)


def efficientnet_spec(variant: str, *, num_classes: int = 1000,
                      resolution: int | None = None, in_chans: int = 3, drop_path_rate: float = 0.2,
                      dropout: float | None = None, se_ratio: float = 0.25, group_width: int = 1,
                      act: str = "silu", width_mult: float | None = None,
                      depth_mult: float | None = None) -> ModelSpec:
    """EfficientNet `variant` (b0-b7); None takes the variant's native resolution / dropout / width and
    depth multipliers (other multipliers give e.g. the tiny CPU models of the small-scale experiment).

    The family follows the block: 'efficientnet' with squeeze-excite, 'mbconvnet' without, with a
    '_gw<G>' suffix for grouped convs (e.g. se_ratio=0, group_width=8 on any variant: 'mbconvnet_gw8').
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet variant {variant!r}; valid: {', '.join(VARIANTS)}")
    width, depth, native, variant_dropout, _, _ = VARIANTS[variant]
    width = width if width_mult is None else width_mult
    depth = depth if depth_mult is None else depth_mult
    cin = round_filters(STEM, width)
    layers = [Conv(in_chans, cin, 3, 2, norm="batch", norm_eps=BN_EPS, act=act)]
    stages = []
    for expand_ratio, kernel, stride, cout, repeats in STAGES:
        cout = round_filters(cout, width)
        for i in range(round_repeats(repeats, depth)):
            stages.append((cin, cout, kernel, stride if i == 0 else 1, expand_ratio))
            cin = cout
    for idx, (block_in, block_out, kernel, stride, expand_ratio) in enumerate(stages):
        gw, hidden = grouped_hidden(block_in, expand_ratio, group_width)
        layers.append(MBConvBlock(block_in, block_out, kernel, stride, expand_ratio, se_ratio=se_ratio,
                                  group_width=gw, act=act, norm_eps=BN_EPS, hidden_channels=hidden,
                                  drop_path=drop_path_rate * idx / len(stages)))
    head = round_filters(HEAD, width)
    layers.append(Conv(cin, head, 1, norm="batch", norm_eps=BN_EPS, act=act))
    layers.append(Head(head, num_classes, dropout=variant_dropout if dropout is None else dropout))
    family = ("efficientnet" if se_ratio > 0 else "mbconvnet") + (f"_gw{group_width}" if group_width > 1 else "")
    return ModelSpec(name=f"efficientnet_{variant}", family=family,
                     resolution=native if resolution is None else resolution, layers=tuple(layers),
                     in_chans=in_chans, bn_momentum=BN_MOMENTUM, weight_init="fan_out")


for _variant, (*_, _weights, _top1) in VARIANTS.items():
    register_model(f"efficientnet_{_variant}", top1=_top1, top1_source=f"{TIMM_RESULTS}: {_weights}")(
        functools.partial(efficientnet_spec, _variant))
# MBConvNet: B0 without squeeze-excite (a global pool breaks depth-first fusion), depthwise or grouped.
# Other sizes: any efficientnet_b* with se_ratio=0 and group_width=G.
for _gw, _suffix in ((1, ""), (8, "_gw8"), (16, "_gw16")):
    register_model(f"mbconvnet_b0{_suffix}")(
        functools.partial(efficientnet_spec, "b0", se_ratio=0.0, group_width=_gw))
