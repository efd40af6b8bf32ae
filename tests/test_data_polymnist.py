"""Tests for PolyMNIST / Translated-PolyMNIST building (crmvae_jax.data.polymnist)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crmvae_jax.data import polymnist
from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.common.errors import UserError

# Modality m's constant background colour in the tests that decode images.
_COLOURS = np.array([[10, 100, 200], [50, 60, 70], [0, 255, 30], [90, 20, 130],
                     [200, 200, 5]], dtype=np.uint8)
_INDEX_BITS = 10


def _constant_backgrounds(shape=(40, 50)) -> list[np.ndarray]:
  return [np.broadcast_to(colour, (*shape, 3)).copy() for colour in _COLOURS]


def _index_digits(count: int) -> np.ndarray:
  """Fake MNIST digits [count, 28, 28] whose first row writes the image's index in
  binary as ink (255) / no ink (0), so a built image tells which digit it drew."""
  bits = (np.arange(count)[:, None] >> np.arange(_INDEX_BITS)) & 1
  digits = np.zeros((count, 28, 28), dtype=np.uint8)
  digits[:, 0, :_INDEX_BITS] = 255 * bits
  return digits


def _decode_indices(images: np.ndarray, colour: np.ndarray) -> np.ndarray:
  """The digit index each image [N, 28, 28, 3] drawn on constant `colour` was made of."""
  ink = np.any(images[:, 0, :_INDEX_BITS] != colour, axis=-1)
  return (ink * (1 << np.arange(_INDEX_BITS))).sum(axis=1)


def _fake_mnist(num_train=40, num_test=24, num_digits=4):
  """Tiny fake MNIST splits: (images [N, 28, 28, 1], labels [N]) for train and test."""
  rng = np.random.default_rng(123)
  splits = []
  for count in (num_train, num_test):
    images = rng.integers(0, 256, size=(count, 28, 28, 1), dtype=np.uint8)
    splits.append((images, np.arange(count, dtype=np.int64) % num_digits))
  return tuple(splits)


def _write_photos(directory, names_and_colours, size=(32, 36)) -> None:
  directory.mkdir(exist_ok=True)
  for name, colour in names_and_colours:
    Image.fromarray(np.broadcast_to(np.uint8(colour), (*size, 3)).copy()).save(
        directory / name)


# --- tuples -------------------------------------------------------------------------


@pytest.mark.parametrize("num_modalities", [2, 5])
def test_tuples_hold_different_images_of_one_digit(num_modalities):
  # Uneven digit counts, one digit with exactly M images (the tightest case).
  labels = np.array([0] * 7 + [1] * num_modalities + [2] * 12 + [3] * 9)
  rng = np.random.default_rng(0)
  labels = labels[rng.permutation(len(labels))]
  tuples = polymnist.build_tuples(labels, num_modalities, rng)
  assert tuples.shape == (len(labels), num_modalities)
  assert np.all(labels[tuples] == labels[tuples[:, :1]])
  assert all(len(set(row)) == num_modalities for row in tuples.tolist())
  # Every image appears exactly once per modality.
  for column in tuples.T:
    np.testing.assert_array_equal(np.sort(column), np.arange(len(labels)))


def test_tuples_are_shuffled_and_seeded():
  labels = np.repeat(np.arange(10), 30)
  first = polymnist.build_tuples(labels, 3, np.random.default_rng(7))
  np.testing.assert_array_equal(first, polymnist.build_tuples(
      labels, 3, np.random.default_rng(7)))
  assert not np.array_equal(first, polymnist.build_tuples(
      labels, 3, np.random.default_rng(8)))
  # Not grouped by digit.
  assert np.any(np.diff(labels[first[:, 0]]) < 0)


def test_tuples_need_enough_images_per_digit():
  with pytest.raises(UserError, match="digit 1 has only 2"):
    polymnist.build_tuples(np.array([0, 0, 0, 1, 1]), 3, np.random.default_rng(0))


# --- images ---------------------------------------------------------------------------


def test_ink_inverts_a_constant_background():
  digits = np.random.default_rng(0).integers(0, 256, size=(16, 28, 28), dtype=np.uint8)
  digits[0, 0, :3] = [128, 129, 127]  # Either side of the threshold.
  colour = _COLOURS[0]
  images = polymnist.make_modality_images(
      digits, _constant_backgrounds()[0], np.random.default_rng(0), translate=False)
  assert images.shape == (16, 28, 28, 3) and images.dtype == np.uint8
  expected = np.where((digits > 128)[..., None], 255 - colour, colour)
  np.testing.assert_array_equal(images, expected)
  np.testing.assert_array_equal(images[0, 0, :3], [colour, 255 - colour, colour])


def test_ink_inverts_a_textured_crop_pixel_exactly():
  rng = np.random.default_rng(1)
  # A 28x28 photo has one crop: the photo itself.
  background = rng.integers(0, 256, size=(28, 28, 3), dtype=np.uint8)
  digits = rng.integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
  images = polymnist.make_modality_images(digits, background, rng, translate=False)
  ink = digits > 128
  np.testing.assert_array_equal(images[ink], 255 - np.broadcast_to(background, images.shape)[ink])
  np.testing.assert_array_equal(images[~ink], np.broadcast_to(background, images.shape)[~ink])


def test_crops_are_random_windows_of_the_background():
  rng = np.random.default_rng(2)
  background = rng.integers(0, 256, size=(34, 37, 3), dtype=np.uint8)
  blank = np.zeros((20, 28, 28), dtype=np.uint8)
  crops = polymnist.make_modality_images(blank, background, rng, translate=False)
  windows = np.lib.stride_tricks.sliding_window_view(background, (28, 28, 3))[:, :, 0]
  offsets = set()
  for crop in crops:
    matches = np.argwhere(np.all(windows == crop, axis=(2, 3, 4)))
    assert len(matches) == 1
    offsets.add(tuple(matches[0]))
  assert len(offsets) > 5


def test_backgrounds_too_small_are_rejected():
  with pytest.raises(UserError, match="at least 28x28"):
    polymnist.make_modality_images(np.zeros((1, 28, 28), np.uint8),
                                   np.zeros((27, 40, 3), np.uint8),
                                   np.random.default_rng(0), translate=False)


def test_scaling_shrinks_to_twenty_pixels_by_area_averaging():
  full = np.full((1, 28, 28), 255, dtype=np.uint8)
  np.testing.assert_array_equal(polymnist.scale_digits(full), np.full((1, 20, 20), 255))
  digits = np.random.default_rng(3).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
  scaled = polymnist.scale_digits(digits)
  assert scaled.shape == (5, 20, 20)
  # Area averaging keeps mean intensity (up to rounding each output pixel).
  np.testing.assert_allclose(scaled.mean(axis=(1, 2)), digits.mean(axis=(1, 2)), atol=0.5)


def test_translation_keeps_the_whole_digit_in_the_frame():
  rng = np.random.default_rng(4)
  # Ink up to every edge, the hardest case for staying inside the frame.
  digits = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
  scaled = polymnist.scale_digits(digits)
  frames = polymnist.translate_digits(digits, np.random.default_rng(5))
  np.testing.assert_array_equal(frames.sum(axis=(1, 2), dtype=np.int64),
                                scaled.sum(axis=(1, 2), dtype=np.int64))
  # Through the image builder: every ink pixel of the scaled digit is inverted.
  images = polymnist.make_modality_images(digits, _constant_backgrounds()[0],
                                          np.random.default_rng(6), translate=True)
  inverted = np.all(images == 255 - _COLOURS[0], axis=-1)
  np.testing.assert_array_equal(inverted.sum(axis=(1, 2)), (scaled > 128).sum(axis=(1, 2)))


def test_translation_positions_vary_over_the_whole_range():
  square = np.zeros((300, 28, 28), dtype=np.uint8)
  square[:, :, :] = 255  # Scaled, fills its 20x20 box: the box's corner is visible.
  frames = polymnist.translate_digits(square, np.random.default_rng(7))
  rows = np.argmax(frames.any(axis=2), axis=1)
  cols = np.argmax(frames.any(axis=1), axis=1)
  assert set(rows.tolist()) == set(range(9)) and set(cols.tolist()) == set(range(9))
  assert np.all(frames.sum(axis=(1, 2)) == 255 * 400)


# --- backgrounds ----------------------------------------------------------------------


def test_default_backgrounds_are_five_distinct_colour_photos():
  photos = polymnist.default_backgrounds()
  assert len(photos) == 5
  for photo in photos:
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert min(photo.shape[:2]) >= 28
  assert len({photo.tobytes() for photo in photos}) == 5


def test_background_directory_is_read_in_sorted_order(tmp_path):
  # Written out of order, with a file that is not a photo.
  _write_photos(tmp_path, [("c.png", 30), ("a.png", 10), ("b.PNG", 20)])
  (tmp_path / "notes.txt").write_text("not a photo")
  photos = polymnist.load_backgrounds(str(tmp_path), num_modalities=3)
  assert [int(photo[0, 0, 0]) for photo in photos] == [10, 20, 30]
  assert all(photo.shape == (32, 36, 3) and photo.dtype == np.uint8 for photo in photos)


def test_missing_background_directory_names_dir_and_flag(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(DataUnavailableError) as error:
    polymnist.load_backgrounds(str(missing))
  assert str(missing) in str(error.value)
  assert "--config.data.backgrounds=DIR" in str(error.value)


def test_too_few_background_photos_is_an_error(tmp_path):
  _write_photos(tmp_path, [("a.png", 10), ("b.png", 20)])
  with pytest.raises(DataUnavailableError, match="needs 3 background photos but found 2"):
    polymnist.load_backgrounds(str(tmp_path), num_modalities=3)


# --- building -------------------------------------------------------------------------


@pytest.mark.parametrize("num_modalities", [2, 5])
def test_build_pairs_different_images_of_the_same_digit(num_modalities):
  labels = np.arange(60, dtype=np.int64) % 10
  dataset = polymnist.build(_index_digits(60)[..., None], labels, _constant_backgrounds(),
                            num_modalities, seed=0, translate=False)
  names = tuple(f"m{m}" for m in range(num_modalities))
  assert dataset.modalities == names and len(dataset) == 60
  assert dataset.labels.dtype == np.int64
  used = np.stack([_decode_indices(dataset.arrays[name], _COLOURS[m])
                   for m, name in enumerate(names)], axis=1)
  assert np.all(labels[used] == dataset.labels[:, None])
  assert all(len(set(row)) == num_modalities for row in used.tolist())
  batch = dataset.batch(np.array([3, 1]))
  assert batch["m0"].shape == (2, 28, 28, 3) and batch["m0"].dtype == np.uint8
  np.testing.assert_array_equal(batch["label"], dataset.labels[[3, 1]])


def test_build_is_seeded():
  (images, labels), _ = _fake_mnist()
  backgrounds = _constant_backgrounds()[:2] + [
      np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)]
  first = polymnist.build(images, labels, backgrounds, 3, seed=5, translate=True)
  again = polymnist.build(images, labels, backgrounds, 3, seed=5, translate=True)
  other = polymnist.build(images, labels, backgrounds, 3, seed=6, translate=True)
  for name in first.modalities:
    np.testing.assert_array_equal(first.arrays[name], again.arrays[name])
    assert not np.array_equal(first.arrays[name], other.arrays[name])
  np.testing.assert_array_equal(first.labels, again.labels)


# --- load, config and cache -----------------------------------------------------------


@pytest.fixture
def fake_sources(tmp_path, monkeypatch):
  """Fake MNIST, a photo directory and a cache directory; records each `build` call's
  `translate` argument."""
  monkeypatch.setattr(polymnist, "_load_mnist", lambda config_data: _fake_mnist())
  build_calls = []
  real_build = polymnist.build

  def counting_build(images, labels, backgrounds, num_modalities, seed, translate):
    build_calls.append(translate)
    return real_build(images, labels, backgrounds, num_modalities, seed, translate)

  monkeypatch.setattr(polymnist, "build", counting_build)
  photos = tmp_path / "photos"
  _write_photos(photos, [(f"{m}.png", colour) for m, colour in enumerate(_COLOURS)])
  config = polymnist.get_data_config()
  config.backgrounds = str(photos)
  config.cache_dir = str(tmp_path / "cache")
  return config, build_calls, tmp_path / "cache"


def test_config_defaults():
  config = polymnist.get_data_config()
  assert config.name == "polymnist" and config.num_modalities == 5
  assert config.mnist_source == "tfds" and config.backgrounds is None
  assert config.cache_dir is None and config.max_train is None
  assert polymnist.get_data_config(translated=True).name == "translated_polymnist"
  config.max_train = 100  # A typed placeholder, overridable from the command line.
  with pytest.raises(TypeError):
    config.max_train = "all"


@pytest.mark.parametrize("num_modalities", [2, 5])
def test_load_builds_train_and_test(fake_sources, num_modalities):
  config, build_calls, _ = fake_sources
  config.num_modalities = num_modalities
  train, test = polymnist.load(config)
  assert (len(train), len(test)) == (40, 24) and build_calls == [False, False]
  assert train.modalities == tuple(f"m{m}" for m in range(num_modalities))
  assert train.arrays["m0"].shape == (40, 28, 28, 3)
  np.testing.assert_array_equal(np.bincount(test.labels), [6, 6, 6, 6])


def test_load_reads_the_cache_when_nothing_changes(fake_sources):
  config, build_calls, cache_dir = fake_sources
  train, test = polymnist.load(config)
  (cache_file,) = cache_dir.glob("*.npz")
  written_at = cache_file.stat().st_mtime_ns
  cached_train, cached_test = polymnist.load(config)
  assert len(build_calls) == 2  # Only the first load built.
  assert cache_file.stat().st_mtime_ns == written_at
  for built, cached in ((train, cached_train), (test, cached_test)):
    assert cached.modalities == built.modalities
    for name in built.modalities:
      np.testing.assert_array_equal(cached.arrays[name], built.arrays[name])
    np.testing.assert_array_equal(cached.labels, built.labels)
    np.testing.assert_array_equal(cached.batch(np.arange(3))["m4"],
                                  built.batch(np.arange(3))["m4"])


@pytest.mark.parametrize("field, value", [
    ("seed", 1), ("num_modalities", 4), ("name", "translated_polymnist"),
    ("max_train", 20), ("max_test", 20), ("mnist_source", "embedded")])
def test_load_rebuilds_when_a_parameter_changes(fake_sources, field, value):
  config, build_calls, cache_dir = fake_sources
  polymnist.load(config)
  config[field] = value
  train, _ = polymnist.load(config)
  assert len(build_calls) == 4
  assert len(list(cache_dir.glob("*.npz"))) == 2
  if field == "name":
    assert build_calls[2:] == [True, True]
  if field == "max_train":
    assert len(train) == 20


def test_load_rebuilds_when_the_photos_change(fake_sources, tmp_path):
  config, build_calls, cache_dir = fake_sources
  polymnist.load(config)
  _write_photos(tmp_path / "photos", [("0.png", 77)])
  polymnist.load(config)
  assert len(build_calls) == 4 and len(list(cache_dir.glob("*.npz"))) == 2


@pytest.mark.parametrize("field, value, message", [
    ("num_modalities", 1, r"--config\.data\.num_modalities must be an integer >= 2 and <= 5"),
    ("num_modalities", 6, r"--config\.data\.num_modalities must be an integer >= 2 and <= 5"),
    ("name", "mnist", "data.name"), ("mnist_source", "web", "data.mnist_source"),
    ("max_test", 0, "data.max_test")])
def test_load_rejects_bad_config(fake_sources, field, value, message):
  config, _, _ = fake_sources
  config[field] = value
  with pytest.raises(UserError, match=message):
    polymnist.load(config)


@pytest.mark.xdist_group("quickstart_data")  # one load of the embedded digits
def test_load_embedded_mnist_with_default_photos(tmp_path):
  config = polymnist.get_data_config(translated=True)
  config.update(num_modalities=2, mnist_source="embedded", cache_dir=str(tmp_path))
  train, test = polymnist.load(config)
  assert (len(train), len(test)) == (4500, 500)
  assert train.arrays["m1"].shape == (4500, 28, 28, 3)
  assert set(np.unique(test.labels).tolist()) == set(range(10))
