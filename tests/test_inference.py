"""The trained-model API (`crmvae_jax.load`, `model.inference.TrainedModel`): any subset
of modalities in, generations, samples, reconstructions and log-likelihoods out."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import crmvae_jax
from crmvae_jax.model import distributions as dist
from crmvae_jax.model import models
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.data import quickstart, text
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.common.errors import UserError

LATENT_DIM = 4  # conftest.QUICKSTART_LATENT_DIM, the latent dimension of `quickstart_vae`
NUM = 7

# The quick-start model and its parameters come from conftest.py (`quickstart_vae`),
# built once by the worker that runs this group.
pytestmark = pytest.mark.xdist_group("quickstart_vae")


@pytest.fixture(scope="module")
def digits(quickstart_vae):
  """(model, params, inputs): the quick-start model and NUM real digits with their names."""
  images, labels = quickstart.embedded_mnist()
  ids = np.arange(0, 5000, 5000 // NUM)[:NUM]
  arrays = {"mnist": images[ids], "text": text.digit_texts(labels[ids], np.random.default_rng(0))}
  dataset = MultimodalDataset(("mnist", "text"), arrays,
                              {name: np.arange(NUM) for name in arrays}, labels[ids])
  model, params = quickstart_vae
  assert model.modalities == tuple(modalities_of("quickstart", dataset))
  assert model.latent_dim == LATENT_DIM
  batch = dataset.batch(np.arange(NUM))
  return model, params, {"mnist": batch["mnist"], "text": batch["text"]}


@pytest.mark.parametrize("kind", ["poe", "poe_without_prior", "moe"])
def test_encode_is_the_posterior_mean_of_the_given_subset(digits, kind):
  model, params, inputs = digits
  trained = TrainedModel(model, params, kind, batch_size=3)  # 3 batches, the last padded

  # The reference, from the model's own pieces (compiled as one program: op by op, every
  # primitive of the networks compiles apart).
  @jax.jit
  def subset_mean(params, stored, mask):
    experts = model.apply({"params": params}, models.model_inputs(model.modalities, stored),
                          method=model.encode)
    return models.posterior_mean(models.subset_posterior(experts, mask, kind))

  for given, mask in ((("mnist",), [True, False]), (("text",), [False, True]),
                      (("mnist", "text"), [True, True])):
    expected = subset_mean(params, inputs, jnp.asarray(mask))
    encoded = trained.encode({name: inputs[name] for name in given})
    np.testing.assert_allclose(encoded, expected, atol=1e-5)
  # Several subsets at once: the same means, one encoding.
  subsets = dist.nonempty_subsets(2)
  means = trained.subset_means(inputs, subsets)
  assert means.shape == (3, NUM, LATENT_DIM)
  np.testing.assert_allclose(means[0], trained.encode({"mnist": inputs["mnist"]}), atol=1e-6)


def test_generate_decodes_the_mean_or_a_sample(digits):
  model, params, inputs = digits
  trained = TrainedModel(model, params, "poe")
  from_mean = trained.generate({"text": inputs["text"]}, ["mnist"])
  assert set(from_mean) == {"mnist"} and from_mean["mnist"].shape == (NUM, 28, 28, 1)
  assert 0.0 <= from_mean["mnist"].min() and from_mean["mnist"].max() <= 1.0
  z = trained.encode({"text": inputs["text"]})
  np.testing.assert_allclose(trained.decode(z, ["mnist"])["mnist"], from_mean["mnist"])
  one, other = (trained.generate({"text": inputs["text"]}, ["mnist"], jax.random.PRNGKey(k))
                for k in (1, 2))
  assert np.abs(one["mnist"] - other["mnist"]).max() > 1e-3
  every = trained.generate({"mnist": inputs["mnist"]})
  assert every["text"].shape == (NUM, 8) and every["text"].dtype.kind == "i"
  np.testing.assert_array_equal(trained.reconstruct(inputs)["text"],
                                trained.generate(inputs)["text"])


def test_batching_does_not_change_results(digits):
  model, params, inputs = digits
  whole, split = TrainedModel(model, params, "poe", 16), TrainedModel(model, params, "poe", 2)
  np.testing.assert_allclose(split.encode(inputs), whole.encode(inputs), atol=1e-6)
  np.testing.assert_allclose(split.generate(inputs)["mnist"], whole.generate(inputs)["mnist"],
                             atol=1e-6)


def test_sample_draws_from_the_prior(digits):
  model, params, _ = digits
  trained = TrainedModel(model, params, "poe")
  samples = trained.sample(5, jax.random.PRNGKey(0))
  z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (5, LATENT_DIM)))
  np.testing.assert_allclose(samples["mnist"], trained.decode(z)["mnist"])
  assert samples["text"].shape == (5, 8)


def test_log_likelihood_scores_only_the_given_modalities(digits):
  model, params, inputs = digits
  trained = TrainedModel(model, params, "poe")
  rng = jax.random.PRNGKey(0)
  both = trained.log_likelihood(inputs, 16, rng)
  image = trained.log_likelihood({"mnist": inputs["mnist"]}, 16, rng)
  assert both.shape == image.shape == (NUM,) and np.all(np.isfinite(both))
  # The text adds its own (negative) log-density: log p(M, T) < log p(M) in every row.
  assert np.all(both < image)
  # The proposal is a choice: another subset's posterior estimates the same log p(M, T).
  from_text = trained.log_likelihood(inputs, 16, rng, proposal=["text"])
  assert from_text.shape == (NUM,) and np.all(np.isfinite(from_text))
  assert not np.allclose(from_text, both)


def test_inputs_that_do_not_fit_are_refused(digits):
  model, params, inputs = digits
  trained = TrainedModel(model, params, "poe")
  with pytest.raises(ValueError, match="unknown: \\['svhn'\\]"):
    trained.encode({"svhn": inputs["mnist"]})
  with pytest.raises(ValueError, match="shape \\(28, 28\\); the model reads \\(28, 28, 1\\)"):
    trained.encode({"mnist": inputs["mnist"][..., 0]})
  with pytest.raises(ValueError, match="different lengths"):
    trained.encode({"mnist": inputs["mnist"], "text": inputs["text"][:3]})
  with pytest.raises(ValueError, match="Unknown targets \\['svhn'\\]"):
    trained.generate({"mnist": inputs["mnist"]}, ["svhn"])


def test_load_says_what_to_run_without_a_trained_run(tmp_path):
  with pytest.raises(UserError, match="No trained run in"):
    crmvae_jax.load(str(tmp_path))
