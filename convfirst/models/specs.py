"""Declarative model descriptions shared by the Flax models and the cost model.

A model is a `ModelSpec`: an ordered tuple of layer specs (stem, blocks, downsampling, head).
The Flax modules are built from these specs and the cost model reads the very same specs, so the
MACs we report cannot drift from the network we run (a test checks both against a jaxpr count).

Conventions: NHWC activations; `group_width` is channels per group (1 = depthwise);
padding 'SAME' is TensorFlow's (asymmetric for stride 2), 'VALID' is used for patchify convs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

NORMS = ("batch", "layer", "none")
ACTS = ("silu", "gelu", "gelu_tanh", "relu", "none")
# "trunc_normal": conv/dense weights ~ trunc_normal(std=0.02), zero bias (ConvNeXt);
# "fan_out": conv ~ N(0, 2/fan_out), fan_out = k*k*cout/groups; classifier ~ U(+-1/sqrt(classes)) (EfficientNet)
WEIGHT_INITS = ("trunc_normal", "fan_out")


def _check(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(map(str, allowed))}")


@dataclass(frozen=True)
class Conv:
    """A plain conv with optional norm and activation (stems, downsampling, EfficientNet head conv).

    `norm_first` puts the norm before the conv (ConvNeXt's downsampling layers).
    """

    cin: int
    cout: int
    kernel_size: int
    stride: int = 1
    groups: int = 1
    bias: bool = False
    norm: str = "none"
    norm_first: bool = False
    norm_eps: float = 1e-5
    act: str = "none"
    padding: str = "SAME"

    def __post_init__(self):
        _check(self.norm, NORMS, "norm")
        _check(self.act, ACTS, "activation")
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(f"channels {self.cin}->{self.cout} not divisible by groups={self.groups}")

    @property
    def out_channels(self) -> int:
        return self.cout


@dataclass(frozen=True)
class ConvFirstBlock:
    """Spatial conv first, then an inverted-bottleneck MLP, then the residual.

    norm='batch' (the paper's/spio's block): gconv -> BN -> 1x1 expand -> BN -> act -> 1x1 project -> BN.
    norm='layer': gconv(+bias) -> per-pixel LayerNorm -> expand(+bias) -> act -> project(+bias): one norm,
        placed where a fused kernel can compute it (a norm on the E*C hidden width would need the whole
        hidden vector before the activation and break streaming over hidden chunks).
    norm='none': gconv, expand and project with biases.
    ConvNeXt's block is this block with kernel_size=7, group_width=1, norm='layer', act='gelu',
    layer_scale=1e-6: both families run through the same block op and kernels.
    """

    dim: int
    kernel_size: int = 3
    group_width: int = 8
    expand_ratio: float = 4.0
    norm: str = "batch"
    norm_eps: float = 1e-5
    act: str = "silu"
    layer_scale: float | None = None
    drop_path: float = 0.0

    def __post_init__(self):
        _check(self.norm, NORMS, "norm")
        _check(self.act, ACTS, "activation")
        if self.dim % self.group_width:
            raise ValueError(f"dim={self.dim} is not divisible by group_width={self.group_width}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {self.kernel_size}")

    @property
    def hidden(self) -> int:
        return int(round(self.dim * self.expand_ratio))

    @property
    def groups(self) -> int:
        return self.dim // self.group_width

    @property
    def out_channels(self) -> int:
        return self.dim

    @property
    def stride(self) -> int:
        return 1


@dataclass(frozen=True)
class MBConvBlock:
    """Inverted residual: [1x1 expand -> BN -> act] -> kxk grouped/depthwise -> BN -> act -> [SE] -> 1x1 -> BN.

    `se_ratio` is relative to the block *input* channels (EfficientNet); 0 disables squeeze-excite.
    The residual (with drop-connect) applies only when stride == 1 and cin == cout.
    """

    cin: int
    cout: int
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float = 6.0
    se_ratio: float = 0.25
    group_width: int = 1
    act: str = "silu"
    norm_eps: float = 1e-3
    drop_path: float = 0.0
    # Overrides int(cin * expand_ratio), e.g. rounded up to a multiple of group_width (only with an expand conv).
    hidden_channels: int | None = None

    def __post_init__(self):
        _check(self.act, ACTS, "activation")
        if self.hidden_channels is not None and not self.has_expand and self.hidden_channels != self.cin:
            raise ValueError(f"hidden_channels={self.hidden_channels} needs an expand conv (expand_ratio != 1)")
        if self.hidden % self.group_width:
            raise ValueError(f"hidden={self.hidden} is not divisible by group_width={self.group_width}")

    @property
    def hidden(self) -> int:
        if self.hidden_channels is not None:
            return self.hidden_channels
        return int(self.cin * self.expand_ratio)

    @property
    def has_expand(self) -> bool:
        return self.expand_ratio != 1

    @property
    def se_channels(self) -> int:
        return max(1, int(self.cin * self.se_ratio)) if self.se_ratio > 0 else 0

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout

    @property
    def groups(self) -> int:
        return self.hidden // self.group_width

    @property
    def out_channels(self) -> int:
        return self.cout


@dataclass(frozen=True)
class Head:
    """Global average pool -> [norm] -> [dropout] -> Dense(num_classes)."""

    cin: int
    num_classes: int
    norm: str = "none"
    norm_eps: float = 1e-6
    dropout: float = 0.0

    @property
    def out_channels(self) -> int:
        return self.num_classes


Layer = Conv | ConvFirstBlock | MBConvBlock | Head


@dataclass(frozen=True)
class ModelSpec:
    """A whole network: `layers` run in order on an NHWC image of `resolution` x `resolution`."""

    name: str
    family: str
    resolution: int
    layers: tuple[Layer, ...]
    in_chans: int = 3
    bn_momentum: float = 0.9  # Flax convention (running = m * running + (1 - m) * batch); PyTorch's 0.1 = 0.9
    weight_init: str = "trunc_normal"  # one of WEIGHT_INITS

    def __post_init__(self):
        _check(self.weight_init, WEIGHT_INITS, "weight_init")

    @property
    def num_classes(self) -> int:
        return self.layers[-1].num_classes

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


def conv_out_size(size: int, kernel_size: int, stride: int, padding: str) -> int:
    """Spatial output size; 'SAME' is ceil(size/stride), 'VALID' is floor((size-k)/stride)+1."""
    if padding == "SAME":
        return -(-size // stride)
    return (size - kernel_size) // stride + 1
