"""The modalities of a loaded data set, as the model sees them (`model.modality.Modality`).

Likelihood weights follow the size rule of docs/models.md, written once for every data
set: lambda_m = max_k size(x_k) / size(x_m), where an image's size is its number of
elements and a text's size is its length.
"""

from __future__ import annotations

import math
from typing import Sequence

from crmvae_jax.common.errors import UserError
from crmvae_jax.data import registry, text
from crmvae_jax.data.arrays import IMAGE_NETWORKS
from crmvae_jax.data.base import is_text_array
from crmvae_jax.model import networks
from crmvae_jax.model.modality import Modality


def _classifier(network: str, kind: str, shape: tuple[int, ...], is_text: bool) -> str:
  """The judge's network of a modality: its own network's key, or for a user's own
  networks the one of its kind and size (`IMAGE_NETWORKS`, 'sequence', 'vector')."""
  if not network.startswith(networks.CUSTOM_PREFIX):
    return networks.NETWORKS[network].classifier
  if kind == "image":
    return IMAGE_NETWORKS[shape[0]]
  return "sequence" if is_text else "vector"


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
  # A user's own data (crmvae_jax.data.arrays) names each modality's network, kind and
  # likelihood itself; a registered data set's come from its registry entry.
  specs = getattr(dataset, "specs", None) or {}
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
  network_names = ([specs[name]["network"] for name in names] if specs
                   else _network_names(data_name, names))
  kinds = [specs.get(name, {}).get("kind", "text" if vocab else "image")
           for name, vocab in zip(names, vocabularies)]
  return tuple(
      Modality(name, network, shape, vocab, float(weight), kind=kind,
               likelihood=specs.get(name, {}).get("likelihood", "laplace"),
               abbreviation=registry.ABBREVIATIONS.get(name, name.upper()),
               classifier=_classifier(network, kind, shape, vocab is not None),
               encoder_options=specs.get(name, {}).get("encoder_options", {}),
               decoder_options=specs.get(name, {}).get("decoder_options", {}))
      for name, network, shape, vocab, weight, kind in zip(
          names, network_names, shapes, vocabularies, likelihood_weights, kinds))
