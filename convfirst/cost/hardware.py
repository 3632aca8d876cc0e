"""GPU peak throughput and memory bandwidth, with where each number comes from.

Peaks are *dense* tensor-core (or, for fp32, CUDA-core) rates as printed by the vendor in TFLOP/s;
1 MAC = 2 FLOP, so MAC/s = TFLOP/s * 1e12 / 2. Vendors print sparse rates next to dense ones: the
dense rate is half the sparse one. Precisions (`DTYPES`):

- bf16, fp16: bf16/fp16 operands with fp32 accumulation (what JAX emits: preferred_element_type f32);
- fp16_acc16: fp16 operands with fp16 accumulation. Same as fp16 on data-center and RTX A-series
  parts; twice fp16 on GeForce Ampere/Ada, whose fp32-accumulate tensor rate is halved;
- tf32: fp32 tensors on tensor cores (JAX's default precision for fp32 matmuls/convs on GPU);
- fp32: CUDA-core fp32 FMA, no tensor cores.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DType:
    """A compute precision: bytes of the activations/weights in DRAM and of an accumulator."""

    name: str
    element_bytes: int
    accumulator_bytes: int
    description: str


DTYPES = {
    "bf16": DType("bf16", 2, 4, "bfloat16 operands, fp32 accumulation"),
    "fp16": DType("fp16", 2, 4, "float16 operands, fp32 accumulation"),
    "fp16_acc16": DType("fp16_acc16", 2, 2, "float16 operands, float16 accumulation"),
    "tf32": DType("tf32", 4, 4, "float32 tensors on tensor cores (TF32)"),
    "fp32": DType("fp32", 4, 4, "float32 on CUDA cores"),
}


@dataclass(frozen=True)
class Device:
    key: str
    name: str
    jax_kinds: tuple[str, ...]  # jax `device.device_kind` strings of this part
    dense_tflops: dict[str, float]  # DTYPES key -> vendor dense TFLOP/s
    dram_gb_s: float  # DRAM bandwidth, GB/s (1e9 bytes/s)
    l2_mb: float
    sms: int
    smem_per_sm_kb: int  # max shared memory per SM
    regs_per_sm_kb: int = 256  # register file per SM
    source: str = ""
    notes: str = field(default="")

    def peak_macs(self, dtype: str) -> float:
        """Dense peak MAC/s at `dtype`."""
        return self.dense_tflops[get_dtype(dtype).name] * 1e12 / 2

    @property
    def dram_bytes_per_s(self) -> float:
        return self.dram_gb_s * 1e9

    def ridge(self, dtype: str) -> float:
        """Operational intensity (MAC/byte) above which a kernel is compute-bound."""
        return self.peak_macs(dtype) / self.dram_bytes_per_s

    @property
    def on_chip_bytes_per_sm(self) -> int:
        """Registers + shared memory of one SM: the workspace budget of one fused-kernel tile."""
        return (self.smem_per_sm_kb + self.regs_per_sm_kb) * 1024

    def to_dict(self, dtype: str) -> dict:
        return {"key": self.key, "name": self.name, "dtype": dtype,
                "peak_macs_per_s": self.peak_macs(dtype), "peak_tflops": self.dense_tflops[dtype],
                "dram_bytes_per_s": self.dram_bytes_per_s, "ridge_macs_per_byte": self.ridge(dtype),
                "l2_mb": self.l2_mb, "sms": self.sms, "source": self.source}


def _same(tflops: float) -> dict[str, float]:
    """bf16/fp16 rates of parts with full-rate fp32 accumulation (fp16_acc16 == fp16)."""
    return {"bf16": tflops, "fp16": tflops, "fp16_acc16": tflops}


_HOPPER_SRC = ("NVIDIA H100 Tensor Core GPU datasheet and NVIDIA H100 Tensor Core GPU Architecture "
               "whitepaper (dense = half the 'with sparsity' figures)")

DEVICES: dict[str, Device] = {d.key: d for d in (
    Device("h100", "NVIDIA H100 SXM5 80GB", ("NVIDIA H100 80GB HBM3",),
           {**_same(989.4), "tf32": 494.7, "fp32": 66.9}, 3350, 50, 132, 228,
           source=_HOPPER_SRC + ", SXM5 column: BF16/FP16 989.4, TF32 494.7, FP32 66.9 TFLOP/s, HBM3 3.35 TB/s"),
    Device("h100_pcie", "NVIDIA H100 PCIe 80GB", ("NVIDIA H100 PCIe",),
           {**_same(756.0), "tf32": 378.0, "fp32": 51.0}, 2000, 50, 114, 228,
           source=_HOPPER_SRC + ", PCIe column: BF16/FP16 756, TF32 378, FP32 51 TFLOP/s, HBM2e 2.0 TB/s"),
    Device("h200", "NVIDIA H200 SXM 141GB", ("NVIDIA H200",),
           {**_same(989.4), "tf32": 494.7, "fp32": 67.0}, 4800, 50, 132, 228,
           source="NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column (BF16/FP16 1,979 and TF32 989 "
                  "TFLOP/s with sparsity, FP32 67 TFLOP/s, HBM3e 4.8 TB/s); same GH100 die as H100 SXM5"),
    Device("a100", "NVIDIA A100 SXM4 80GB", ("NVIDIA A100-SXM4-80GB",),
           {**_same(312.0), "tf32": 156.0, "fp32": 19.5}, 2039, 40, 108, 164,
           source="NVIDIA A100 Tensor Core GPU datasheet (BF16/FP16 312, TF32 156, FP32 19.5 TFLOP/s dense; "
                  "HBM2e 2,039 GB/s for 80GB SXM) and NVIDIA A100 Tensor Core GPU Architecture whitepaper"),
    Device("a100_40gb", "NVIDIA A100 SXM4 40GB", ("NVIDIA A100-SXM4-40GB",),
           {**_same(312.0), "tf32": 156.0, "fp32": 19.5}, 1555, 40, 108, 164,
           source="NVIDIA A100 Tensor Core GPU datasheet, 40GB column (HBM2 1,555 GB/s)"),
    Device("rtx3090", "NVIDIA GeForce RTX 3090", ("NVIDIA GeForce RTX 3090",),
           {"bf16": 71.0, "fp16": 71.0, "fp16_acc16": 142.0, "tf32": 35.6, "fp32": 35.6}, 936, 6, 82, 100,
           source="NVIDIA Ampere GA102 GPU Architecture whitepaper, GeForce RTX 3090 column (FP16 tensor "
                  "142 TFLOP/s with FP16 accumulate, 71 with FP32 accumulate, TF32 35.6, FP32 35.6; "
                  "GDDR6X 936 GB/s)"),
    Device("rtx4090", "NVIDIA GeForce RTX 4090", ("NVIDIA GeForce RTX 4090",),
           {"bf16": 165.2, "fp16": 165.2, "fp16_acc16": 330.3, "tf32": 82.6, "fp32": 82.6}, 1008, 72, 128, 100,
           source="NVIDIA Ada GPU Architecture whitepaper (AD102), GeForce RTX 4090 column (FP16 tensor "
                  "330.3 TFLOP/s with FP16 accumulate, 165.2 with FP32 accumulate, TF32 82.6, FP32 82.6; "
                  "GDDR6X 1,008 GB/s, 72 MB L2)"),
    Device("a5000", "NVIDIA RTX A5000", ("NVIDIA RTX A5000",),
           {**_same(111.1), "tf32": 55.6, "fp32": 27.8}, 768, 6, 64, 100,
           source="NVIDIA RTX A5000 datasheet (FP32 27.8 TFLOP/s, tensor 222.2 TFLOP/s with sparsity, "
                  "GDDR6 768 GB/s); per-precision split derived from the GA102 whitepaper's RTX A6000 "
                  "column (professional GA102: full-rate FP32 accumulation) scaled to 64 SMs at 1695 MHz",
           notes="bf16/fp16/tf32 dense rates derived, not itemized in the A5000 datasheet"),
)}


def _valid(options) -> str:
    return ", ".join(options)


def get_device(key: str) -> Device:
    try:
        return DEVICES[key.lower()]
    except KeyError:
        raise ValueError(f"unknown device {key!r}; valid: {_valid(DEVICES)}") from None


def get_dtype(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; valid: {_valid(DTYPES)}") from None


def device_from_jax(device) -> Device:
    """The table entry of a jax device (or of its `device_kind` string, e.g. 'NVIDIA H100 80GB HBM3')."""
    kind = device if isinstance(device, str) else device.device_kind
    for d in DEVICES.values():
        if kind.lower() in (k.lower() for k in d.jax_kinds):
            return d
    known = [k for d in DEVICES.values() for k in d.jax_kinds]
    raise ValueError(f"no hardware entry for device kind {kind!r}; known kinds: {_valid(known)}")
