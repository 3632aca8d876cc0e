"""Input pipeline: TFDS array_record data sources read by grain, with no TensorFlow.

`open_source` opens a prepared dataset for random access (never downloading); `train_loader` is an
infinite, per-epoch reshuffled, augmented stream of per-process batches whose order is a pure
function of (seed, index), so its position (grain's iterator state) is all a checkpoint needs to
resume it exactly; `eval_batches` yields padded, masked batches covering a split exactly once.
Images stay uint8 on the host; normalization happens on the device (train/step.py).
tensorflow_datasets and grain are imported inside functions so that GPU code paths never need them.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

DOCS = "docs/datasets.md"
# How to prepare datasets that cannot be built without TensorFlow (see docs/datasets.md).
_TF_PREPARED = ("imagenet2012", "imagenette", "cifar10", "cifar100", "mnist")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not prepared where we look; the message says how to prepare it."""


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def how_to_prepare(name: str, data_dir: str) -> str:
    base = name.split("/")[0].split(":")[0]
    if base == "digits":
        return f"prepare it with: convfirst data prepare digits --data_dir {data_dir}"
    if base in _TF_PREPARED:
        return (f"prepare it once as array_record in an environment with TensorFlow: "
                f"tfds build {base} --data_dir={data_dir} --file_format=array_record (details: {DOCS})")
    return f"prepare it as an array_record TFDS dataset under {data_dir} (see {DOCS})"


def open_source(name: str, split: str, data_dir: str | None = None):
    """A random-access source (`len`, `__getitem__`) for a prepared TFDS dataset; `name` is a TFDS name
    (`imagenette/320px-v2`, `digits`) or a dataset version directory. Never downloads."""
    import tensorflow_datasets as tfds

    data_dir = data_dir or default_data_dir()
    if name.split("/")[0].split(":")[0] == "digits":
        import train.digits  # noqa: F401  registers the builder with tfds

    try:
        builder = tfds.builder_from_directory(name) if Path(name).is_dir() else tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DatasetNotFoundError(f"unknown dataset {name!r} in {data_dir}: {how_to_prepare(name, data_dir)}") from e
    try:
        source = builder.as_data_source(split=split)
    except Exception as e:  # tfds raises KeyError, NotImplementedError or ValueError here, by cause
        splits = list(builder.info.splits.keys())
        if splits:
            raise ValueError(f"dataset {name!r} cannot read split {split!r} ({e}); valid splits: "
                             f"{', '.join(splits)}") from e
        raise DatasetNotFoundError(f"dataset {name!r} is not prepared in {data_dir} ({type(e).__name__}: {e}); "
                                   f"{how_to_prepare(name, data_dir)}") from e
    if len(source) == 0:
        raise DatasetNotFoundError(f"split {split!r} of {name!r} in {data_dir} is empty; "
                                   f"{how_to_prepare(name, data_dir)}")
    return source


def num_classes_of(source, label_key: str = "label") -> int:
    feature = source.dataset_info.features[label_key]
    if not hasattr(feature, "num_classes"):
        raise ValueError(f"feature {label_key!r} is not a ClassLabel; set data.num_classes in the config")
    return int(feature.num_classes)


@dataclass(frozen=True)
class TrainAugment:
    """Random-resized crop (Inception style: area `scale`, aspect `ratio`), optional flip, uint8 out."""

    resolution: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        box = _random_box(h, w, self.scale, self.ratio, rng)
        out = _resize(image, box, self.resolution, self.interpolation)
        return out[:, ::-1] if self.flip and rng.random() < 0.5 else out


@dataclass(frozen=True)
class EvalAugment:
    """Centre crop of `crop_pct` of the shorter side, resized to `resolution` (timm's eval transform)."""

    resolution: int
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        side = min(h, w) * self.crop_pct
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return _resize(image, box, self.resolution, self.interpolation)


def _random_box(h, w, scale, ratio, rng):
    """torchvision's RandomResizedCrop box: 10 tries, then a centre crop clamped to `ratio`."""
    area, log_ratio = h * w, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return x0, y0, x0 + cw, y0 + ch
    in_ratio = w / h
    cw, ch = (w, int(round(w / ratio[0]))) if in_ratio < ratio[0] else (
        (int(round(h * ratio[1])), h) if in_ratio > ratio[1] else (w, h))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return x0, y0, x0 + cw, y0 + ch


def _resize(image: np.ndarray, box, size: int, interpolation: str) -> np.ndarray:
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interpolation]
    gray = image.ndim == 3 and image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if gray else image)
    out = np.asarray(pil.resize((size, size), resample=resample, box=box))
    return out[..., None] if gray else out


class _Records:
    """Only (image, label), through `__getitem__` (mocked TFDS sources break `__getitems__`)."""

    def __init__(self, source, image_key: str, label_key: str):
        self.source, self.image_key, self.label_key = source, image_key, label_key

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        record = self.source[index]
        image = np.asarray(record[self.image_key], np.uint8)
        return image if image.ndim == 3 else image[..., None], np.int32(record[self.label_key])


def train_loader(source, *, batch_size: int, seed: int, augment: TrainAugment, image_key: str = "image",
                 label_key: str = "label", process_index: int = 0, process_count: int = 1,
                 num_threads: int = 4, prefetch: int = 256):
    """Infinite iterator of this process's block of each global batch of `batch_size`.

    Epoch e is shuffled with seed+e (grain's shuffle before repeat); augmentation randomness comes
    from (seed, global element index), so the stream does not depend on threads or process count.
    The iterator supports grain's get_state()/set_state() for exact resumption. `prefetch` counts
    examples decoded ahead by the `num_threads` reader threads.
    """
    import grain

    if batch_size % process_count:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {process_count} processes")
    if len(source) < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(source)} training examples")

    def transform(record, rng):
        image, label = record
        return {"image": augment(image, rng), "label": label}

    # The global stream (shuffled per epoch, augmented by global index) is cut into global batches;
    # this process reads its contiguous block of each, so the global batch - and with it dropout masks
    # and mixup partners - is the same for any number of processes.
    stream = (grain.MapDataset.source(_Records(source, image_key, label_key))
              .shuffle(seed=seed).repeat().random_map(transform, seed=seed))
    local = batch_size // process_count

    def fetch(i):
        return stream[(i // local) * batch_size + process_index * local + i % local]

    ds = grain.MapDataset.range(len(stream) // process_count).map(fetch)  # decode + augment in threads
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    return iter(ds.batch(local, drop_remainder=True))


def eval_batches(source, *, batch_size: int, augment: EvalAugment, image_key: str = "image",
                 label_key: str = "label", process_index: int = 0, process_count: int = 1,
                 num_threads: int = 4) -> Iterator[dict]:
    """Every example of the split exactly once, in full batches padded with `mask == 0` rows; every
    process yields the same number of batches (collectives need it)."""
    import grain

    if batch_size % process_count:
        raise ValueError(f"eval batch_size={batch_size} is not divisible by the {process_count} processes")
    local = batch_size // process_count
    num_batches = math.ceil(math.ceil(len(source) / process_count) / local)
    ds = (grain.MapDataset.source(_Records(source, image_key, label_key))[process_index::process_count]
          .map(lambda r: {"image": augment(r[0]), "label": r[1]}))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * local))
    batches = iter(ds.batch(local, drop_remainder=False))
    template = None
    for _ in range(num_batches):
        batch = next(batches, None)
        if batch is None:  # this process ran out one batch early: an all-padding batch
            batch = {k: v[:0] for k, v in template.items()}
        template = batch
        n = len(batch["label"])
        pad = [(0, local - n)]
        yield {"image": np.pad(batch["image"], pad + [(0, 0)] * 3), "label": np.pad(batch["label"], pad),
               "mask": np.pad(np.ones(n, np.bool_), pad)}
