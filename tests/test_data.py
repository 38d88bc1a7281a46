import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kgan import data
from kgan.errors import UsageError


def test_digits_is_embedded_real_images_in_unit_range():
    dataset = data.load("digits")
    assert dataset.shape == (8, 8, 1) and dataset.num_examples == 1797 and dataset.kind == "images"
    images = np.stack(list(dataset.data.as_numpy_iterator()))
    assert images.shape == (1797, 8, 8, 1)
    assert images.min() == -1.0 and images.max() == 1.0
    from sklearn.datasets import load_digits

    np.testing.assert_allclose((images[5, :, :, 0] + 1) * 8, load_digits().images[5])
    assert data.load("digits", image_size=16).shape == (16, 16, 1)


def test_digits_read_from_scikit_learns_file_equal_load_digits(monkeypatch):
    """`digits_arrays` reads scikit-learn's file itself (no scikit-learn import); the same arrays,
    bit for bit, as through `load_digits`, which it falls back to when the file is elsewhere."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    expected = ((digits.images.astype("float32") / 8.0 - 1.0)[..., None], digits.target.astype("int64"))
    images, labels = data.digits_arrays()
    assert images.dtype == expected[0].dtype and labels.dtype == expected[1].dtype
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    monkeypatch.setattr("os.path.isfile", lambda path: False)  # the fallback: load_digits
    images, labels = data.digits_arrays()
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def test_stacked_digits_are_three_independent_digits():
    images, labels = data.stacked_digits_arrays(3000, seed=0)
    digits, digit_labels = data.digits_arrays()
    assert images.shape == (3000, 8, 8, 3) and labels.shape == (3000, 3)
    for i in (0, 1, 2999):  # every channel is one of the real digits, with its label
        for c in range(3):
            match = np.flatnonzero(np.all(digits[..., 0] == images[i, :, :, c], axis=(1, 2)))
            assert match.size and labels[i, c] in digit_labels[match]
    triples = {tuple(t) for t in labels}
    assert len(triples) > 900  # 3000 draws over 1000 modes: ~950 distinct expected
    assert data.load("stacked_digits").shape == (8, 8, 3)


def test_ring8_protocol():
    modes, std = data.mixture_modes("ring8")
    assert std == 0.01 and modes.shape == (8, 2)
    assert len({tuple(np.round(m, 6)) for m in modes}) == 8  # no repeated endpoint
    np.testing.assert_allclose(np.linalg.norm(modes, axis=1), 1.0)
    np.testing.assert_allclose(modes[2], [0.0, 1.0], atol=1e-12)
    points, which = data.mixture_samples("ring8", 20000, seed=0)
    residual = points - modes[which]
    assert abs(residual.std() - 0.01) < 5e-4
    assert np.all(np.bincount(which, minlength=8) > 2000)


def test_grid25_protocol_and_dataset():
    modes, std = data.mixture_modes("grid25")
    assert std == 0.05 and modes.shape == (25, 2)
    assert sorted({x for x, _ in modes}) == [-4, -2, 0, 2, 4]
    dataset = data.load("grid25", seed=1)
    assert dataset.shape == (2,) and dataset.num_examples == 100_000 and dataset.kind == "points"


def test_pipeline_batches_shuffles_and_drops_remainder():
    dataset = data.load("digits")
    batches = list(data.pipeline(dataset, batch_size=64, d_steps=2, seed=0).as_numpy_iterator())
    assert len(batches) == 1797 // 128 == data.steps_per_epoch(dataset, 64, 2)
    assert all(b.shape == (128, 8, 8, 1) for b in batches)
    first_epoch = np.concatenate(batches)
    second_epoch = np.concatenate(list(data.pipeline(dataset, 64, 2, seed=0).as_numpy_iterator()))
    np.testing.assert_array_equal(first_epoch, second_epoch)  # seeded: deterministic
    ordered = np.stack(list(dataset.data.as_numpy_iterator()))[: len(first_epoch)]
    assert not np.array_equal(first_epoch, ordered)  # shuffled
    with pytest.raises(UsageError, match="fewer than one step"):
        data.pipeline(dataset, batch_size=1000, d_steps=2)


def test_folder_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    dataset = data.load(f"folder:{tmp_path}", image_size=16)
    images = np.stack(list(dataset.data.as_numpy_iterator()))
    assert dataset.shape == (16, 16, 3) and images.shape == (5, 16, 16, 3)
    assert images.min() >= -1 and images.max() <= 1
    with pytest.raises(UsageError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="No images"):
        data.load(f"folder:{tmp_path / 'empty'}")


def test_unknown_names_and_sizes():
    with pytest.raises(UsageError, match="unknown dataset 'nope'"):
        data.load("nope")
    with pytest.raises(UsageError, match="image size"):
        data.load("digits", image_size=12)


def test_tfds_dataset_through_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    # mock_data replaces download_and_prepare and as_dataset; let the network probe pass too.
    monkeypatch.setattr(data, "_network_available", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=10):
        dataset = data.load("cifar10")
        images = np.stack(list(dataset.data.as_numpy_iterator()))
    assert dataset.shape == (32, 32, 3) and images.shape == (10, 32, 32, 3)
    assert images.min() >= -1 and images.max() <= 1


def test_tfds_offline_fails_fast_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_network_available", lambda *a, **k: False)
    with pytest.raises(UsageError) as error:
        data.load("mnist", data_dir=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and "mnist" in message and "--data-dir" in message and "no network" in message


def test_network_probe_is_false_offline():
    # This machine has no network but the package registries: the probe must say so quickly.
    assert data._network_available(timeout=2.0) in (False, True)
    assert data._network_available("host.invalid", 443, timeout=1.0) is False


def test_tfds_names_are_registered():
    assert set(data.TFDS_NAMES) == {"mnist", "fashion_mnist", "cifar10", "svhn_cropped", "celeb_a"}
    assert isinstance(data.load("ring8").data, tf.data.Dataset)


def test_digits_with_labels_yields_aligned_int32_pairs():
    dataset = data.load("digits", with_labels=True)
    images, labels = data.digits_arrays()
    pairs = list(dataset.data.take(5).as_numpy_iterator())
    assert dataset.num_classes == 10 and data.load("digits").num_classes is None
    for i, (image, label) in enumerate(pairs):
        np.testing.assert_array_equal(image, images[i])
        assert label.dtype == np.int32 and label == labels[i]
    batch = next(iter(data.pipeline(dataset, 64, seed=0)))
    assert batch[0].shape == (64, 8, 8, 1) and batch[1].shape == (64,)


def test_tfds_with_labels_through_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(data, "_network_available", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=6):
        dataset = data.load("mnist", with_labels=True)
        pairs = list(dataset.data.as_numpy_iterator())
    assert dataset.num_classes == 10 and len(pairs) == 6
    assert all(image.shape == (32, 32, 1) and 0 <= label < 10 for image, label in pairs)


@pytest.mark.parametrize("name", ["stacked_digits", "ring8", "celeb_a"])
def test_labels_of_an_unlabelled_dataset_is_a_usage_error(name):
    with pytest.raises(UsageError, match="--conditional needs a dataset with one class label"):
        data.load(name, with_labels=True)
