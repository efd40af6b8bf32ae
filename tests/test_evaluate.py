"""Evaluation: coherence, FID and probes of stand-in models with known answers, the
paper's table layout, and the whole path on a briefly trained quick-start run."""

from __future__ import annotations

import hashlib
import json
import os
import re

import jax
import numpy as np
import pytest

from crmvae_jax import sweeps
from crmvae_jax.evaluation import classifier_training, driver, fid, probes
from crmvae_jax.evaluation import coherence as coherence_lib
from crmvae_jax.evaluation import judges as judges_lib
from crmvae_jax.training import checkpoints, loop
from crmvae_jax.reporting import summaries, tables
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.evaluation import metrics
from crmvae_jax.data import quickstart, text
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.common.errors import UserError
from crmvae_jax.data.modalities import modalities_of

NUM_PAIRS = 300
BATCH_SIZE = 64  # 300 pairs: four full batches and one padded one


# The tests of the `digits` fixture run on the worker that loads the embedded digits for
# the other unit tests (test_classifiers, test_train, test_data_*): one load, one fixture.
quickstart_data = pytest.mark.xdist_group("quickstart_data")


@pytest.fixture(scope="module")
def digits():
  """MNIST-SVHN-Text of real digits: 'svhn' is the MNIST digit padded to 32x32x3."""
  images, labels = quickstart.embedded_mnist()
  # The embedded digits are sorted by class; a random choice balances the classes.
  ids = np.random.default_rng(0).choice(len(labels), NUM_PAIRS, replace=False)
  return mst_of_digits(images[ids], labels[ids])


def mst_of_digits(images: np.ndarray, labels: np.ndarray):
  """(dataset, modalities): MNIST-SVHN-Text pairs of `images`, 'svhn' being each digit
  padded to 32x32x3 and 'text' its name."""
  svhn = np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
  arrays = {"mnist": images, "svhn": svhn,
            "text": text.digit_texts(labels, np.random.default_rng(0))}
  dataset = MultimodalDataset(
      modalities=("mnist", "svhn", "text"), arrays=arrays,
      indices={name: np.arange(len(labels)) for name in arrays}, labels=labels)
  return dataset, modalities_of("mst", dataset)


class LookupJudge:
  """A perfect classifier of known images; an unknown image gets a hashed class."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.labels = {self._key(image): label for image, label in zip(images, labels)}

  @staticmethod
  def _key(image: np.ndarray) -> bytes:
    if image.dtype != np.uint8:
      image = np.round(image * 255.0).astype(np.uint8)
    return image.tobytes()

  def __call__(self, images: np.ndarray) -> np.ndarray:
    return np.array([self.labels.get(self._key(image), int(
        hashlib.md5(self._key(image)).hexdigest(), 16) % 10) for image in images])


def _judges(dataset):
  text_judge = judges_lib.DigitNameJudge(text.decode)
  judges = {name: LookupJudge(dataset.arrays[name], dataset.labels) for name in ("mnist", "svhn")}
  return {**judges, "text": text_judge}, {"text": text_judge.scores}


def _true_inputs(subset, batch, rng):
  """A model whose every decoder returns the true input, displayed."""
  return [batch["mnist"] / 255.0, batch["svhn"] / 255.0, batch["text"]]


def _noise(subset, batch, rng):
  """A model that ignores its input and returns noise."""
  noise = np.random.default_rng(np.asarray(rng).tolist())
  size = len(batch["label"])
  return [noise.uniform(size=(size, 28, 28, 1)), noise.uniform(size=(size, 32, 32, 3)),
          noise.integers(0, len(text.ALPHABET), size=(size, 8))]


@quickstart_data
def test_an_unknown_metric_is_refused_in_one_sentence():
  from crmvae_jax.evaluation import entries

  for name in ("cohrence", "no_such_module:f", "os:no_such_function"):
    with pytest.raises(UserError, match=re.escape(f"Unknown metric {name!r} in "
                                                  "--config.eval.metrics")):
      entries.metric(name)
  assert entries.metric("coherence") is entries.METRICS["coherence"]


def test_a_metric_module_that_fails_to_import_keeps_its_traceback(tmp_path, monkeypatch):
  from crmvae_jax.evaluation import entries

  (tmp_path / "broken_metrics.py").write_text("import not_installed_anywhere\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
    entries.metric("broken_metrics:noise")


def test_coherence_of_the_true_input_is_one(digits):
  dataset, modalities = digits
  judges, distance_fns = _judges(dataset)
  accuracy, scores = coherence_lib.cross_coherence(
      _true_inputs, judges, dataset, modalities, BATCH_SIZE, jax.random.PRNGKey(0), distance_fns)
  # Table 1's columns, in its order, each exactly 1.
  assert list(accuracy) == tables.coherence_columns(("M", "S", "T"))[1:]
  assert all(value == 1.0 for value in accuracy.values())
  assert scores == {"exact": {"T<-M": 1.0, "T<-S": 1.0, "T<-M+S": 1.0},
                    "levenshtein": {"T<-M": 0.0, "T<-S": 0.0, "T<-M+S": 0.0}}


@quickstart_data
def test_coherence_of_noise_is_near_chance(digits):
  dataset, modalities = digits
  judges, distance_fns = _judges(dataset)
  accuracy, scores = coherence_lib.cross_coherence(
      _noise, judges, dataset, modalities, BATCH_SIZE, jax.random.PRNGKey(0), distance_fns)
  assert len(accuracy) == 9
  for column, value in accuracy.items():
    assert abs(value - 0.1) < 0.07, (column, value)
  # Random strings are far from every name, and never one exactly.
  assert all(value > 2.0 for value in scores["levenshtein"].values())
  assert all(value == 0.0 for value in scores["exact"].values())


@quickstart_data
def test_misspelled_text_is_judged_by_edit_distance(digits):
  dataset, modalities = digits
  judges, distance_fns = _judges(dataset)

  def one_typo(subset, batch, rng):
    outputs = _true_inputs(subset, batch, rng)
    words = [s.strip() for s in text.decode(batch["text"])]
    # Replace the first letter with 'x': one edit, still nearest to the right name.
    typos = [("x" + word[1:]).ljust(8) for word in words]
    return outputs[:2] + [text.encode(typos)]

  accuracy, scores = coherence_lib.cross_coherence(
      one_typo, judges, dataset, modalities, BATCH_SIZE, jax.random.PRNGKey(0), distance_fns)
  # Leniently nearly all right; strictly none; one edit from the true name each.
  assert accuracy["T<-M"] > 0.9
  assert scores["exact"]["T<-M"] == 0.0
  np.testing.assert_allclose(scores["levenshtein"]["T<-M"], 1.0)


@quickstart_data
def test_a_name_read_leniently_but_not_exactly_is_one_edit_from_another_name(digits):
  dataset, modalities = digits
  judges, scores_fns = _judges(dataset)

  def wrong_name(subset, batch, rng):
    # 'nine' for every pair: exact and lenient reading agree (right only for nines),
    # and the distance to the true name is the distance between the two names.
    outputs = _true_inputs(subset, batch, rng)
    return outputs[:2] + [text.encode([" nine   "] * len(batch["label"]))]

  accuracy, scores = coherence_lib.cross_coherence(
      wrong_name, judges, dataset, modalities, BATCH_SIZE, jax.random.PRNGKey(0), scores_fns)
  nines = np.mean(dataset.labels == 9)
  assert accuracy["T<-M"] == scores["exact"]["T<-M"] == nines
  names = np.array(text.DIGIT_NAMES)[dataset.labels]
  expected = np.mean([metrics.digit_name_distances(["nine"])[0][list(text.DIGIT_NAMES).index(n)]
                      for n in names])
  np.testing.assert_allclose(scores["levenshtein"]["T<-M"], expected)


@quickstart_data
def test_joint_coherence_of_agreeing_and_of_noisy_samples(digits):
  dataset, modalities = digits
  judges, distance_fns = _judges(dataset)

  def agreeing_prior(num_samples, rng):
    ids = jax.random.randint(rng, (num_samples,), 0, NUM_PAIRS)
    return _true_inputs(None, dataset.batch(np.asarray(ids)), rng)

  def noisy_prior(num_samples, rng):
    return _noise(None, {"label": np.zeros(num_samples)}, rng)

  exact = {"text": judges["text"].exact}
  coherence, scores, strict = coherence_lib.joint_coherence(
      agreeing_prior, judges, modalities, 100, 32, jax.random.PRNGKey(0), distance_fns, exact)
  assert coherence == strict == 1.0 and scores == {"levenshtein": {"T<-prior": 0.0}}
  coherence, _, strict = coherence_lib.joint_coherence(
      noisy_prior, judges, modalities, 200, 32, jax.random.PRNGKey(0), distance_fns, exact)
  assert coherence < 0.1 and strict == 0.0


def _pooled_features(images: np.ndarray) -> np.ndarray:
  """Stand-in features: 4x4 average-pooled grey levels [B, 16]."""
  images = np.asarray(images, np.float64)
  if images.max() > 1.0:
    images = images / 255.0
  grey = images.mean(axis=-1)
  height = grey.shape[1] // 4 * 4
  grey = grey[:, :height, :height]
  return grey.reshape(len(grey), 4, height // 4, 4, height // 4).mean(axis=(2, 4)).reshape(-1, 16)


@quickstart_data
def test_fid_of_true_inputs_is_zero_and_of_noise_large(digits):
  dataset, modalities = digits
  scores = fid.fid_scores(_true_inputs, _pooled_features, dataset, modalities, BATCH_SIZE,
                          jax.random.PRNGKey(0))
  assert list(scores) == ["S->M", "T->M", "M->S", "T->S"]
  assert all(abs(value) < 1e-6 for value in scores.values())
  noise_scores = fid.fid_scores(_noise, _pooled_features, dataset, modalities, BATCH_SIZE,
                                jax.random.PRNGKey(0))
  assert all(value > 1.0 for value in noise_scores.values())


@quickstart_data
def test_fid_without_inception_weights_is_skipped_with_the_file_to_provide(digits, tmp_path):
  dataset, modalities = digits
  config = config_lib.quickstart_config()
  config.eval.fid.enabled = True
  config.eval.fid.inception_weights = str(tmp_path / "inception_fid.npz")
  scores, note = fid.model_fid(config, _true_inputs, dataset, modalities,
                               jax.random.PRNGKey(0))
  assert scores is None
  # The note is inception.find_weights' sentence: where it looked and what to pass.
  assert note.startswith("FID skipped: ")
  assert str(tmp_path / "inception_fid.npz") in note
  assert "--config.eval.fid.inception_weights=" in note
  config.eval.fid.enabled = False
  assert fid.model_fid(config, _true_inputs, dataset, modalities,
                       jax.random.PRNGKey(0)) == (
                           None, "FID not computed (--config.eval.fid.enabled=False).")


@quickstart_data
def test_latent_probes_of_separable_and_random_latents(digits):
  dataset, modalities = digits
  train_set, test_set = dataset.subset(np.arange(200)), dataset.subset(np.arange(200, 300))

  def separable(batch):  # every subset's mean is the one-hot label, plus noise
    rng = np.random.default_rng(int(batch["label"].sum()))
    means = np.eye(10)[batch["label"]] + 0.1 * rng.normal(size=(len(batch["label"]), 10))
    return np.broadcast_to(means, (7,) + means.shape)

  def random(batch):
    return np.random.default_rng(len(batch["label"])).normal(size=(7, len(batch["label"]), 10))

  accuracy = probes.latent_probes(separable, train_set, test_set, modalities, BATCH_SIZE)
  assert list(accuracy) == tables.latent_columns(("M", "S", "T"))
  assert all(value == 1.0 for value in accuracy.values())
  accuracy = probes.latent_probes(random, train_set, test_set, modalities, BATCH_SIZE)
  assert all(value < 0.3 for value in accuracy.values())


def _mst_results(model: str, coherence: float) -> dict:
  return {
      "model": model, "data": "mst", "modalities": {"M": "mnist", "S": "svhn", "T": "text"},
      "coherence": dict.fromkeys(tables.coherence_columns(), coherence),
      "coherence_exact": {"R": 0.1, "T<-M": 0.4, "T<-S": 0.3, "T<-M+S": 0.5},
      "text_levenshtein": {"T<-M": 0.5, "T<-S": 0.7, "T<-M+S": 0.4, "T<-prior": 1.5},
      "log_likelihood": {"M+S+T": -2000.0, "M": -2100.0},
      "log_likelihood_samples": 1000, "num_log_likelihood_pairs": 100,
      "fid": {"S->M": 30.0, "M->S": 40.0, "T->M": 50.0, "T->S": 60.0},
      "latent": dict.fromkeys(tables.latent_columns(), 0.9),
      "judges": {"mnist": "classifier", "svhn": "classifier", "text": "levenshtein"},
      "judge_accuracy": {"mnist": 0.99, "svhn": 0.9, "text": 1.0},
  }


def test_tables_have_the_paper_layout():
  runs = [_mst_results("crmvae", 0.5), _mst_results("crmvae", 0.7), _mst_results("mvae", 0.2)]
  markdown = summaries.tables_markdown(runs)
  lines = markdown.splitlines()
  assert ("| model | R | M<-S | M<-T | M<-S+T | S<-M | S<-T | S<-M+T | T<-M | T<-S | T<-M+S |"
          in lines)
  assert "| model | S->M | M->S |" in lines
  assert "| model | M | S | T | M+S | M+T | S+T | M+S+T |" in lines
  # Seeds as mean ± std; the paper's rows under each model; MVAE before CRMVAE.
  assert "| CRMVAE | 0.60 ± 0.10 |" in markdown
  assert "| CRMVAE (paper) | 0.15 | 0.60 | 0.97 |" in markdown
  assert markdown.index("| MVAE |") < markdown.index("| CRMVAE |")
  assert "| CRMVAE (paper) | 24.1 | 37.3 |" in markdown
  # The text read strictly, its distance to the true name, and log p(X).
  assert "| model | R | T<-M | T<-S | T<-M+S |" in lines
  assert "| model | T<-M | T<-S | T<-M+S | T<-prior |" in lines
  assert "| CRMVAE | -2000.0 ± 0.0 | -2100.0 ± 0.0 |" in markdown
  assert "importance sampled with 1000 samples" in markdown


def test_every_number_of_the_results_shows_in_the_tables():
  # The class of a hidden result: each section of numbers, present or left out, changes
  # tables.md (a section the tables call rendered but never draw would not).
  run = {**_mst_results("crmvae", 0.5),
         "coherence_from_means": {"M<-S": 0.37, "S<-M": 0.41},
         "classifier_fd": {"S->M": 7.5, "M->S": 8.5}}
  full = summaries.tables_markdown([run])
  metadata = {"model", "data", "modalities", "log_likelihood_samples",
              "num_log_likelihood_pairs", "judges", "coherence"}
  for key in sorted(set(run) - metadata):
    without = {name: value for name, value in run.items() if name != key}
    assert summaries.tables_markdown([without]) != full, f"{key} is not shown"
  assert "posteriors' means" in full and "| CRMVAE | 0.37 | 0.41 |" in full


def test_tables_of_a_dataset_outside_the_paper_have_no_paper_rows():
  run = {"model": "crmvae", "data": "quickstart", "modalities": {"M": "mnist", "T": "text"},
         "coherence": {"R": 0.2, "M<-T": 0.3, "T<-M": 0.4},
         "fid": None, "fid_note": "FID not computed (--config.eval.fid.enabled=False).",
         "latent": {"M": 0.9, "T": 1.0, "M+T": 1.0},
         "judges": {"mnist": "classifier", "text": "levenshtein"},
         "judge_accuracy": {"mnist": 0.97, "text": 1.0}}
  markdown = summaries.tables_markdown([run])
  assert ("| model | R | M<-T | T<-M |\n|---|---|---|---|\n| CRMVAE | 0.20 | 0.30 | 0.40 |"
          in markdown)
  assert "(paper)" not in markdown
  assert "FID not computed" in markdown


def _tiny_quickstart_config(tmp_path):
  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.num_train_steps = 5
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 5
  config.figure_examples = 4
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  config.eval.classifier_batch_size = 64
  config.eval.latent.train_examples = 128
  config.eval.log_likelihood.samples = 8
  config.eval.log_likelihood.examples = 16
  config.eval.fid.enabled = True  # without weights: skipped, with a note
  config.eval.fid.inception_weights = str(tmp_path / "inception_fid.npz")
  return config


@pytest.mark.slow
def test_evaluate_a_quickstart_run_end_to_end(tmp_path, monkeypatch):
  config = _tiny_quickstart_config(tmp_path)
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)

  with pytest.raises(UserError, match="python -m crmvae_jax.classifiers"):
    driver.evaluate(config, workdir)  # no classifiers yet
  other_model = config.copy_and_resolve_references()
  other_model.model = "mvae"
  with pytest.raises(UserError, match=r"--config.model='crmvae' \(asked: 'mvae'\)"):
    driver.evaluate(other_model, workdir)

  accuracies = classifier_training.train_classifiers(config)
  assert set(accuracies) == {"mnist", "text"}
  results = driver.evaluate(config, workdir)

  eval_dir = os.path.join(workdir, "eval")
  with open(os.path.join(eval_dir, "results.json")) as f:
    assert json.load(f) == results
  assert results["step"] == 5 and results["num_test_pairs"] == 64
  assert list(results["coherence"]) == ["R", "M<-T", "T<-M"]
  assert all(0.0 <= value <= 1.0 for value in results["coherence"].values())
  assert list(results["coherence_exact"]) == ["R", "T<-M"]
  assert results["coherence_exact"]["T<-M"] <= results["coherence"]["T<-M"]
  assert set(results["text_levenshtein"]) == {"T<-M", "T<-prior"}
  # log p(X) with the joint posterior, then each modality's, as proposals.
  assert list(results["log_likelihood"]) == ["M+T", "M", "T"]
  assert all(value < 0 for value in results["log_likelihood"].values())
  assert results["fid"] is None and results["fid_note"].startswith("FID skipped")
  assert list(results["latent"]) == ["M", "T", "M+T"]
  assert results["judges"] == {"mnist": "classifier", "text": "levenshtein"}
  assert results["judge_accuracy"]["text"] == 1.0
  assert results["classifier_test_accuracy"]["mnist"] == accuracies["mnist"]
  model = checkpoints.load_trained(config, workdir)[0]
  mnist = [m for m in model.modalities if m.name == "mnist"]
  stored = judges_lib.load_classifiers(config, mnist)["mnist"]
  assert results["classifier_digest"] == {"mnist": judges_lib.params_digest(stored.params)}
  # Known before an evaluation, as it will record them (names are read, not classified).
  assert judges_lib.stored_digests(config, model.modalities) == results["classifier_digest"]
  assert sweeps.ensure_classifiers(config) == results["classifier_digest"]
  with open(os.path.join(eval_dir, "tables.md")) as f:
    assert "| model | R | M<-T | T<-M |" in f.read()
  assert os.path.getsize(os.path.join(eval_dir, "cross_generation.png")) > 0

  # A new metric is one function and two lines: its entry and the data set's list. It
  # is run first here, and changes no other metric's numbers (each has its own key).
  import dataclasses

  from crmvae_jax.data import registry
  from crmvae_jax.evaluation import entries

  def toy(context):
    return {"toy_test_pairs": len(context.test_pairs), "toy_modalities": [
        m.name for m in context.modalities]}

  monkeypatch.setitem(entries.METRICS, "toy", toy)
  quickstart = registry.DATA_SETS["quickstart"]
  monkeypatch.setitem(registry.DATA_SETS, "quickstart", dataclasses.replace(
      quickstart, metrics=("toy", *quickstart.metrics)))
  with_toy = driver.evaluate(config, workdir)
  assert (with_toy["toy_test_pairs"], with_toy["toy_modalities"]) == (64, ["mnist", "text"])
  assert {key: value for key, value in with_toy.items() if not key.startswith("toy")} == results
  # The tables show its number too, without a line of rendering code for it.
  with open(os.path.join(eval_dir, "tables.md")) as f:
    assert "| model | toy_test_pairs |\n|---|---|\n| CRMVAE | 64.000 |" in f.read()

  # Or a module of the user's own and one config line: a metric that draws random
  # numbers from its own key, run first, changes no other number either.
  (tmp_path / "my_metrics.py").write_text(
      "import jax\n\n"
      "def noise(context):\n"
      "  return {'noise': float(jax.random.uniform(context.key('noise')))}\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  mine = config.copy_and_resolve_references()
  mine.eval.metrics = ("my_metrics:noise", *quickstart.metrics)
  with_mine = driver.evaluate(mine, workdir)
  assert {key: value for key, value in with_mine.items() if key != "noise"} == results
  again = config.copy_and_resolve_references()
  again.eval.extra_metrics = ("my_metrics:noise",)
  assert driver.evaluate(again, workdir)["noise"] == with_mine["noise"]
