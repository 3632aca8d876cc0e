"""Ideal latency, computational efficiency and the waterline (reconstructed; paper.md 1.1 and 1.3).

The paper's exact waterline definition is not public. Working definition: kernel i of a sequence
has C_i MACs and D_i compulsory DRAM bytes; on a device with peak P MAC/s and bandwidth B it cannot
take less than L_i = max(C_i/P, D_i/B). Kernels run one after another, so one kernel's memory-bound
phase cannot hide behind another's compute: the sequence bound is sum_i L_i (a single roofline over
the whole network, max(sum C/P, sum D/B), is too optimistic). The gap to the ideal latency sum C/P
splits into memory-bound loss (fusion removes it), recompute loss (fusion's price) and, given
measured times T_i, kernel loss sum (T_i - L_i) (better kernels remove it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

LABEL = "waterline (reconstructed)"


@dataclass(frozen=True)
class KernelLoad:
    """One kernel launch over the whole batch."""

    name: str
    macs: float  # useful MACs (those of the model's MAC count)
    dram_bytes: float
    recompute_macs: float = 0.0  # extra MACs executed, e.g. an expansion recomputed on halo pixels

    @property
    def executed_macs(self) -> float:
        return self.macs + self.recompute_macs

    @property
    def intensity(self) -> float:
        """Executed MACs per DRAM byte."""
        return self.executed_macs / self.dram_bytes if self.dram_bytes else float("inf")


def ideal_latency(macs: float, peak_macs_per_s: float) -> float:
    """C / P: the latency at 100 % computational efficiency."""
    return macs / peak_macs_per_s


def efficiency(macs: float, latency_s: float, peak_macs_per_s: float) -> float:
    """E = C / (T * P); for a batch, pass the batch's MACs and latency."""
    return macs / (latency_s * peak_macs_per_s)


@dataclass(frozen=True)
class KernelBound:
    load: KernelLoad
    compute_s: float  # executed MACs / P
    memory_s: float  # D / B
    ideal_s: float  # useful MACs / P
    measured_s: float | None = None

    @property
    def name(self) -> str:
        return self.load.name

    @property
    def bound_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def memory_bound(self) -> bool:
        return self.memory_s > self.compute_s


@dataclass(frozen=True)
class Waterline:
    """Bounds of one kernel sequence on one device."""

    kernels: tuple[KernelBound, ...]
    peak_macs_per_s: float
    dram_bytes_per_s: float
    label: str = field(default=LABEL)

    @property
    def macs(self) -> float:
        return sum(k.load.macs for k in self.kernels)

    @property
    def executed_macs(self) -> float:
        return sum(k.load.executed_macs for k in self.kernels)

    @property
    def dram_bytes(self) -> float:
        return sum(k.load.dram_bytes for k in self.kernels)

    @property
    def intensity(self) -> float:
        """Executed MACs per DRAM byte of the whole sequence."""
        return self.executed_macs / self.dram_bytes

    @property
    def ideal_s(self) -> float:
        return sum(k.ideal_s for k in self.kernels)

    @property
    def waterline_s(self) -> float:
        """sum_i max(C_i/P, D_i/B)."""
        return sum(k.bound_s for k in self.kernels)

    @property
    def roofline_s(self) -> float:
        """max(sum C/P, sum D/B): the optimistic whole-network roofline, for comparison."""
        return max(sum(k.compute_s for k in self.kernels), sum(k.memory_s for k in self.kernels))

    @property
    def memory_bound_loss_s(self) -> float:
        return sum(max(0.0, k.memory_s - k.compute_s) for k in self.kernels)

    @property
    def recompute_loss_s(self) -> float:
        return sum(k.compute_s - k.ideal_s for k in self.kernels)

    @property
    def efficiency_bound(self) -> float:
        """The best computational efficiency this kernel sequence can reach: ideal / waterline."""
        return self.ideal_s / self.waterline_s

    @property
    def measured(self) -> bool:
        return all(k.measured_s is not None for k in self.kernels)

    def _need_measured(self):
        if not self.measured:
            raise ValueError("measured per-kernel times were not given")

    @property
    def measured_s(self) -> float:
        self._need_measured()
        return sum(k.measured_s for k in self.kernels)

    @property
    def kernel_loss_s(self) -> float:
        """sum_i (T_i - L_i): time lost inside kernels relative to their bound."""
        self._need_measured()
        return sum(k.measured_s - k.bound_s for k in self.kernels)

    @property
    def measured_efficiency(self) -> float:
        self._need_measured()
        return self.ideal_s / self.measured_s

    def to_dict(self, kernels: bool = True) -> dict:
        d = {"label": self.label, "macs": self.macs, "executed_macs": self.executed_macs,
             "dram_bytes": self.dram_bytes, "intensity": self.intensity, "ideal_s": self.ideal_s, "waterline_s": self.waterline_s,
             "roofline_s": self.roofline_s, "memory_bound_loss_s": self.memory_bound_loss_s,
             "recompute_loss_s": self.recompute_loss_s, "efficiency_bound": self.efficiency_bound,
             "num_kernels": len(self.kernels),
             "memory_bound_kernels": sum(k.memory_bound for k in self.kernels)}
        if self.measured:
            d.update(measured_s=self.measured_s, kernel_loss_s=self.kernel_loss_s,
                     measured_efficiency=self.measured_efficiency)
        if kernels:
            d["kernels"] = [{"name": k.name, "macs": k.load.macs, "recompute_macs": k.load.recompute_macs,
                             "dram_bytes": k.load.dram_bytes, "compute_s": k.compute_s, "memory_s": k.memory_s,
                             "ideal_s": k.ideal_s, "bound_s": k.bound_s,
                             "bound": "memory" if k.memory_bound else "compute",
                             **({"measured_s": k.measured_s} if k.measured_s is not None else {})}
                            for k in self.kernels]
        return d


def waterline(kernels: Sequence[KernelLoad], peak_macs_per_s: float, dram_bytes_per_s: float,
              measured_s: Sequence[float] | None = None) -> Waterline:
    """The waterline of a kernel sequence; `measured_s` (one time per kernel, seconds) adds the
    kernel loss and the measured efficiency."""
    if measured_s is not None and len(measured_s) != len(kernels):
        raise ValueError(f"got {len(measured_s)} measured times for {len(kernels)} kernels")
    times = measured_s if measured_s is not None else [None] * len(kernels)
    return Waterline(tuple(KernelBound(k, k.executed_macs / peak_macs_per_s, k.dram_bytes / dram_bytes_per_s,
                                       k.macs / peak_macs_per_s, t) for k, t in zip(kernels, times)),
                     peak_macs_per_s, dram_bytes_per_s)
