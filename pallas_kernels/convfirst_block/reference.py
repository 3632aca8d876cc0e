"""Plain-JAX reference of the ConvFirst block op: the truth every kernel is tested against.

The op is the inference form of any "spatial conv first, then inverted-bottleneck MLP" block with
norms folded into weights and biases (BatchNorm, layer scale) except a per-pixel LayerNorm, which
cannot be folded and is computed in the op:

    t = grouped_conv_kxk(x, w_conv) + b_conv            # group width G (1 = depthwise)
    t = layer_norm(t) * ln_scale + ln_bias               # only when ln_scale is not None
    h = act(t @ w_expand + b_expand)                     # C -> M
    y = h @ w_project + b_project  (+ x if residual)     # M -> C

ConvFirst (gconv 3x3 gw8, BN folded, SiLU) and ConvNeXt (dw 7x7, LN, GELU, layer scale folded)
are both this op. Matmul operands are in x.dtype with float32 accumulation; biases, norm
statistics and the activation are computed in float32; y is returned in x.dtype.

`precise=False` is the 'xla_native' implementation: the same graph as a mixed-precision Flax model
runs it, every conv and matmul returning x.dtype (XLA still accumulates in float32 inside them) and
bias, activation and residual in x.dtype; only LayerNorm statistics stay in float32. The precise
form materializes float32 intermediates between XLA's kernels: on the GPU its grouped conv runs on
float32 operands (TF32) and every 1x1 output is written in float32 (benchmarks/results/README.md).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pallas_kernels.common import hopper_reason, interpret_mode


class ConvFirstParams(NamedTuple):
    w_conv: jax.Array  # (k, k, G, C) HWIO, grouped: C // G groups of G channels
    b_conv: jax.Array | None  # (C,); None: folded into b_expand (inference copies, no LayerNorm)
    w_expand: jax.Array  # (C, M)
    b_expand: jax.Array  # (M,)
    w_project: jax.Array  # (M, C)
    b_project: jax.Array  # (C,)
    ln_scale: jax.Array | None = None  # (C,) per-pixel LayerNorm after the conv, if any
    ln_bias: jax.Array | None = None

    def conv_bias(self) -> jax.Array:
        """b_conv, or zeros where it was folded into b_expand (kernels that take a bias vector)."""
        return jnp.zeros(self.w_conv.shape[-1], jnp.float32) if self.b_conv is None else self.b_conv

    def key_form(self, *, group_width: int, **_) -> "ConvFirstParams":
        """The form the tuning cache keys on: a folded conv bias or a widened conv weight is the same
        problem for speed (the tuned kernels take t from the conv)."""
        k, _, _, c = self.w_conv.shape
        key = self._replace(w_conv=jax.ShapeDtypeStruct((k, k, group_width, c), self.w_conv.dtype))
        if self.b_conv is not None:
            return key
        return key._replace(b_conv=jax.ShapeDtypeStruct((c,), jnp.float32))

    def with_native_conv(self, group_width: int) -> "ConvFirstParams":
        """The conv weight at its group width, for kernels that build their own conv operands: an
        inference copy may hold it widened for cuDNN (`compute_conv_weight`). Any other width is left
        as it is, for the kernel's check to refuse. Gradients with respect to a widened weight from the
        XLA-backed backwards are dense (not block-diagonal): train the native weights."""
        if self.w_conv.shape[2] != GPU_CONV_GROUP_WIDTH.get(group_width):
            return self
        return self._replace(w_conv=narrow_groups(self.w_conv, group_width))

    def with_conv_bias_folded(self) -> "ConvFirstParams":
        """(t + b) W1 + b1 = t W1 + (b W1 + b1), in float32: the inference form without the conv bias.
        Only without LayerNorm between conv and expand."""
        if self.ln_scale is not None or self.b_conv is None:
            return self
        b = self.b_expand + jnp.dot(self.b_conv, self.w_expand, precision="highest")
        return self._replace(b_conv=None, b_expand=b)


ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu": lambda v: jax.nn.gelu(v, approximate=False),
    "gelu_tanh": lambda v: jax.nn.gelu(v, approximate=True),
    "relu": jax.nn.relu,
    "none": lambda v: v,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}") from None


def grouped_conv(x, w, group_width: int, stride: int = 1, out_dtype=jnp.float32):
    """'Same'-padded k x k grouped conv, NHWC/HWIO, f32 accumulation, result in `out_dtype`. The groups
    follow the weight: (k, k, group_width, C), or a wider block-diagonal form of it (`widen_groups`)."""
    c, g = w.shape[-1], w.shape[2]
    if g % group_width or c % g:
        raise ValueError(f"grouped_conv: weight {w.shape} does not hold groups of width {group_width} "
                         f"(its third axis must be a multiple of {group_width} dividing C={c})")
    return jax.lax.conv_general_dilated(
        x, w.astype(x.dtype), window_strides=(stride, stride), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c // g,
        preferred_element_type=out_dtype)


# group width -> the width the compute-dtype graph runs a 3x3 grouped conv at on Hopper. cuDNN picks its
# sm80 engine at width 8 and an sm90 (wgmma) engine at width 16: twice the MACs, 1.2-2.4x faster (H200,
# bf16, batch 128, run ZT, benchmarks/results/mosaic_mlp/probe_grouped_conv_widened.json: 0.156 -> 0.065
# ms at 56x56x64, 0.055 -> 0.035 at 28x28x128, 0.028 -> 0.020 at 14x14x256, 0.015 -> 0.0125 at 7x7x512).
GPU_CONV_GROUP_WIDTH = {8: 16}


def _on_hopper() -> bool:
    """Compiling for an sm_90 GPU (or lowering for the abstract H100 on any host): where run ZT measured
    the widened conv faster. Elsewhere it would only double the conv's MACs."""
    return not interpret_mode() and hopper_reason() is None


def _widened_width(w, group_width: int, dtype, widen: bool | None) -> int | None:
    """The width GPU_CONV_GROUP_WIDTH runs this conv at, or None to keep the weight as given."""
    k, _, g, c = w.shape
    wide = GPU_CONV_GROUP_WIDTH.get(group_width)
    if widen is None:
        widen = _on_hopper() and jnp.dtype(dtype).itemsize == 2
    return wide if widen and k == 3 and g == group_width and wide and c % wide == 0 else None


def compute_conv_weight(w, group_width: int, dtype, *, widen: bool | None = None):
    """The conv weight as the compute-dtype graph's forward takes it: in `dtype` and, on a Hopper GPU
    (`widen=None`) with a 2-byte dtype, at the width GPU_CONV_GROUP_WIDTH names (`widen_groups`:
    exact). Inference copies store it in this form (no per-call cast and scatter kernels); a weight
    already widened passes through."""
    wide = _widened_width(w, group_width, dtype, widen)
    w = w.astype(dtype)
    return w if wide is None else widen_groups(w, group_width, wide)


def compute_grouped_conv(x, w, group_width: int, *, out_dtype, widen: bool | None = None):
    """The grouped conv as the compute-dtype ('xla_native') graph runs it: x.dtype operands, the
    forward on the weight per `compute_conv_weight`. Derivatives stay at the native width: widened,
    the step's data and weight gradients cost more than the forward saves (run ZV: 18.63 against
    17.96 ms of kernels per training step, the gradient's scatter included), so a custom JVP gives the
    native conv's (forward and reverse mode). The float32 reference keeps the weight as given."""
    if _widened_width(w, group_width, x.dtype, widen) is None:
        return grouped_conv(x, w.astype(x.dtype), group_width, out_dtype=out_dtype)
    return _forward_widened_conv(x, w, group_width, jnp.dtype(out_dtype))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _forward_widened_conv(x, w, group_width, out_dtype):
    return grouped_conv(x, compute_conv_weight(w, group_width, x.dtype, widen=True), group_width, out_dtype=out_dtype)


@_forward_widened_conv.defjvp
def _forward_widened_conv_jvp(group_width, out_dtype, primals, tangents):
    """The derivative at the native width (reverse mode transposes it: cuDNN's dgrad and wgrad of the
    group-width-8 conv)."""
    (x, w), (dx, dw) = primals, tangents
    conv = lambda a, b: grouped_conv(a, b.astype(a.dtype), group_width, out_dtype=out_dtype)  # noqa: E731
    return _forward_widened_conv(x, w, group_width, out_dtype), conv(dx, w) + conv(x, dw)


def widen_groups(w, group_width: int, new_width: int):
    """The same grouped conv's weight (k, k, group_width, C) as one of group width `new_width` (a
    multiple of it dividing C): block-diagonal, zeros between the original groups. new_width / group_width
    times the MACs, but cuDNN runs wide groups on tensor cores at far higher throughput than width 8.
    Exact: each output still sums the same products (the zeros add nothing)."""
    k1, k2, g, c = w.shape
    if g != group_width or new_width % group_width or c % new_width:
        raise ValueError(f"widen_groups: weight {w.shape} of group width {group_width} cannot become group "
                         f"width {new_width}; it must be a multiple of {group_width} dividing C={c}")
    return jnp.zeros((k1, k2, new_width, c), w.dtype).at[_diagonal(c, new_width, group_width)].set(w)


def narrow_groups(w, group_width: int):
    """`widen_groups` undone: the (k, k, group_width, C) weight on the block diagonal of a wider one."""
    return w[_diagonal(w.shape[3], w.shape[2], group_width)]


def _diagonal(c: int, wide: int, group_width: int):
    """Index of the (group_width, C) native weights in a (wide, C) block-diagonal one (last two axes)."""
    o = jnp.arange(c)
    return slice(None), slice(None), (o % wide) // group_width * group_width + jnp.arange(group_width)[:, None], o


def layer_norm(t, scale, bias, eps: float):
    """Per-pixel LayerNorm over channels in float32."""
    mean = t.mean(-1, keepdims=True)
    var = jnp.square(t - mean).mean(-1, keepdims=True)
    return (t - mean) * jax.lax.rsqrt(var + eps) * scale.astype(jnp.float32) + bias.astype(jnp.float32)


def dense(x, w, b, out_dtype=jnp.float32):
    """x @ w + b with operands in x.dtype, f32 accumulation and the result (and bias add) in `out_dtype`."""
    return jnp.einsum("...c,cm->...m", x, w.astype(x.dtype),
                      preferred_element_type=out_dtype) + b.astype(out_dtype)


def conv_norm(x, p: ConvFirstParams, *, group_width: int, ln_eps: float = 1e-6, precise: bool = True):
    """t = norm(gconv(x) + b_conv), the block's input to its MLP, in float32 (precise) or x.dtype.
    Kernels that take t from XLA call this too: inside one jit XLA then merges their forward's t with
    the one the autodiff backward ('xla_native') recomputes, instead of computing it twice."""
    if precise:  # intermediates in float32 (see the module docstring)
        t = grouped_conv(x, p.w_conv, group_width)
    else:
        t = compute_grouped_conv(x, p.w_conv, group_width, out_dtype=x.dtype)
    mid = t.dtype
    if p.b_conv is not None:
        t = t + p.b_conv.astype(mid)
    if p.ln_scale is not None:
        t = layer_norm(t.astype(jnp.float32), p.ln_scale, p.ln_bias, ln_eps).astype(mid)
    return t


def convfirst_block_reference(x, p: ConvFirstParams, *, group_width: int, act: str = "silu",
                              residual: bool = True, ln_eps: float = 1e-6, precise: bool = True):
    dtype = x.dtype
    mid = jnp.float32 if precise else dtype
    t = conv_norm(x, p, group_width=group_width, ln_eps=ln_eps, precise=precise)
    h = activation(act)(dense(t.astype(dtype), p.w_expand, p.b_expand, mid))
    y = dense(h.astype(dtype), p.w_project, p.b_project, mid)
    if residual:
        y = y + x.astype(mid)
    return y.astype(dtype)
