"""scikit-learn's bundled handwritten digits as a TFDS array_record dataset, built offline.

1,797 real 8x8 grayscale digits (the UCI optical-recognition test set) ship inside the scikit-learn
wheel, so the embedded demo and the "does it learn" tests need no download and no TensorFlow.
Split: a fixed permutation, 1,437 train / 360 test.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NAME = "digits"
NUM_TEST = 360
_SPLIT_SEED = 0


class Digits(tfds.core.GeneratorBasedBuilder):
    """8x8 uint8 grayscale digits (pixel values 0..16 rescaled to 0..255), labels 0..9."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "scikit-learn load_digits, 1437 train / 360 test by a fixed permutation."}

    def _info(self) -> tfds.core.DatasetInfo:
        # Built directly: dataset_info_from_configs needs the builder to live in a tfds-style package.
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        )

    def _split_generators(self, dl_manager):
        order = np.random.default_rng(_SPLIT_SEED).permutation(1797)
        return {"train": self._generate_examples(order[NUM_TEST:]), "test": self._generate_examples(order[:NUM_TEST])}

    def _generate_examples(self, indices):
        from PIL import Image  # images go in as PIL: numpy images would be PNG-encoded through TensorFlow
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        for i in indices:
            yield int(i), {"image": Image.fromarray(images[i], mode="L"), "label": int(digits.target[i])}


def prepare(data_dir: str) -> str:
    """Write the dataset under `data_dir` (idempotent) and return its directory."""
    builder = Digits(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return builder.data_dir
