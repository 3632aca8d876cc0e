"""Input pipeline: TFDS sources without TensorFlow (mock and the real digits), grain loaders,
augmentation, exact resumption, process sharding and clear errors for missing data."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from train import data



@pytest.fixture
def mock_imagenette():
    """imagenette's real feature spec (variable-size RGB JPEGs), random content, no files."""
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        yield data.open_source("imagenette/full-size-v2", "train")


def test_digits_dataset_is_real_and_split(digits_dir):
    train, test = data.open_source("digits", "train", digits_dir), data.open_source("digits", "test", digits_dir)
    assert (len(train), len(test)) == (1437, 360) and data.num_classes_of(train) == 10
    from sklearn.datasets import load_digits

    reference = {np.round(img * 255 / 16).astype(np.uint8).tobytes(): int(y)
                 for img, y in zip(load_digits().images, load_digits().target)}
    for source in (train, test):
        for i in (0, 7, len(source) - 1):
            record = source[i]
            assert record["image"].shape == (8, 8, 1) and record["image"].dtype == np.uint8
            assert reference[record["image"][..., 0].tobytes()] == record["label"]
    assert {int(train[i]["label"]) for i in range(200)} == set(range(10))


def test_missing_dataset_says_how_to_prepare(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="convfirst data prepare digits --data_dir"):
        data.open_source("digits", "train", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="tfds build imagenet2012 .*--file_format=array_record"):
        data.open_source("imagenet2012", "train", str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="unknown dataset 'no_such_set'"):
        data.open_source("no_such_set", "train", str(tmp_path))


def test_unknown_split_lists_valid_ones(digits_dir):
    with pytest.raises(ValueError, match="valid splits: train, test"):
        data.open_source("digits", "validation", digits_dir)


def test_train_loader_on_mock_imagenet_style_data(mock_imagenette):
    aug = data.TrainAugment(32, interpolation="bicubic")
    it = data.train_loader(mock_imagenette, batch_size=8, seed=3, augment=aug, num_threads=2)
    batch = next(it)
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert batch["image"].std() > 0  # real (mock-random) pixels, not zeros


def test_loader_is_deterministic_reshuffles_epochs_and_resumes(digits_dir):
    source = data.open_source("digits", "test", digits_dir)  # 360 examples = 9 batches of 40
    aug = data.TrainAugment(8, scale=(0.5, 1.0), flip=False)
    make = lambda: data.train_loader(source, batch_size=40, seed=1, augment=aug, num_threads=2)
    it = make()
    batches, states = [], []
    for _ in range(20):
        batches.append(next(it))
        states.append(it.get_state())
    again = make()
    assert all(np.array_equal(next(again)["image"], b["image"]) for b in batches[:5])
    labels = lambda bs: np.concatenate([b["label"] for b in bs])
    epoch0, epoch1 = labels(batches[:9]), labels(batches[9:18])
    assert np.array_equal(np.bincount(epoch0), np.bincount([int(source[i]["label"]) for i in range(360)]))
    assert np.array_equal(np.sort(epoch0), np.sort(epoch1)) and not np.array_equal(epoch0, epoch1)
    resumed = make()
    resumed.set_state(states[11])  # position after 12 batches
    for expected in batches[12:20]:
        got = next(resumed)
        assert np.array_equal(got["image"], expected["image"]) and np.array_equal(got["label"], expected["label"])


def test_process_blocks_make_up_the_same_global_batch(digits_dir):
    """Each process reads a contiguous block of every global batch, so the global batch (order included)
    does not depend on the number of processes."""
    source = data.open_source("digits", "train", digits_dir)
    aug = data.TrainAugment(8, scale=(0.5, 1.0))
    whole = data.train_loader(source, batch_size=32, seed=0, augment=aug, num_threads=1)
    parts = [data.train_loader(source, batch_size=32, seed=0, augment=aug, process_index=p, process_count=2,
                               num_threads=1) for p in range(2)]
    for _ in range(3):
        full = next(whole)
        halves = [next(p) for p in parts]
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), full[key])


def test_eval_batches_cover_the_split_once_with_padding(digits_dir):
    source = data.open_source("digits", "test", digits_dir)
    aug = data.EvalAugment(8, crop_pct=1.0)
    seen = []
    for p in range(2):
        batches = list(data.eval_batches(source, batch_size=64, augment=aug, process_index=p, process_count=2,
                                         num_threads=1))
        assert len(batches) == 6  # ceil(ceil(360 / 2) / 32)
        for b in batches:
            assert b["image"].shape == (32, 8, 8, 1)
            seen += [img.tobytes() for img, m in zip(b["image"], b["mask"]) if m]
    assert sorted(seen) == sorted(source[i]["image"].tobytes() for i in range(len(source)))


def test_eval_centre_crop_is_identity_at_native_size_and_crops_otherwise():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(data.EvalAugment(20, crop_pct=1.0, interpolation="nearest")(img[:, 5:25]), img[:, 5:25])
    out = data.EvalAugment(10, crop_pct=0.5, interpolation="nearest")(img)  # 10x10 centre of the 20 rows
    assert out.shape == (10, 10, 3) and np.array_equal(out, img[5:15, 10:20])


def test_random_resized_crop_boxes_respect_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = data._random_box(64, 48, (0.2, 0.6), (0.5, 2.0), rng)
        w, h = x1 - x0, y1 - y0
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 64
        assert 0.18 <= w * h / (64 * 48) <= 0.62 and 0.45 <= w / h <= 2.2
    img = rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)
    out = data.TrainAugment(8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, interpolation="nearest")(img, rng)
    assert np.array_equal(out, img)  # the full box at the same size is the identity
    flipped = [data.TrainAugment(8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=True)(img, rng) for _ in range(20)]
    assert any(np.array_equal(f, img[:, ::-1]) for f in flipped) and any(np.array_equal(f, img) for f in flipped)


def test_bad_augment_settings_are_rejected():
    with pytest.raises(ValueError, match="valid: bilinear, bicubic, nearest"):
        data.TrainAugment(8, interpolation="lanczos")
