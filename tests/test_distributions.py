"""Closed-form checks of the Gaussian, product, mixture and likelihood pieces."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from crmvae_jax.model import distributions as dist
from crmvae_jax.model.distributions import Gaussian

# One worker for the module: its checks run the distributions op by op, and the
# primitives they compile are largely the same.
pytestmark = pytest.mark.xdist_group("distributions")

GRID = np.linspace(-12.0, 12.0, 48001)


def random_experts(seed, shape):
  rng = np.random.default_rng(seed)
  return Gaussian(rng.normal(0.0, 1.5, shape), rng.normal(0.0, 0.8, shape))


def normal_pdf(x, mean, logvar):
  return np.exp(-0.5 * (x - mean) ** 2 / np.exp(logvar)) / np.sqrt(2 * np.pi * np.exp(logvar))


def numerical_product(experts, weights, prior_weight, dim):
  """Weighted product of 1-D densities on a grid, for latent dimension `dim`."""
  log_density = prior_weight * np.log(normal_pdf(GRID, 0.0, 0.0))
  for k in range(experts.mean.shape[0]):
    log_density += weights[k] * np.log(normal_pdf(GRID, experts.mean[k, dim], experts.logvar[k, dim]))
  return np.exp(log_density)


@pytest.mark.parametrize("weights, prior_weight", [
    (np.ones(3), 1.0),
    (np.array([0.25, 0.25, 0.25]), 0.25),
    (np.array([0.5, 2.0, 0.1]), 0.0),
])
def test_product_of_experts_matches_normalised_numerical_product(weights, prior_weight):
  experts = random_experts(0, (3, 2))
  with jax.enable_x64(True):
    product = dist.product_of_experts(
        jax.tree.map(jnp.asarray, experts), weights=jnp.asarray(weights),
        prior_weight=prior_weight)
    log_normaliser = dist.weighted_product_log_normaliser(
        jax.tree.map(jnp.asarray, experts), jnp.asarray(weights), prior_weight)
  total_log_normaliser = 0.0
  for dim in range(2):
    density = numerical_product(experts, weights, prior_weight, dim)
    normaliser = np.trapezoid(density, GRID)
    density = density / normaliser
    mean = np.trapezoid(GRID * density, GRID)
    variance = np.trapezoid((GRID - mean) ** 2 * density, GRID)
    np.testing.assert_allclose(product.mean[dim], mean, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.exp(product.logvar[dim]), variance, rtol=1e-6)
    total_log_normaliser += np.log(normaliser)
  np.testing.assert_allclose(log_normaliser, total_log_normaliser, rtol=1e-6)


def test_log_normaliser_is_at_most_zero_and_zero_for_identical_experts():
  weights = jnp.full((4,), 0.25)
  assert float(dist.weighted_product_log_normaliser(random_experts(1, (4, 5)), weights)) < 0.0
  same = Gaussian(jnp.tile(jnp.array([[0.3, -1.0]]), (4, 1)), jnp.tile(jnp.array([[0.2, 0.5]]), (4, 1)))
  np.testing.assert_allclose(dist.weighted_product_log_normaliser(same, weights), 0.0, atol=1e-5)


def test_masked_product_equals_product_of_observed_experts_only():
  experts = random_experts(2, (4, 3, 5))  # [M, B, D]
  mask = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 1, 0]], bool)
  masked = dist.product_of_experts(experts, jnp.asarray(mask))
  for b in range(3):
    observed = jax.tree.map(lambda a: a[mask[:, b], b], experts)
    expected = dist.product_of_experts(observed)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[b], masked), expected, rtol=1e-5)


def test_product_with_every_expert_masked_is_the_prior():
  experts = random_experts(3, (2, 4, 3))
  product = dist.product_of_experts(experts, jnp.zeros((2, 4), bool))
  chex.assert_trees_all_close(product, dist.standard_normal((4, 3)))


def test_gaussian_kl_matches_monte_carlo():
  q, p = random_experts(4, (6,)), random_experts(5, (6,))
  q, p = jax.tree.map(jnp.asarray, q), jax.tree.map(jnp.asarray, p)

  @jax.jit  # one program: op by op, every primitive of the estimate compiles apart
  def monte_carlo_kl(q, p):
    z = jax.vmap(q.sample)(jax.random.split(jax.random.key(0), 400_000))
    return jnp.mean(q.log_prob(z) - p.log_prob(z))

  monte_carlo = monte_carlo_kl(q, p)
  np.testing.assert_allclose(dist.kl_divergence(q, p), monte_carlo, rtol=0.01)
  np.testing.assert_allclose(dist.kl_divergence(q, q), 0.0, atol=1e-6)


def test_gaussian_log_prob_and_sampling_moments():
  g = Gaussian(jnp.array([0.5, -2.0]), jnp.array([0.3, -1.2]))
  z = jnp.array([0.1, -1.7])
  expected = stats.norm.logpdf(z, g.mean, np.exp(0.5 * g.logvar)).sum()
  np.testing.assert_allclose(g.log_prob(z), expected, rtol=1e-5)
  samples = jax.jit(lambda g: jax.vmap(g.sample)(jax.random.split(jax.random.key(1), 200_000)))(g)
  np.testing.assert_allclose(samples.mean(0), g.mean, atol=0.01)
  np.testing.assert_allclose(samples.var(0), jnp.exp(g.logvar), rtol=0.02)


def test_mixture_log_prob_and_sampling():
  components = Gaussian(jnp.array([[[-3.0]], [[4.0]]]), jnp.array([[[0.0]], [[-1.0]]]))
  weights = jnp.array([[0.3], [0.7]])
  mixture = dist.Mixture(components, weights)
  z = jnp.array([[0.7]])
  expected = np.log(0.3 * stats.norm.pdf(0.7, -3, 1) + 0.7 * stats.norm.pdf(0.7, 4, np.exp(-0.5)))
  np.testing.assert_allclose(mixture.log_prob(z), [expected], rtol=1e-5)
  samples = jax.jit(lambda mixture: jax.vmap(mixture.sample)(
      jax.random.split(jax.random.key(2), 100_000)))(mixture)
  np.testing.assert_allclose(samples.mean(), 0.3 * -3 + 0.7 * 4, atol=0.03)


def test_mixture_of_experts_weights_are_uniform_over_observed():
  experts = random_experts(6, (3, 2, 4))
  mixture = dist.mixture_of_experts(experts, jnp.array([[1, 1], [0, 1], [1, 1]], bool))
  np.testing.assert_allclose(mixture.weights, [[0.5, 1 / 3], [0.0, 1 / 3], [0.5, 1 / 3]])


def test_nonempty_subsets():
  subsets = dist.nonempty_subsets(3)
  assert subsets.shape == (7, 3)
  assert [tuple(np.flatnonzero(s)) for s in subsets] == [
      (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
  assert dist.nonempty_subsets(5).shape == (31, 5)
  assert len({tuple(s) for s in dist.nonempty_subsets(5)}) == 31


def test_stratified_expectation_is_the_weighted_sum_of_component_expectations():
  # l(z) = -z^2 / 2 per modality: E_N(mu, v)[l] = -(mu^2 + v) / 2 exactly.
  components = Gaussian(jnp.array([[[1.0]], [[-2.0]]]), jnp.log(jnp.array([[[0.5]], [[2.0]]])))
  mixture = dist.Mixture(components, jnp.array([[0.25], [0.75]]))
  log_likelihood_fn = lambda z: -0.5 * jnp.sum(z ** 2, axis=-1)
  rngs = jax.random.split(jax.random.key(3), 100_000)
  exact = 0.25 * -(1 + 0.5) / 2 + 0.75 * -(4 + 2) / 2
  for estimator in ("stratified", "sampled"):
    estimates = jax.jit(jax.vmap(lambda r: dist.expected_log_likelihoods(
        mixture, log_likelihood_fn, r, 2, estimator)))(rngs)
    assert estimates.shape == (100_000, 2, 1)
    np.testing.assert_allclose(estimates.mean(), exact, rtol=0.01)
  with pytest.raises(ValueError, match="mixture_estimator"):
    dist.expected_log_likelihoods(mixture, log_likelihood_fn, rngs[0], 2, "exact")


def test_laplace_log_likelihood():
  x = jnp.array([[[0.2, 0.9], [0.4, 0.0]]])
  loc = jnp.array([[[0.1, 0.5], [0.4, 1.0]]])
  expected = stats.laplace.logpdf(np.asarray(x), np.asarray(loc), 0.75).sum()
  np.testing.assert_allclose(dist.laplace_log_likelihood(x, loc), [expected], rtol=1e-6)


def test_categorical_log_likelihood_uses_logits():
  logits = jnp.array([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])
  targets = jnp.array([[0, 2]])
  expected = (2.0 - math.log(math.exp(2) + 1 + math.exp(-1))) + math.log(1 / 3)
  np.testing.assert_allclose(dist.categorical_log_likelihood(targets, logits), [expected], rtol=1e-6)
  # Adding a constant to the logits changes nothing: they are not probabilities.
  np.testing.assert_allclose(
      dist.categorical_log_likelihood(targets, logits + 5.0), [expected], rtol=1e-6)
