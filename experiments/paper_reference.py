"""Published numbers the experiments are compared with, each with where it comes from.

- The paper's computational-efficiency ranges per family (Lavin 2024, arXiv 2404.03617; the ranges are
  known from third-party summaries of the paper, see /shared/reference/paper.md section 7.1).
- A cross-check of those ranges from timm's public RTX 3090 inference benchmark: GMACs and img/s are
  copied from the CSV; the efficiencies are derived here, E = GMACs x img/s / peak, against both
  RTX 3090 tensor peaks of the hardware table (fp16 with fp32 accumulation, and with fp16 accumulation,
  the one that matches the paper's ranges).
- Published ImageNet-1k top-1 accuracies are not repeated here: `convfirst.models.model_info` holds them
  with their source.
"""
from __future__ import annotations

from dataclasses import dataclass

from convfirst.cost.hardware import get_device

PAPER = "A. Lavin, On the Efficiency of Convolutional Neural Networks, arXiv 2404.03617 (2024)"
PAPER_RANGE_SOURCE = f"{PAPER}; ranges as reported by third-party summaries (linnk.ai, sciencestack.ai)"

# family -> (low, high) computational efficiency in percent, as reported for the paper's GPU
PAPER_EFFICIENCY = {"efficientnet": (5.0, 8.0), "convnext": (19.0, 35.0), "convfirst": (47.0, 55.0)}

TIMM_CSV = ("huggingface/pytorch-image-models results/benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv "
            "(PyTorch 2.4 eager, AMP fp16, channels-last, batch <= 1024)")
TIMM_DEVICE = "rtx3090"


@dataclass(frozen=True)
class TimmRow:
    model: str  # our registry name
    resolution: int
    gmacs: float
    img_per_s: float

    @property
    def tmacs(self) -> float:
        return self.gmacs * self.img_per_s / 1e3

    def efficiency(self, dtype: str) -> float:
        """Fraction of the RTX 3090 dense peak at `dtype` ('fp16': fp32 accumulation, 'fp16_acc16')."""
        return self.tmacs * 1e12 / get_device(TIMM_DEVICE).peak_macs(dtype)


TIMM_RTX3090 = {r.model: r for r in (
    TimmRow("efficientnet_b0", 224, 0.40, 8241),
    TimmRow("efficientnet_b1", 240, 0.71, 4955),
    TimmRow("efficientnet_b3", 320, 2.01, 1664),
    TimmRow("efficientnet_b4", 384, 4.51, 889),
    TimmRow("efficientnet_b5", 448, 9.59, 452),
    TimmRow("efficientnet_b6", 528, 19.40, 208),
    TimmRow("efficientnet_b7", 600, 38.33, 130),
    TimmRow("convnext_tiny", 224, 4.47, 3120),
    TimmRow("convnext_small", 224, 8.71, 1878),
    TimmRow("convnext_base", 224, 15.38, 1310),
    TimmRow("convnext_large", 224, 34.40, 705),
)}


def paper_range(family: str) -> tuple[float, float] | None:
    """The paper's efficiency range (percent) of a model family; MBConvNet counts as EfficientNet."""
    base = "efficientnet" if family.startswith(("efficientnet", "mbconvnet")) else family
    return PAPER_EFFICIENCY.get(base)


def timm_range(family: str, dtype: str = "fp16_acc16") -> tuple[float, float] | None:
    """Min and max efficiency (percent) over the timm RTX 3090 rows of a family."""
    effs = [100 * r.efficiency(dtype) for r in TIMM_RTX3090.values() if r.model.startswith(family)]
    return (min(effs), max(effs)) if effs else None


def sources() -> list[str]:
    return [f"Paper efficiency ranges: {PAPER_RANGE_SOURCE}.",
            f"RTX 3090 cross-check: {TIMM_CSV}; peaks from convfirst/cost/hardware.py: "
            f"{get_device(TIMM_DEVICE).source}.",
            "Published ImageNet-1k top-1: convfirst.models.model_info (timm results/results-imagenet.csv)."]
