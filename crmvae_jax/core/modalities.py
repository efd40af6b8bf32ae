"""What each modality is: its network, its likelihood, its weight, and how it looks.

A `Modality` turns the stored batch arrays of `crmvae_jax.data` (uint8 images, int32
tokens) into network inputs on the device, scores decoder outputs with the modality's
likelihood (SPEC.md section 1: Laplace with scale 0.75 for images, a categorical over
logits for text), and turns outputs back into pictures or strings for figures.

Likelihood weights follow the rule of SPEC.md section 4, written once for every data
set: lambda_m = max_k size(x_k) / size(x_m), where an image's size is its number of
elements and a text's size is its length. On MNIST-SVHN-Text this gives MNIST
3072/784, SVHN 1 and text 3072/8 = 384; on PolyMNIST every weight is 1.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.core import distributions as dist
from crmvae_jax.data import registry, text
from crmvae_jax.data.base import is_text_array
from crmvae_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Modality:
  """One modality of a data set.

  Attributes:
    name: the data set's key for it ('mnist', 'svhn', 'text', 'm0', ...).
    network: its `crmvae_jax.core.networks.NETWORKS` / `CLASSIFIERS` key, from the data
      set's entry in `crmvae_jax.data.registry`.
    shape: stored per-example shape: (H, W, C) for images, (L,) for text.
    vocab_size: alphabet or vocabulary size for text, None for images.
    likelihood_weight: lambda_m.
  """

  name: str
  network: str
  shape: tuple[int, ...]
  vocab_size: int | None
  likelihood_weight: float

  @property
  def is_text(self) -> bool:
    return self.vocab_size is not None

  @property
  def abbreviation(self) -> str:
    return registry.ABBREVIATIONS.get(self.name, self.name.upper())

  @property
  def size(self) -> int:
    """Elements of an image, characters or tokens of a text (the weight rule's size)."""
    return math.prod(self.shape)

  def network_kwargs(self) -> dict[str, int]:
    """Extra constructor arguments of its networks (text networks need V and L)."""
    return {"vocab_size": self.vocab_size, "length": self.shape[0]} if self.is_text else {}

  def inputs(self, stored: jax.Array) -> jax.Array:
    """Stored batch -> network input: images to float [0, 1], tokens to one-hot."""
    if self.is_text:
      return jax.nn.one_hot(stored, self.vocab_size, dtype=jnp.float32)
    return stored.astype(jnp.float32) / 255.0

  def log_likelihood(self, stored: jax.Array, output: jax.Array) -> jax.Array:
    """log p(x | decoder output) summed over the example's elements: [B]."""
    if self.is_text:
      return dist.categorical_log_likelihood(stored, output)
    return dist.laplace_log_likelihood(self.inputs(stored), output)

  def display(self, output: np.ndarray) -> np.ndarray:
    """Decoder output -> what a person looks at: images in [0, 1] or token ids [B, L]."""
    if self.is_text:
      return np.asarray(output).argmax(-1)
    return np.clip(np.asarray(output), 0.0, 1.0)


def _network_names(data_name: str, names: Sequence[str]) -> list[str]:
  if data_name not in registry.DATA_SETS:
    raise ValueError(f"Unknown data set {data_name!r}; known: {', '.join(registry.DATA_SETS)}.")
  return [registry.DATA_SETS[data_name].network_of(name) for name in names]


def modalities_of(data_name: str, dataset, likelihood_weights: Sequence[float] | None = None
                  ) -> tuple[Modality, ...]:
  """The modalities of a loaded data set, in its order.

  Args:
    data_name: the config's `data.name`, a key of `crmvae_jax.data.registry.DATA_SETS`.
    dataset: a `MultimodalDataset`: its arrays give shapes and which modalities are
      text (integer, not uint8), its vocabularies the size of word-level texts.
    likelihood_weights: optional override of the lambda_m rule, one per modality
      (another count raises UserError naming --config.likelihood_weights).

  Returns:
    One `Modality` per modality of `dataset`.
  """

  names = dataset.modalities
  shapes = [tuple(dataset.arrays[name].shape[1:]) for name in names]
  is_text = [is_text_array(dataset.arrays[name]) for name in names]
  vocabularies = [len(dataset.vocabularies.get(name, text.ALPHABET)) if text_like else None
                  for name, text_like in zip(names, is_text)]
  sizes = [math.prod(shape) for shape in shapes]
  if likelihood_weights is None:
    likelihood_weights = [max(sizes) / size for size in sizes]
  elif len(likelihood_weights) != len(names):
    example = ",".join(["1.0"] * len(names))
    raise UserError(
        f"--config.likelihood_weights has {len(likelihood_weights)} entries for the "
        f"{len(names)} modalities {names} of {data_name}; pass one per modality, e.g. "
        f"--config.likelihood_weights='({example})'.")
  return tuple(
      Modality(name, network, shape, vocab, float(weight))
      for name, network, shape, vocab, weight in zip(
          names, _network_names(data_name, names), shapes, vocabularies, likelihood_weights))
