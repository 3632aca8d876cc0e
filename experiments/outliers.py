"""Timings to discard: XLA programs whose convolution autotuner went wrong in their process.

On the H100 and H200 (jax 0.11.2, bf16) about one process in twenty compiled a depthwise
convolution to cuDNN's FFT engines or its fp32 reference engine, 3-15x slower than the same
program compiled in another process (efficientnet_b5 200 vs 69 ms, convnext_tiny 103 vs 13 ms per
batch). The CUPTI kernel list of such a run names those engines; a cell that shows them is recorded
with status 'outlier' and run again in a fresh process. Pure Python: the runner imports it.
"""
from __future__ import annotations

# Substrings of kernel names: cuDNN FFT convolution, and its generic engine with fp32 operands
# (convolve_common_engine_float_NHWC<float, float, ...>) in a program whose operands are 16-bit.
FFT_MARKS = ("fft2d_",)
FP32_ENGINE_MARKS = ("convolve_common_engine_float_NHWCIff",)
REDUCED_DTYPES = ("bf16", "fp16", "bfloat16", "float16")


def _kernel_lists(obj):
    """Every `per_kernel` list [(name, ms), ...] inside a cell result."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "per_kernel" and isinstance(value, list):
                yield value
            else:
                yield from _kernel_lists(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _kernel_lists(value)


def outlier_reason(result, dtype: str) -> str | None:
    """Why a cell's timing is an autotuning outlier, or None when its kernels look normal."""
    marks = FFT_MARKS + (FP32_ENGINE_MARKS if dtype in REDUCED_DTYPES else ())
    hits: dict[str, list[float]] = {}
    for kernels in _kernel_lists(result):
        for name, ms in kernels:
            mark = next((m for m in marks if m in str(name)), None)
            if mark:
                hits.setdefault(mark, []).append(float(ms))
    if not hits:
        return None
    found = ", ".join(f"{len(v)} x {m}* ({sum(v):.3g} ms)" for m, v in hits.items())
    return (f"XLA's convolution autotuner picked cuDNN fallback engines in this process ({found}); "
            "such timings are 3-15x off, so the cell runs again in a fresh process")
