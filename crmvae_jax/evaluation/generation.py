"""The trained model (`model.inference.TrainedModel`) as the functions the metrics call:
cross-generation from a subset's posterior, generation from the prior, and posterior
means of every subset.

One compiled program serves every subset (a subset is a traced mask); the metric loops
take these functions, so they are tested with stand-in models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import models, objectives
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.data.input_pipeline import padded_batches

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


def make_generate(trained: TrainedModel, from_mean: bool = False) -> Generate:
  """The model's cross-generation: z ~ its posterior of a subset, decoded into every
  modality (`TrainedModel.latents`, `TrainedModel.decode`). One compiled program serves
  every subset (the subset is a traced mask).

  Args:
    trained: the trained model.
    from_mean: decode the posterior's mean instead of a sample (a diagnostic: how much
      of a model's incoherence comes from the width of its posteriors).

  Returns:
    generate(subset [M] bool, stored batch, rng) -> displayed outputs per modality.
  """
  def generate(subset, batch, rng):
    inputs = {name: batch[name] for name in trained.names}
    rng = None if from_mean else rng
    z = trained.latents(inputs, rng, subset=np.asarray(subset))
    # A target outside the subset draws its private latent, if any, from its prior.
    outputs = trained.decode(z, rng=rng)
    return [outputs[name] for name in trained.names]

  return generate


def make_generate_prior(trained: TrainedModel) -> GeneratePrior:
  """Decodes z ~ N(0, I) into every modality: (num_samples, rng) -> displayed outputs."""
  def generate_prior(num_samples, rng):
    outputs = trained.sample(num_samples, rng)
    return [outputs[name] for name in trained.names]

  return generate_prior


def make_encode_means(trained: TrainedModel) -> EncodeMeans:
  """Posterior means of every non-empty subset, in one compiled program.

  Returns:
    encode_means(stored batch) -> [K, B, D], K = 2^M - 1 subsets in
    `distributions.nonempty_subsets` order.
  """
  subsets = dist.nonempty_subsets(len(trained.modalities))
  return lambda batch: trained.subset_means({n: batch[n] for n in trained.names}, subsets)


def encode_all(encode_means: EncodeMeans, dataset: MultimodalDataset, batch_size: int
               ) -> np.ndarray:
  """Posterior means of every pair of `dataset` for every subset: [K, N, D]."""
  means = [encode_means(dataset.batch(ids))[:, :num_valid]
           for ids, num_valid in padded_batches(len(dataset), batch_size)]
  return np.concatenate(means, axis=1)
