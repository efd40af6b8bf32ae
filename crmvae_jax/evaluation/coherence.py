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


# (values [B, ...], true labels [B] or None for prior samples) -> score name -> per-example
# values [B] (`judges.DigitNameJudge.scores`: exact match, Levenshtein distance).
Scores = Callable[[np.ndarray, np.ndarray | None], dict[str, np.ndarray]]


def cross_coherence(generate: Generate, judges: Mapping[str, Judge], dataset: MultimodalDataset,
                    modalities: Sequence[Modality], batch_size: int, rng: jax.Array,
                    scores: Mapping[str, Scores] | None = None
                    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
  """Cross-coherence of every (target, subset of the other modalities), Table 1.

  Args:
    generate: (subset mask [M], stored batch, rng) -> displayed outputs per modality,
      generated from the posterior of the subset.
    judges: modality name -> values -> predicted labels.
    dataset: the test pairs to evaluate (every pair of it), single-label.
    modalities: the model's modalities, in its order.
    batch_size: pairs per `generate` call.
    rng: sampling randomness.
    scores: optional target modality name -> per-example scores of its generated values
      against the true labels (`Scores`), averaged per column.

  Returns:
    (accuracy, score_means): column ('M<-S+T', `tables.column_name`) -> accuracy, and
    score name -> column -> mean score, for the columns of targets in `scores`.
  """
  scores = scores or {}
  subsets = coherence_subsets(len(modalities))
  correct: dict[str, int] = {}
  score_sums: dict[str, dict[str, float]] = {}
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
        if target.name in scores:
          for name, values in scores[target.name](output[:num_valid], labels).items():
            sums = score_sums.setdefault(name, {})
            sums[column] = sums.get(column, 0.0) + float(np.sum(values))
  # Table 1's column order: by target, then by subset.
  columns = tables.coherence_columns([m.abbreviation for m in modalities])[1:]
  accuracy = {column: correct[column] / len(dataset) for column in columns}
  score_means = {name: {column: sums[column] / len(dataset) for column in columns
                        if column in sums}
                 for name, sums in score_sums.items()}
  return accuracy, score_means


def joint_coherence(generate_prior: GeneratePrior, judges: Mapping[str, Judge],
                    modalities: Sequence[Modality], num_samples: int, batch_size: int,
                    rng: jax.Array, scores: Mapping[str, Scores] | None = None,
                    strict_judges: Mapping[str, Judge] | None = None
                    ) -> tuple[float, dict[str, dict[str, float]], float | None]:
  """Joint coherence R: the fraction of prior samples on which all judges agree.

  Args:
    generate_prior: (number of samples, rng) -> displayed outputs per modality.
    judges: modality name -> values -> predicted labels.
    modalities: the model's modalities, in its order.
    num_samples: samples z ~ N(0, I).
    batch_size: samples per `generate_prior` call (every call has this size).
    rng: sampling randomness.
    scores: as in `cross_coherence`, called without labels.
    strict_judges: optional judges that replace some of `judges` for a second, strict
      R (e.g. generated digit names judged by exact match, `judges.DigitNameJudge.exact`).

  Returns:
    (R, score_means, strict R or None): score_means maps score name ->
    '<abbreviation><-prior' -> mean, for modalities in `scores`.
  """
  scores = scores or {}
  strict_judges = strict_judges or {}
  predictions, strict_predictions = [], []
  score_values: dict[str, dict[str, list[np.ndarray]]] = {}
  for batch_index, (_, num_valid) in enumerate(padded_batches(num_samples, batch_size)):
    outputs = generate_prior(min(batch_size, num_samples), jax.random.fold_in(rng, batch_index))
    predictions.append(np.stack([judges[m.name](output)[:num_valid]
                                 for m, output in zip(modalities, outputs)]))
    strict_predictions.append(np.stack([
        strict_judges[m.name](output)[:num_valid] if m.name in strict_judges
        else predictions[-1][index] for index, (m, output) in enumerate(zip(modalities, outputs))]))
    for m, output in zip(modalities, outputs):
      if m.name in scores:
        for name, values in scores[m.name](output[:num_valid], None).items():
          score_values.setdefault(name, {}).setdefault(f"{m.abbreviation}<-prior", []).append(
              values)
  coherence = metrics.joint_coherence(np.concatenate(predictions, axis=1))
  strict = (metrics.joint_coherence(np.concatenate(strict_predictions, axis=1))
            if strict_judges else None)
  return coherence, {name: {column: float(np.mean(np.concatenate(values)))
                            for column, values in columns.items()}
                     for name, columns in score_values.items()}, strict


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
