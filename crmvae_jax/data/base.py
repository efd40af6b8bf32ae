"""The in-memory multimodal data set every loader returns.

Data sets here are small enough to hold as arrays in memory (docs/data.md). A
paired data set is a set of base arrays, one per modality, and index arrays saying
which base row each pair uses: pairing, data multiplication and tuple building are
index arithmetic, never copies, so MNIST-SVHN-Text's 1.12M pairs cost 9 MB of
indices instead of 13 GB of pixels.

Storage conventions, shared with `crmvae_jax.model.modality` which turns a batch into
model inputs on the device:
- images: uint8, [N, H, W, C] (channels last, as Flax convolutions expect);
- text: int32 token ids, [N, L].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

from crmvae_jax.common.errors import UserError


@dataclasses.dataclass(frozen=True)
class MultimodalDataset:
  """Paired multimodal data held as index arrays over per-modality base arrays.

  Attributes:
    modalities: modality names; their order is the modality axis m = 0..M-1.
    arrays: name -> base array (uint8 images [N_m, H, W, C] or int32 tokens [N_m, L]).
    indices: name -> int array [N]; pair i uses `arrays[name][indices[name][i]]`.
    labels: [N] or [N, K] labels used by evaluation (digit, class or attributes).
    vocabularies: word-level text modalities only: name -> vocabulary, an object with
      `len(vocabulary)` and `vocabulary.decode(ids [N, L]) -> list[str]`. Character
      text modalities (int arrays without an entry) use the 71-character alphabet of
      `crmvae_jax.data.text`.
    masks: optional bool [N, M]: True where pair i has modality m (in `modalities`
      order); None: every pair has every modality. A missing modality's array row is
      still read (any values), but the objectives leave it out (`with_missing`).
    specs: a user's own data only (`crmvae_jax.data.arrays`): name -> {'network',
      'kind', 'likelihood'}; a registered data set's come from its registry entry.
  """

  modalities: tuple[str, ...]
  arrays: dict[str, np.ndarray]
  indices: dict[str, np.ndarray]
  labels: np.ndarray
  vocabularies: dict[str, Any] = dataclasses.field(default_factory=dict)
  masks: np.ndarray | None = None
  specs: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    missing = [m for m in self.modalities if m not in self.arrays or m not in self.indices]
    if missing:
      raise ValueError(f"MultimodalDataset: no arrays or indices for modalities {missing}.")
    sizes = {m: len(self.indices[m]) for m in self.modalities}
    if any(size != len(self.labels) for size in sizes.values()):
      raise ValueError(
          f"MultimodalDataset: index lengths {sizes} differ from {len(self.labels)} labels.")

    if self.masks is not None and (self.masks.shape != (len(self.labels), len(self.modalities))
                                   or not self.masks.any(axis=1).all()):
      raise ValueError(f"MultimodalDataset: masks must be bool [N, M] = "
                       f"{(len(self.labels), len(self.modalities))} with a modality in every "
                       f"row; got {self.masks.shape}.")

  def __len__(self) -> int:
    return len(self.labels)

  def batch(self, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Gathers pairs `ids`: {modality: array [len(ids), ...], 'label': labels[ids]}."""
    batch = {m: self.arrays[m][self.indices[m][ids]] for m in self.modalities}
    batch["label"] = self.labels[ids]
    if self.masks is not None:
      batch["mask"] = self.masks[ids]
    return batch

  def subset(self, ids: np.ndarray) -> "MultimodalDataset":
    """The pairs `ids` as a data set of their own (base arrays shared, not copied)."""
    return dataclasses.replace(
        self,
        indices={m: self.indices[m][ids] for m in self.modalities},
        labels=self.labels[ids], masks=None if self.masks is None else self.masks[ids])


@dataclasses.dataclass(frozen=True)
class Loader:
  """A data set's loader: everything `crmvae_jax.data` asks of it. Each loader module
  (`registry.DataSet.loader`) defines one, named `LOADER`.

  Attributes:
    load: config_data -> its (train, test) `MultimodalDataset`s.
    check_config: config_data -> None, refusing (UserError naming the flag) a value of
      a field only this data set has, before anything is read; None: no such fields.
    identity: config_data -> what, beyond the data set's name, decides its examples and
      labels (a JSON-serialisable dict: a renderer version, files' contents); a run and
      its judges record it. None: the name alone.
    judge_training_examples: (config_data, modality) -> (values, labels) that the judge
      of `modality` trains on, or None for the training split's rows; None: always
      the training split.
    class_mean_images: (config_data, modality) -> (mean images in [0, 1], labels) of
      `modality` or None, a check of its judge; None: no such images.
  """

  load: Callable[[Any], tuple["MultimodalDataset", "MultimodalDataset"]]
  check_config: Callable[[Any], None] | None = None
  identity: Callable[[Any], dict] | None = None
  judge_training_examples: Callable[[Any, str], tuple | None] | None = None
  class_mean_images: Callable[[Any, str], tuple | None] | None = None


# The probability that each modality of each training pair is missing (`with_missing`);
# 0: complete pairs. Runs saved before the field existed read it as this.
DEFAULT_MISSING_RATIO = 0.0


def base_data_config(name: str, fields: dict) -> ml_collections.ConfigDict:
  """A data set's `config.data`: the fields every data set has, then its own `fields`.

  Every data set has `name` (its key in `registry.DATA_SETS`), `seed` (0: draws its
  splits, subsets and missing modalities) and `missing_ratio` (`DEFAULT_MISSING_RATIO`:
  each modality of each training pair is missing with this probability,
  `with_missing`, besides any masks of the data's own).
  """
  return ml_collections.ConfigDict(
      {"name": name, "seed": 0, "missing_ratio": DEFAULT_MISSING_RATIO, **fields})


def with_missing(dataset: MultimodalDataset, ratio: float, seed: int) -> MultimodalDataset:
  """`dataset` with each modality of each pair missing with probability `ratio`.

  Drawn once per pair, seeded, independently per modality; a pair that would lose every
  modality keeps one, chosen at random. Masks the data set already has are kept (a
  modality missing there stays missing).

  Args:
    dataset: the pairs.
    ratio: the probability, in [0, 1).
    seed: the draw's seed.

  Returns:
    The same pairs with `masks`; `dataset` itself when `ratio` is 0.
  """
  if ratio == 0:
    return dataset
  rng = np.random.default_rng([seed, 7])
  num_pairs, num_modalities = len(dataset), len(dataset.modalities)
  kept = rng.uniform(size=(num_pairs, num_modalities)) >= ratio
  if dataset.masks is not None:
    kept &= dataset.masks
  empty = ~kept.any(axis=1)
  available = (np.ones_like(kept) if dataset.masks is None else dataset.masks)[empty]
  # One of each empty pair's available modalities, uniformly.
  choice = (rng.uniform(size=available.shape) * available).argmax(axis=1)
  kept[np.flatnonzero(empty), choice] = True
  return dataclasses.replace(dataset, masks=kept)


def is_text_array(array: np.ndarray) -> bool:
  """Text is stored as integer token ids wider than a byte; images as uint8."""
  return np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8


class DataUnavailableError(UserError):
  """A data set (or weights file) is missing and cannot be fetched.

  Its message is one sentence for the user: what is missing, where it was looked for,
  and which flag or directory supplies it. `crmvae_jax.main` prints it without a
  traceback.
  """
