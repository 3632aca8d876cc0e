"""Small pieces shared by every model family: initializers, norms, drop-path, squeeze-excite, and the
two non-residual layers (`ConvNormAct` for stems/downsampling/head convs, `ClassifierHead`).

Precision policy: parameters are float32; convs and dense layers run in the compute `dtype`;
norm statistics are float32 (Flax computes them in at least float32); the classifier head and its
logits are float32.
"""
from __future__ import annotations

from math import prod

import jax
import jax.numpy as jnp
from flax import nnx

from convfirst.models import specs
from convfirst.models.folding import fold_batchnorm
from pallas_kernels.convfirst_block.reference import activation  # one activation table for models and kernels
from pallas_kernels.mbconv_block.reference import SqueezeExcite as SqueezeExciteParams

__all__ = ["ClassifierHead", "ConvNormAct", "SqueezeExcite", "activation", "conv_init", "dense_init",
           "drop_path", "norm_layer"]


def conv_init(weight_init: str, groups: int = 1):
    """Kernel initializer for a conv (k, k, cin/groups, cout) or a 1x1 conv stored as dense (cin, cout).

    'fan_out' is timm's `_init_weight_goog`: N(0, 2 / fan_out) with fan_out = k*k*cout/groups, so a
    depthwise conv gets fan_out = k*k (Flax's variance_scaling would ignore the groups).
    """
    if weight_init == "trunc_normal":
        return nnx.initializers.truncated_normal(stddev=0.02)

    def fan_out_normal(key, shape, dtype=jnp.float32):
        fan_out = prod(shape[:-2]) * shape[-1] // groups
        return jax.random.normal(key, shape, dtype) * jnp.sqrt(2.0 / fan_out).astype(dtype)

    return fan_out_normal


def dense_init(weight_init: str):
    """Classifier initializer: trunc_normal(0.02), or U(+-1/sqrt(num_classes)) for 'fan_out' (timm goog)."""
    if weight_init == "trunc_normal":
        return nnx.initializers.truncated_normal(stddev=0.02)

    def uniform_out(key, shape, dtype=jnp.float32):
        bound = 1.0 / jnp.sqrt(shape[-1])
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return uniform_out


def norm_layer(norm: str, channels: int, *, eps: float, momentum: float, dtype, rngs: nnx.Rngs):
    """BatchNorm, per-pixel LayerNorm (over channels) or None for norm='none'."""
    if norm == "batch":
        return nnx.BatchNorm(channels, epsilon=eps, momentum=momentum, dtype=dtype, rngs=rngs)
    if norm == "layer":
        return nnx.LayerNorm(channels, epsilon=eps, dtype=dtype, rngs=rngs)
    if norm == "none":
        return None
    raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(specs.NORMS)}")


def drop_path(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    """Stochastic depth: drops a whole sample's residual branch (dropout broadcast over H, W, C)."""
    return nnx.Dropout(rate, broadcast_dims=(1, 2, 3), rngs=rngs)


class SqueezeExcite(nnx.Module):
    """EfficientNet SE: mean over H, W -> dense(+bias) -> act -> dense(+bias) -> sigmoid gate.

    Computed in float32 like the MBConv op's reference; `params()` gives the op's SqueezeExcite tuple.
    """

    def __init__(self, channels: int, se_channels: int, *, act: str, weight_init: str, rngs: nnx.Rngs):
        kernel_init = conv_init(weight_init)
        self.reduce = nnx.Linear(channels, se_channels, kernel_init=kernel_init, rngs=rngs)
        self.expand = nnx.Linear(se_channels, channels, kernel_init=kernel_init, rngs=rngs)
        self.act = act

    def params(self) -> SqueezeExciteParams:
        return SqueezeExciteParams(self.reduce.kernel[...], self.reduce.bias[...],
                                   self.expand.kernel[...], self.expand.bias[...])

    def __call__(self, h):
        s = activation(self.act)(self.reduce(h.astype(jnp.float32).mean((1, 2))))
        s = jax.nn.sigmoid(self.expand(s))
        return (h * s[:, None, None, :]).astype(h.dtype)


class ConvNormAct(nnx.Module):
    """A `specs.Conv`: [norm ->] conv -> [norm] -> [act] (norm before the conv when spec.norm_first)."""

    def __init__(self, spec: specs.Conv, *, model: specs.ModelSpec, dtype, rngs: nnx.Rngs):
        self.spec = spec
        self.conv = nnx.Conv(spec.cin, spec.cout, (spec.kernel_size,) * 2, (spec.stride,) * 2,
                             padding=spec.padding, feature_group_count=spec.groups, use_bias=spec.bias,
                             dtype=dtype, kernel_init=conv_init(model.weight_init, spec.groups), rngs=rngs)
        channels = spec.cin if spec.norm_first else spec.cout
        self.norm = norm_layer(spec.norm, channels, eps=spec.norm_eps, momentum=model.bn_momentum,
                               dtype=dtype, rngs=rngs)

    def freeze(self, dtype) -> None:
        """Inference form (`ConvNet.for_inference`): a BatchNorm after the conv folded into the conv's
        kernel and bias under its running statistics (in float32, then cast to the compute `dtype`
        once), so the forward runs the conv, or the patchify GEMM, with a bias instead of two more
        elementwise passes over its output (the stem's and the downsampling convs' BatchNorm took
        ~0.1 ms of convfirst_tiny's 3.9 ms folded forward on the H200, run X). A norm before the conv
        and a LayerNorm stay. Training the copy is refused by its residual blocks."""
        if self.spec.norm_first or not isinstance(self.norm, nnx.BatchNorm):
            return
        conv = self.conv
        w, b = fold_batchnorm(conv.kernel[...], None if conv.bias is None else conv.bias[...], self.norm)
        conv.kernel, conv.bias, self.norm = nnx.Param(w.astype(dtype)), nnx.Param(b.astype(dtype)), None
        conv.use_bias = True  # nnx.Conv adds its bias only under this flag (the layer was built without one)

    def __call__(self, x):
        if self.norm is not None and self.spec.norm_first:
            x = self.norm(x)
        x = self._patchify(x) if self._is_narrow_patchify() else self.conv(x)
        if self.norm is not None and not self.spec.norm_first:
            x = self.norm(x)
        return activation(self.spec.act)(x)

    def _is_narrow_patchify(self) -> bool:
        """A stem on a few input channels with non-overlapping windows (ConvNeXt's 4x4/4 on RGB):
        cuDNN has no tensor-core kernel below 8 input channels and ran it on its generic engine
        (`convolve_common_engine_float_NHWC`: 0.17 ms of convfirst_tiny's 4.6 ms forward at batch 128
        on the H200, benchmarks/results/mosaic_mlp/bench_models_h200.jsonl), so it runs as one GEMM."""
        s = self.spec
        return s.kernel_size == s.stride > 1 and s.padding == "VALID" and s.groups == 1 and s.cin < 8

    def _patchify(self, x):
        """The same conv as `self.conv`: each k x k window flattened (kh, kw, cin, as the HWIO kernel)
        and multiplied by the kernel as a (k*k*cin, cout) matrix, in the conv's dtype and precision."""
        conv, k = self.conv, self.spec.kernel_size
        n, h, w, c = x.shape
        ho, wo = h // k, w // k  # VALID: a remainder row/column of pixels is dropped
        x = x[:, :ho * k, :wo * k].reshape(n, ho, k, wo, k, c).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(n, ho, wo, k * k * c).astype(conv.dtype or jnp.result_type(x, conv.kernel[...]))
        kernel = conv.kernel[...].astype(x.dtype).reshape(k * k * c, -1)
        y = jnp.einsum("nhwc,cd->nhwd", x, kernel, precision=conv.precision,
                       preferred_element_type=conv.preferred_element_type)
        return y if conv.bias is None else y + conv.bias[...].astype(y.dtype)


class ClassifierHead(nnx.Module):
    """A `specs.Head`: global average pool -> [norm] -> [dropout] -> dense, all in float32."""

    def __init__(self, spec: specs.Head, *, model: specs.ModelSpec, rngs: nnx.Rngs):
        self.spec = spec
        self.norm = norm_layer(spec.norm, spec.cin, eps=spec.norm_eps, momentum=model.bn_momentum,
                               dtype=jnp.float32, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.fc = nnx.Linear(spec.cin, spec.num_classes, kernel_init=dense_init(model.weight_init),
                             dtype=jnp.float32, rngs=rngs)

    def __call__(self, x):
        x = x.astype(jnp.float32).mean((1, 2))
        if self.norm is not None:
            x = self.norm(x)
        return self.fc(self.dropout(x))
