"""Coherence classifiers: they learn real digits, round-trip through Orbax, and a
missing one names the command that trains it."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from crmvae_jax.evaluation import classifier_training, judges
from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.data import quickstart, text
from crmvae_jax.common.errors import UserError
from crmvae_jax.data.modalities import modalities_of


@pytest.fixture(scope="module")
def quickstart_data():
  config = config_lib.quickstart_config()
  train_set, test_set = quickstart.load(config.data)
  return config, train_set, test_set, modalities_of("quickstart", train_set)


def _eval_config(epochs: int = 1, batch_size: int = 64):
  config_eval = config_lib.evaluation_config()
  config_eval.classifier_epochs = epochs
  config_eval.classifier_batch_size = batch_size
  return config_eval


@pytest.fixture(scope="module")
def trained_mnist(quickstart_data):
  """An MNIST classifier trained for two epochs on 1,500 embedded digits."""
  _, train_set, test_set, modalities = quickstart_data
  rng = np.random.default_rng(0)
  train_examples = classifier_training.classifier_examples(train_set, "mnist", 1500, rng)
  test_examples = classifier_training.classifier_examples(test_set, "mnist")
  classifier, metadata = classifier_training.train_classifier(
      modalities[0], train_examples, test_examples, _eval_config(epochs=2), seed=0,
      disable_progress_bar=True)
  return classifier, metadata, test_examples


@pytest.mark.slow
def test_mnist_classifier_learns_digits(trained_mnist):
  _, metadata, (_, test_labels) = trained_mnist
  assert metadata["num_classes"] == 10 and not metadata["multi_label"]
  assert metadata["train_examples"] == 1500
  assert len(test_labels) == 500
  assert metadata["test_accuracy"] > 0.8  # chance is 0.1


@pytest.mark.slow
def test_classifier_accepts_stored_and_displayed_images(trained_mnist):
  classifier, _, (test_images, _) = trained_mnist
  stored = test_images[:32]
  displayed = stored.astype(np.float32) / 255.0  # what Modality.display gives
  np.testing.assert_array_equal(classifier(stored), classifier(displayed))


@pytest.mark.slow
def test_text_classifier_learns_digit_names(quickstart_data):
  _, train_set, test_set, modalities = quickstart_data
  classifier, metadata = classifier_training.train_classifier(
      modalities[1], classifier_training.classifier_examples(train_set, "text"),
      classifier_training.classifier_examples(test_set, "text"), _eval_config(), seed=0,
      disable_progress_bar=True)
  assert metadata["test_accuracy"] > 0.9
  predictions = classifier(text.encode(["seven   ", "  two   "]))
  np.testing.assert_array_equal(predictions, [7, 2])


@pytest.mark.slow
def test_save_load_round_trip(trained_mnist, quickstart_data, tmp_path):
  config, _, _, modalities = quickstart_data
  classifier, metadata, (test_images, _) = trained_mnist
  # As `train_classifiers` stores it: with the data it was trained on.
  metadata = {**metadata, "data": data_lib.identity(config.data)}
  folder = classifier_training.save_classifier(str(tmp_path), classifier, metadata)
  assert folder == os.path.join(str(tmp_path), "mnist")
  with open(os.path.join(folder, judges.METADATA_FILE)) as f:
    assert json.load(f)["test_accuracy"] == metadata["test_accuracy"]

  loaded = judges.load_classifiers(config, modalities[:1], str(tmp_path))["mnist"]
  np.testing.assert_array_equal(loaded(test_images), classifier(test_images))
  # Deterministic at evaluation: no dropout, the same answer twice.
  np.testing.assert_array_equal(loaded(test_images), loaded(test_images))
  # A judge stored and restored is the same judge by its digest.
  assert judges.params_digest(loaded.params) == judges.params_digest(classifier.params)


def test_params_digest_tells_judges_apart_by_any_bit():
  params = {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                      "bias": np.zeros(3, np.float32)}}
  digest = judges.params_digest(params)
  assert len(digest) == 16 and int(digest, 16) >= 0
  assert judges.params_digest(jax.tree.map(np.copy, params)) == digest
  one_ulp = jax.tree.map(np.copy, params)
  one_ulp["dense"]["kernel"][1, 2] = np.nextafter(np.float32(5), np.float32(6))
  changed = [one_ulp,
             # the same values in another dtype, shape or place
             {"dense": {"kernel": params["dense"]["kernel"].astype(np.float64),
                        "bias": params["dense"]["bias"]}},
             {"dense": {"kernel": params["dense"]["kernel"].reshape(3, 2),
                        "bias": params["dense"]["bias"]}},
             {"dense": {"kernel": params["dense"]["bias"], "bias": params["dense"]["kernel"]}}]
  assert len({digest, *(judges.params_digest(p) for p in changed)}) == 1 + len(changed)


@pytest.mark.xdist_group("quickstart_data")  # one load of the data per session
def test_missing_classifier_names_the_command(quickstart_data, tmp_path):
  config, _, _, modalities = quickstart_data
  with pytest.raises(UserError) as error:
    judges.load_classifiers(config, modalities, str(tmp_path))
  message = str(error.value)
  assert "No mnist classifier" in message
  assert (f"python -m crmvae_jax.classifiers --config.eval.classifier_dir={tmp_path}"
          in message)


def test_train_command_for_mst_and_default_directory():
  config = config_lib.quickstart_config()
  config.data.name = "mst"
  assert judges.default_directory(config) == os.path.join("classifiers", "mst")
  assert (judges.train_command(config, judges.default_directory(config))
          == "python -m crmvae_jax.classifiers --config=configs/mst.py")


@pytest.mark.xdist_group("quickstart_data")  # one load of the data per session
def test_classifier_examples_are_distinct_rows_of_the_split(quickstart_data):
  _, train_set, test_set, _ = quickstart_data
  doubled = train_set.subset(np.concatenate([np.arange(100), np.arange(100)]))
  images, labels = classifier_training.classifier_examples(doubled, "mnist")
  assert len(images) == 100
  # The quick-start splits share one base array; a split's rows never leak into the other.
  assert not set(train_set.indices["mnist"]) & set(test_set.indices["mnist"])
  np.testing.assert_array_equal(
      labels, train_set.labels[np.argsort(train_set.indices["mnist"][:100])])


def test_digit_name_judge_reads_misspelled_names():
  judge = judges.DigitNameJudge(text.decode)
  ids = text.encode(["  seven ", " sevn   ", "fine    ", "eihgt   "])
  np.testing.assert_array_equal(judge(ids), [7, 7, 5, 8])
  np.testing.assert_array_equal(judge.distances(ids), [0, 1, 1, 2])


def test_multi_label_predictions_threshold_logits():
  logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, -0.1]])
  np.testing.assert_array_equal(
      judges.predictions_from_logits(logits, multi_label=True), [[1, 0, 1], [0, 1, 0]])
  np.testing.assert_array_equal(
      judges.predictions_from_logits(logits, multi_label=False), [0, 1])


def test_the_judges_are_found_from_the_run_when_evaluated_from_elsewhere(tmp_path, monkeypatch):
  config = config_lib.quickstart_config()
  repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
  (repo / "classifiers" / "quickstart").mkdir(parents=True)
  (repo / "workdirs" / "run").mkdir(parents=True)
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  run = str(repo / "workdirs" / "run")
  assert judges.find_directory(config, run) == str(repo / "classifiers" / "quickstart")
  # The current directory's own classifiers win, as they always did.
  (elsewhere / "classifiers" / "quickstart").mkdir(parents=True)
  assert judges.find_directory(config, run) == "classifiers/quickstart"
  # Nowhere: the default, which the missing-classifier message names.
  (elsewhere / "classifiers" / "quickstart").rmdir()
  assert judges.find_directory(config, str(tmp_path / "lone" / "run")) == "classifiers/quickstart"
  # An explicit relative --config.eval.classifier_dir is found above the run too.
  config.eval.classifier_dir = "classifiers/quickstart"
  assert judges.find_directory(config, run) == str(repo / "classifiers" / "quickstart")
