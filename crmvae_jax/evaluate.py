"""Evaluation of a trained run: coherence, FID, classifier-Frechet distance and latent
probes (SPEC.md section 6).

    python -m crmvae_jax.evaluate --workdir=workdirs/mst_crmvae

reads the run's own config (`DIR/config.json`, written by training), so it evaluates
any run and any sweep without its training flags; `--config.eval.FIELD=VALUE` changes
the evaluation settings. A quick-start run (`python -m crmvae_jax.main --workdir=DIR`,
then `python -m crmvae_jax.classifiers`) evaluates offline in about a minute on a CPU.
It computes, on `config.eval.num_examples` test pairs (a seeded random choice; -1: all):

- cross-coherence (Table 1): for every target modality and every non-empty subset S
  of the other modalities, z ~ the model's own posterior of S (PoE(S) or MoE(S),
  `objectives.SUBSET_POSTERIOR`), the target's decoder mean classified and compared
  with the label. One compiled generator serves every subset: S is a mask.
- joint coherence R (Table 1): z ~ N(0, I), every modality decoded and classified;
  the fraction of samples on which all predictions agree.
- generated digit names judged by Levenshtein distance, with the mean distance to
  the predicted name (`classifiers.DigitNameJudge`).
- FID (Table 2) of every image modality generated from every other single modality,
  against the real test images of that modality (needs the Inception weights; without
  them FID is skipped with a one-sentence note of which file to provide). With
  `config.eval.fid_by_subset_size`, from conditioning subsets of every size instead
  (at most `config.eval.fid_subsets_per_size` per size), for Figure 2;
  `by_subset_size` averages any result's columns per subset size.
- classifier-Frechet distance, always (no weights to fetch): the Frechet distance of
  the same directions, on the same pairs and the same generated images, in the
  feature space of the project's own classifier of the target modality (its
  penultimate layer, `classifiers.Classifier.features`), so Table 2's comparison
  exists on every machine. Its scale is the classifier's, not Inception's: compare
  models judged by one set of classifiers, never with the paper's FIDs.
- latent linear probes (Table 5): logistic regression on the posterior means of every
  non-empty subset, trained on up to `config.eval.probe_train_examples` training pairs
  (default 500, the reference code's setting).

FID and the classifier-Frechet distance use `config.eval.fid_examples` of the
evaluated pairs, a seeded random choice (`fid_pairs`), and the figure shows
`config.figure_examples` of them, another: test pairs may be stored in label order
(MNIST-SVHN-Text's are, digit by digit), where the first pairs all show one digit.

It writes `DIR/eval/results.json`, `DIR/eval/tables.md` (Tables 1, 2 and 5 in the
paper's layout, with the paper's rows on MNIST-SVHN-Text) and
`DIR/eval/cross_generation.png` (for each replica r of a sweep, or `--replica=r`
alone: `DIR/replica_r/eval/...`), and prints the tables. It refuses to run when a
classifier is missing, naming the command that trains it.

The metric loops (`cross_coherence`, `joint_coherence`, `fid_scores`, `latent_probes`)
take the model as functions (`generate`, `encode_means`), so they are tested with
stand-in models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import flags

from crmvae_jax import classifiers, cli, evaluate_image_text, input_pipeline
from crmvae_jax.reporting import plotting, summaries, tables
from crmvae_jax import runs, train, validation
from crmvae_jax import data as data_lib
from crmvae_jax.core import distributions as dist
from crmvae_jax.core import inception, metrics, models, objectives
from crmvae_jax.data import registry
from crmvae_jax.data.base import DataUnavailableError, MultimodalDataset
from crmvae_jax.errors import UserError
from crmvae_jax.input_pipeline import padded_batches
from crmvae_jax.core.modalities import Modality

# (subset mask [M], stored batch, rng) -> displayed outputs, one per modality.
Generate = Callable[[np.ndarray, dict, jax.Array], Sequence[np.ndarray]]
# (number of samples, rng) -> displayed outputs decoded from z ~ N(0, I).
GeneratePrior = Callable[[int, jax.Array], Sequence[np.ndarray]]
# values [B, ...] -> predicted labels [B].
Judge = Callable[[np.ndarray], np.ndarray]
# stored batch -> posterior means [K, B, D], one row per subset.
EncodeMeans = Callable[[dict], np.ndarray]
# images [B, H, W, C] (uint8, or floats in [0, 1]) -> features [B, F].
Features = Callable[[np.ndarray], np.ndarray]

RESULTS_FILE = "results.json"
TABLES_FILE = "tables.md"
FIGURE_FILE = "cross_generation.png"


def coherence_subsets(num_modalities: int) -> np.ndarray:
  """Conditioning subsets of Table 1: every non-empty subset that leaves a modality out.

  Returns:
    Boolean masks [2^M - 2, M], ordered as `distributions.nonempty_subsets`.
  """
  subsets = dist.nonempty_subsets(num_modalities)
  return subsets[~subsets.all(axis=1)]


def _abbreviations(modalities: Sequence[Modality], mask: np.ndarray) -> list[str]:
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
        column = tables.column_name(target.abbreviation, _abbreviations(modalities, subset))
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
  for subset_index, target in directions:
    real_statistics = metrics.gaussian_statistics(np.concatenate(real[target]))
    generated_statistics = metrics.gaussian_statistics(
        np.concatenate(generated[(subset_index, target)]))
    column = fid_column(_abbreviations(modalities, subsets[subset_index]),
                        modalities[target].abbreviation)
    scores[column] = metrics.frechet_distance(*generated_statistics, *real_statistics)
  return scores


def _column_subset_size(metric: str, column: str) -> int | None:
  """The number of modalities a results column conditions on (None: 'R')."""
  if metric == "coherence":
    if column == tables.JOINT_COHERENCE_COLUMN:
      return None
    subset = column.split("<-", 1)[1]
  elif metric in ("fid", "classifier_fd"):
    subset = column.split("->", 1)[0]
  else:
    subset = column
  return subset.count("+") + 1


def by_subset_size(results: Mapping) -> dict[str, dict[int, float]]:
  """Coherence, FID, classifier-FD and latent probes of one evaluation averaged per
  subset size.

  Args:
    results: an `evaluate` result (or any dict with 'coherence', 'fid',
      'classifier_fd' and 'latent' sections keyed by their columns: 'M0<-M1+M2',
      'M1+M2->M0', 'M0+M1').

  Returns:
    metric ('coherence', 'fid', 'classifier_fd', 'latent'; those present and not
    None) -> {k: mean
    over the columns whose conditioning subset has k modalities}, k ascending. Joint
    coherence R has no subset and is left out.
  """
  averages = {}
  for metric in ("coherence", "fid", "classifier_fd", "latent"):
    columns = results.get(metric)
    if not columns:
      continue
    values_by_size: dict[int, list[float]] = {}
    for column, value in columns.items():
      size = _column_subset_size(metric, column)
      if size is not None:
        values_by_size.setdefault(size, []).append(value)
    averages[metric] = {size: float(np.mean(values_by_size[size]))
                        for size in sorted(values_by_size)}
  return averages


def encode_all(encode_means: EncodeMeans, dataset: MultimodalDataset, batch_size: int
               ) -> np.ndarray:
  """Posterior means of every pair of `dataset` for every subset: [K, N, D]."""
  means = [encode_means(dataset.batch(ids))[:, :num_valid]
           for ids, num_valid in padded_batches(len(dataset), batch_size)]
  return np.concatenate(means, axis=1)


def latent_probes(encode_means: EncodeMeans, train_set: MultimodalDataset,
                  test_set: MultimodalDataset, modalities: Sequence[Modality],
                  batch_size: int) -> dict[str, float]:
  """Linear-probe accuracy of the posterior means of every non-empty subset (Table 5).

  Args:
    encode_means: stored batch -> posterior means [K, B, D] of the K subsets of
      `distributions.nonempty_subsets(M)`, in that order.
    train_set: pairs the logistic regressions are fitted on.
    test_set: pairs they are scored on.
    modalities: the model's modalities, in its order.
    batch_size: pairs per `encode_means` call.

  Returns:
    Subset name ('M+S', `tables.subset_name`) -> test accuracy.
  """
  train_means = encode_all(encode_means, train_set, batch_size)
  test_means = encode_all(encode_means, test_set, batch_size)
  return {
      tables.subset_name(_abbreviations(modalities, subset)): metrics.linear_probe(
          train_means[index], train_set.labels, test_means[index], test_set.labels)
      for index, subset in enumerate(dist.nonempty_subsets(len(modalities)))}


def make_generate(model: models.MultimodalVAE, params, kind: objectives.SubsetPosteriorKind,
                  from_mean: bool = False) -> Generate:
  """The model's cross-generation: z ~ its posterior of a subset, decoded into every
  modality. One compiled program serves every subset (the subset is a traced mask).

  Args:
    model: a `MultimodalVAE`.
    params: its parameters.
    kind: its subset posterior, 'poe' or 'moe' (`objectives.SUBSET_POSTERIOR`).
    from_mean: decode the posterior's mean instead of a sample (a diagnostic: how much
      of a model's incoherence comes from the width of its posteriors).

  Returns:
    generate(subset [M] bool, stored batch, rng) -> displayed outputs per modality.
  """
  modalities = model.modalities

  @jax.jit
  def decoder_outputs(params, stored, subset, rng):
    variables = {"params": params}
    posteriors = model.apply(variables, models.model_inputs(modalities, stored),
                             method=model.encode)
    posterior = models.subset_posterior(posteriors, subset, kind)
    z = models.posterior_mean(posterior) if from_mean else posterior.sample(rng)
    return model.apply(variables, jnp.broadcast_to(z, (len(modalities),) + z.shape),
                       method=model.decode)

  def generate(subset, batch, rng):
    stored = {m.name: batch[m.name] for m in modalities}
    outputs = jax.device_get(decoder_outputs(params, stored, jnp.asarray(subset), rng))
    return [m.display(output) for m, output in zip(modalities, outputs)]

  return generate


def make_generate_prior(model: models.MultimodalVAE, params) -> GeneratePrior:
  """Decodes z ~ N(0, I) into every modality: (num_samples, rng) -> displayed outputs."""
  modalities = model.modalities

  @jax.jit
  def decoder_outputs(params, z):
    return model.apply({"params": params}, jnp.broadcast_to(z, (len(modalities),) + z.shape),
                       method=model.decode)

  def generate_prior(num_samples, rng):
    z = jax.random.normal(rng, (num_samples, model.latent_dim))
    outputs = jax.device_get(decoder_outputs(params, z))
    return [m.display(output) for m, output in zip(modalities, outputs)]

  return generate_prior


def make_encode_means(model: models.MultimodalVAE, params,
                      kind: objectives.SubsetPosteriorKind) -> EncodeMeans:
  """Posterior means of every non-empty subset, in one compiled program.

  Returns:
    encode_means(stored batch) -> [K, B, D], K = 2^M - 1 subsets in
    `distributions.nonempty_subsets` order.
  """
  modalities = model.modalities
  subsets = jnp.asarray(dist.nonempty_subsets(len(modalities)))

  @jax.jit
  def means(params, stored):
    posteriors = model.apply({"params": params}, models.model_inputs(modalities, stored),
                             method=model.encode)
    return jax.vmap(lambda subset: models.posterior_mean(
        models.subset_posterior(posteriors, subset, kind)))(subsets)

  def encode_means(batch):
    return np.asarray(means(params, {m.name: batch[m.name] for m in modalities}))

  return encode_means


def fid_pairs(config: ml_collections.ConfigDict, test_pairs: MultimodalDataset
              ) -> MultimodalDataset:
  """The pairs FID and the classifier-Frechet distance compare: a seeded random choice
  (`config.eval.seed`) of `config.eval.fid_examples` of `test_pairs` (all when there
  are fewer), never the first ones, which on label-sorted data share one label."""
  return test_pairs.subset(input_pipeline.sample_ids(
      len(test_pairs), config.eval.fid_examples, config.eval.seed))


def _fid_subsets_of(config: ml_collections.ConfigDict, num_modalities: int) -> np.ndarray:
  """`fid_subsets` of `config.eval` (fid_by_subset_size, fid_subsets_per_size), drawn
  with `config.eval.seed`."""
  return fid_subsets(num_modalities, config.eval.fid_by_subset_size,
                     config.eval.fid_subsets_per_size, np.random.default_rng(config.eval.seed))


def model_fid(config: ml_collections.ConfigDict, generate: Generate,
              test_pairs: MultimodalDataset, modalities: Sequence[Modality], rng: jax.Array
              ) -> tuple[dict[str, float] | None, str | None]:
  """`fid_scores` with Inception features on the `fid_pairs` of `test_pairs`.

  The conditioning subsets are `fid_subsets` of `config.eval.fid_by_subset_size`
  (default False: single modalities, Table 2) and `config.eval.fid_subsets_per_size`
  (default -1: every subset of each size), drawn with `config.eval.seed`.

  Returns:
    (scores, None), or (None, a one-sentence note of why FID was not computed: turned
    off, no image to generate across, or the Inception weights file is missing and
    which file to provide). A missing weights file is printed, not raised, so the
    rest of the evaluation still completes.
  """
  if not config.eval.fid:
    return None, "FID not computed (--config.eval.fid=False)."
  if len(modalities) < 2 or all(m.is_text for m in modalities):
    return None, "FID not computed: no image modality to generate from another modality."
  try:
    inception_features = inception.InceptionFeatures.load(config.eval.inception_weights)
  except DataUnavailableError as error:
    note = f"FID skipped: {error}"
    tqdm.tqdm.write(note)
    return None, note
  batch_size = config.eval.batch_size
  return fid_scores(generate, lambda images: inception_features.features(images, batch_size),
                    fid_pairs(config, test_pairs), modalities, batch_size, rng,
                    _fid_subsets_of(config, len(modalities))), None


def model_classifier_fd(config: ml_collections.ConfigDict, generate: Generate,
                        judges: Mapping[str, Judge], test_pairs: MultimodalDataset,
                        modalities: Sequence[Modality], rng: jax.Array
                        ) -> dict[str, float] | None:
  """The classifier-Frechet distance: `fid_scores` in the feature space of each target
  modality's own classifier (`classifiers.Classifier.features`, its penultimate layer).

  The columns, pairs and generated images are FID's (`model_fid` with the same rng):
  the `fid_pairs` of `test_pairs` and the `fid_subsets` of `config.eval`. It needs no
  download, so it is computed whether or not FID is (`config.eval.fid` turns only
  Inception's FID off).

  Args:
    config: the run's config (`config.eval`: fid_examples, fid_by_subset_size,
      fid_subsets_per_size, seed).
    generate: as in `cross_coherence`.
    judges: modality name -> judge; every image modality's is a `classifiers.Classifier`.
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


def evaluate(config: ml_collections.ConfigDict, workdir: str, replica: int = 0) -> dict:
  """Evaluates the latest checkpoint in `workdir`; writes DIR/eval/{results.json,
  tables.md, cross_generation.png} and prints the tables.

  Args:
    config: the config the run was trained with (`runs.load_config(workdir)`, whose
      eval.* fields may be changed); `config.eval` holds the evaluation settings.
    workdir: the training run's directory.
    replica: which (seed, beta) replica of a sweep run (`train.replica_grid`); its
      files go to DIR/replica_<r>/eval/.

  Returns:
    The results: model, data, seed, beta, step, modalities (abbreviation -> name), coherence
    (Table 1 columns), text_edit_distance, fid (Table 2 columns, or None with
    fid_note saying why), classifier_fd (the same columns, `model_classifier_fd`;
    None without an image to generate across), latent (Table 5 columns), judges,
    judge_accuracy and classifier_test_accuracy (per modality), and example counts
    (num_test_pairs, num_prior_samples, num_fid_pairs, num_probe_train_pairs).

  Raises:
    UserError: no saved config or checkpoint in `workdir`, the config describes
      another run, a value is out of range, a classifier is missing (the message names
      the command that makes it), or the labels are not one class per pair.
  """
  if config.data.name in registry.names(evaluation="image_text"):
    # CUB and CelebA have no digit labels: cosine similarity, attributes and FID instead.
    return evaluate_image_text.evaluate_image_text(config, workdir, replica)
  validation.validate_config(config)
  runs.check_same_run(config, workdir)
  model, params, train_set, test_set, step = train.load_trained(config, workdir, replica)
  seeds, betas = train.replica_grid(config)
  if test_set.labels.ndim != 1:
    raise UserError(
        f"Coherence needs one class label per pair; {config.data.name} has labels of shape "
        f"{test_set.labels.shape[1:]} per pair, so evaluate it with python -m "
        f"crmvae_jax.evaluate_image_text --workdir={workdir}.")
  modalities = model.modalities
  directory = classifiers.default_directory(config)
  text_decoders = data_lib.text_decoders(test_set)
  judges = classifiers.load_judges(config, modalities, text_decoders, directory)
  distance_fns = {name: judge.distances for name, judge in judges.items()
                  if isinstance(judge, classifiers.DigitNameJudge)}
  kind = objectives.subset_posterior_kind(config.model, config.get("readings"))
  batch_size = config.eval.batch_size
  choice_rng = np.random.default_rng(config.eval.seed)
  test_pairs = test_set.subset(
      input_pipeline.sample_ids(len(test_set), config.eval.num_examples, choice_rng))
  probe_pairs = train_set.subset(
      input_pipeline.sample_ids(len(train_set), config.eval.probe_train_examples, choice_rng))
  coherence_rng, prior_rng, fid_rng = jax.random.split(jax.random.PRNGKey(config.eval.seed), 3)
  generate = make_generate(model, params, kind)

  tqdm.tqdm.write(f"Evaluating {config.model} on {config.data.name} at step {step}: "
                  f"{len(test_pairs)} test pairs, {config.eval.num_prior_samples} prior "
                  f"samples, {len(probe_pairs)} probe training pairs.")
  coherence, text_edit_distance = cross_coherence(
      generate, judges, test_pairs, modalities, batch_size, coherence_rng, distance_fns)
  joint, prior_distance = joint_coherence(
      make_generate_prior(model, params), judges, modalities, config.eval.num_prior_samples,
      batch_size, prior_rng, distance_fns)
  text_edit_distance.update(prior_distance)
  coherence_from_means = None
  if config.eval.get("coherence_from_means"):
    coherence_from_means, _ = cross_coherence(
        make_generate(model, params, kind, from_mean=True), judges, test_pairs, modalities,
        batch_size, coherence_rng)
  fid, fid_note = model_fid(config, generate, test_pairs, modalities, fid_rng)
  classifier_fd = model_classifier_fd(config, generate, judges, test_pairs, modalities,
                                      fid_rng)

  results = {
      "model": config.model,
      "data": config.data.name,
      "seed": seeds[replica],
      "beta": betas[replica],
      "step": step,
      "modalities": {m.abbreviation: m.name for m in modalities},
      "num_test_pairs": len(test_pairs),
      "num_prior_samples": config.eval.num_prior_samples,
      "num_probe_train_pairs": len(probe_pairs),
      "coherence": {tables.JOINT_COHERENCE_COLUMN: joint, **coherence},
      "coherence_from_means": coherence_from_means,
      "text_edit_distance": text_edit_distance,
      "fid": fid,
      "classifier_fd": classifier_fd,
      "num_fid_pairs": len(fid_pairs(config, test_pairs)),
      "latent": latent_probes(make_encode_means(model, params, kind), probe_pairs, test_pairs,
                              modalities, batch_size),
      "judges": {name: ("levenshtein" if name in distance_fns else "classifier")
                 for name in judges},
      "judge_accuracy": judge_accuracy(judges, test_pairs, modalities, batch_size),
      "classifier_test_accuracy": {
          m.name: (classifiers.read_metadata(directory, m.name) or {}).get("test_accuracy")
          for m in modalities if m.name not in distance_fns},
  }
  if fid_note:
    results["fid_note"] = fid_note

  eval_dir = os.path.join(train.replica_directory(config, workdir, replica), "eval")
  os.makedirs(eval_dir, exist_ok=True)
  with open(os.path.join(eval_dir, RESULTS_FILE), "w") as f:
    json.dump(results, f, indent=2)
  markdown = summaries.tables_markdown([results])
  with open(os.path.join(eval_dir, TABLES_FILE), "w") as f:
    f.write(markdown)
  figure_ids = input_pipeline.sample_ids(len(test_pairs), config.figure_examples,
                                        config.eval.seed)
  plotting.cross_generation_figure(
      model, params, test_pairs.batch(figure_ids), kind, text_decoders,
      os.path.join(eval_dir, FIGURE_FILE),
      title=f"{config.model}, seed {seeds[replica]}, beta {betas[replica]:g}, step {step}")
  print(markdown)
  tqdm.tqdm.write(f"Wrote {eval_dir}/{{{RESULTS_FILE}, {TABLES_FILE}, {FIGURE_FILE}}}.")
  return results


def main() -> None:
  config, workdir, replica = flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.replica
  num_replicas = len(train.replica_grid(config)[0])
  for r in range(num_replicas) if replica is None else [replica]:
    evaluate(config, workdir, r)


if __name__ == "__main__":
  # Defined here, not at import, so that experiments/mst_tables.py can import this
  # module and define its own flags.
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.DEFINE_integer("replica", None,
                       "Which replica of a sweep run (train.replica_grid); default: every one.")
  flags.mark_flag_as_required("workdir")
  cli.run(main, config=cli.RUN,
          config_help="Default: the config the --workdir run was trained with (its "
          "config.json); --config.eval.FIELD=VALUE changes an evaluation setting.")
