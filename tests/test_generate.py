"""Cross-generation from a subset's posterior: sampled (the metric) or from its mean (the
`coherence_from_means` diagnostic)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.evaluation import generation
from crmvae_jax.model import models
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.data import quickstart, text
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.data.modalities import modalities_of

# The quick-start model and its parameters come from conftest.py (`quickstart_vae`),
# built once by the worker that runs this group.
pytestmark = pytest.mark.xdist_group("quickstart_vae")


@pytest.fixture(scope="module")
def quickstart_model(quickstart_vae):
  """(model, params, batch): the quick-start model and six real digits with their names."""
  images, labels = quickstart.embedded_mnist()
  ids = np.random.default_rng(0).choice(len(labels), 6, replace=False)
  arrays = {"mnist": images[ids],
            "text": text.digit_texts(labels[ids], np.random.default_rng(0))}
  dataset = MultimodalDataset(("mnist", "text"), arrays,
                              {name: np.arange(6) for name in arrays}, labels[ids])
  model, params = quickstart_vae
  assert model.modalities == tuple(modalities_of("quickstart", dataset))
  return model, params, dataset.batch(np.arange(6))


@pytest.mark.parametrize("kind", ["poe", "moe"])
def test_generation_from_means_decodes_the_subset_posteriors_mean(quickstart_model, kind):
  model, params, batch = quickstart_model
  subset = np.array([False, True])  # generate the image from the text
  from_mean = generation.make_generate(TrainedModel(model, params, kind), from_mean=True)
  first, again = (from_mean(subset, batch, jax.random.PRNGKey(seed)) for seed in (1, 2))
  np.testing.assert_array_equal(first[0], again[0])  # no sampling

  # The reference, written out from the model's own pieces (compiled as one program:
  # op by op, every primitive of the networks compiles apart).
  @jax.jit
  def decoded_subset_mean(params, inputs):
    posteriors = model.apply({"params": params}, inputs, method=model.encode)
    mean = models.posterior_mean(models.subset_posterior(posteriors, jnp.asarray(subset), kind))
    return model.apply({"params": params}, jnp.broadcast_to(mean, (2,) + mean.shape),
                       method=model.decode)

  decoded = decoded_subset_mean(params, models.model_inputs(model.modalities, batch))
  np.testing.assert_allclose(first[0], model.modalities[0].display(decoded[0]), atol=1e-6)

  sampled = generation.make_generate(TrainedModel(model, params, kind))
  one, other = (sampled(subset, batch, jax.random.PRNGKey(seed))[0] for seed in (1, 2))
  assert np.max(np.abs(one - other)) > 1e-3  # samples differ between keys
  assert np.max(np.abs(one - first[0])) > 1e-3
