"""Your own data from .npz arrays: kinds, networks, masks, splits and every refusal."""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from configs import arrays as arrays_config
from crmvae_jax import data as data_lib
from crmvae_jax.core import models
from crmvae_jax.core.modalities import modalities_of
from crmvae_jax.data import arrays, quickstart, text
from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.errors import UserError

NUM = 200


class TinyEncoder(nn.Module):
  """A user's own encoder, named by import path in a test."""

  latent_dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(8)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.latent_dim)(h), nn.Dense(self.latent_dim)(h)


class TinyDecoder(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, z):
    return nn.Dense(5)(z)


def example_arrays(seed: int = 0) -> dict[str, np.ndarray]:
  images, labels = quickstart.embedded_mnist()
  ids = np.arange(0, 5000, 5000 // NUM)[:NUM]
  rng = np.random.default_rng(seed)
  masks = np.ones((NUM, 3), bool)
  masks[:, 1] = rng.uniform(size=NUM) >= 0.3  # 30% of the names missing
  return {"image": images[ids], "name": text.digit_texts(labels[ids], rng),
          "features": (np.eye(10)[labels[ids], :5] + 0.1 * rng.normal(size=(NUM, 5))).astype(
              np.float32),
          "labels": labels[ids], "masks": masks}


@pytest.fixture
def config_data(tmp_path):
  np.savez(tmp_path / "data.npz", **example_arrays())
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "data.npz")
  return config


@pytest.mark.slow  # builds and compiles a model of every kind
def test_kinds_networks_and_likelihoods_come_from_the_arrays(config_data):
  train, test = data_lib.load(config_data)
  assert train.modalities == ("image", "name", "features")
  assert len(train) + len(test.labels) <= NUM and len(test) > 0
  assert train.masks is not None and test.masks is None  # only complete test examples
  modalities = modalities_of("arrays", train)
  assert [(m.kind, m.network, m.likelihood) for m in modalities] == [
      ("image", "polymnist", "laplace"), ("text", "sequence", "laplace"),
      ("vector", "vector", "laplace")]
  assert [m.network_kwargs() for m in modalities] == [
      {"out_channels": 1}, {"vocab_size": 70, "length": 8}, {"size": 5}]  # ids 0..69
  assert [m.classifier for m in modalities] == ["polymnist", "sequence", "vector"]
  # The model builds for every kind, and its loss on a masked batch is finite.
  model = models.MultimodalVAE(modalities, 4)
  batch = train.batch(np.arange(16))
  params = models.init_params(model, jax.random.PRNGKey(0), batch)
  loss, _ = models.make_loss_fn(model, "crmvae")(params, batch, jax.random.PRNGKey(1), 1.0)
  assert np.isfinite(loss)
  outputs = model.apply({"params": params}, models.model_inputs(modalities, batch))
  assert [o.shape for o in outputs] == [(16, 28, 28, 1), (16, 8, 70), (16, 5)]


@pytest.mark.slow
def test_declared_kinds_likelihoods_and_own_networks(config_data):
  config_data.modalities = {
      "features": {"likelihood": "gaussian", "encoder": "tests.test_data_arrays.TinyEncoder",
                   "decoder": "tests.test_data_arrays.TinyDecoder"},
      "image": {"kind": "image"}}
  train, _ = data_lib.load(config_data)
  assert train.modalities == ("features", "image")  # the declared ones, in their order
  features, _ = modalities_of("arrays", train)
  assert features.likelihood == "gaussian" and features.classifier == "vector"
  assert features.network == ("custom:tests.test_data_arrays.TinyEncoder,"
                              "tests.test_data_arrays.TinyDecoder")
  model = models.MultimodalVAE(modalities_of("arrays", train), 3)
  batch = train.batch(np.arange(4))
  params = models.init_params(model, jax.random.PRNGKey(0), batch)
  assert params["encoders_0"]["Dense_0"]["kernel"].shape == (5, 8)  # the user's own module
  # A Gaussian of unit scale: log N(x; x, 1) per element is -log(2 pi) / 2.
  values = jax.numpy.asarray(batch["features"])
  np.testing.assert_allclose(features.log_likelihood(values, values), -2.5 * np.log(2 * np.pi),
                             rtol=1e-6)


def test_each_kind_gets_its_networks_and_sizes_without_building_a_model(config_data):
  train, test = data_lib.load(config_data)
  assert train.masks is not None and test.masks is None  # only complete test examples
  modalities = modalities_of("arrays", train)
  assert [(m.kind, m.network, m.likelihood) for m in modalities] == [
      ("image", "polymnist", "laplace"), ("text", "sequence", "laplace"),
      ("vector", "vector", "laplace")]
  assert [m.network_kwargs() for m in modalities] == [
      {"out_channels": 1}, {"vocab_size": 70, "length": 8}, {"size": 5}]


def test_a_second_file_is_the_test_split_and_directories_concatenate(tmp_path):
  (tmp_path / "parts").mkdir()
  for index in range(2):
    np.savez(tmp_path / "parts" / f"{index}.npz", **example_arrays(index))
  np.savez(tmp_path / "test.npz", **{**example_arrays(5), "masks": np.ones((NUM, 3), bool)})
  config = arrays_config.get_config().data
  config.path, config.test_path = str(tmp_path / "parts"), str(tmp_path / "test.npz")
  train, test = data_lib.load(config)
  assert (len(train), len(test)) == (2 * NUM, NUM)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "features": np.where(np.arange(5) == 2, np.nan, a["features"])},
     "'features' holds NaN or infinite values in 200 examples"),
    (lambda a: {**a, "image": a["image"][:, :27, :27]}, "is 27x27; networks exist for"),
    (lambda a: {**a, "name": a["name"][:, :7]}, "has length 7; pad it to a multiple of 8"),
    (lambda a: {**a, "labels": a["labels"][:10]}, "differ in length"),
    (lambda a: {**a, "masks": a["masks"][:, :2]}, "'masks' of .* must be \\[N, M\\]"),
    (lambda a: {**a, "masks": np.zeros_like(a["masks"])}, "with no modality at all"),
    (lambda a: {**a, "labels": a["labels"].astype(np.float32)}, "'labels' of .* integers"),
    (lambda a: {**a, "image": a["image"].astype(np.float32)}, "give uint8 or floats in"),
    (lambda a: {**a, "odd": np.zeros((NUM, 3, 3), np.uint8)}, "'odd' of shape .* is no image"),
])
def test_arrays_that_break_a_rule_are_refused_naming_the_array(tmp_path, change, message):
  np.savez(tmp_path / "bad.npz", **change(example_arrays()))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  with pytest.raises(UserError, match=message):
    data_lib.load(config)


@pytest.mark.parametrize("modalities, message", [
    ({"image": {"kind": "picture"}}, "Unknown kind 'picture' of modality 'image'"),
    ({"image": {"likelihood": "poisson"}}, "Unknown likelihood 'poisson'"),
    ({"image": {"colour": 1}}, "unknown fields \\['colour'\\]"),
    ({"features": {"encoder": "tests.test_data_arrays.TinyEncoder"}}, "only one of its networks"),
    ({"audio": {"kind": "vector"}}, "has no arrays \\['audio'\\]"),
])
def test_declarations_that_do_not_fit_are_refused(config_data, modalities, message):
  config_data.modalities = modalities
  with pytest.raises(UserError, match=message):
    data_lib.load(config_data)


def test_missing_files_say_which_flag(tmp_path):
  config = arrays_config.get_config().data
  with pytest.raises(DataUnavailableError, match="--config.data.path=FILE.npz"):
    data_lib.load(config)
  config.path = str(tmp_path / "none.npz")
  with pytest.raises(DataUnavailableError, match="No .npz file at"):
    data_lib.load(config)
  (tmp_path / "broken.npz").write_bytes(b"not a zip")
  config.path = str(tmp_path / "broken.npz")
  with pytest.raises(UserError, match="is not a readable .npz file"):
    data_lib.load(config)


def test_unlabelled_data_loads_with_every_label_missing(tmp_path):
  unlabelled = {k: v for k, v in example_arrays().items() if k != "labels"}
  np.savez(tmp_path / "data.npz", **unlabelled)
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "data.npz")
  train, _ = data_lib.load(config)
  assert np.all(train.labels == -1)
  assert isinstance(config, ml_collections.ConfigDict)


@pytest.mark.slow
def test_unlabelled_data_is_evaluated_by_what_needs_no_labels(tmp_path):
  # No labels: no coherence or probes, but the test log-likelihood and the
  # cross-generation figure, in one results file, and no classifier is asked for.
  import json
  import os

  from crmvae_jax import config as config_lib
  from crmvae_jax.evaluation import driver
  from crmvae_jax.training import loop

  unlabelled = {k: v for k, v in example_arrays().items() if k != "labels"}
  np.savez(tmp_path / "data.npz", **unlabelled)
  config = config_lib.resize(arrays_config.get_config(), "tiny")
  config.data.path = str(tmp_path / "data.npz")
  config.batch_size = config.eval.batch_size = 8
  config.eval.classifier_dir = str(tmp_path / "no_classifiers")
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  results = driver.evaluate(config, workdir)
  assert results["coherence"] is None and results["latent"] is None
  assert "no labels" in results["note"]
  # One estimate per proposal: the joint posterior and each nonempty subset's (2^3 - 1).
  assert len(results["log_likelihood"]) == 7
  assert all(np.isfinite(value) for value in results["log_likelihood"].values())
  with open(tmp_path / "run" / "eval" / "results.json") as f:
    assert json.load(f)["log_likelihood"] == results["log_likelihood"]
  assert os.path.getsize(tmp_path / "run" / "eval" / "cross_generation.png") > 1000
  assert not os.path.exists(tmp_path / "no_classifiers")
