"""The metrics of an evaluation as entries: each takes the evaluation's shared `Context`
and returns named values for results.json.

`evaluation.driver.evaluate` builds one `Context` (the trained model, the judges, the
test and probe pairs, one random key per metric) and then runs the metrics its data set
lists (`crmvae_jax.data.registry.DataSet.metrics`) in order, merging what each returns:
for digit-labelled data, coherence, the log-likelihood, the Frechet distances, the
latent probes and the judges' report; for image-text data (CUB, CelebA), the cosine
similarity of the image and text latents and the scores of images generated from text.
The tables (`reporting.summaries`) render the keys they know. Adding a metric is a
function here (or anywhere) taking a `Context`, one line in `METRICS`, and its name in
the data sets' `metrics`; tests/test_evaluate.py adds a toy one that way.

Which metrics run is the config's choice: `config.eval.metrics` (None: the data set's
list) and `config.eval.extra_metrics`, each a name of `METRICS` or a user's own function
named 'package.module:function' (`metric`). Adding a metric is a module of its own and
one config line.

Each metric draws from its own key, so adding, removing or reordering metrics changes
no other metric's numbers: `Context.key(name)`, derived from the metric's name (the
streams of the metrics that existed first keep the keys their numbers were measured
with, `Context.keys`).
"""

from __future__ import annotations

import dataclasses
import importlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from crmvae_jax.data import input_pipeline
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.model.modality import Modality
from crmvae_jax.data import registry
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.evaluation import coherence as coherence_lib
from crmvae_jax.evaluation import fid, generation, image_text, likelihood, probes
from crmvae_jax.evaluation import judges as judges_lib
from crmvae_jax.evaluation import metrics as metrics_lib
from crmvae_jax.common.errors import UserError
from crmvae_jax.reporting import tables


@dataclasses.dataclass(frozen=True)
class Context:
  """What every metric of one evaluation shares.

  Attributes:
    config: the run's config (`config.eval` holds the sample sizes).
    trained: the trained model (`model.inference.TrainedModel`).
    modalities: its modalities.
    judges: modality name -> classifier or digit-name judge (none for image-text data,
      whose one classifier, CelebA's attributes, `images_from_text` loads).
    test_pairs: the evaluated test pairs (a seeded choice of `config.eval.num_examples`).
    probe_pairs: training pairs the latent probes are fitted on.
    keys: the first metrics' streams -> their random keys (as they were measured; a new
      metric uses `key`).
    seed_key: the evaluation's root key (`config.eval.seed`), from which `key` derives.
    classifier_dir: where the classifiers were found.
    workdir: the evaluated run's directory (named in the command a missing classifier
      needs).
  """

  config: ml_collections.ConfigDict
  trained: TrainedModel
  modalities: Sequence[Modality]
  judges: Mapping[str, Any]
  test_pairs: MultimodalDataset
  probe_pairs: MultimodalDataset
  keys: Mapping[str, jax.Array]
  classifier_dir: str
  workdir: str
  seed_key: jax.Array | None = None

  def key(self, name: str) -> jax.Array:
    """The random key of the stream `name`: a metric's own, the same in every evaluation
    with the same seed whatever other metrics run (`keys` where it names the stream)."""
    if name in self.keys:
      return self.keys[name]
    return jax.random.fold_in(self.seed_key, zlib.crc32(name.encode()) & 0x7FFFFFFF)

  @property
  def batch_size(self) -> int:
    return self.config.eval.batch_size

  @property
  def digit_name_judges(self) -> dict[str, judges_lib.DigitNameJudge]:
    return {name: judge for name, judge in self.judges.items()
            if isinstance(judge, judges_lib.DigitNameJudge)}


def coherence(context: Context) -> dict[str, Any]:
  """Cross- and joint coherence (Table 1); for digit names also read strictly and their
  edit distance to the true name; `coherence_from_means` where the config asks."""
  digit_names = context.digit_name_judges
  text_scores = {name: judge.scores for name, judge in digit_names.items()}
  generate = generation.make_generate(context.trained)
  cross, cross_scores = coherence_lib.cross_coherence(
      generate, context.judges, context.test_pairs, context.modalities, context.batch_size,
      context.keys["coherence"], text_scores)
  joint, prior_scores, joint_exact = coherence_lib.joint_coherence(
      generation.make_generate_prior(context.trained), context.judges, context.modalities,
      context.config.eval.coherence.prior_samples, context.batch_size, context.keys["prior"],
      text_scores, strict_judges={name: judge.exact for name, judge in digit_names.items()})
  from_means = None
  if context.config.eval.coherence.from_means:
    from_means, _ = coherence_lib.cross_coherence(
        generation.make_generate(context.trained, from_mean=True), context.judges,
        context.test_pairs, context.modalities, context.batch_size, context.keys["coherence"])
  return {
      "coherence": {tables.JOINT_COHERENCE_COLUMN: joint, **cross},
      "coherence_from_means": from_means,
      # Generated digit names read strictly: the text, spaces stripped, is exactly the
      # true name (R: every judge agrees, the text exactly).
      "coherence_exact": ({tables.JOINT_COHERENCE_COLUMN: joint_exact,
                           **cross_scores["exact"]} if digit_names else None),
      # Mean Levenshtein distance of generated names to the true name ('<-prior': to
      # the nearest name, as prior samples have no true one).
      "text_levenshtein": ({**cross_scores["levenshtein"], **prior_scores["levenshtein"]}
                           if digit_names else None),
  }


def log_likelihood(context: Context) -> dict[str, Any]:
  """The importance-sampled test log-likelihood under every subset's posterior."""
  config = context.config
  estimate = None
  if config.eval.log_likelihood.samples > 0:
    estimate = likelihood.evaluation_log_likelihood(config, context.trained, context.test_pairs,
                                                    context.keys["log_likelihood"])
  return {"log_likelihood": estimate,
          "num_log_likelihood_pairs": (min(len(context.test_pairs),
                                           config.eval.log_likelihood.examples)
                                       if estimate else 0),
          "log_likelihood_samples": config.eval.log_likelihood.samples}


def fid_distances(context: Context) -> dict[str, Any]:
  """FID of cross-generated images (Table 2, or the note saying why not) and the
  classifier-Frechet distance in the judges' own features."""
  generate = generation.make_generate(context.trained)
  fid_results, note = fid.model_fid(context.config, generate, context.test_pairs,
                                    context.modalities, context.keys["fid"])
  results = {"fid": fid_results,
             "classifier_fd": fid.model_classifier_fd(
                 context.config, generate, context.judges, context.test_pairs,
                 context.modalities, context.keys["fid"]),
             "num_fid_pairs": len(fid.fid_pairs(context.config, context.test_pairs))}
  if note:
    results["fid_note"] = note
  return results


def latent_probes(context: Context) -> dict[str, Any]:
  """Linear classification of posterior means per input subset (Table 5)."""
  return {"latent": probes.latent_probes(
      generation.make_encode_means(context.trained), context.probe_pairs, context.test_pairs,
      context.modalities, context.batch_size)}


def judge_report(context: Context) -> dict[str, Any]:
  """Which judge reads each modality, its accuracy on real test data, the stored
  classifiers' own test accuracy and their parameters' digest (`judges.params_digest`)."""
  digit_names = context.digit_name_judges
  return {
      "judges": {name: ("levenshtein" if name in digit_names else "classifier")
                 for name in context.judges},
      "judge_accuracy": coherence_lib.judge_accuracy(context.judges, context.test_pairs,
                                                     context.modalities, context.batch_size),
      "classifier_test_accuracy": {
          m.name: (judges_lib.read_metadata(context.classifier_dir, m.name) or {}).get(
              "test_accuracy")
          for m in context.modalities if m.name not in digit_names},
      # Which judges these are: a judge trained again gives another digest.
      "classifier_digest": {name: judges_lib.params_digest(judge.params)
                            for name, judge in context.judges.items()
                            if name not in digit_names},
  }


def cosine_similarity(context: Context) -> dict[str, Any]:
  """The mean cosine between the image's and the text's own posterior means (image-text
  data): coordination pulls the two latents together."""
  image_index, text_index = image_text.image_and_text_indices(context.modalities)
  return {"cosine_similarity": image_text.latent_cosine_similarity(
      image_text.encode_unimodal_means(context.trained, context.test_pairs, context.batch_size),
      image_index, text_index)}


def images_from_text(context: Context) -> dict[str, Any]:
  """Images generated from the texts (image-text data): their attributes read by the
  attribute classifier where the data set has attributes (CelebA), with the same
  classifier on the real images as its ceiling, and their FID against the real images
  of the same pairs (None, with `fid_note` saying why, when not computed)."""
  config = context.config
  image_index, text_index = image_text.image_and_text_indices(context.modalities)
  image, text = context.modalities[image_index], context.modalities[text_index]
  results: dict[str, Any] = {"fid_from_text": None}
  classifier = None
  if config.data.name in registry.names(attributes=True):
    classifier, metadata = judges_lib.load_attribute_classifier(config, image, context.workdir)
    results["classifier_test_accuracy"] = metadata["test_accuracy"]
  features_fn, fid_note = fid.inception_features(config)
  if fid_note:
    results["fid_note"] = fid_note
  # A seeded random choice: test pairs stored in class order would give one class.
  fid_ids = input_pipeline.sample_ids(len(context.test_pairs), config.eval.fid.examples,
                                      config.eval.seed)
  results.update(image_text.text_to_image_scores(
      image_text.make_image_generator(context.trained), context.test_pairs, image.name,
      text.name, context.batch_size, context.keys["images_from_text"], classifier,
      features_fn, fid_ids))
  return results


def ex_post_sampler(context: Context) -> dict[str, Any]:
  """Joint generation from the prior against an ex-post sampler (`model/samplers.py`): a
  Gaussian mixture of `config.eval.ex_post_sampler.components` fitted to the joint posterior
  means of up to `config.eval.ex_post_sampler.examples` training pairs. For each, the joint
  coherence R on `config.eval.coherence.prior_samples` samples, and for every image modality
  the classifier-Frechet distance of its samples to the real test images."""
  config = context.config
  trained = context.trained
  settings = config.eval.ex_post_sampler
  sampler = trained.fit_sampler(settings.components, settings.examples, config.eval.seed)
  key = context.key("ex_post_sampler")
  num_samples, batch_size = config.eval.coherence.prior_samples, context.batch_size
  results = {}
  featured = [(index, m, context.judges[m.name]) for index, m in enumerate(context.modalities)
              if not m.is_text and hasattr(context.judges.get(m.name), "features")]
  real = {m.name: np.concatenate([
      judge.features(context.test_pairs.batch(ids)[m.name])[:valid]
      for ids, valid in input_pipeline.padded_batches(len(context.test_pairs), batch_size)])
          for _, m, judge in featured}
  for label, chosen in (("prior", None), ("GMM", sampler)):
    # The features of the very samples R is judged on, taken as they are generated.
    features = {m.name: [] for _, m, _ in featured}

    def generate_prior(count, rng, chosen=chosen, features=features):
      outputs = trained.sample(count, rng, sampler=chosen)
      outputs = [outputs[name] for name in trained.names]
      for index, m, judge in featured:
        features[m.name].append(judge.features(outputs[index]))
      return outputs

    joint, _, _ = coherence_lib.joint_coherence(generate_prior, context.judges,
                                                context.modalities, num_samples, batch_size,
                                                key)
    results[f"R ({label})"] = joint
    for _, m, _ in featured:
      samples = np.concatenate(features[m.name])[:num_samples]
      results[f"cFD {m.abbreviation} ({label})"] = metrics_lib.frechet_distance_of_features(
          samples, real[m.name])
  return {"ex_post_sampler": results}


Metric = Callable[[Context], dict[str, Any]]
METRICS: dict[str, Metric] = {
    "coherence": coherence,
    "log_likelihood": log_likelihood,
    "fid": fid_distances,
    "latent": latent_probes,
    "judges": judge_report,
    "cosine_similarity": cosine_similarity,
    "images_from_text": images_from_text,
    # Not in any data set's list (it fits a mixture first): --config.eval.extra_metrics.
    "ex_post_sampler": ex_post_sampler,
}


def metric(name: str) -> Metric:
  """The metric `name`: a key of `METRICS`, or 'package.module:function' (a user's own).

  Raises:
    UserError: neither a known metric nor an importable function (one sentence naming
      --config.eval.metrics and the known names).
  """
  if name in METRICS:
    return METRICS[name]
  module_name, _, function_name = name.partition(":")
  found = None
  if module_name and function_name:
    try:
      found = getattr(importlib.import_module(module_name), function_name, None)
    except ModuleNotFoundError as error:
      if error.name is None or not module_name.startswith(error.name):
        raise  # the module exists and imports something missing: its own bug, its traceback
  if not callable(found):
    raise UserError(
        f"Unknown metric {name!r} in --config.eval.metrics / extra_metrics; use one of "
        f"{', '.join(METRICS)} or your own function as 'package.module:function' "
        "(importable from the current directory).")
  return found


def chosen_metrics(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The names of the metrics an evaluation of `config` runs, in order."""
  chosen = config.eval.get("metrics")
  if chosen is None:
    chosen = registry.DATA_SETS[config.data.name].metrics
  return tuple(chosen) + tuple(config.eval.get("extra_metrics") or ())
