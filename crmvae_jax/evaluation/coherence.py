"""Coherence (Table 1): cross-coherence of every (target, conditioning subset), joint
coherence R of prior samples, and the judges' accuracy on real data, their ceiling.

A judge maps values to predicted labels (`judges.Classifier`, `judges.DigitNameJudge`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from crmvae_jax.model import distributions as dist
from crmvae_jax.evaluation import metrics
from crmvae_jax.model.modality import Modality
from crmvae_jax.common.errors import UserError
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.evaluation.generation import Generate, GeneratePrior
from crmvae_jax.data.input_pipeline import padded_batches
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


# Test pairs and prior samples of the coherence written to TensorBoard along training.
TRAINING_EXAMPLES = 200


def training_scalars(config) -> Callable | None:
  """Coherence along training, for TensorBoard (`training.loop.train_and_evaluate`).

  Returns a function (trained model, test set) -> {'coherence/M_from_S_and_T': the
  accuracy of column 'M<-S+T', ...,
  'coherence/R': joint coherence, 'coherence/mean_cross': their mean}, on
  `TRAINING_EXAMPLES` seeded test pairs and as many prior samples, judged by the data
  set's stored judges (as `evaluate` judges, on fewer examples). None, with one line
  saying how to get them, when the judges are not stored yet; None for data sets judged
  otherwise (CUB, CelebA).
  """
  # Imported here: the judges and the data registry are needed only when this is used.
  from crmvae_jax import data as data_lib
  from crmvae_jax.data import registry
  from crmvae_jax.evaluation import generation
  from crmvae_jax.evaluation import judges as judges_lib
  from crmvae_jax.data.input_pipeline import sample_ids

  if config.data.name not in registry.names(evaluation="digits"):
    return None
  directory = judges_lib.default_directory(config)
  if not os.path.isdir(directory):
    print(f"TensorBoard shows no coherence along training until the judges exist: "
          f"{judges_lib.train_command(config, directory)}")
    return None
  loaded = {}

  def scalars(trained, test_set) -> dict[str, float]:
    if test_set.labels.ndim != 1 or np.all(test_set.labels < 0):
      return {}
    if "judges" not in loaded:
      try:
        loaded["judges"] = judges_lib.load_judges(
            config, trained.modalities, data_lib.text_decoders(test_set), directory)
      except UserError as error:
        # A judge missing, damaged or of other data must not stop the training it was
        # only to watch: it says so once, and the run trains on without the curves.
        print(f"TensorBoard shows no coherence along training: {error}")
        loaded["judges"] = None
    if loaded["judges"] is None:
      return {}
    pairs = test_set.subset(sample_ids(len(test_set), TRAINING_EXAMPLES, config.eval.seed))
    rng = jax.random.PRNGKey(config.eval.seed)
    batch_size = min(config.eval.batch_size, TRAINING_EXAMPLES)
    accuracy, _ = cross_coherence(generation.make_generate(trained), loaded["judges"], pairs,
                                  trained.modalities, batch_size, rng)
    joint, _, _ = joint_coherence(generation.make_generate_prior(trained), loaded["judges"],
                                  trained.modalities, TRAINING_EXAMPLES, batch_size, rng)
    # TensorBoard's tags take letters, digits and '_-./' only: 'M<-S+T' is 'M_from_S_and_T'.
    return {**{"coherence/" + column.replace("<-", "_from_").replace("+", "_and_"): value
               for column, value in accuracy.items()},
            "coherence/R": joint, "coherence/mean_cross": float(np.mean(list(accuracy.values())))}

  return scalars
