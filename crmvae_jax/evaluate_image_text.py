r"""Evaluation of image-text runs: CUB image-caption and Bimodal CelebA (SPEC.md section 6).

    python -m crmvae_jax.evaluate_image_text --workdir=workdirs/celeba_crmvae --train_classifier

evaluates the latest checkpoint of a run, with the config it was trained with
(`DIR/config.json`; `--config.eval.FIELD=VALUE` changes an evaluation setting), on `config.eval.num_examples` test pairs (a
seeded random choice; -1: all) and writes `DIR/eval/results.json`,
`DIR/eval/generated_from_text.png` and `DIR/eval/generated_from_text.npz` (replica r
of a sweep: `DIR/replica_r/eval/...`). It measures:

- cosine similarity (both data sets): the mean cosine between the latents inferred
  from the image alone and from the text alone, each the mean of the model's own
  posterior of that one modality (`objectives.SUBSET_POSTERIOR`: PoE({m}) = p q_m, or
  q_m for mixture models). Coordination-based objectives pull the two together.
- attribute accuracy (CelebA): images generated from the text (z sampled from the
  text's posterior) are classified by a project-trained 40-attribute classifier
  (`networks.CLASSIFIERS['image64']`, one sigmoid per attribute), and the predicted
  attributes are compared with the pair's attributes, averaged over attributes and
  pairs. The same classifier's accuracy on the real test images is its ceiling.
- FID of images generated from text against the real images of the same pairs
  (`config.eval.fid_examples` of them, a seeded random choice), when
  `config.eval.fid` is set and the Inception weights are found (else skipped with a
  one-sentence note of which file to provide).

The grid shows images generated from chosen texts: `config.eval.generation_texts`
(seeded random test texts when unset), one column per text, decoded from the
posterior mean and from `GRID_SAMPLES` samples. `--train_classifier` first trains the CelebA
attribute classifier on the real training images and stores it with Orbax in
`--config.eval.classifier_dir` (default `classifiers/celeba`), the same place
`python -m crmvae_jax.classifiers` stores it; with --config=configs/celeba.py and no
--workdir it only trains the classifier.
"""

from __future__ import annotations

import functools
import json
import os
import textwrap
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import flags
from matplotlib.figure import Figure

from crmvae_jax import classifiers, cli, input_pipeline, runs, train, validation
from crmvae_jax.core import inception, metrics, models, objectives
from crmvae_jax import data as data_lib
from crmvae_jax.data import registry
from crmvae_jax.data import text as char_text
from crmvae_jax.data.base import DataUnavailableError, MultimodalDataset
from crmvae_jax.core.distributions import Gaussian
from crmvae_jax.errors import UserError
from crmvae_jax.input_pipeline import padded_batches
from crmvae_jax.core.modalities import Modality, modalities_of

RESULTS_FILE = "results.json"
FIGURE_FILE = "generated_from_text.png"
# Images decoded from the posterior means of the chosen texts, for the beta sweep's grid.
GENERATED_FILE = "generated_from_text.npz"
GRID_SAMPLES = 4
# Scalar results that a beta sweep plots against beta, with their axis labels.
SCALAR_METRICS = {
    "cosine_similarity": "cosine similarity, image vs text latents",
    "attribute_accuracy": "attribute accuracy of images from text",
    "fid_from_text": "FID of images generated from text",
}
# Characters per line of a text written above its grid column.
_GRID_TEXT_WIDTH = 24


def image_and_text_indices(modalities: Sequence[Modality]) -> tuple[int, int]:
  """Positions of the one image and the one text modality of an image-text model.

  Raises:
    ValueError: the model does not have exactly one image and one text modality.
  """
  image_indices = [i for i, m in enumerate(modalities) if not m.is_text]
  text_indices = [i for i, m in enumerate(modalities) if m.is_text]
  if len(image_indices) != 1 or len(text_indices) != 1:
    raise ValueError(
        f"Image-text evaluation needs one image and one text modality; got "
        f"{[m.name for m in modalities]}.")
  return image_indices[0], text_indices[0]


def unimodal_posterior_means(posteriors: Gaussian,
                             kind: objectives.SubsetPosteriorKind) -> jax.Array:
  """Mean of the model's posterior given each single modality.

  Args:
    posteriors: the unimodal experts q_m, arrays [M, B, D].
    kind: 'poe' (the posterior of {m} is p q_m, normalised) or 'moe' (it is q_m).

  Returns:
    [M, B, D]: row m is the posterior mean given modality m alone.
  """
  num_modalities = posteriors.mean.shape[0]
  return jax.vmap(lambda subset: models.posterior_mean(
      models.subset_posterior(posteriors, subset, kind)))(jnp.eye(num_modalities, dtype=bool))


# The model is static (hashable): every replica and every call with an equal model
# reuses one compiled program.
@functools.partial(jax.jit, static_argnames=("model", "kind"))
def _unimodal_means(model: models.MultimodalVAE, kind: objectives.SubsetPosteriorKind, params,
                    stored: dict) -> jax.Array:
  """[M, B, D] unimodal posterior means of a stored batch."""
  posteriors = model.apply({"params": params}, models.model_inputs(model.modalities, stored),
                           method=model.encode)
  return unimodal_posterior_means(posteriors, kind)


def encode_unimodal_means(model: models.MultimodalVAE, params,
                          kind: objectives.SubsetPosteriorKind,
                          dataset: MultimodalDataset, batch_size: int) -> np.ndarray:
  """Unimodal posterior means of every pair of `dataset`.

  Args:
    model: a `MultimodalVAE`.
    params: its parameters.
    kind: its subset posterior, 'poe' or 'moe'.
    dataset: the pairs to encode.
    batch_size: pairs per compiled call (the last batch is padded).

  Returns:
    [M, N, D]: row m holds the means given modality m alone.
  """
  names = [m.name for m in model.modalities]
  means = []
  for ids, num_valid in padded_batches(len(dataset), batch_size):
    batch = dataset.batch(ids)
    means.append(np.asarray(
        _unimodal_means(model, kind, params, {n: batch[n] for n in names}))[:, :num_valid])
  return np.concatenate(means, axis=1)


def latent_cosine_similarity(unimodal_means: np.ndarray, image_index: int,
                             text_index: int) -> float:
  """Mean cosine similarity of the image and the text latents of each pair.

  Args:
    unimodal_means: [M, N, D] from `encode_unimodal_means`.
    image_index: the image modality's row.
    text_index: the text modality's row.

  Returns:
    The mean over pairs, in [-1, 1].
  """
  return metrics.cosine_similarity(unimodal_means[image_index], unimodal_means[text_index])


@functools.partial(jax.jit, static_argnames=("model", "kind", "text_index", "image_index",
                                             "sample"))
def _images_from_text(model: models.MultimodalVAE, kind: objectives.SubsetPosteriorKind,
                      text_index: int, image_index: int, sample: bool, params,
                      text_ids: jax.Array, rng: jax.Array) -> jax.Array:
  """Image decoder means [B, H, W, C] for z from the posterior of the text alone."""
  variables = {"params": params}
  text_modality = model.modalities[text_index]
  # Only the text encoder runs: the posterior of {text} needs no image.
  mean, logvar = model.apply(variables, text_modality.inputs(text_ids),
                             method=lambda module, x: module.encoders[text_index](x))
  posterior = models.subset_posterior(Gaussian(mean[None], logvar[None]),
                                      jnp.ones((1,), bool), kind)
  z = posterior.sample(rng) if sample else models.posterior_mean(posterior)
  return model.apply(variables, z, method=lambda module, z: module.decoders[image_index](z))


# (stored texts [B, L], rng or None) -> images [B, H, W, C] in [0, 1]; None: from the mean.
GenerateImages = Callable[[np.ndarray, jax.Array | None], np.ndarray]


def make_image_generator(model: models.MultimodalVAE, params,
                         kind: objectives.SubsetPosteriorKind) -> GenerateImages:
  """Generation of images from texts alone, through the model's text posterior.

  Args:
    model: a `MultimodalVAE` with one image and one text modality.
    params: its parameters.
    kind: its subset posterior, 'poe' or 'moe'.

  Returns:
    generate(text_ids [B, L], rng) -> images [B, H, W, C] in [0, 1]: z is sampled
    from the posterior of the text with `rng`, or is its mean when rng is None.
  """
  image_index, text_index = image_and_text_indices(model.modalities)
  image_modality = model.modalities[image_index]

  def generate(text_ids: np.ndarray, rng: jax.Array | None) -> np.ndarray:
    sample = rng is not None
    images = _images_from_text(model, kind, text_index, image_index, sample, params,
                               jnp.asarray(text_ids), rng if sample else jax.random.PRNGKey(0))
    return image_modality.display(jax.device_get(images))

  return generate


def text_to_image_scores(
    generate: GenerateImages, dataset: MultimodalDataset, image_name: str, text_name: str,
    batch_size: int, rng: jax.Array,
    classifier: Callable[[np.ndarray], np.ndarray] | None = None,
    features_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    fid_ids: np.ndarray | None = None) -> dict[str, float]:
  """Scores images generated from the texts of `dataset`, batch by batch.

  Images are generated and judged a batch at a time, so no more than two batches of
  them are ever held; the FID's images go to `features_fn` in whole batches (and one
  last partial one), so its network compiles at most twice.

  Args:
    generate: texts -> images (`make_image_generator`); z is sampled.
    dataset: the test pairs; labels are 0/1 attributes [N, K] when `classifier` is
      given.
    image_name: the image modality.
    text_name: the text modality.
    batch_size: pairs per `generate` call.
    rng: sampling randomness (folded with the batch index).
    classifier: optional images -> 0/1 attributes [B, K].
    features_fn: optional images -> features [B, F] for FID.
    fid_ids: the ids of the pairs of `dataset` that enter the FID (e.g. a seeded
      random choice, `input_pipeline.sample_ids`); None: every pair.

  Returns:
    With a classifier, attribute_accuracy (generated images) and
    attribute_accuracy_real (the pairs' real images), each over all N * K entries;
    with features_fn, fid_from_text (generated against the real images of the same
    pairs).
  """
  correct = {"attribute_accuracy": 0, "attribute_accuracy_real": 0}
  features: dict[str, list[np.ndarray]] = {"generated": [], "real": []}
  # Images of FID pairs not yet turned into features, flushed in whole batches.
  pending: dict[str, list[np.ndarray]] = {"generated": [], "real": []}
  in_fid = np.zeros(len(dataset), bool)
  in_fid[np.arange(len(dataset)) if fid_ids is None else fid_ids] = True

  def flush(chunk: int) -> None:
    """Features of the pending images, in multiples of `chunk` (1: all of them)."""
    for kind in pending:
      if not pending[kind]:
        continue
      images = np.concatenate(pending[kind])
      count = len(images) // chunk * chunk
      if count:
        features[kind].append(features_fn(images[:count]))
      pending[kind] = [images[count:]] if count < len(images) else []

  for index, (ids, num_valid) in enumerate(padded_batches(len(dataset), batch_size)):
    batch = dataset.batch(ids)
    generated = generate(batch[text_name], jax.random.fold_in(rng, index))
    if classifier is not None:
      labels = batch["label"][:num_valid]
      correct["attribute_accuracy"] += int(np.sum(classifier(generated)[:num_valid] == labels))
      correct["attribute_accuracy_real"] += int(
          np.sum(classifier(batch[image_name])[:num_valid] == labels))
    chosen = in_fid[ids[:num_valid]]
    if features_fn is not None and chosen.any():
      pending["generated"].append(generated[:num_valid][chosen])
      pending["real"].append(batch[image_name][:num_valid][chosen])
      flush(len(ids))
  if features_fn is not None:
    flush(1)
  scores = {}
  if classifier is not None:
    num_entries = dataset.labels.size
    scores.update({name: count / num_entries for name, count in correct.items()})
  if features_fn is not None:
    scores["fid_from_text"] = metrics.frechet_distance(
        *metrics.gaussian_statistics(np.concatenate(features["generated"])),
        *metrics.gaussian_statistics(np.concatenate(features["real"])))
  return scores


def encode_texts(dataset: MultimodalDataset, text_name: str, strings: Sequence[str]
                 ) -> np.ndarray:
  """Stored ids of chosen texts, as the data set stores its texts.

  Word-level texts (CUB captions) go through the data set's vocabulary (unknown words
  become `<unk>`); character texts (CelebA) are lower-cased and written from the
  first position into the data set's text length, cut to fit.

  Args:
    dataset: a split; its arrays give the text length L.
    text_name: the text modality.
    strings: K texts.

  Returns:
    int32 [K, L].

  Raises:
    UserError: a character text holds a character outside the alphabet.
  """
  length = dataset.arrays[text_name].shape[1]
  if text_name in dataset.vocabularies:
    return dataset.vocabularies[text_name].encode(list(strings), length)
  strings = [s.lower()[:length].ljust(length) for s in strings]
  unknown = sorted(set("".join(strings)) - set(char_text.ALPHABET))
  if unknown:
    raise UserError(f"--config.eval.generation_texts hold characters {unknown} that the "
                    f"{text_name} alphabet lacks; write them with {char_text.ALPHABET!r}.")
  return char_text.encode(strings)


def save_text_grid(texts: Sequence[str], rows: Sequence[tuple[str, np.ndarray]], path: str,
                   title: str = "") -> None:
  """Saves a grid of images generated from texts: one column per text.

  Args:
    texts: K texts, each written above its column.
    rows: (label, images [K, H, W, C] in [0, 1]) per row.
    path: the PNG to write (its directory is created).
    title: a line above the grid.
  """
  num_columns = len(texts)
  figure = Figure(figsize=(1.2 + 1.6 * num_columns, 1.0 + 1.6 * len(rows)))
  grid = figure.add_gridspec(len(rows) + 1, num_columns + 1,
                             width_ratios=[0.6] + [1.0] * num_columns,
                             height_ratios=[0.7] + [1.0] * len(rows))
  for column, string in enumerate(texts):
    axis = figure.add_subplot(grid[0, column + 1])
    axis.axis("off")
    axis.text(0.5, 0.0, textwrap.fill(" ".join(string.split()), _GRID_TEXT_WIDTH),
              ha="center", va="bottom", fontsize=6, wrap=True)
  for row, (label, images) in enumerate(rows):
    label_axis = figure.add_subplot(grid[row + 1, 0])
    label_axis.axis("off")
    label_axis.text(1.0, 0.5, label, ha="right", va="center", fontsize=7)
    for column, image in enumerate(images):
      axis = figure.add_subplot(grid[row + 1, column + 1])
      axis.imshow(np.clip(image, 0.0, 1.0))
      axis.set_xticks([])
      axis.set_yticks([])
  if title:
    figure.suptitle(title, fontsize=9)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  figure.savefig(path, dpi=100, bbox_inches="tight")


def _classifier_command(config: ml_collections.ConfigDict, workdir: str | None = None) -> str:
  """The command line that trains the attribute classifier `config` looks for: with the
  config of the run in `workdir` (then evaluates it), or else its data set's config file."""
  source = (f"--workdir={workdir}" if workdir
            else f"--config={registry.DATA_SETS[config.data.name].config_file}")
  command = f"python -m crmvae_jax.evaluate_image_text {source} --train_classifier"
  if config.eval.get("classifier_dir"):
    command += f" --config.eval.classifier_dir={config.eval.classifier_dir}"
  return command


def train_attribute_classifier(config: ml_collections.ConfigDict) -> dict:
  """Trains, evaluates and stores the attribute classifier of the image modality.

  It is the image classifier `python -m crmvae_jax.classifiers` would train (same
  network, examples and seed): `networks.CLASSIFIERS['image64']` with one sigmoid per
  attribute, trained with Adam on binary cross-entropy (`config.eval.classifier_*`).

  Args:
    config: a CelebA config.

  Returns:
    Its metadata: network, num_classes, multi_label, train_examples, epochs and
    test_accuracy (over all attribute entries of the test images).
  """
  attribute_data = registry.names(attributes=True)
  if config.data.name not in attribute_data:
    raise UserError(f"{config.data.name} has no attributes to classify; --train_classifier "
                    f"trains the attribute classifier of {', '.join(attribute_data)} (e.g. "
                    "with --config=configs/celeba.py).")
  train_set, test_set = data_lib.load(config.data)
  data_modalities = modalities_of(config.data.name, train_set)
  image_index, _ = image_and_text_indices(data_modalities)
  image = data_modalities[image_index]
  # The same example choice and seed as classifiers.train_classifiers.
  rng = np.random.default_rng([config.eval.seed, image_index])
  max_examples = config.eval.get("classifier_max_train_examples")
  classifier, metadata = classifiers.train_classifier(
      image, classifiers.classifier_examples(train_set, image.name, max_examples, rng),
      classifiers.classifier_examples(test_set, image.name, max_examples, rng), config.eval,
      seed=config.eval.seed + image_index,
      disable_progress_bar=config.get("disable_progress_bar", False))
  folder = classifiers.save_classifier(classifiers.default_directory(config), classifier,
                                       metadata)
  tqdm.tqdm.write(f"{image.name} attribute classifier: test accuracy "
                  f"{metadata['test_accuracy']:.4f}; stored in {folder}")
  return metadata


def _load_attribute_classifier(config: ml_collections.ConfigDict, image: Modality,
                               workdir: str) -> tuple[classifiers.Classifier, dict]:
  """The stored attribute classifier and its metadata, or the command that makes it
  (with the config of the run in `workdir`)."""
  directory = classifiers.default_directory(config)
  metadata = classifiers.read_metadata(directory, image.name)
  if metadata is None:
    raise UserError(
        f"No {image.name} attribute classifier in {os.path.abspath(directory)}; train it "
        f"with: {_classifier_command(config, workdir)}")
  return classifiers.load_classifier(config, image, directory), metadata


def evaluate_image_text(config: ml_collections.ConfigDict, workdir: str,
                        replica: int = 0) -> dict:
  """Evaluates the latest checkpoint of a CUB or CelebA run (module docstring).

  Args:
    config: the config the run was trained with; `config.eval` holds the evaluation
      settings (num_examples, batch_size, seed, fid, fid_examples, inception_weights,
      classifier_dir, generation_texts).
    workdir: the run's directory.
    replica: which (seed, beta) replica of a sweep run (`train.replica_grid`).

  Returns:
    The results written to `<run directory>/eval/results.json`: model, data, seed,
    beta, step, modalities (abbreviation -> name), num_test_pairs,
    cosine_similarity, fid_from_text (None, with fid_note saying why, when not
    computed), and for CelebA attribute_accuracy, attribute_accuracy_real (the
    classifier on the real images) and classifier_test_accuracy.

  Raises:
    UserError: no saved config or checkpoint in `workdir`, the config describes
      another run, (CelebA) no attribute classifier (the message names the command
      that makes it), or the data set is not an image-text one.
  """
  image_text_data = registry.names(evaluation="image_text")
  if config.data.name not in image_text_data:
    raise UserError(f"evaluate_image_text evaluates {', '.join(image_text_data)}, not "
                    f"{config.data.name}; use python -m crmvae_jax.evaluate --workdir={workdir}.")
  validation.validate_config(config)
  runs.check_same_run(config, workdir)
  model, params, _, test_set, step = train.load_trained(config, workdir, replica)
  modalities = model.modalities
  image_index, text_index = image_and_text_indices(modalities)
  image, text = modalities[image_index], modalities[text_index]
  kind = objectives.subset_posterior_kind(config.model, config.get("readings"))
  batch_size = config.eval.batch_size
  seeds, betas = train.replica_grid(config)
  test_pairs = test_set.subset(
      input_pipeline.sample_ids(len(test_set), config.eval.num_examples, config.eval.seed))
  generation_rng, grid_rng = jax.random.split(jax.random.PRNGKey(config.eval.seed))
  tqdm.tqdm.write(f"Evaluating {config.model} (seed {seeds[replica]}, beta "
                  f"{betas[replica]:g}) on {config.data.name} at step {step}: "
                  f"{len(test_pairs)} test pairs.")

  results = {
      "model": config.model,
      "data": config.data.name,
      "seed": seeds[replica],
      "beta": betas[replica],
      "step": step,
      "modalities": {m.abbreviation: m.name for m in modalities},
      "num_test_pairs": len(test_pairs),
      "cosine_similarity": latent_cosine_similarity(
          encode_unimodal_means(model, params, kind, test_pairs, batch_size), image_index,
          text_index),
      "fid_from_text": None,
  }
  classifier = None
  if config.data.name in registry.names(attributes=True):
    classifier, metadata = _load_attribute_classifier(config, image, workdir)
    results["classifier_test_accuracy"] = metadata["test_accuracy"]
  features_fn = None
  if not config.eval.fid:
    results["fid_note"] = "FID not computed (--config.eval.fid=False)."
  else:
    try:
      inception_features = inception.InceptionFeatures.load(config.eval.inception_weights)
    except DataUnavailableError as error:
      results["fid_note"] = f"FID skipped: {error}"
      tqdm.tqdm.write(results["fid_note"])
    else:
      features_fn = lambda images: inception_features.features(images, batch_size)
  generate = make_image_generator(model, params, kind)
  # A seeded random choice: test pairs stored in class order would give one class.
  fid_ids = input_pipeline.sample_ids(len(test_pairs), config.eval.fid_examples,
                                      config.eval.seed)
  results.update(text_to_image_scores(
      generate, test_pairs, image.name, text.name, batch_size, generation_rng, classifier,
      features_fn, fid_ids))

  eval_dir = os.path.join(train.replica_directory(config, workdir, replica), "eval")
  os.makedirs(eval_dir, exist_ok=True)
  with open(os.path.join(eval_dir, RESULTS_FILE), "w") as f:
    json.dump(results, f, indent=2)
  texts, text_ids = chosen_texts(config, test_set, text.name)
  save_generation_grid(generate, texts, text_ids, eval_dir, grid_rng,
                       f"{config.model}, beta {betas[replica]:g}, seed {seeds[replica]}, "
                       f"step {step}")
  tqdm.tqdm.write(f"Wrote {eval_dir}/{{{RESULTS_FILE}, {FIGURE_FILE}, {GENERATED_FILE}}}:\n"
                  + json.dumps(results, indent=2))
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
    text_ids = encode_texts(test_set, text_name, strings)
  else:
    text_ids = test_set.batch(input_pipeline.sample_ids(
        len(test_set), config.figure_examples, config.eval.seed))[text_name]
  decode = data_lib.text_decoders(test_set)[text_name]
  return [s.strip() for s in decode(text_ids)], text_ids


def save_generation_grid(generate: GenerateImages, texts: Sequence[str], text_ids: np.ndarray,
                         eval_dir: str, rng: jax.Array, title: str) -> None:
  """Writes `FIGURE_FILE` (images from the posterior mean and from `GRID_SAMPLES`
  samples, one column per text) and `GENERATED_FILE` (texts and mean images).

  Args:
    generate: texts -> images (`make_image_generator`).
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
  save_text_grid(texts, rows, os.path.join(eval_dir, FIGURE_FILE), title)
  np.savez(os.path.join(eval_dir, GENERATED_FILE), texts=np.array(texts), images=mean_images)


def main() -> None:
  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  if workdir is None and not flags.FLAGS.train_classifier:
    raise UserError("Pass --workdir=DIR of a trained CUB or CelebA run, or --train_classifier "
                    "with --config=configs/celeba.py.")
  if flags.FLAGS.train_classifier:
    train_attribute_classifier(config)
  if workdir is not None:
    for replica in range(len(train.replica_grid(config)[0])):
      evaluate_image_text(config, workdir, replica)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.DEFINE_bool("train_classifier", False,
                    "Train and store the CelebA attribute classifier first.")
  cli.run(main, config=cli.RUN,
          config_help="Default: the config the --workdir run was trained with (its "
          "config.json); configs/celeba.py for --train_classifier alone.")
