"""FID and the classifier-Frechet distance of generated images (Table 2; Figure 2 with
subsets of every size): the Frechet distance between the features of generated and of
real images of the same pairs, in Inception's feature space (FID) or in that of the
target modality's own classifier (no weights to fetch, so it exists on every machine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from crmvae_jax.data import input_pipeline
from crmvae_jax.evaluation import inception, metrics
from crmvae_jax.model.modality import Modality
from crmvae_jax.data.base import DataUnavailableError, MultimodalDataset
from crmvae_jax.evaluation.coherence import Judge, coherence_subsets, subset_abbreviations
from crmvae_jax.evaluation.generation import Generate
from crmvae_jax.data.input_pipeline import padded_batches
from crmvae_jax.reporting import tables

# images [B, H, W, C] (uint8, or floats in [0, 1]) -> features [B, F].
Features = Callable[[np.ndarray], np.ndarray]
# Why FID is not computed when `config.eval.fid.enabled` is off.
FID_OFF_NOTE = "FID not computed (--config.eval.fid.enabled=False)."


def fid_subsets(num_modalities: int, by_subset_size: bool, subsets_per_size: int,
                rng: np.random.Generator) -> np.ndarray:
  """The conditioning subsets FID is computed for.

  Args:
    num_modalities: M.
    by_subset_size: False: every single modality (Table 2); True: subsets of every size
      1..M-1 (Figure 2's FID against the number of inputs).
    subsets_per_size: with `by_subset_size`, at most this many subsets of each size, a
      seeded random choice (-1: all of them), to bound the cost on many modalities.
    rng: the generator the choice is drawn from.

  Returns:
    Boolean masks [K, M], ordered by size, then as `distributions.nonempty_subsets`.
  """
  subsets = coherence_subsets(num_modalities)
  sizes = subsets.sum(axis=1)
  if not by_subset_size:
    return subsets[sizes == 1]
  chosen = [subsets[sizes == size][
                input_pipeline.sample_ids(int(np.sum(sizes == size)), subsets_per_size, rng)]
            for size in range(1, num_modalities)]
  return np.concatenate(chosen)


def fid_column(source: Sequence[str], target: str) -> str:
  """FID column of `target` images generated from the subset `source`: 'M+T->S'."""
  return f"{tables.subset_name(source)}->{target}"


def fid_scores(generate: Generate, features_fn: Features | Mapping[str, Features],
               dataset: MultimodalDataset, modalities: Sequence[Modality], batch_size: int,
               rng: jax.Array, subsets: np.ndarray | None = None) -> dict[str, float]:
  """FID of every image modality generated from every conditioning subset that leaves
  it out (Table 2: the single modalities; Figure 2: subsets of every size).

  The same loop gives the classifier-Frechet distance (`model_classifier_fd`): only
  the feature space differs, one per target modality.

  Args:
    generate: as in `cross_coherence`.
    features_fn: images [B, H, W, C] (uint8, or floats in [0, 1]) -> features [B, F],
      one function for every target (Inception), or a mapping from each image
      modality's name to the function of its own feature space (its classifier).
    dataset: the test pairs; generated images of pair i are compared with the real
      images of the same pairs.
    modalities: the model's modalities, in its order.
    batch_size: pairs per `generate` call.
    rng: sampling randomness.
    subsets: conditioning subsets, boolean masks [K, M] (`fid_subsets`); None: every
      single modality.

  Returns:
    'S->M' (M images generated from S; 'S+T->M' from the subset {S, T}) -> Frechet
    distance, for every image target and every subset without it, by target, then in
    the order of `subsets`.
  """
  if subsets is None:
    subsets = np.eye(len(modalities), dtype=bool)
  image_targets = [index for index, m in enumerate(modalities) if not m.is_text]
  directions = [(subset_index, target) for target in image_targets
                for subset_index, subset in enumerate(subsets) if not subset[target]]
  generated = {direction: [] for direction in directions}
  real = {target: [] for target in image_targets}
  features_of = {target: (features_fn[modalities[target].name]
                          if isinstance(features_fn, Mapping) else features_fn)
                 for target in image_targets}
  for batch_index, (ids, num_valid) in enumerate(padded_batches(len(dataset), batch_size)):
    batch = dataset.batch(ids)
    # Whole padded batches keep one shape, so the feature network compiles once.
    for target in image_targets:
      real[target].append(features_of[target](batch[modalities[target].name])[:num_valid])
    for subset_index, subset in enumerate(subsets):
      targets = [t for s, t in directions if s == subset_index]
      if not targets:
        continue
      outputs = generate(subset, batch, jax.random.fold_in(
          jax.random.fold_in(rng, batch_index), subset_index))
      for target in targets:
        generated[(subset_index, target)].append(
            features_of[target](outputs[target])[:num_valid])
  scores = {}
  real_features = {target: np.concatenate(real[target]) for target in image_targets}
  for subset_index, target in directions:
    column = fid_column(subset_abbreviations(modalities, subsets[subset_index]),
                        modalities[target].abbreviation)
    scores[column] = metrics.frechet_distance_of_features(
        np.concatenate(generated[(subset_index, target)]), real_features[target])
  return scores


def fid_pairs(config: ml_collections.ConfigDict, test_pairs: MultimodalDataset
              ) -> MultimodalDataset:
  """The pairs FID and the classifier-Frechet distance compare: a seeded random choice
  (`config.eval.seed`) of `config.eval.fid.examples` of `test_pairs` (all when there
  are fewer), never the first ones, which on label-sorted data share one label."""
  return test_pairs.subset(input_pipeline.sample_ids(
      len(test_pairs), config.eval.fid.examples, config.eval.seed))


def _fid_subsets_of(config: ml_collections.ConfigDict, num_modalities: int) -> np.ndarray:
  """`fid_subsets` of `config.eval.fid` (by_subset_size, subsets_per_size), drawn
  with `config.eval.seed`."""
  return fid_subsets(num_modalities, config.eval.fid.by_subset_size,
                     config.eval.fid.subsets_per_size, np.random.default_rng(config.eval.seed))


def inception_features(config: ml_collections.ConfigDict
                       ) -> tuple[Features | None, str | None]:
  """The Inception feature function of `config.eval` (fid.inception_weights, batch_size).

  Returns:
    (features, None), or (None, a one-sentence note of why FID is not computed: turned
    off, or the weights file is missing and which file to provide). A missing weights
    file is printed, not raised, so the rest of an evaluation still completes.
  """
  if not config.eval.fid.enabled:
    return None, FID_OFF_NOTE
  try:
    weights = inception.InceptionFeatures.load(config.eval.fid.inception_weights)
  except DataUnavailableError as error:
    note = f"FID skipped: {error}"
    tqdm.tqdm.write(note)
    return None, note
  return lambda images: weights.features(images, config.eval.batch_size), None


def model_fid(config: ml_collections.ConfigDict, generate: Generate,
              test_pairs: MultimodalDataset, modalities: Sequence[Modality], rng: jax.Array
              ) -> tuple[dict[str, float] | None, str | None]:
  """`fid_scores` with Inception features on the `fid_pairs` of `test_pairs`.

  The conditioning subsets are `fid_subsets` of `config.eval.fid.by_subset_size`
  (default False: single modalities, Table 2) and `config.eval.fid.subsets_per_size`
  (default -1: every subset of each size), drawn with `config.eval.seed`.

  Returns:
    (scores, None), or (None, a one-sentence note of why FID was not computed: turned
    off, no image to generate across, or the Inception weights file is missing and
    which file to provide). A missing weights file is printed, not raised, so the
    rest of the evaluation still completes.
  """
  if not config.eval.fid.enabled:
    return None, FID_OFF_NOTE
  if len(modalities) < 2 or all(m.is_text for m in modalities):
    return None, "FID not computed: no image modality to generate from another modality."
  features, note = inception_features(config)
  if features is None:
    return None, note
  return fid_scores(generate, features, fid_pairs(config, test_pairs), modalities,
                    config.eval.batch_size, rng, _fid_subsets_of(config, len(modalities))), None


def model_classifier_fd(config: ml_collections.ConfigDict, generate: Generate,
                        judges: Mapping[str, Judge], test_pairs: MultimodalDataset,
                        modalities: Sequence[Modality], rng: jax.Array
                        ) -> dict[str, float] | None:
  """The classifier-Frechet distance: `fid_scores` in the feature space of each target
  modality's own classifier (`judges.Classifier.features`, its penultimate layer).

  The columns, pairs and generated images are FID's (`model_fid` with the same rng):
  the `fid_pairs` of `test_pairs` and the `fid_subsets` of `config.eval`. It needs no
  download, so it is computed whether or not FID is (`config.eval.fid.enabled` turns only
  Inception's FID off).

  Args:
    config: the run's config (`config.eval.fid`: examples, by_subset_size,
      subsets_per_size; `config.eval.seed`).
    generate: as in `cross_coherence`.
    judges: modality name -> judge; every image modality's is a `judges.Classifier`.
    test_pairs: the evaluated pairs.
    modalities: the model's modalities, in its order.
    rng: sampling randomness (FID's, so both compare the same generated images).

  Returns:
    Column ('S->M', as `fid_scores`) -> Frechet distance, or None when there is no
    image modality to generate from another modality.
  """
  if len(modalities) < 2 or all(m.is_text for m in modalities):
    return None
  features = {m.name: judges[m.name].features for m in modalities if not m.is_text}
  return fid_scores(generate, features, fid_pairs(config, test_pairs), modalities,
                    config.eval.batch_size, rng, _fid_subsets_of(config, len(modalities)))
