"""Helpers shared by the Pallas (Triton backend) kernels: interpret mode, padding, lowering checks."""
from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp

H100_DEVICE_KIND = "NVIDIA H100 80GB HBM3"
SUPPORTED_DTYPES = (jnp.bfloat16, jnp.float16)


_COMPILE_FOR_GPU = contextvars.ContextVar("compile_for_gpu", default=False)


def interpret_mode() -> bool:
    """Pallas kernels run natively on GPU and in the HLO interpreter elsewhere (tests on CPU),
    except inside `lower_for_h100`, which lowers the real GPU kernel on any host."""
    return jax.default_backend() != "gpu" and not _COMPILE_FOR_GPU.get()


@contextlib.contextmanager
def compiling_for_gpu():
    token = _COMPILE_FOR_GPU.set(True)
    try:
        yield
    finally:
        _COMPILE_FOR_GPU.reset(token)


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def pixel_rows(a, multiple: int):
    """(..., C) -> (pixels, C), zero rows appended up to a multiple of `multiple` (a kernel's row
    tile); the caller slices the first pixels back out of the result."""
    flat = a.reshape(-1, a.shape[-1])
    return pad_axis(flat, 0, -(-flat.shape[0] // multiple) * multiple)


def pad_axis(a, axis: int, size: int):
    """Zero-pad `a` along `axis` to `size` (weights only: cheap, done outside the kernels)."""
    extra = size - a.shape[axis]
    if extra == 0:
        return a
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, extra)
    return jnp.pad(a, widths)


def hopper_reason() -> str | None:
    """None on a Hopper GPU (sm_90: wgmma) or a device without a compute capability (the host while
    lowering for the abstract H100), else why not."""
    device = jax.devices()[0]
    cc = getattr(device, "compute_capability", None)
    if cc is not None and not str(cc).startswith("9."):
        return f"needs a Hopper GPU (wgmma, sm_90); {device.device_kind} is compute capability {cc}"
    return None


def dtype_reason(x) -> str | None:
    if x.dtype not in SUPPORTED_DTYPES:
        return f"dtype {x.dtype} is not supported (kernels take bfloat16 or float16 activations)"
    return None


def lower_for_h100(fn, *args):
    """Lower `fn(*args)` (jax.ShapeDtypeStruct args allowed) for an abstract H100 on any host.

    Catches Triton/Mosaic lowering errors (power-of-2 shapes, unsupported primitives, SMEM overflow
    in Mosaic) on CPU before a GPU is at hand. Returns the lowered module text.
    """
    from jax.sharding import AbstractDevice, AbstractMesh

    mesh = AbstractMesh((1,), ("x",), abstract_device=AbstractDevice(
        device_kind=H100_DEVICE_KIND, num_cores=132, platform="gpu"))
    with jax.sharding.use_abstract_mesh(mesh), compiling_for_gpu():
        lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    return lowered.as_text()


def _erf(x):
    """erf for kernels without an erf primitive (Pallas Triton): Abramowitz & Stegun 7.1.26,
    |error| < 1.5e-7, far below bf16/fp16 resolution."""
    a1, a2, a3, a4, a5, p = 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429, 0.3275911
    s = jnp.sign(x)
    z = jnp.abs(x)
    t = 1.0 / (1.0 + p * z)
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    return s * (1.0 - poly * jnp.exp(-z * z))


KERNEL_ACTIVATIONS = {
    "silu": lambda v: v / (1.0 + jnp.exp(-v)),
    "gelu": lambda v: 0.5 * v * (1.0 + _erf(v * 0.7071067811865476)),
    "gelu_tanh": lambda v: 0.5 * v * (1.0 + jnp.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))),
    "relu": lambda v: jnp.maximum(v, 0.0),
    "none": lambda v: v,
}


def kernel_activation(name: str):
    """Activations written with primitives every Pallas GPU backend lowers (f32 in, f32 out)."""
    try:
        return KERNEL_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(KERNEL_ACTIVATIONS)}") from None


def _silu_and_grad(v):
    s = 1.0 / (1.0 + jnp.exp(-v))
    return v * s, s * (1.0 + v * (1.0 - s))


def _gelu_tanh_and_grad(v):
    k, c = 0.7978845608028654, 0.044715
    th = jnp.tanh(k * (v + c * v * v * v))
    return 0.5 * v * (1.0 + th), 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * k * (1.0 + 3.0 * c * v * v)


# act(v) and act'(v) written out: forward-mode autodiff of KERNEL_ACTIVATIONS emits integer powers
# (1/x^2) that Mosaic GPU does not lower. None: the derivative is 1.
KERNEL_ACTIVATION_GRADS = {
    "silu": _silu_and_grad,
    "gelu_tanh": _gelu_tanh_and_grad,
    "relu": lambda v: (jnp.maximum(v, 0.0), jnp.where(v > 0.0, 1.0, 0.0)),
    "none": lambda v: (v, None),
}


def store_rows(rows, valid, n_rows: int):
    """Row indices for a masked store: masked-off lanes point one past the last row.

    Clamping them into range instead would alias valid rows: interpret mode discharges a masked
    store as a scatter of where(mask, new, old), so a masked lane aliasing a valid one can write the
    stale value back (unwritten outputs then read as NaN). Out-of-range scatter lanes are dropped;
    on the GPU masked lanes are never dereferenced.
    """
    return jnp.where(valid, rows, n_rows)


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def relative_l2(y, ref) -> float:
    """||y - ref|| / ||ref|| in float64 (kernel outputs vs a float32 reference)."""
    import numpy as np

    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def mismatch(y, ref, dtype, depth: int, scale: float = 1.0) -> str | None:
    """None when y (a kernel output in `dtype`) matches a float32 reference: fully written (finite),
    relative L2 error within the dtype/depth tolerance (times `scale`), and no single element far
    off (a wrong border pixel or a dropped tile hides in an L2 norm); else what is wrong. The kernel
    tests and the autotuner judge outputs by this one rule."""
    import numpy as np

    y, ref = np.asarray(jnp.asarray(y).astype(jnp.float32)), np.asarray(ref, np.float32)
    if y.shape != ref.shape:
        return f"shape {y.shape} != reference shape {ref.shape}"
    if not np.isfinite(y).all():
        return f"{(~np.isfinite(y)).sum()} of {y.size} outputs unwritten or non-finite"
    err, tol = relative_l2(y, ref), scale * rel_tolerance(dtype, depth)
    if err >= tol:
        return f"relative L2 error {err:.2e} >= {tol:.2e}"
    worst = np.abs(y - ref).max() / np.sqrt(np.mean(np.square(ref)))
    if worst >= 8 * tol:
        return f"max error {worst:.2e} x rms(ref) >= {8 * tol:.2e}"
    return None


def rel_tolerance(dtype, depth: int) -> float:
    """Relative-L2 error bound for a kernel in `dtype` against a float32 reference computed from the
    same rounded inputs: a few roundings of intermediates to `dtype` (unit roundoff u) whose errors
    grow slowly with the accumulation depth. bf16: ~1.5e-2 at depth 9, ~2.5e-2 at depth 1152;
    fp16 8x tighter."""
    import math

    u = float(jnp.finfo(dtype).eps) / 2
    return 2 * u * math.sqrt(max(1.0, math.log2(depth)))
