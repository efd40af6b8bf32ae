"""The classifier-Frechet distance: Frechet distances of cross-generated images in
the feature space of the target modality's own classifier (its penultimate layer)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from test_evaluate import _tiny_quickstart_config

from crmvae_jax.reporting import summaries
from crmvae_jax.evaluation import classifier_training, driver, fid
from crmvae_jax.evaluation import judges as judges_lib
from crmvae_jax.training import loop
from crmvae_jax.evaluation import classifier_networks
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import quickstart, text
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.data.modalities import modalities_of


@pytest.fixture(scope="module")
def digits_and_text():
  """5,000 real MNIST digits and their names, stored digit by digit (quick-start)."""
  images, labels = quickstart.embedded_mnist()
  arrays = {"mnist": images, "text": text.digit_texts(labels, np.random.default_rng(0))}
  dataset = MultimodalDataset(
      modalities=("mnist", "text"), arrays=arrays,
      indices={name: np.arange(len(labels)) for name in arrays}, labels=labels)
  return dataset, modalities_of("quickstart", dataset)


@pytest.mark.parametrize("network, shape, num_features", [
    ("mnist", (28, 28, 1), 3 * 3 * 128), ("svhn", (32, 32, 3), 2 * 2 * 256)])
def test_classifier_features_are_what_the_last_layer_reads(network, shape, num_features):
  modality = next(m for m in modalities_of("mst", MultimodalDataset(
      modalities=("mnist", "svhn"), arrays={"mnist": np.zeros((1, 28, 28, 1), np.uint8),
                                            "svhn": np.zeros((1, 32, 32, 3), np.uint8)},
      indices={"mnist": np.arange(1), "svhn": np.arange(1)}, labels=np.zeros(1, int)))
                  if m.network == network)
  module = classifier_networks.CLASSIFIERS[network](num_classes=10)
  images = np.random.default_rng(0).integers(0, 256, (5,) + shape, dtype=np.uint8)
  inputs = judges_lib.network_input(modality, jnp.asarray(images))
  # Random parameters of the network's shapes (`module.init` compiles for many seconds).
  rng = np.random.default_rng(1)
  params = jax.tree.map(
      lambda leaf: rng.uniform(-0.05, 0.05, leaf.shape).astype(leaf.dtype),
      jax.eval_shape(module.init, jax.random.PRNGKey(0), inputs)["params"])
  classifier = judges_lib.Classifier(modality, module, params)
  features = classifier.features(images)
  assert features.shape == (5, num_features) and features.dtype == np.float32
  assert np.all(features >= 0.0)  # ReLU activations
  # Displayed floats in [0, 1] are the same images.
  np.testing.assert_allclose(classifier.features(images / 255.0), features, atol=1e-5)
  # The last layer maps them to the logits.
  logits = jax.jit(module.apply)({"params": params}, inputs)  # one compile, not one per op
  dense = params["TorchDense_0"]
  np.testing.assert_allclose(features @ dense["kernel"] + dense["bias"], logits, atol=1e-4)


class _SmallClassifier(classifier_networks.ImageClassifier):
  """A small image classifier (144 features), so the Frechet distances are quick."""

  channels: tuple[int, ...] = (8, 16, 16)


def _shuffled(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Each image's pixels in a random order: the same grey levels, no digit."""
  flat = images.reshape(len(images), -1)
  return np.stack([row[rng.permutation(len(row))] for row in flat]).reshape(images.shape)


@pytest.mark.slow
def test_classifier_fd_of_real_images_is_zero_and_of_noise_large(monkeypatch,
                                                                  digits_and_text):
  dataset, modalities = digits_and_text
  image = modalities[0]
  monkeypatch.setitem(classifier_networks.CLASSIFIERS, image.network, _SmallClassifier)
  ids = np.random.default_rng(0).permutation(len(dataset))
  train_ids, test_ids = ids[:2000], np.sort(ids[2000:2300])
  settings = ml_collections.ConfigDict({"classifier_epochs": 2, "classifier_batch_size": 64,
                                        "classifier_learning_rate": 1e-3})
  classifier, metadata = classifier_training.train_classifier(
      image, (dataset.arrays["mnist"][train_ids], dataset.labels[train_ids]),
      (dataset.arrays["mnist"][test_ids], dataset.labels[test_ids]), settings, seed=0,
      disable_progress_bar=True)
  assert metadata["test_accuracy"] > 0.5
  test_pairs = dataset.subset(test_ids)
  config = config_lib.quickstart_config()
  config.eval.fid.examples = 300
  config.eval.batch_size = 100
  judges = {"mnist": classifier}

  def score(generate):
    return fid.model_classifier_fd(config, generate, judges, test_pairs, modalities,
                                   jax.random.PRNGKey(0))

  real = score(lambda subset, batch, rng: [batch["mnist"] / 255.0, batch["text"]])
  assert list(real) == ["T->M"] and abs(real["T->M"]) < 1e-6
  noise = score(lambda subset, batch, rng: [
      _shuffled(batch["mnist"], np.random.default_rng(np.asarray(rng).tolist())) / 255.0,
      batch["text"]])
  # Other real digits are near; shuffled pixels far.
  other_ids = ids[2300:2600]
  other = score(lambda subset, batch, rng: [
      dataset.batch(other_ids[:len(batch["label"])])["mnist"] / 255.0, batch["text"]])
  assert noise["T->M"] > 5.0 * other["T->M"] > 0.0


@pytest.mark.slow
def test_a_tiny_evaluation_reports_the_classifier_fd(tmp_path):
  config = _tiny_quickstart_config(tmp_path)
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  classifier_training.train_classifiers(config)
  results = driver.evaluate(config, workdir)

  # Inception's FID is skipped (no weights); the classifier's is always there, with
  # the columns FID reports.
  assert results["fid"] is None
  assert list(results["classifier_fd"]) == ["T->M"]
  assert np.isfinite(results["classifier_fd"]["T->M"]) and results["classifier_fd"]["T->M"] > 0
  assert results["num_fid_pairs"] == min(config.eval.fid.examples, results["num_test_pairs"])
  assert summaries.by_subset_size(results)["classifier_fd"] == {
      1: pytest.approx(results["classifier_fd"]["T->M"])}
  eval_dir = os.path.join(workdir, "eval")
  with open(os.path.join(eval_dir, "results.json")) as f:
    assert json.load(f)["classifier_fd"] == results["classifier_fd"]
  with open(os.path.join(eval_dir, "tables.md")) as f:
    markdown = f.read()
  assert ("## Classifier-Frechet distance (lower is better), features of the target's own "
          "classifier\n\n| model | T->M |\n|---|---|\n| CRMVAE | "
          f"{results['classifier_fd']['T->M']:.2f} |") in markdown
