"""MACs, parameters and activation traffic of every layer, computed from the ModelSpec.

Each layer spec expands into the kernels a layer-wise (XLA-like) inference runs: BatchNorm and layer
scale folded into weights and biases, activations and residual adds fused into the epilogue of the
producing conv/GEMM; a LayerNorm, which cannot be folded, is a kernel of its own. This gives the
paper's traffic per pixel: ConvFirst (5+2E)C, MBConv (3+4E)C (paper.md section 4).

Units: MACs and activation elements are per image (they scale with the batch); weight elements are
per kernel launch (read once per batch). Multiply by `DType.element_bytes` for bytes. Parameters are
counted like the Flax models: conv/dense kernels and biases, norm scales/biases and layer scales;
BatchNorm running statistics are not parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

from convfirst.models.specs import Conv, ConvFirstBlock, Head, Layer, MBConvBlock, ModelSpec, conv_out_size


@dataclass(frozen=True)
class Kernel:
    """One kernel launch of the layer-wise execution."""

    name: str
    macs: int  # per image
    reads: int  # activation elements read per image
    writes: int  # activation elements written per image
    weights: int  # inference weight + bias elements, read once per launch

    def dram_bytes(self, batch: int, element_bytes: int) -> int:
        return (batch * (self.reads + self.writes) + self.weights) * element_bytes


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer spec (a stem/downsampling conv, a block or the head)."""

    index: int
    spec: Layer
    in_shape: tuple[int, int, int]  # (H, W, C) of the input
    out_shape: tuple[int, int, int]
    params: int
    kernels: tuple[Kernel, ...]

    @property
    def kind(self) -> str:
        return {Conv: "conv", ConvFirstBlock: "convfirst", MBConvBlock: "mbconv", Head: "head"}[type(self.spec)]

    @property
    def name(self) -> str:
        return f"{self.index:02d}.{self.kind}"

    @property
    def macs(self) -> int:
        return sum(k.macs for k in self.kernels)

    @property
    def fusable(self) -> bool:
        """Blocks run as one fused kernel in block-fused execution; other layers stay layer-wise."""
        return isinstance(self.spec, (ConvFirstBlock, MBConvBlock))

    @property
    def out_elements(self) -> int:
        """Output activation elements per image."""
        h, w, c = self.out_shape
        return h * w * c


def _norm_params(norm: str, channels: int) -> int:
    return 0 if norm == "none" else 2 * channels  # scale and bias (BatchNorm's running stats are state)


def _conv_costs(s: Conv, h: int, w: int):
    ho, wo = conv_out_size(h, s.kernel_size, s.stride, s.padding), conv_out_size(w, s.kernel_size, s.stride, s.padding)
    weight = s.kernel_size ** 2 * (s.cin // s.groups) * s.cout
    params = weight + (s.cout if s.bias else 0) + _norm_params(s.norm, s.cin if s.norm_first else s.cout)
    kernels = []
    if s.norm == "layer" and s.norm_first:
        kernels.append(Kernel("layernorm", 0, h * w * s.cin, h * w * s.cin, 2 * s.cin))
    kernels.append(Kernel(f"conv{s.kernel_size}x{s.kernel_size}/{s.stride}", ho * wo * weight,
                          h * w * s.cin, ho * wo * s.cout, weight + s.cout))
    if s.norm == "layer" and not s.norm_first:
        kernels.append(Kernel("layernorm", 0, ho * wo * s.cout, ho * wo * s.cout, 2 * s.cout))
    return (ho, wo, s.cout), params, kernels


def _convfirst_costs(s: ConvFirstBlock, h: int, w: int):
    c, m, k, g, px = s.dim, s.hidden, s.kernel_size, s.group_width, h * w
    conv_w, expand_w, project_w = k * k * g * c, c * m, m * c
    if s.norm == "batch":  # convs without bias, one BatchNorm after each
        params = conv_w + expand_w + project_w + 2 * c + 2 * m + 2 * c
    else:  # biases on all three; 'layer' adds one LayerNorm after the conv
        params = conv_w + expand_w + project_w + c + m + c + _norm_params(s.norm, c)
    params += c if s.layer_scale is not None else 0
    kernels = [Kernel(f"gconv{k}x{k}", px * c * g * k * k, px * c, px * c, conv_w + c)]
    if s.norm == "layer":
        kernels.append(Kernel("layernorm", 0, px * c, px * c, 2 * c))
    kernels += [Kernel("expand", px * c * m, px * c, px * m, expand_w + m),
                Kernel("project", px * m * c, px * m + px * c, px * c, project_w + c)]  # + residual
    return (h, w, c), params, kernels


def _mbconv_costs(s: MBConvBlock, h: int, w: int):
    c, m, co, k, g = s.cin, s.hidden, s.cout, s.kernel_size, s.group_width
    ho, wo = conv_out_size(h, k, s.stride, "SAME"), conv_out_size(w, k, s.stride, "SAME")
    px, pxo, se = h * w, ho * wo, s.se_channels
    conv_w = k * k * g * m
    params = conv_w + 2 * m + m * co + 2 * co
    kernels = []
    if s.has_expand:
        params += c * m + 2 * m
        kernels.append(Kernel("expand", px * c * m, px * c, px * m, c * m + m))
    kernels.append(Kernel(f"{'dw' if g == 1 else 'g'}conv{k}x{k}/{s.stride}", pxo * m * g * k * k,
                          px * m, pxo * m, conv_w + m))
    if se:  # global pool of the hidden map, then two tiny FCs giving a per-channel scale
        params += m * se + se + se * m + m
        kernels.append(Kernel("se", 2 * m * se, pxo * m, m, 2 * m * se + se + m))
    kernels.append(Kernel("project", pxo * m * co, pxo * m + (m if se else 0) + (pxo * c if s.has_residual else 0),
                          pxo * co, m * co + co))
    return (ho, wo, co), params, kernels


def _head_costs(s: Head, h: int, w: int):
    params = _norm_params(s.norm, s.cin) + s.cin * s.num_classes + s.num_classes
    kernels = [Kernel("avgpool", 0, h * w * s.cin, s.cin, _norm_params(s.norm, s.cin)),  # pool (+ norm)
               Kernel("fc", s.cin * s.num_classes, s.cin, s.num_classes, s.cin * s.num_classes + s.num_classes)]
    return (1, 1, s.num_classes), params, kernels


_COSTS = {Conv: _conv_costs, ConvFirstBlock: _convfirst_costs, MBConvBlock: _mbconv_costs, Head: _head_costs}


def layer_costs(spec: ModelSpec, resolution: int | None = None) -> list[LayerCost]:
    """Per-layer cost of `spec` on a square image (its own resolution unless given)."""
    r = resolution or spec.resolution
    shape = (r, r, spec.in_chans)
    out = []
    for i, layer in enumerate(spec.layers):
        cin = layer.cin if not isinstance(layer, ConvFirstBlock) else layer.dim
        if cin != shape[2]:
            raise ValueError(f"{spec.name} layer {i} ({type(layer).__name__}) expects {cin} input channels, "
                             f"gets {shape[2]}")
        out_shape, params, kernels = _COSTS[type(layer)](layer, shape[0], shape[1])
        out.append(LayerCost(i, layer, shape, out_shape, params, tuple(kernels)))
        shape = out_shape
    return out


def model_macs(spec: ModelSpec, resolution: int | None = None) -> int:
    """MACs of one image's forward pass."""
    return sum(lc.macs for lc in layer_costs(spec, resolution))


def model_params(spec: ModelSpec) -> int:
    return sum(lc.params for lc in layer_costs(spec))
