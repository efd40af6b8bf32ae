"""Coherence (Table 1): cross-coherence of every (target, conditioning subset), joint
coherence R of prior samples, and the judges' accuracy on real data, their ceiling.

A judge maps values to predicted labels (`judges.Classifier`, `judges.DigitNameJudge`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from crmvae_jax.core import distributions as dist
from crmvae_jax.core import metrics
from crmvae_jax.core.modalities import Modality
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.evaluation.generation import Generate, GeneratePrior
from crmvae_jax.input_pipeline import padded_batches
from crmvae_jax.reporting import tables

# values [B, ...] -> predicted labels [B].
Judge = Callable[[np.ndarray], np.ndarray]


def coherence_subsets(num_modalities: int) -> np.ndarray:
  """Conditioning subsets of Table 1: every non-empty subset that leaves a modality out.

  Returns:
    Boolean masks [2^M - 2, M], ordered as `distributions.nonempty_subsets`.
  """
  subsets = dist.nonempty_subsets(num_modalities)
  return subsets[~subsets.all(axis=1)]


def subset_abbreviations(modalities: Sequence[Modality], mask: np.ndarray) -> list[str]:
  """The abbreviations of the modalities in the subset `mask` [M], in model order."""
  return [m.abbreviation for m, member in zip(modalities, mask) if member]


def cross_coherence(generate: Generate, judges: Mapping[str, Judge], dataset: MultimodalDataset,
                    modalities: Sequence[Modality], batch_size: int, rng: jax.Array,
                    distance_fns: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None
                    ) -> tuple[dict[str, float], dict[str, float]]:
  """Cross-coherence of every (target, subset of the other modalities), Table 1.

  Args:
    generate: (subset mask [M], stored batch, rng) -> displayed outputs per modality,
      generated from the posterior of the subset.
    judges: modality name -> values -> predicted labels.
    dataset: the test pairs to evaluate (every pair of it), single-label.
    modalities: the model's modalities, in its order.
    batch_size: pairs per `generate` call.
    rng: sampling randomness.
    distance_fns: optional modality name -> values -> per-example distances (the edit
      distance of generated digit names), averaged per column.

  Returns:
    (accuracy, mean_distance): column ('M<-S+T', `tables.column_name`) -> accuracy,
    and the same columns for targets in `distance_fns` -> mean distance.
  """
  distance_fns = distance_fns or {}
  subsets = coherence_subsets(len(modalities))
  correct: dict[str, int] = {}
  distance_sums: dict[str, float] = {}
  for batch_index, (ids, num_valid) in enumerate(padded_batches(len(dataset), batch_size)):
    batch = dataset.batch(ids)
    labels = batch["label"][:num_valid]
    for subset_index, subset in enumerate(subsets):
      outputs = generate(subset, batch, jax.random.fold_in(
          jax.random.fold_in(rng, batch_index), subset_index))
      for target, output, conditioned in zip(modalities, outputs, subset):
        if conditioned:
          continue
        column = tables.column_name(target.abbreviation, subset_abbreviations(modalities, subset))
        predictions = judges[target.name](output)[:num_valid]
        correct[column] = correct.get(column, 0) + int(np.sum(predictions == labels))
        if target.name in distance_fns:
          distance_sums[column] = distance_sums.get(column, 0.0) + float(
              np.sum(distance_fns[target.name](output)[:num_valid]))
  # Table 1's column order: by target, then by subset.
  columns = tables.coherence_columns([m.abbreviation for m in modalities])[1:]
  accuracy = {column: correct[column] / len(dataset) for column in columns}
  mean_distance = {column: distance_sums[column] / len(dataset) for column in columns
                   if column in distance_sums}
  return accuracy, mean_distance


def joint_coherence(generate_prior: GeneratePrior, judges: Mapping[str, Judge],
                    modalities: Sequence[Modality], num_samples: int, batch_size: int,
                    rng: jax.Array,
                    distance_fns: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None
                    ) -> tuple[float, dict[str, float]]:
  """Joint coherence R: the fraction of prior samples on which all judges agree.

  Args:
    generate_prior: (number of samples, rng) -> displayed outputs per modality.
    judges: modality name -> values -> predicted labels.
    modalities: the model's modalities, in its order.
    num_samples: samples z ~ N(0, I).
    batch_size: samples per `generate_prior` call (every call has this size).
    rng: sampling randomness.
    distance_fns: as in `cross_coherence`.

  Returns:
    (R, mean_distance): mean_distance maps '<abbreviation><-prior' to the mean
    distance of that modality's samples, for modalities in `distance_fns`.
  """
  distance_fns = distance_fns or {}
  predictions = []
  distances: dict[str, list[np.ndarray]] = {}
  for batch_index, (_, num_valid) in enumerate(padded_batches(num_samples, batch_size)):
    outputs = generate_prior(min(batch_size, num_samples), jax.random.fold_in(rng, batch_index))
    predictions.append(np.stack([judges[m.name](output)[:num_valid]
                                 for m, output in zip(modalities, outputs)]))
    for m, output in zip(modalities, outputs):
      if m.name in distance_fns:
        distances.setdefault(f"{m.abbreviation}<-prior", []).append(
            distance_fns[m.name](output)[:num_valid])
  coherence = metrics.joint_coherence(np.concatenate(predictions, axis=1))
  return coherence, {column: float(np.mean(np.concatenate(values)))
                     for column, values in distances.items()}


def judge_accuracy(judges: Mapping[str, Judge], dataset: MultimodalDataset,
                   modalities: Sequence[Modality], batch_size: int) -> dict[str, float]:
  """Each judge's accuracy on the real data of its modality: coherence's ceiling."""
  correct = dict.fromkeys([m.name for m in modalities], 0)
  for ids, num_valid in padded_batches(len(dataset), batch_size):
    batch = dataset.batch(ids)
    for m in modalities:
      predictions = judges[m.name](batch[m.name])[:num_valid]
      correct[m.name] += int(np.sum(predictions == batch["label"][:num_valid]))
  return {name: count / len(dataset) for name, count in correct.items()}
