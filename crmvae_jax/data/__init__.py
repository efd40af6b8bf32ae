"""Data sets as in-memory arrays (SPEC.md section 3).

`load(config.data)` dispatches on `config.data.name` to the loader module of that data
set (`registry.DATA_SETS`); each returns `(train, test)` `MultimodalDataset`s.
"""

from __future__ import annotations

import importlib
from typing import Callable

from crmvae_jax.data import registry
from crmvae_jax.data.base import DataUnavailableError, MultimodalDataset, is_text_array
from crmvae_jax.errors import UserError


def load(config_data) -> tuple[MultimodalDataset, MultimodalDataset]:
  """The (train, test) data sets that `config_data.name` names."""
  if config_data.name not in registry.DATA_SETS:
    raise UserError(
        f"Unknown data set {config_data.name!r} (--config.data.name); known: "
        f"{', '.join(registry.DATA_SETS)}.")
  loader = registry.DATA_SETS[config_data.name].loader
  return importlib.import_module(loader).load(config_data)


def text_decoders(dataset: MultimodalDataset) -> dict[str, Callable]:
  """name -> decode(ids [N, L]) -> list[str], for every text modality of `dataset`."""
  from crmvae_jax.data import text

  return {
      name: (dataset.vocabularies[name].decode if name in dataset.vocabularies else text.decode)
      for name in dataset.modalities if is_text_array(dataset.arrays[name])}
