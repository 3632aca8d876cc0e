"""Fixtures shared by several test files. Imports stay inside the fixtures: the GPU machine runs
tests/test_kernels_gpu.py without tensorflow-datasets."""
import pytest


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """scikit-learn's digits written as a TFDS array_record dataset (offline, ~3 s)."""
    from train import digits

    data_dir = tmp_path_factory.mktemp("tfds")
    digits.prepare(str(data_dir))
    return str(data_dir)
