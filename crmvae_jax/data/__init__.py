"""Data sets as in-memory arrays (docs/data.md).

`load(config.data)` dispatches on `config.data.name` to the loader module of that data
set (`registry.DATA_SETS`); each returns `(train, test)` `MultimodalDataset`s. With
`config.data.missing_ratio` p > 0, every modality of every training pair is missing with
probability p (`base.with_missing`).
"""

from __future__ import annotations

import importlib
from typing import Callable

from crmvae_jax.data import registry
from crmvae_jax.data.base import (DEFAULT_MISSING_RATIO, DataUnavailableError, Loader,
                                  MultimodalDataset, is_text_array, with_missing)
from crmvae_jax.common.errors import UserError


def load(config_data) -> tuple[MultimodalDataset, MultimodalDataset]:
  """The (train, test) data sets that `config_data.name` names."""
  if config_data.name not in registry.DATA_SETS:
    raise UserError(
        f"Unknown data set {config_data.name!r} (--config.data.name); known: "
        f"{', '.join(registry.DATA_SETS)}.")
  train, test = loader_of(config_data).load(config_data)
  # Missing modalities are drawn for training only: evaluation conditions on chosen
  # subsets of complete test pairs.
  ratio = config_data.get("missing_ratio", DEFAULT_MISSING_RATIO)
  return with_missing(train, ratio, config_data.seed), test


def loader_of(config_data) -> Loader:
  """The `Loader` of `config_data.name`'s data set (its module's `LOADER`), imported on
  first use: reading a config never imports TensorFlow Datasets."""
  module = registry.DATA_SETS[config_data.name].loader
  loader = getattr(importlib.import_module(module), "LOADER", None)
  if not isinstance(loader, Loader):
    raise TypeError(f"{module} defines no LOADER = crmvae_jax.data.base.Loader(load=...), "
                    f"which data set {config_data.name!r} needs (crmvae_jax/data/registry.py).")
  return loader


def check_fields(config_data) -> None:
  """Runs the loader's own checks of the fields only its data set has
  (`check_config(config_data)`, where the loader defines one), so that a bad value is
  refused before any data is read; `crmvae_jax.config.validation.validate_config` calls it.

  Raises:
    UserError: the first field out of range, naming its flag.
  """
  hook = loader_of(config_data).check_config
  if hook is not None:
    hook(config_data)


def identity(config_data) -> dict:
  """What the data is, for the runs trained on it and the judges that judge it.

  The data set's name, plus what its loader says decides the examples and their labels
  (`identity(config_data)` where the loader defines one: the renderer version of
  MNIST-SVHN-Text offline, the content of a user's own files). A run saves it
  (`runs.save_data_identity`) and refuses to resume or be evaluated on other data; a
  judge records it and refuses to judge a run of other data.

  Returns:
    A JSON-serialisable dict; equal dicts mean the same data.
  """
  hook = loader_of(config_data).identity
  return {"name": config_data.name, **(hook(config_data) if hook is not None else {})}


def judge_training_examples(config_data, modality: str):
  """(values, labels) the judge of `modality` trains on, where its data set has a pool of
  its own for it (mst_offline's SVHN-like renders); None: the training split's rows."""
  hook = loader_of(config_data).judge_training_examples
  return None if hook is None else hook(config_data, modality)


def class_mean_images(config_data, modality: str):
  """(mean images [N, ...] in [0, 1], labels [N]) of `modality`, where its data set
  defines them (mst_offline's SVHN-like renders); else None."""
  hook = loader_of(config_data).class_mean_images
  return None if hook is None else hook(config_data, modality)


def text_decoders(dataset: MultimodalDataset) -> dict[str, Callable]:
  """name -> decode(ids [N, L]) -> list[str], for every text modality of `dataset`."""
  from crmvae_jax.data import text

  return {
      name: (dataset.vocabularies[name].decode if name in dataset.vocabularies else text.decode)
      for name in dataset.modalities if is_text_array(dataset.arrays[name])}
