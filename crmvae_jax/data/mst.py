"""MNIST-SVHN-Text: same-digit MNIST / SVHN pairs with the digit's name as text.

docs/data.md (the paper's appendix A). Per digit the reference keeps the first
n = min(#MNIST, #SVHN, 10000) images of each data set and appends 20 independent
random permutations of both ("data multiplication"): about 1.12M train pairs
(MNIST train with SVHN train) and 200k test pairs (MNIST test with SVHN test).
Each pair gets its own text, the digit's name at a random start. Unlike the
reference, every draw is seeded: the same `seed` gives the same pairs and texts.

TFDS `svhn_cropped` already stores digit 0 as label 0 (its generator writes
`label % 10`; the raw SVHN files use 10), so labels need no remapping here.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict
import numpy as np

from crmvae_jax.common import field_checks
from crmvae_jax.data import text
from crmvae_jax.data.base import Loader, MultimodalDataset, base_data_config

MODALITIES = ("mnist", "svhn", "text")


def get_data_config() -> ml_collections.ConfigDict:
  """Default data config: the full reference data (`config.data` of configs/mst.py)."""
  return base_data_config("mst", {
      # TFDS data directory holding mnist and svhn_cropped; None: TFDS's default.
      "data_dir": config_dict.placeholder(str),
      "download": True,
      # Redraw each digit name's start at every training step (the reference loader's
      # augmentation, `text.redraw_starts`) instead of once per pair.
      "text_redraw": False,
      "multiplication": 20,
      "max_per_digit": 10000,
      # Keep a seeded random subset of the pairs (None: all), for small runs.
      "max_train_pairs": config_dict.placeholder(int),
      "max_test_pairs": config_dict.placeholder(int),
  })


def check_config(config_data: ml_collections.ConfigDict) -> None:
  """Refuses pairing settings that cannot build the pairs (`data.check_fields`)."""
  for field in ("multiplication", "max_per_digit"):
    field_checks.check_number({"data": config_data}, f"data.{field}", 1, integer=True)


def pair_by_digit(labels_a: np.ndarray, labels_b: np.ndarray, rng: np.random.Generator,
                  max_per_digit: int = 10000,
                  multiplication: int = 20) -> tuple[np.ndarray, np.ndarray]:
  """Pairs rows of two labelled data sets by digit, with data multiplication.

  For every digit d of `labels_a`, keeps the first n_d = min(#a_d, #b_d,
  max_per_digit) rows of each data set with that label (data-set order, as the
  reference) and concatenates `multiplication` independent random permutations of
  each side. Digits run in increasing order; shuffle batches when training.

  Args:
    labels_a: int [N_a] labels of data set a.
    labels_b: int [N_b] labels of data set b.
    rng: the generator for the permutations.
    max_per_digit: cap on the rows kept per digit and data set.
    multiplication: independent permutations per digit.

  Returns:
    (idx_a, idx_b): int64 [multiplication * sum_d n_d] row indices into a and b;
    `labels_a[idx_a] == labels_b[idx_b]` everywhere.
  """
  labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
  idx_a, idx_b = [], []
  for digit in np.unique(labels_a):
    rows_a = np.flatnonzero(labels_a == digit)
    rows_b = np.flatnonzero(labels_b == digit)
    kept = min(len(rows_a), len(rows_b), max_per_digit)
    for rows, idx in ((rows_a, idx_a), (rows_b, idx_b)):
      copies = np.tile(rows[:kept], (multiplication, 1))
      idx.append(rng.permuted(copies, axis=1).ravel())
  return (np.concatenate(idx_a).astype(np.int64), np.concatenate(idx_b).astype(np.int64))


def paired_split(mnist_images: np.ndarray, mnist_labels: np.ndarray, svhn_images: np.ndarray,
                 svhn_labels: np.ndarray, rng: np.random.Generator, max_per_digit: int,
                 multiplication: int, max_pairs: int | None) -> MultimodalDataset:
  """One split of MNIST-SVHN-Text: same-digit pairs (`pair_by_digit`), at most
  `max_pairs` of them (a seeded random subset), each with its own digit name.

  Returns:
    The split with modalities ('mnist', 'svhn', 'text'); base arrays shared, not copied.
  """
  mnist_idx, svhn_idx = pair_by_digit(mnist_labels, svhn_labels, rng,
                                      max_per_digit=max_per_digit,
                                      multiplication=multiplication)
  if max_pairs is not None and max_pairs < len(mnist_idx):
    kept = rng.choice(len(mnist_idx), size=max_pairs, replace=False)
    mnist_idx, svhn_idx = mnist_idx[kept], svhn_idx[kept]
  labels = mnist_labels[mnist_idx]
  return MultimodalDataset(
      modalities=MODALITIES,
      arrays={"mnist": mnist_images, "svhn": svhn_images, "text": text.digit_texts(labels, rng)},
      indices={"mnist": mnist_idx, "svhn": svhn_idx, "text": np.arange(len(labels))},
      labels=labels)


def load(config_data: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Loads MNIST-SVHN-Text from TFDS (`mnist`, `svhn_cropped`).

  Args:
    config_data: fields of `get_data_config()`.

  Returns:
    (train, test) with modalities ('mnist', 'svhn', 'text'): arrays 'mnist' uint8
    [N_M, 28, 28, 1], 'svhn' uint8 [N_S, 32, 32, 3] and 'text' int32 [N, 8] (one
    text per pair, so its indices are arange(N)); labels int64 [N] digits.

  Raises:
    DataUnavailableError: if MNIST or SVHN is not prepared and cannot be.
  """
  # Imported on use, so that loading configs/mst.py does not import tensorflow_datasets.
  from crmvae_jax.data import tfds_arrays

  train_rng, test_rng = np.random.default_rng(config_data.seed).spawn(2)
  splits = []
  for split, rng, max_pairs in (("train", train_rng, config_data.get("max_train_pairs")),
                                ("test", test_rng, config_data.get("max_test_pairs"))):
    mnist_images, mnist_labels = tfds_arrays.load_arrays(
        "mnist", split, config_data.data_dir, config_data.download)
    svhn_images, svhn_labels = tfds_arrays.load_arrays(
        "svhn_cropped", split, config_data.data_dir, config_data.download)
    splits.append(paired_split(mnist_images, mnist_labels, svhn_images, svhn_labels, rng,
                               config_data.max_per_digit, config_data.multiplication,
                               max_pairs))
  return splits[0], splits[1]

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load, check_config=check_config)
