"""Evaluation samples the test set at random, never its first pairs: on test pairs
stored digit by digit (as MNIST-SVHN-Text's are) the first pairs all show digit 0.
Each test here builds such a label-sorted test set and would fail with the old
first-N choices of FID pairs, test-loss batches and figure examples."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from crmvae_jax.evaluation import driver, image_text
from crmvae_jax.evaluation import fid as fid_lib
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import input_pipeline
from crmvae_jax.training import loop
from crmvae_jax.data import quickstart
from test_evaluate import _pooled_features, mst_of_digits

PER_DIGIT = 30
NUM_PAIRS = 10 * PER_DIGIT


@pytest.fixture(scope="module")
def sorted_digits():
  """MNIST-SVHN-Text of real digits stored digit by digit, 30 pairs per digit."""
  images, labels = quickstart.embedded_mnist()  # sorted by class
  ids = np.concatenate([np.flatnonzero(labels == digit)[:PER_DIGIT] for digit in range(10)])
  images, labels = images[ids], labels[ids]
  assert np.all(np.diff(labels) >= 0)
  return mst_of_digits(images, labels)


def _num_digits(labels) -> int:
  return len(np.unique(np.concatenate([np.ravel(l) for l in labels])))


class _RecordingModel:
  """A generator returning the true inputs and recording the labels it was given."""

  def __init__(self):
    self.labels = []

  def __call__(self, subset, batch, rng):
    self.labels.append(batch["label"].copy())
    return [batch["mnist"] / 255.0, batch["svhn"] / 255.0, batch["text"]]


class _StandInInception:
  def features(self, images, batch_size):
    return _pooled_features(images)


class _StandInJudge:
  """A judge with the `features` of a classifier (the classifier-Frechet distance's)."""

  def features(self, images):
    return _pooled_features(images)


def _config(seed: int = 0, fid_examples: int = 40):
  config = config_lib.quickstart_config()
  config.eval.seed = seed
  config.eval.fid.enabled = True
  config.eval.fid.examples = fid_examples
  config.eval.batch_size = 20
  return config


def _fid_labels(monkeypatch, dataset, modalities, config):
  """The labels of the pairs `model_fid` generated from, and its scores."""
  monkeypatch.setattr(fid_lib.inception.InceptionFeatures, "load",
                      lambda path=None: _StandInInception())
  model = _RecordingModel()
  scores, note = fid_lib.model_fid(config, model, dataset, modalities, jax.random.PRNGKey(0))
  assert note is None
  return np.concatenate(model.labels), scores


def test_sample_ids_are_seeded_spread_and_sorted():
  labels = np.repeat(np.arange(10), 50)
  ids = input_pipeline.sample_ids(len(labels), 40, seed=0)
  assert len(ids) == 40 and len(set(ids)) == 40 and np.all(np.diff(ids) > 0)
  assert _num_digits([labels[ids]]) >= 8
  np.testing.assert_array_equal(ids, input_pipeline.sample_ids(len(labels), 40, seed=0))
  assert not np.array_equal(ids, input_pipeline.sample_ids(len(labels), 40, seed=1))
  np.testing.assert_array_equal(input_pipeline.sample_ids(30, -1, seed=0), np.arange(30))
  np.testing.assert_array_equal(input_pipeline.sample_ids(30, 50, seed=0), np.arange(30))


def test_eval_loss_batches_cover_the_labels_and_are_fixed_by_the_seed():
  labels = np.repeat(np.arange(10), 50)
  batches = list(input_pipeline.eval_batch_ids(len(labels), 32, max_batches=2, seed=0))
  assert [len(ids) for ids in batches] == [32, 32]
  assert len(np.unique(np.concatenate(batches))) == 64  # distinct across batches
  assert _num_digits([labels[ids] for ids in batches]) >= 8
  # Every call (every evaluation along training) sees the same batches.
  again = list(input_pipeline.eval_batch_ids(len(labels), 32, max_batches=2, seed=0))
  np.testing.assert_array_equal(np.stack(batches), np.stack(again))
  other = list(input_pipeline.eval_batch_ids(len(labels), 32, max_batches=2, seed=1))
  assert not np.array_equal(np.stack(batches), np.stack(other))
  # Without a cap: every full batch of the permutation.
  assert len(list(input_pipeline.eval_batch_ids(len(labels), 32, seed=0))) == 500 // 32


def test_fid_pairs_are_a_seeded_random_sample(monkeypatch, sorted_digits):
  dataset, modalities = sorted_digits
  labels, scores = _fid_labels(monkeypatch, dataset, modalities, _config(seed=0))
  assert list(scores) == ["S->M", "T->M", "M->S", "T->S"]
  assert _num_digits([labels]) >= 8  # the first 40 pairs would all be zeros
  again, _ = _fid_labels(monkeypatch, dataset, modalities, _config(seed=0))
  np.testing.assert_array_equal(labels, again)
  other, _ = _fid_labels(monkeypatch, dataset, modalities, _config(seed=1))
  assert not np.array_equal(labels, other)
  chosen = fid_lib.fid_pairs(_config(seed=0), dataset)
  assert len(chosen) == 40 and _num_digits([chosen.labels]) >= 8


def test_classifier_fd_has_the_fid_columns_on_the_same_pairs(monkeypatch, sorted_digits):
  dataset, modalities = sorted_digits
  judges = {"mnist": _StandInJudge(), "svhn": _StandInJudge()}
  for by_subset_size in (False, True):
    config = _config()
    config.eval.fid.by_subset_size = by_subset_size
    fid_labels, fid = _fid_labels(monkeypatch, dataset, modalities, config)
    model = _RecordingModel()
    classifier_fd = fid_lib.model_classifier_fd(config, model, judges, dataset, modalities,
                                                jax.random.PRNGKey(0))
    assert list(classifier_fd) == list(fid)
    np.testing.assert_array_equal(np.concatenate(model.labels), fid_labels)
    assert all(abs(value) < 1e-6 for value in classifier_fd.values())  # true inputs
  assert list(classifier_fd) == ["S->M", "T->M", "S+T->M", "M->S", "T->S", "M+T->S"]


def test_fid_scores_take_one_feature_function_per_target(sorted_digits):
  dataset, modalities = sorted_digits
  calls = []

  def features_for(name, height):
    def features(images):
      assert images.shape[1] == height, (name, images.shape)
      calls.append(name)
      return _pooled_features(images)
    return features

  def noise(subset, batch, rng):
    generator = np.random.default_rng(np.asarray(rng).tolist())
    size = len(batch["label"])
    return [generator.uniform(size=(size, 28, 28, 1)), generator.uniform(size=(size, 32, 32, 3)),
            batch["text"]]

  per_target = fid_lib.fid_scores(
      noise, {"mnist": features_for("mnist", 28), "svhn": features_for("svhn", 32)}, dataset,
      modalities, 64, jax.random.PRNGKey(0))
  shared = fid_lib.fid_scores(noise, _pooled_features, dataset, modalities, 64,
                              jax.random.PRNGKey(0))
  assert set(calls) == {"mnist", "svhn"}
  assert per_target == shared  # one function for every target: FID as before


def test_training_figure_examples_are_a_seeded_random_sample(monkeypatch, sorted_digits):
  dataset, _ = sorted_digits
  shown = []
  monkeypatch.setattr(loop.plotting, "cross_generation_figure",
                      lambda trained, batch, *args, **kwargs: shown.append(batch["label"]))
  config = config_lib.quickstart_config()
  config.figure_examples = 8
  for seed in (0, 0, 1):
    config.eval.seed = seed
    loop.save_cross_generation(None, dataset, config, "unused.png", "title")
  assert len(shown[0]) == 8 and _num_digits([shown[0]]) >= 4
  np.testing.assert_array_equal(shown[0], shown[1])
  assert not np.array_equal(shown[0], shown[2])


def test_image_text_fid_and_grid_texts_are_seeded_random_samples(sorted_digits):
  dataset, _ = sorted_digits
  batch_size = 16
  fid_ids = input_pipeline.sample_ids(NUM_PAIRS, 50, seed=0)
  seen = {"calls": [], "real": []}

  def features(images):
    seen["calls"].append(len(images))
    if images.dtype == np.uint8:
      seen["real"].append(images)
    return _pooled_features(images)

  def generate(text_ids, rng):
    return np.random.default_rng(0).uniform(size=(len(text_ids), 28, 28, 1))

  scores = image_text.text_to_image_scores(
      generate, dataset, "mnist", "text", batch_size, jax.random.PRNGKey(0),
      features_fn=features, fid_ids=fid_ids)
  assert scores["fid_from_text"] > 0.0
  np.testing.assert_array_equal(np.concatenate(seen["real"]), dataset.batch(fid_ids)["mnist"])
  # Whole batches, then one partial: the feature network compiles at most twice.
  assert len(set(seen["calls"])) <= 3 and all(n % batch_size == 0 for n in seen["calls"][:-2])

  config = config_lib.quickstart_config()
  config.figure_examples = 8
  texts, ids = driver.chosen_texts(config, dataset, "text")
  assert ids.shape == (8, 8) and len(set(texts)) >= 4
