"""The trained model as functions the metrics call: cross-generation from a subset's
posterior, generation from the prior, and posterior means of every subset.

Each closure compiles once (a subset is a traced mask), so one program serves every
subset; the metric loops take these functions, so they are tested with stand-in models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.core import distributions as dist
from crmvae_jax.core import models, objectives
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.input_pipeline import padded_batches

# (subset mask [M], stored batch, rng) -> displayed outputs, one per modality.
Generate = Callable[[np.ndarray, dict, jax.Array], Sequence[np.ndarray]]
# (number of samples, rng) -> displayed outputs decoded from z ~ N(0, I).
GeneratePrior = Callable[[int, jax.Array], Sequence[np.ndarray]]
# stored batch -> posterior means [K, B, D], one row per subset.
EncodeMeans = Callable[[dict], np.ndarray]


def subset_posterior_means(posteriors: dist.Gaussian, subsets: jax.Array,
                           kind: objectives.SubsetPosteriorKind) -> jax.Array:
  """Mean of the model's posterior of each subset.

  Args:
    posteriors: the unimodal experts q_m, arrays [M, B, D].
    subsets: boolean masks [K, M].
    kind: 'poe' (the posterior of S is p prod_{m in S} q_m, normalised) or 'moe' (the
      mixture of the q_m, m in S).

  Returns:
    [K, B, D]: row k is the posterior mean given subset k.
  """
  return jax.vmap(lambda subset: models.posterior_mean(
      models.subset_posterior(posteriors, subset, kind)))(subsets)


def make_generate(model: models.MultimodalVAE, params, kind: objectives.SubsetPosteriorKind,
                  from_mean: bool = False) -> Generate:
  """The model's cross-generation: z ~ its posterior of a subset, decoded into every
  modality. One compiled program serves every subset (the subset is a traced mask).

  Args:
    model: a `MultimodalVAE`.
    params: its parameters.
    kind: its subset posterior, 'poe' or 'moe' (`objectives.SUBSET_POSTERIOR`).
    from_mean: decode the posterior's mean instead of a sample (a diagnostic: how much
      of a model's incoherence comes from the width of its posteriors).

  Returns:
    generate(subset [M] bool, stored batch, rng) -> displayed outputs per modality.
  """
  modalities = model.modalities

  @jax.jit
  def decoder_outputs(params, stored, subset, rng):
    variables = {"params": params}
    posteriors = model.apply(variables, models.model_inputs(modalities, stored),
                             method=model.encode)
    posterior = models.subset_posterior(posteriors, subset, kind)
    z = models.posterior_mean(posterior) if from_mean else posterior.sample(rng)
    return model.apply(variables, jnp.broadcast_to(z, (len(modalities),) + z.shape),
                       method=model.decode)

  def generate(subset, batch, rng):
    stored = {m.name: batch[m.name] for m in modalities}
    outputs = jax.device_get(decoder_outputs(params, stored, jnp.asarray(subset), rng))
    return [m.display(output) for m, output in zip(modalities, outputs)]

  return generate


def make_generate_prior(model: models.MultimodalVAE, params) -> GeneratePrior:
  """Decodes z ~ N(0, I) into every modality: (num_samples, rng) -> displayed outputs."""
  modalities = model.modalities

  @jax.jit
  def decoder_outputs(params, z):
    return model.apply({"params": params}, jnp.broadcast_to(z, (len(modalities),) + z.shape),
                       method=model.decode)

  def generate_prior(num_samples, rng):
    z = jax.random.normal(rng, (num_samples, model.latent_dim))
    outputs = jax.device_get(decoder_outputs(params, z))
    return [m.display(output) for m, output in zip(modalities, outputs)]

  return generate_prior


def make_encode_means(model: models.MultimodalVAE, params,
                      kind: objectives.SubsetPosteriorKind) -> EncodeMeans:
  """Posterior means of every non-empty subset, in one compiled program.

  Returns:
    encode_means(stored batch) -> [K, B, D], K = 2^M - 1 subsets in
    `distributions.nonempty_subsets` order.
  """
  modalities = model.modalities
  subsets = jnp.asarray(dist.nonempty_subsets(len(modalities)))

  @jax.jit
  def means(params, stored):
    posteriors = model.apply({"params": params}, models.model_inputs(modalities, stored),
                             method=model.encode)
    return subset_posterior_means(posteriors, subsets, kind)

  def encode_means(batch):
    return np.asarray(means(params, {m.name: batch[m.name] for m in modalities}))

  return encode_means


def encode_all(encode_means: EncodeMeans, dataset: MultimodalDataset, batch_size: int
               ) -> np.ndarray:
  """Posterior means of every pair of `dataset` for every subset: [K, N, D]."""
  means = [encode_means(dataset.batch(ids))[:, :num_valid]
           for ids, num_valid in padded_batches(len(dataset), batch_size)]
  return np.concatenate(means, axis=1)
