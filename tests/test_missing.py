"""Missing modalities: masks drawn per pair, carried by batches, and honoured by training."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.config import runs, validation
from crmvae_jax.model import models
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.data import base, quickstart, text
from crmvae_jax.common.errors import UserError

NUM = 600


@pytest.fixture(scope="module")
def pairs():
  images, labels = quickstart.embedded_mnist()
  ids = np.arange(0, 5000, 5000 // NUM)[:NUM]
  arrays = {"mnist": images[ids], "text": text.digit_texts(labels[ids], np.random.default_rng(0))}
  return base.MultimodalDataset(("mnist", "text"), arrays,
                                {name: np.arange(NUM) for name in arrays}, labels[ids])


def test_masks_are_seeded_at_the_ratio_and_never_empty(pairs):
  masked = base.with_missing(pairs, 0.3, seed=0)
  assert masked.masks.shape == (NUM, 2) and masked.masks.dtype == bool
  assert masked.masks.any(axis=1).all()  # never every modality of a pair
  # Missing with probability 0.3, less the pairs that lost both and kept one (0.09 / 2).
  assert abs((~masked.masks).mean() - (0.3 - 0.045)) < 0.04
  np.testing.assert_array_equal(base.with_missing(pairs, 0.3, seed=0).masks, masked.masks)
  assert not np.array_equal(base.with_missing(pairs, 0.3, seed=1).masks, masked.masks)
  assert base.with_missing(pairs, 0.0, seed=0) is pairs
  # At 0.95 nearly every pair keeps exactly the one modality it is given.
  assert (base.with_missing(pairs, 0.95, seed=0).masks.sum(axis=1) >= 1).all()


def test_masks_follow_batches_and_subsets_and_existing_gaps_stay(pairs):
  masked = base.with_missing(pairs, 0.5, seed=0)
  batch = masked.batch(np.array([3, 1]))
  np.testing.assert_array_equal(batch["mask"], masked.masks[[3, 1]])
  np.testing.assert_array_equal(masked.subset(np.array([5, 6])).masks, masked.masks[[5, 6]])
  again = base.with_missing(masked, 0.5, seed=1)
  assert not (again.masks & ~masked.masks).any()
  assert "mask" not in pairs.batch(np.array([0]))


def test_load_draws_missing_modalities_for_training_only():
  config = config_lib.quickstart_config()
  config.data.missing_ratio = 0.3
  train, test = data_lib.load(config.data)
  assert train.masks is not None and test.masks is None
  assert 0.2 < (~train.masks).mean() < 0.3


def test_validation_and_older_runs(tmp_path):
  config = config_lib.quickstart_config()
  for bad in (1.0, -0.1):
    config.data.missing_ratio = bad
    with pytest.raises(UserError, match="--config.data.missing_ratio"):
      validation.validate_config(config)
  # A run saved before the field existed resumes as a run with complete pairs.
  saved = config_lib.quickstart_config()
  del saved.data["missing_ratio"]
  fresh = config_lib.quickstart_config()
  assert runs.model_defining_differences(saved, fresh) == []
  fresh.data.missing_ratio = 0.3
  assert runs.model_defining_differences(saved, fresh) == ["data.missing_ratio"]


# Each objective compiles the model's gradient for seconds, so these run in the slow
# tier; the unit tier checks masks on the objectives alone
# (tests/test_objectives.py::test_masked_modality_is_the_same_as_an_absent_one).
@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mvtcae", "crmvae", "mopoe", "mvae", "mmvae", "mmjsd",
                                       "mmjsd_poe", "mvtcae_rescale"])
def test_no_gradient_reaches_a_missing_modality_from_its_pair(pairs, objective):
  modalities = modalities_of("quickstart", pairs)
  model = models.MultimodalVAE(tuple(modalities), 4)
  batch = pairs.batch(np.arange(4))
  params = models.init_params(model, jax.random.PRNGKey(0), batch)
  loss_fn = models.make_loss_fn(model, objective)
  # Every pair lacks its text: nothing about the text may be learnt from these pairs.
  batch["mask"] = np.array([[True, False]] * 4)
  grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.PRNGKey(1), 1.0)[0])(params)
  text_encoder = [g for path, g in jax.tree_util.tree_leaves_with_path(grads)
                  if "encoders_1" in jax.tree_util.keystr(path)]
  text_decoder = [g for path, g in jax.tree_util.tree_leaves_with_path(grads)
                  if "decoders_1" in jax.tree_util.keystr(path)]
  assert text_encoder and all(np.all(np.asarray(g) == 0) for g in text_encoder)
  assert text_decoder and all(np.all(np.asarray(g) == 0) for g in text_decoder)
  image_encoder = [g for path, g in jax.tree_util.tree_leaves_with_path(grads)
                   if "encoders_0" in jax.tree_util.keystr(path)]
  assert any(np.any(np.asarray(g) != 0) for g in image_encoder)


@pytest.mark.slow
def test_a_masked_batch_equals_the_batch_without_that_modality(pairs):
  # The model over both modalities with the text masked, against a model of the image
  # alone with the same image networks: the same CRMVAE objective.
  modalities = modalities_of("quickstart", pairs)
  both = models.MultimodalVAE(tuple(modalities), 4)
  alone = models.MultimodalVAE(tuple(modalities[:1]), 4)
  batch = pairs.batch(np.arange(8))
  params = models.init_params(both, jax.random.PRNGKey(0), batch)
  image_params = {"encoders_0": params["encoders_0"], "decoders_0": params["decoders_0"]}
  masked = dict(batch, mask=np.array([[True, False]] * 8))
  for objective in ("mvtcae", "mmjsd_poe"):  # their only sample is the joint one: [B, D]
    loss_masked, _ = models.make_loss_fn(both, objective)(params, masked, jax.random.PRNGKey(2),
                                                          1.0)
    loss_alone, _ = models.make_loss_fn(alone, objective)(
        image_params, {"mnist": batch["mnist"]}, jax.random.PRNGKey(2), 1.0)
    np.testing.assert_allclose(loss_masked, loss_alone, rtol=1e-5)


@pytest.mark.slow
def test_training_with_missing_modalities_runs_and_resumes_its_masks(tmp_path):
  from crmvae_jax.training import loop

  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.data.missing_ratio = 0.6
  config.num_train_steps = 6
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 3
  last = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(last[0]["train/loss"]) and np.isfinite(last[0]["test/loss"])
  # Another ratio is another data set: resuming with it is refused.
  config.data.missing_ratio = 0.3
  with pytest.raises(UserError, match="data.missing_ratio"):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
