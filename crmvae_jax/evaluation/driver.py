"""The evaluation driver: a trained run's latest checkpoint evaluated with every metric
its data set lists, the results written beside the run (docs/metrics.md).

`evaluate` runs the data set's metrics (`evaluation.entries`): on digit-labelled data
(MNIST-SVHN-Text, PolyMNIST, the quick start) coherence, the log-likelihood, FID and
the classifier-Frechet distance, the latent probes; on image-text data (CUB, CelebA)
the cosine similarity of the image and text latents and the scores of images
generated from text. It writes `DIR/eval/results.json` and `DIR/eval/tables.md`, and
`DIR/eval/cross_generation.png` or, for image-text data,
`DIR/eval/generated_from_text.{png,npz}`. A user's own data without labels gets what
needs none (the log-likelihood and the figure). Replica r of a sweep writes to
`DIR/replica_r/eval/`. `crmvae_jax/evaluate.py` is its command line
(with `--train_classifier`, which can first train CelebA's attribute
classifier).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from crmvae_jax import data as data_lib
from crmvae_jax.common import atomic, errors
from crmvae_jax.data import input_pipeline
from crmvae_jax.config import runs, validation
from crmvae_jax.training import checkpoints, state
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.model.modality import Modality
from crmvae_jax.data import registry
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation import entries, image_text, likelihood
from crmvae_jax.evaluation import judges as judges_lib
from crmvae_jax.reporting import plotting, summaries, tables

RESULTS_FILE = "results.json"
TABLES_FILE = "tables.md"
FIGURE_FILE = "cross_generation.png"
# The image-text grid: images generated from chosen texts.
TEXT_FIGURE_FILE = "generated_from_text.png"
# Images decoded from the posterior means of the chosen texts, for the beta sweep's grid.
GENERATED_FILE = "generated_from_text.npz"
GRID_SAMPLES = 4


def _run_header(config: ml_collections.ConfigDict, modalities: Sequence[Modality], step: int,
                replica: int) -> dict:
  """What every results file starts with: model, data, seed, beta, step and modalities
  (abbreviation -> name) of the evaluated replica."""
  seeds, betas = state.replica_grid(config)
  return {"model": config.model, "data": config.data.name, "seed": seeds[replica],
          "beta": betas[replica], "step": step,
          "modalities": {m.abbreviation: m.name for m in modalities}}


def _eval_directory(config: ml_collections.ConfigDict, workdir: str, replica: int) -> str:
  """Where a replica's evaluation goes, checked writable before anything is computed
  (and put back whole if an earlier evaluation was stopped while replacing it)."""
  eval_dir = os.path.join(state.replica_directory(config, workdir, replica), "eval")
  _recover_eval_directory(eval_dir)
  atomic.check_writable(eval_dir, "copy the run somewhere writable and pass that --workdir")
  return eval_dir


def _recover_eval_directory(eval_dir: str) -> None:
  """Puts back the previous evaluation if a program stopped between the two renames of
  `_replace_eval_directory`, and removes evaluations that were never committed."""
  parent, name = os.path.split(eval_dir)
  if not os.path.isdir(parent):
    return
  for entry in sorted(os.listdir(parent)):
    path = os.path.join(parent, entry)
    if entry.startswith(f"{name}.old-") and not os.path.exists(eval_dir):
      os.rename(path, eval_dir)
    elif entry.startswith((f"{name}.old-", f"{name}.new-")):
      shutil.rmtree(path, ignore_errors=True)


def _replace_eval_directory(eval_dir: str, write: Callable[[str], None]) -> None:
  """Writes an evaluation's files with `write(directory)` into a new directory beside
  `eval_dir`, then puts it in place of `eval_dir` whole: a program stopped or a disk
  that fills up at any moment leaves the previous evaluation's files, all of them, or
  the new ones, all of them. Files of `eval_dir` that this evaluation does not write (a
  sweep's summary) are kept."""
  suffix = f"{os.getpid()}-{time.time_ns():x}"
  staging, previous = f"{eval_dir}.new-{suffix}", f"{eval_dir}.old-{suffix}"
  os.makedirs(staging)
  try:
    write(staging)
    if os.path.isdir(eval_dir):
      for entry in os.listdir(eval_dir):
        if not os.path.exists(os.path.join(staging, entry)):
          source = os.path.join(eval_dir, entry)
          copy = shutil.copytree if os.path.isdir(source) else shutil.copy2
          copy(source, os.path.join(staging, entry))
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if os.path.isdir(eval_dir):
    os.rename(eval_dir, previous)
  os.rename(staging, eval_dir)
  shutil.rmtree(previous, ignore_errors=True)


def evaluate(config: ml_collections.ConfigDict, workdir: str, replica: int = 0,
             verbose: bool = True) -> dict:
  """Evaluates the latest checkpoint in `workdir` with its data set's metrics
  (`registry.DataSet.metrics`, entries of `evaluation.entries.METRICS`); writes
  DIR/eval/{results.json, tables.md} and a figure (`cross_generation.png`, or for
  image-text data `generated_from_text.{png,npz}`), and prints the tables.

  Args:
    config: the config the run was trained with (`runs.load_config(workdir)`, whose
      eval.* fields may be changed); `config.eval` holds the evaluation settings.
    workdir: the training run's directory.
    replica: which (seed, beta) replica of a sweep run (`training.state.replica_grid`); its
      files go to DIR/replica_<r>/eval/.
    verbose: print the tables (a sweep's command line prints one table of all replicas
      instead).

  Returns:
    The results: model, data, seed, beta, step, modalities (abbreviation -> name),
    num_test_pairs, then what each metric returns. Digit-labelled data: coherence
    (Table 1 columns), coherence_from_means (the cross-coherence columns decoded from
    the posteriors' means with `config.eval.coherence.from_means`, else None),
    coherence_exact and text_levenshtein (generated digit names judged by exact match,
    and their edit distance to the true name; None without such a text),
    log_likelihood (proposal subset -> mean estimated log p(X) in nats, or None with
    `config.eval.log_likelihood.samples` 0), fid (Table 2 columns, or None with
    fid_note saying why), classifier_fd (the same columns, `fid.model_classifier_fd`;
    None without an image to generate across), latent (Table 5 columns), judges,
    judge_accuracy, classifier_test_accuracy and classifier_digest (per modality), and
    example counts (num_prior_samples, num_fid_pairs, num_probe_train_pairs). Image-text data:
    cosine_similarity, fid_from_text (None, with fid_note saying why, when not
    computed), and for CelebA attribute_accuracy, attribute_accuracy_real (the
    classifier on the real images) and classifier_test_accuracy.

  Raises:
    UserError: no saved config or checkpoint in `workdir`, the config describes
      another run, a value is out of range, a classifier is missing (the message names
      the command that makes it), or the labels are not one class per pair.
  """
  validation.check_saved_config(workdir)
  validation.validate_config(config)
  runs.check_same_run(config, workdir)
  model, params, train_set, test_set, step = checkpoints.load_trained(config, workdir, replica)
  _eval_directory(config, workdir, replica)
  header = _run_header(config, model.modalities, step, replica)
  data_set = registry.DATA_SETS[config.data.name]
  image_and_text = data_set.evaluation == "image_text"
  if not image_and_text:
    if test_set.labels.ndim == 1 and np.all(test_set.labels < 0):
      return _evaluate_unlabelled(config, workdir, replica, model, params, test_set, header,
                                  verbose)
    if test_set.labels.ndim != 1:
      raise UserError(
          f"Coherence needs one class label per pair; {config.data.name} has labels of "
          f"shape {test_set.labels.shape[1:]} per pair; give each pair one integer class "
          "label, or none (-1) to evaluate without coherence.")
  directory = judges_lib.find_directory(config, workdir)
  # Image-text data has no per-modality judges (images_from_text loads its classifier).
  judges = {} if image_and_text else judges_lib.load_judges(
      config, model.modalities, data_lib.text_decoders(test_set), directory)
  choice_rng = np.random.default_rng(config.eval.seed)
  test_pairs = test_set.subset(
      input_pipeline.sample_ids(len(test_set), config.eval.num_examples, choice_rng))
  probe_pairs = train_set.subset(
      input_pipeline.sample_ids(len(train_set), config.eval.latent.train_examples, choice_rng))
  seed_key = jax.random.PRNGKey(config.eval.seed)
  coherence_key, prior_key, fid_key = jax.random.split(seed_key, 3)
  images_from_text_key, grid_key = jax.random.split(seed_key)
  trained = TrainedModel.from_config(model, params, config, config.eval.batch_size, step=step,
                                    train_set=train_set, test_set=test_set)
  context = entries.Context(
      config=config, trained=trained, modalities=model.modalities, judges=judges,
      test_pairs=test_pairs, probe_pairs=probe_pairs, classifier_dir=directory,
      workdir=workdir,
      # The log-likelihood's own stream, so the others draw as before it existed.
      keys={"coherence": coherence_key, "prior": prior_key, "fid": fid_key,
            "log_likelihood": jax.random.fold_in(seed_key, 1),
            "images_from_text": images_from_text_key}, seed_key=seed_key)
  metrics = entries.chosen_metrics(config)
  # An unknown name is refused here, before any metric runs.
  metric_functions = [entries.metric(name) for name in metrics]

  counts = {"num_test_pairs": len(test_pairs)}
  if "coherence" in metrics:
    counts["num_prior_samples"] = config.eval.coherence.prior_samples
  if "latent" in metrics:
    counts["num_probe_train_pairs"] = len(probe_pairs)
  tqdm.tqdm.write(
      f"Evaluating {config.model} on {config.data.name} at step {step}: " + ", ".join(
          f"{count} {name.removeprefix('num_').replace('_', ' ')}"
          for name, count in counts.items()) + ".")
  results = {**header, **counts}
  for function in metric_functions:
    results.update(function(context))
  if "fid_note" in results:  # last, where it always was
    results["fid_note"] = results.pop("fid_note")

  if image_and_text:
    texts, text_ids = chosen_texts(config, test_set, model.modalities[
        image_text.image_and_text_indices(model.modalities)[1]].name)

    def draw(eval_dir: str, title: str) -> tuple[str, ...]:
      save_generation_grid(image_text.make_image_generator(trained), texts, text_ids,
                           eval_dir, grid_key, title)
      return TEXT_FIGURE_FILE, GENERATED_FILE
  else:
    draw = _cross_generation_drawer(config, trained, test_pairs)
  _write_outputs(config, workdir, replica, results, summaries.tables_markdown([results]),
                 draw, verbose)
  return results


# Draws a replica's figure into its eval directory, under a title; returns the files.
Drawer = Callable[[str, str], tuple[str, ...]]


def _cross_generation_drawer(config: ml_collections.ConfigDict, trained: TrainedModel,
                             test_pairs: MultimodalDataset) -> Drawer:
  """The cross-generation grid of a seeded choice of `config.figure_examples` test pairs."""

  def draw(eval_dir: str, title: str) -> tuple[str, ...]:
    figure_ids = input_pipeline.sample_ids(len(test_pairs), config.figure_examples,
                                           config.eval.seed)
    plotting.cross_generation_figure(
        trained, test_pairs.batch(figure_ids), data_lib.text_decoders(test_pairs),
        os.path.join(eval_dir, FIGURE_FILE), title=title)
    return (FIGURE_FILE,)

  return draw


def _write_outputs(config: ml_collections.ConfigDict, workdir: str, replica: int,
                   results: dict, markdown: str, draw: Drawer, verbose: bool) -> None:
  """Writes a replica's results.json, tables.md and figure (`draw`) as one set
  (`_replace_eval_directory`), and prints the tables if `verbose`."""
  eval_dir = os.path.join(state.replica_directory(config, workdir, replica), "eval")
  figures = []

  def write(directory: str) -> None:
    atomic.write_json(os.path.join(directory, RESULTS_FILE), results)
    atomic.write_text(os.path.join(directory, TABLES_FILE), markdown)
    figures.extend(draw(directory, f"{config.model}, seed {results['seed']}, beta "
                                   f"{results['beta']:g}, step {results['step']}"))

  try:
    _replace_eval_directory(eval_dir, write)
  except (OSError, UserError) as error:
    os_error = next((e for e in (error, error.__cause__) if isinstance(e, OSError)), None)
    reason = ("the disk is full" if errors.resource_problem(error) == "disk full" else
              os_error.strerror if os_error is not None and os_error.strerror else
              " ".join(str(error).split()))
    raise UserError(f"Cannot write the evaluation into {eval_dir} ({reason}); free space or make "
                    "it writable and run the same command again (the previous evaluation there "
                    "is kept whole).") from error
  if verbose:
    print(markdown)
  tqdm.tqdm.write(f"Wrote {eval_dir}/{{{', '.join((RESULTS_FILE, TABLES_FILE, *figures))}}}.")


UNLABELLED_NOTE = ("no labels: coherence, the latent probes and the classifier-Frechet "
                   "distance judge against labels; add integer labels [N] as 'labels' to "
                   "the .npz for them")


def _evaluate_unlabelled(config: ml_collections.ConfigDict, workdir: str, replica: int,
                         model, params, test_set: MultimodalDataset, header: dict,
                         verbose: bool) -> dict:
  """What needs no labels (a user's own data without them): the test log-likelihood
  with every subset's posterior as proposal, and the cross-generation figure."""
  trained = TrainedModel.from_config(model, params, config, config.eval.batch_size)
  test_pairs = test_set.subset(input_pipeline.sample_ids(
      len(test_set), config.eval.num_examples, np.random.default_rng(config.eval.seed)))
  tqdm.tqdm.write(f"Evaluating {config.model} on {config.data.name} at step "
                  f"{header['step']} ({UNLABELLED_NOTE}): the test log-likelihood and the "
                  "cross-generations.")
  log_likelihood = None
  if config.eval.log_likelihood.samples > 0:
    log_likelihood = likelihood.evaluation_log_likelihood(
        config, trained, test_pairs, jax.random.fold_in(jax.random.PRNGKey(config.eval.seed), 1))
  results = {
      **header, "note": UNLABELLED_NOTE, "num_test_pairs": len(test_pairs),
      "coherence": None, "latent": None, "classifier_fd": None, "fid": None,
      "log_likelihood": log_likelihood,
      "num_log_likelihood_pairs": (min(len(test_pairs), config.eval.log_likelihood.examples)
                                   if log_likelihood else 0),
      "log_likelihood_samples": config.eval.log_likelihood.samples,
  }
  markdown = (f"# Evaluation: {config.data.name}, {config.model}, step {header['step']}\n\n"
              f"{UNLABELLED_NOTE[0].upper() + UNLABELLED_NOTE[1:]}.\n")
  if log_likelihood:
    markdown += (
        f"\n## Test log-likelihood log p(X) in nats (higher is better), importance sampled "
        f"with {results['log_likelihood_samples']} samples from the posterior of each subset, "
        f"{results['num_log_likelihood_pairs']} test pairs\n\n"
        + tables.markdown_table({config.model: log_likelihood}, list(log_likelihood),
                                decimals=1))
  _write_outputs(config, workdir, replica, results, markdown,
                 _cross_generation_drawer(config, trained, test_pairs), verbose)
  return results


def chosen_texts(config: ml_collections.ConfigDict, test_set: MultimodalDataset,
                 text_name: str) -> tuple[list[str], np.ndarray]:
  """The texts the grid generates from: `config.eval.generation_texts`, or else
  `config.figure_examples` test texts, a seeded random choice (`config.eval.seed`).

  Returns:
    (texts as the model reads them back, stored ids [K, L]).
  """
  strings = config.eval.get("generation_texts")
  if strings:
    text_ids = image_text.encode_texts(test_set, text_name, strings)
  else:
    text_ids = test_set.batch(input_pipeline.sample_ids(
        len(test_set), config.figure_examples, config.eval.seed))[text_name]
  decode = data_lib.text_decoders(test_set)[text_name]
  return [s.strip() for s in decode(text_ids)], text_ids


def save_generation_grid(generate: image_text.GenerateImages, texts: Sequence[str],
                         text_ids: np.ndarray, eval_dir: str, rng: jax.Array, title: str
                         ) -> None:
  """Writes `TEXT_FIGURE_FILE` (images from the posterior mean and from `GRID_SAMPLES`
  samples, one column per text) and `GENERATED_FILE` (texts and mean images).

  Args:
    generate: texts -> images (`image_text.make_image_generator`).
    texts: K texts, as headers.
    text_ids: their stored ids [K, L].
    eval_dir: the directory written into.
    rng: sampling randomness.
    title: a line above the grid.
  """
  mean_images = generate(text_ids, None)
  rows = [("mean", mean_images)] + [
      (f"sample {i + 1}", generate(text_ids, jax.random.fold_in(rng, i)))
      for i in range(GRID_SAMPLES)]
  plotting.save_text_grid(texts, rows, os.path.join(eval_dir, TEXT_FIGURE_FILE), title)
  atomic.write_with(os.path.join(eval_dir, GENERATED_FILE),
                    lambda f: np.savez(f, texts=np.array(texts), images=mean_images))
