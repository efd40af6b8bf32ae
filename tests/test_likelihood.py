"""The importance-sampled log-likelihood against a model whose marginal is known.

A linear-Gaussian decoder, p(z) = N(0, I) and p(x | z) = N(W z + b, s^2 I), has the
marginal p(x) = N(b, W W^T + s^2 I) and the posterior p(z | x) = N(A^{-1} W^T (x - b) /
s^2, A^{-1}) with A = I + W^T W / s^2. With the exact posterior as proposal every
importance weight equals p(x), so one sample gives the exact value; with any other
proposal the estimate converges to it as K grows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import inference as likelihood

LATENT, OBSERVED, BATCH, NOISE = 3, 5, 4, 0.7


@pytest.fixture(scope="module")
def linear_gaussian():
  rng = np.random.default_rng(0)
  weights = rng.normal(size=(OBSERVED, LATENT))
  bias = rng.normal(size=OBSERVED)
  x = rng.normal(size=(BATCH, OBSERVED)) * 2.0
  exact = stats.multivariate_normal(bias, weights @ weights.T + NOISE**2 * np.eye(OBSERVED)
                                    ).logpdf(x)
  precision = np.eye(LATENT) + weights.T @ weights / NOISE**2
  covariance = np.linalg.inv(precision)
  posterior_mean = (x - bias) @ weights @ covariance.T / NOISE**2

  def log_likelihood_fn(z):  # [k, B, D] -> [k, B]
    means = z @ weights.T + bias
    return jnp.sum(jax.scipy.stats.norm.logpdf(jnp.asarray(x), means, NOISE), axis=-1)

  return log_likelihood_fn, exact, posterior_mean, covariance


def _diagonal_gaussian(mean, variance):
  return dist.Gaussian(jnp.asarray(mean, jnp.float32), jnp.log(jnp.asarray(variance, jnp.float32)))


def test_exact_when_the_proposal_is_the_posterior():
  # A diagonal posterior needs W^T W diagonal: orthogonal columns.
  weights = np.linalg.qr(np.random.default_rng(1).normal(size=(OBSERVED, LATENT)))[0] * 1.5
  x = np.random.default_rng(2).normal(size=(BATCH, OBSERVED))
  exact = stats.multivariate_normal(np.zeros(OBSERVED), weights @ weights.T
                                    + NOISE**2 * np.eye(OBSERVED)).logpdf(x)
  variance = 1.0 / (1.0 + np.diag(weights.T @ weights) / NOISE**2)
  posterior = _diagonal_gaussian(x @ weights * variance / NOISE**2,
                                 np.broadcast_to(variance, (BATCH, LATENT)))

  def log_likelihood_fn(z):
    return jnp.sum(jax.scipy.stats.norm.logpdf(jnp.asarray(x), z @ weights.T, NOISE), axis=-1)

  # Every sample, in every chunking, weighs exactly p(x).
  for num_samples, chunk in ((1, None), (7, None), (12, 1), (12, 4), (12, 12)):
    estimate = likelihood.log_marginal_estimate(log_likelihood_fn, posterior, num_samples,
                                                jax.random.PRNGKey(0), chunk=chunk)
    np.testing.assert_allclose(estimate, exact, rtol=1e-4)


def test_converges_from_a_wider_proposal(linear_gaussian):
  log_likelihood_fn, exact, posterior_mean, covariance = linear_gaussian
  # The posterior's marginal variances, widened 3x: a proper but imperfect proposal.
  proposal = _diagonal_gaussian(posterior_mean,
                                np.broadcast_to(3.0 * np.diag(covariance), (BATCH, LATENT)))
  errors = [np.abs(np.asarray(likelihood.log_marginal_estimate(
      log_likelihood_fn, proposal, num_samples, jax.random.PRNGKey(1))) - exact).max()
            for num_samples in (1, 20000)]
  assert errors[1] < 0.02
  assert errors[1] < errors[0]


def test_a_mixture_proposal_converges_too(linear_gaussian):
  log_likelihood_fn, exact, posterior_mean, covariance = linear_gaussian
  width = np.broadcast_to(2.0 * np.diag(covariance), (BATCH, LATENT))
  components = _diagonal_gaussian(np.stack([posterior_mean, posterior_mean + 0.5]),
                                  np.stack([width, width]))
  proposal = dist.mixture_of_experts(components)
  estimate = likelihood.log_marginal_estimate(log_likelihood_fn, proposal, 50000,
                                              jax.random.PRNGKey(2))
  np.testing.assert_allclose(estimate, exact, atol=0.03)


def test_a_chunk_must_divide_the_samples(linear_gaussian):
  log_likelihood_fn, _, posterior_mean, covariance = linear_gaussian
  proposal = _diagonal_gaussian(posterior_mean,
                                np.broadcast_to(np.diag(covariance), (BATCH, LATENT)))
  with pytest.raises(ValueError, match="does not divide"):
    likelihood.log_marginal_estimate(log_likelihood_fn, proposal, 12, jax.random.PRNGKey(3),
                                     chunk=5)


def test_sample_chunk_divides_and_bounds_the_latents():
  assert likelihood.sample_chunk(1000, 250) == 10  # 4096 // 250 = 16: largest divisor 10
  assert likelihood.sample_chunk(7, 5000) == 1
  for num_samples, batch in ((1000, 1), (64, 64), (97, 3)):
    chunk = likelihood.sample_chunk(num_samples, batch)
    assert num_samples % chunk == 0 and (chunk == 1 or chunk * batch <= likelihood.LATENTS_PER_CALL)


def test_exact_with_private_latents_when_the_proposals_are_the_posteriors():
  """x = W [z, w_1, w_2] + noise with orthogonal columns: the posterior of (z, w) is
  diagonal, so proposing z and each w_m from their posteriors weighs exactly p(x); the
  w_m come in [k, M, B, P] and modality m's decoder would read its own."""
  private, num_modalities = 2, 2
  width = LATENT + num_modalities * private
  weights = np.linalg.qr(np.random.default_rng(3).normal(size=(OBSERVED + 4, width)))[0] * 1.5
  observed = weights.shape[0]
  x = np.random.default_rng(4).normal(size=(BATCH, observed))
  exact = stats.multivariate_normal(np.zeros(observed), weights @ weights.T
                                    + NOISE**2 * np.eye(observed)).logpdf(x)
  variance = 1.0 / (1.0 + np.diag(weights.T @ weights) / NOISE**2)
  mean = x @ weights * variance / NOISE**2  # [B, D + M P]
  shared = _diagonal_gaussian(mean[:, :LATENT], np.broadcast_to(variance[:LATENT],
                                                                (BATCH, LATENT)))
  private_mean = mean[:, LATENT:].reshape(BATCH, num_modalities, private).transpose(1, 0, 2)
  private_variance = np.broadcast_to(
      variance[LATENT:].reshape(num_modalities, 1, private), private_mean.shape)
  posterior_w = _diagonal_gaussian(private_mean, private_variance)

  def log_likelihood_fn(z, w):  # [k, B, D], [k, M, B, P] -> [k, B]
    flat_w = jnp.transpose(w, (0, 2, 1, 3)).reshape(w.shape[0], BATCH, -1)
    latents = jnp.concatenate([z, flat_w], axis=-1)
    return jnp.sum(jax.scipy.stats.norm.logpdf(jnp.asarray(x), latents @ weights.T, NOISE),
                   axis=-1)

  for num_samples, chunk in ((1, None), (12, 4)):
    estimate = likelihood.log_marginal_estimate(log_likelihood_fn, shared, num_samples,
                                                jax.random.PRNGKey(0), chunk=chunk,
                                                private=posterior_w)
    np.testing.assert_allclose(estimate, exact, rtol=1e-4)
  # Proposing the w_m from their prior instead is no longer exact sample by sample.
  prior_w = _diagonal_gaussian(np.zeros_like(private_mean), np.ones_like(private_mean))
  loose = likelihood.log_marginal_estimate(log_likelihood_fn, shared, 1, jax.random.PRNGKey(0),
                                           private=prior_w)
  assert not np.allclose(loose, exact, rtol=1e-3)
