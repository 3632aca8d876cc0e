"""Fixtures shared by several test files."""
import pytest

from train import digits


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """scikit-learn's digits written as a TFDS array_record dataset (offline, ~3 s)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    digits.prepare(str(data_dir))
    return str(data_dir)
