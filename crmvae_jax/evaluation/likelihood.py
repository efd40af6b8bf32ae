"""The test log-likelihood log p(X), estimated by importance sampling.

A model's evidence lower bounds differ from objective to objective, so they cannot be
compared with each other; log p(X) = log E_{z ~ p(z)} p(X | z) can. With a proposal
q(z), the estimate

    log p(X) ~= logsumexp_k [log p(X | z_k) + log p(z_k) - log q(z_k)] - log K,
    z_1..z_K ~ q,

is consistent as K grows (and a lower bound in expectation for every K, the IWAE bound
of Burda et al. 2016). log p(X | z) is the sum of the modalities' own log-densities
(Laplace for images, categorical for text), without the likelihood weights lambda_m
that only scale terms during training.

Two proposals, as in the multimodal VAE literature: the model's own joint posterior
q(z | X) (MultiVae's joint NLL), and the model's posterior of each subset of the
modalities, q(z | X_S), for the same log p(X) (the MoPoE authors' `--calc_nll`). A
subset's estimate is looser when q(z | X_S) covers the joint posterior's mass poorly,
so their spread shows how well the subset posteriors agree with the joint one.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.core import distributions as dist
from crmvae_jax.core import models, objectives
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.input_pipeline import padded_batches
from crmvae_jax.reporting import tables

# Latents decoded at once when estimating: [chunk, B, D] with chunk * B about this.
LATENTS_PER_CALL = 4096


def sample_chunk(num_samples: int, batch_size: int) -> int:
  """Samples per step: the largest divisor of `num_samples` whose chunk of latents,
  times the batch, stays within `LATENTS_PER_CALL` (at least 1)."""
  largest = max(1, LATENTS_PER_CALL // max(batch_size, 1))
  return max(d for d in range(1, min(num_samples, largest) + 1) if num_samples % d == 0)


def log_marginal_estimate(log_likelihood_fn: Callable[[jax.Array], jax.Array],
                          proposal: dist.Gaussian | dist.Mixture, num_samples: int,
                          rng: jax.Array, chunk: int | None = None) -> jax.Array:
  """Importance-sampled log p(x) for every batch element (module docstring).

  Args:
    log_likelihood_fn: latents [k, B, D] -> log p(x | z) [k, B].
    proposal: q(z) with batch shape [B] and event size D (a Gaussian [B, D] or a
      mixture of them).
    num_samples: K.
    rng: sampling randomness.
    chunk: samples drawn and scored per step; must divide K. Default:
      `sample_chunk(K, B)`.

  Returns:
    [B]: the estimate of log p(x) for each element (nats).
  """
  if isinstance(proposal, dist.Gaussian):
    batch_size, latent_dim = proposal.mean.shape
  else:
    batch_size, latent_dim = proposal.components.mean.shape[1:]
  chunk = chunk or sample_chunk(num_samples, batch_size)
  if num_samples % chunk:
    raise ValueError(f"log_marginal_estimate: chunk {chunk} does not divide {num_samples}.")
  prior = dist.standard_normal((batch_size, latent_dim))

  def log_weights(rng):  # [chunk, B]
    z = jax.vmap(proposal.sample)(jax.random.split(rng, chunk))
    return log_likelihood_fn(z) + prior.log_prob(z) - proposal.log_prob(z)

  def step(running, rng):
    return jnp.logaddexp(running, jax.nn.logsumexp(log_weights(rng), axis=0)), None

  total, _ = jax.lax.scan(step, jnp.full((batch_size,), -jnp.inf),
                          jax.random.split(rng, num_samples // chunk))
  return total - jnp.log(num_samples)


# (stored batch, rng) -> estimates [P, B], one row per proposal.
EstimateLogLikelihood = Callable[[dict, jax.Array], np.ndarray]


def proposal_subsets(num_modalities: int, every_subset: bool) -> np.ndarray:
  """Proposals' conditioning subsets [P, M]: all modalities first, then (with
  `every_subset`) every other non-empty subset in `distributions.nonempty_subsets` order."""
  everything = np.ones((1, num_modalities), bool)
  if not every_subset:
    return everything
  others = dist.nonempty_subsets(num_modalities)
  return np.concatenate([everything, others[~others.all(axis=1)]])


def make_estimate(model: models.MultimodalVAE, params, kind: objectives.SubsetPosteriorKind,
                  num_samples: int, subsets: np.ndarray) -> EstimateLogLikelihood:
  """The model's log p(X) with each subset's posterior as the proposal, in one program.

  Args:
    model: a `MultimodalVAE`.
    params: its parameters.
    kind: its subset posterior (`objectives.subset_posterior_kind`).
    num_samples: K importance samples per example and proposal.
    subsets: conditioning subsets [P, M] of the proposals (`proposal_subsets`).

  Returns:
    estimate(stored batch, rng) -> [P, B] estimates of log p(X) in nats.
  """
  modalities = model.modalities
  num_modalities = len(modalities)

  @jax.jit
  def estimate(params, stored, rng):
    posteriors = model.apply({"params": params}, models.model_inputs(modalities, stored),
                             method=model.encode)
    log_likelihoods = models.make_log_likelihood_fn(model, params, stored, weighted=False)

    def log_likelihood_fn(z):  # [k, B, D] -> [k, B]: every modality decodes each z
      rows = jnp.broadcast_to(z[:, None], (z.shape[0], num_modalities) + z.shape[1:])
      return log_likelihoods.stacked(rows).sum(axis=1)

    def for_subset(subset, rng):
      return log_marginal_estimate(log_likelihood_fn,
                                   models.subset_posterior(posteriors, subset, kind),
                                   num_samples, rng)

    return jax.lax.map(lambda args: for_subset(*args),
                       (jnp.asarray(subsets), jax.random.split(rng, len(subsets))))

  def estimate_batch(batch, rng):
    return np.asarray(estimate(params, {m.name: batch[m.name] for m in modalities}, rng))

  return estimate_batch


def test_log_likelihood(estimate: EstimateLogLikelihood, dataset: MultimodalDataset,
                        subsets: np.ndarray, abbreviations: list[str], batch_size: int,
                        rng: jax.Array) -> dict[str, float]:
  """Mean estimated log p(X) over `dataset` for each proposal.

  Returns:
    The proposal's conditioning subset ('M+S+T' for the joint posterior, 'M', 'S+T',
    ...; `tables.subset_name`) -> the mean log-likelihood per example, in nats.
  """
  totals = np.zeros(len(subsets))
  for batch_index, (ids, num_valid) in enumerate(padded_batches(len(dataset), batch_size)):
    totals += estimate(dataset.batch(ids), jax.random.fold_in(rng, batch_index))[
        :, :num_valid].sum(axis=1)
  names = [tables.subset_name([a for a, member in zip(abbreviations, subset) if member])
           for subset in subsets]
  return {name: float(total / len(dataset)) for name, total in zip(names, totals)}
