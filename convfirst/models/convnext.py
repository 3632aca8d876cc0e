"""ConvNeXt T/S/B/L (Liu et al., CVPR 2022), exactly as the official `convnext.py` and timm.

Layout (also the ConvFirstNet macro layout, hence `convnext_layout` is shared):
stem Conv 4x4/4 (+bias) -> LN; 4 stages of blocks; between stages LN -> Conv 2x2/2 (+bias);
head: global average pool -> LN -> Dense. LayerNorms have eps 1e-6.
Block = `specs.ConvFirstBlock(kernel_size=7, group_width=1, norm='layer', act='gelu', layer_scale=1e-6)`:
dw 7x7 (+bias) -> LN -> Dense 4C (+bias) -> exact GELU -> Dense C (+bias) -> layer scale -> drop-path -> +x.
Stochastic depth rises linearly from 0 to drop_path_rate over all blocks (torch.linspace).
Parameter counts equal timm's (tiny 28,589,128; tests/test_models.py checks all four).
"""
from __future__ import annotations

import functools

from convfirst.models.registry import TIMM_RESULTS, register_model
from convfirst.models.specs import Conv, ConvFirstBlock, Head, ModelSpec

# variant -> (depths, dims, published top-1 of timm's convnext_<variant>.fb_in1k at 224)
VARIANTS = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768), 82.07),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768), 83.14),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024), 83.83),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536), 84.30),
}


def linspace_rates(rate: float, n: int) -> list[float]:
    """Stochastic-depth rate per block: 0 ... rate inclusive, linear over all n blocks (ConvNeXt)."""
    return [rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


def convnext_layout(*, name: str, family: str, depths, dims, block: dict, in_chans: int, num_classes: int,
                    resolution: int, drop_path_rate: float, stem_kernel: int = 4, stem_stride: int = 4,
                    **model_fields) -> ModelSpec:
    """Patchify stem, stages of ConvFirst blocks with 2x2/2 downsampling convs, pool-norm-FC head.

    The stem/downsampling norms follow the block norm (`block['norm']`, `block['norm_eps']`): 'layer'
    is ConvNeXt (norm after the stem conv, before each downsampling conv); 'batch' puts the BatchNorm
    after each conv (convs without bias; foldable); 'none' has biases and no norms.
    """
    norm, eps = block["norm"], block["norm_eps"]
    bias = norm != "batch"
    layers = [Conv(in_chans, dims[0], stem_kernel, stem_stride, bias=bias, norm=norm, norm_eps=eps,
                   padding="VALID" if stem_kernel == stem_stride else "SAME")]
    rates = iter(linspace_rates(drop_path_rate, sum(depths)))
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage:
            layers.append(Conv(dims[stage - 1], dim, 2, 2, bias=bias, norm=norm, norm_first=norm == "layer",
                               norm_eps=eps, padding="VALID"))
        layers.extend(ConvFirstBlock(dim=dim, drop_path=next(rates), **block) for _ in range(depth))
    # The head norm is a LayerNorm unless norms are off: BatchNorm on pooled (B, C) features would
    # depend on the batch (and collapse at one image per device); it is outside the fused blocks anyway.
    layers.append(Head(dims[-1], num_classes, norm="none" if norm == "none" else "layer", norm_eps=1e-6))
    return ModelSpec(name=name, family=family, resolution=resolution, layers=tuple(layers),
                     in_chans=in_chans, **model_fields)


def convnext_spec(variant: str, *, num_classes: int = 1000, resolution: int = 224, in_chans: int = 3,
                  drop_path_rate: float = 0.0, kernel_size: int = 7, group_width: int = 1,
                  expand_ratio: float = 4.0, act: str = "gelu", layer_scale: float | None = 1e-6) -> ModelSpec:
    """ConvNeXt `variant` (tiny/small/base/large); the defaults are the official model. The official
    training uses drop_path_rate 0.1/0.4/0.5/0.5 (T/S/B/L); `group_width` > 1 gives grouped variants."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ConvNeXt variant {variant!r}; valid: {', '.join(VARIANTS)}")
    depths, dims, _ = VARIANTS[variant]
    block = dict(kernel_size=kernel_size, group_width=group_width, expand_ratio=expand_ratio, norm="layer",
                 norm_eps=1e-6, act=act, layer_scale=layer_scale)
    return convnext_layout(name=f"convnext_{variant}", family="convnext", depths=depths, dims=dims,
                           block=block, in_chans=in_chans, num_classes=num_classes, resolution=resolution,
                           drop_path_rate=drop_path_rate)


for _variant, (_, _, _top1) in VARIANTS.items():
    register_model(f"convnext_{_variant}", top1=_top1,
                   top1_source=f"{TIMM_RESULTS}: convnext_{_variant}.fb_in1k @224")(
        functools.partial(convnext_spec, _variant))
