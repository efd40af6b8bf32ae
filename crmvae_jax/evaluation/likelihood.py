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
import numpy as np

from crmvae_jax.model import distributions as dist
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.data.input_pipeline import padded_batches, sample_ids
from crmvae_jax.reporting import tables

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


def make_estimate(trained: TrainedModel, num_samples: int,
                  subsets: np.ndarray) -> EstimateLogLikelihood:
  """The model's log p(X) with each subset's posterior as the proposal
  (`TrainedModel.log_likelihood`).

  Args:
    trained: the trained model.
    num_samples: K importance samples per example and proposal.
    subsets: conditioning subsets [P, M] of the proposals (`proposal_subsets`).

  Returns:
    estimate(stored batch, rng) -> [P, B] estimates of log p(X) in nats.
  """
  def estimate(batch, rng):
    inputs = {name: batch[name] for name in trained.names}
    return np.stack([
        trained.log_likelihood(inputs, num_samples, jax.random.fold_in(rng, index),
                               proposal=[n for n, member in zip(trained.names, subset)
                                         if member])
        for index, subset in enumerate(subsets)])

  return estimate


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


def evaluation_log_likelihood(config, trained: TrainedModel, test_pairs: MultimodalDataset,
                              rng: jax.Array) -> dict[str, float]:
  """log p(X) of `config.eval.log_likelihood.examples` of `test_pairs` (a seeded choice),
  with `config.eval.log_likelihood.samples` samples from the joint posterior and (with
  `config.eval.log_likelihood.subsets`) every subset's posterior as proposals: proposal
  name -> mean nats, what evaluation reports."""
  ids = sample_ids(len(test_pairs), config.eval.log_likelihood.examples,
                   np.random.default_rng([config.eval.seed, 1]))
  subsets = proposal_subsets(len(trained.modalities),
                             config.eval.log_likelihood.subsets)
  estimate = make_estimate(trained, config.eval.log_likelihood.samples, subsets)
  return test_log_likelihood(
      estimate, test_pairs.subset(ids), subsets, [m.abbreviation for m in trained.modalities],
      min(config.eval.batch_size, 100), rng)
