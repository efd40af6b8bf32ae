"""Gaussian experts, their products and mixtures, and the likelihoods (docs/models.md).

Everything here is a pure function of arrays. Shapes use M for modalities (experts),
K for mixture components or subsets, B for the batch and D for the latent size.
Missing experts are removed by masks (precision 0), never by Python branches, so one
compiled function serves every subset of modalities.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LAPLACE_SCALE = 0.75


class Gaussian(NamedTuple):
  """A diagonal Gaussian N(mean, diag(exp(logvar))); a pytree of two arrays [..., D]."""

  mean: jax.Array
  logvar: jax.Array

  @property
  def precision(self) -> jax.Array:
    return jnp.exp(-self.logvar)

  def sample(self, rng: jax.Array) -> jax.Array:
    """Reparameterised sample mean + exp(logvar / 2) * eps, shaped like `mean`."""
    eps = jax.random.normal(rng, self.mean.shape, self.mean.dtype)
    return self.mean + jnp.exp(0.5 * self.logvar) * eps

  def log_prob(self, z: jax.Array) -> jax.Array:
    """log N(z; mean, var), summed over the last axis: [..., D] -> [...]."""
    return -0.5 * jnp.sum(
        math.log(2 * math.pi) + self.logvar + (z - self.mean) ** 2 * self.precision, axis=-1)


def standard_normal(shape: tuple[int, ...], dtype=jnp.float32) -> Gaussian:
  """The prior p(z) = N(0, I) with batch shape `shape[:-1]`, i.e. expert 0."""
  return Gaussian(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def kl_divergence(q: Gaussian, p: Gaussian) -> jax.Array:
  """KL(q || p) between diagonal Gaussians, summed over the last axis.

  KL = 1/2 sum_d [ logvar_p - logvar_q + (var_q + (mu_q - mu_p)^2) / var_p - 1 ].

  Args:
    q, p: Gaussians whose arrays broadcast against each other, [..., D].

  Returns:
    [...] the divergence per batch element.
  """
  return 0.5 * jnp.sum(
      p.logvar - q.logvar + (jnp.exp(q.logvar) + (q.mean - p.mean) ** 2) * p.precision - 1.0,
      axis=-1)


def product_of_experts(
    experts: Gaussian,
    mask: jax.Array | None = None,
    weights: jax.Array | None = None,
    prior_weight: float | jax.Array = 1.0,
) -> Gaussian:
  """The normalised (weighted) product p(z)^w_0 prod_k q_k(z)^w_k, in closed form.

  precision T = w_0 + sum_k w_k exp(-logvar_k),
  mean = (sum_k w_k mu_k exp(-logvar_k)) / T,   variance = 1 / T.

  With all weights 1 this is PoE(S) of docs/models.md; with weights pi it is the
  pi-weighted "dynamic prior" of MMJSD and Lemma 1.

  Args:
    experts: Gaussian with arrays [K, ..., D]; axis 0 indexes the experts.
    mask: optional booleans [K, ...]; a False expert contributes nothing (precision 0).
    weights: optional per-expert weights broadcastable to [K, ...].
    prior_weight: w_0, the power of the N(0, I) prior expert (0 leaves it out; then at
      least one expert must be present).

  Returns:
    Gaussian with arrays [..., D].
  """
  expert_weights = jnp.ones_like(experts.mean[..., 0])  # its dtype, float32 for NumPy float64
  if weights is not None:
    expert_weights = expert_weights * weights
  if mask is not None:
    expert_weights = jnp.where(mask, expert_weights, 0.0)
  weighted_precision = expert_weights[..., None] * experts.precision
  total_precision = prior_weight + jnp.sum(weighted_precision, axis=0)
  mean = jnp.sum(weighted_precision * experts.mean, axis=0) / total_precision
  return Gaussian(mean, -jnp.log(total_precision))


def unimodal_products(experts: Gaussian) -> Gaussian:
  """q~_m = PoE({m}) = p * q_m for every expert at once: [M, B, D] -> [M, B, D]."""
  return product_of_experts(jax.tree.map(lambda a: a[None], experts))


def weighted_product_log_normaliser(
    experts: Gaussian, weights: jax.Array, prior_weight: float | jax.Array = 0.0
) -> jax.Array:
  """log Z with Z = integral of p(z)^w_0 prod_k q_k(z)^w_k dz, summed over D.

  The weighted product of normalised densities is Z times the Gaussian that
  `product_of_experts` returns. Hoelder's inequality gives Z <= 1 when the weights sum
  to 1, with equality when every expert is the same. This is the constant that relates
  MVTCAE's regulariser to a KL against the normalised dynamic prior f:
    sum_k w_k KL(q || q_k) = KL(q || f) - log Z.

  Args:
    experts: Gaussian [K, ..., D].
    weights: [K, ...] powers of the experts.
    prior_weight: power of the N(0, I) expert.

  Returns:
    [...] log Z.
  """
  weights = weights[..., None]
  precision = experts.precision
  total_precision = prior_weight + jnp.sum(weights * precision, axis=0)
  natural_mean = jnp.sum(weights * precision * experts.mean, axis=0)
  log_2pi = math.log(2 * math.pi)
  log_terms = (
      -0.5 * jnp.sum(weights * (log_2pi + experts.logvar + precision * experts.mean ** 2), axis=0)
      - 0.5 * prior_weight * log_2pi
      + 0.5 * (log_2pi - jnp.log(total_precision))
      + 0.5 * natural_mean ** 2 / total_precision)
  return jnp.sum(log_terms, axis=-1)


class Mixture(NamedTuple):
  """A finite mixture sum_k weights[k] * components[k] of diagonal Gaussians.

  Attributes:
    components: Gaussian with arrays [K, B, D].
    weights: [K, B] mixture weights, summing to 1 over K for every batch element.
  """

  components: Gaussian
  weights: jax.Array

  def log_prob(self, z: jax.Array) -> jax.Array:
    """log sum_k w_k N(z; mu_k, var_k) for z [B, D] (or [..., B, D]) -> [..., B]."""
    component_log_probs = self.components.log_prob(z[..., None, :, :])
    return jax.nn.logsumexp(component_log_probs, axis=-2, b=self.weights)

  def sample(self, rng: jax.Array) -> jax.Array:
    """One sample per batch element: [B, D]."""
    choice_rng, sample_rng = jax.random.split(rng)
    log_weights = jnp.log(self.weights.T)  # [B, K]
    component = jax.random.categorical(choice_rng, log_weights, axis=-1)  # [B]
    chosen = jax.tree.map(
        lambda a: jnp.take_along_axis(a, component[None, :, None], axis=0)[0], self.components)
    return chosen.sample(sample_rng)


def mixture_of_experts(experts: Gaussian, mask: jax.Array | None = None) -> Mixture:
  """MoE(S) = (1/|S|) sum_{m in S} q_m: uniform weights over the observed experts.

  Args:
    experts: Gaussian [M, B, D].
    mask: optional booleans [M, B]; every batch element needs one observed expert.
  """
  observed = jnp.ones(experts.mean.shape[:-1], bool) if mask is None else mask
  weights = observed / jnp.sum(observed, axis=0, keepdims=True)
  return Mixture(experts, weights)


def nonempty_subsets(num_modalities: int) -> np.ndarray:
  """The 2^M - 1 non-empty subsets of M modalities as boolean masks [2^M - 1, M].

  Ordered by size, then lexicographically by modality index, e.g. for M = 3:
  {0}, {1}, {2}, {0,1}, {0,2}, {1,2}, {0,1,2}. A static numpy array, so it can shape
  compiled code.
  """
  rows = []
  for size in range(1, num_modalities + 1):
    for members in itertools.combinations(range(num_modalities), size):
      row = np.zeros(num_modalities, bool)
      row[list(members)] = True
      rows.append(row)
  return np.stack(rows)


def expected_log_likelihoods(
    posterior: Gaussian | Mixture,
    log_likelihood_fn: Callable[[jax.Array], jax.Array],
    rng: jax.Array,
    num_modalities: int,
    mixture_estimator: str = "stratified",
) -> jax.Array:
  """One-sample estimates of E_q[l_m(z)] for every modality m, under one shared z.

  For a Gaussian q, z ~ q is decoded by every modality. For a mixture, the
  "stratified" estimator decodes a sample of every component and weights the results
  (exact in expectation, lower variance); "sampled" draws one component per batch
  element (the reference code's estimator, in expectation the same).

  Args:
    posterior: Gaussian [B, D] or Mixture with components [K, B, D].
    log_likelihood_fn: latents [M, B, D] -> [M, B] (row m: lambda_m log p(x_m | z[m])).
    rng: PRNG key.
    num_modalities: M.
    mixture_estimator: "stratified" or "sampled".

  Returns:
    [M, B] per-modality log-likelihood estimates.
  """

  def shared(z):  # z [..., B, D] -> [..., M, B, D]: decoded by every modality
    return jnp.broadcast_to(z[..., None, :, :], z.shape[:-2] + (num_modalities,) + z.shape[-2:])

  if isinstance(posterior, Gaussian):
    return log_likelihood_fn(shared(posterior.sample(rng)))
  if mixture_estimator == "sampled":
    return log_likelihood_fn(shared(posterior.sample(rng)))
  if mixture_estimator != "stratified":
    raise ValueError(
        f"mixture_estimator must be 'stratified' or 'sampled', got {mixture_estimator!r}.")
  component_samples = posterior.components.sample(rng)  # [K, B, D]
  per_component = decode_stack(log_likelihood_fn, shared(component_samples))  # [K, M, B]
  return jnp.einsum("kb,kmb->mb", posterior.weights, per_component)


def decode_stack(log_likelihood_fn: Callable[[jax.Array], jax.Array], z: jax.Array) -> jax.Array:
  """`log_likelihood_fn` over a stack of latents: z [K, M, B, D] -> [K, M, B].

  Calls `log_likelihood_fn.stacked(z)` where the function has one (the model's, which
  folds the K stacks into the batch, so every decoder runs once on K B examples), and
  otherwise `jax.vmap(log_likelihood_fn)(z)`, which any function of [M, B, D] allows.
  Both give the same numbers; the fold is the fast one for networks, whose vmapped
  convolution gradients XLA computes one stack at a time.
  """
  stacked = getattr(log_likelihood_fn, "stacked", None)
  return stacked(z) if stacked is not None else jax.vmap(log_likelihood_fn)(z)


def laplace_log_likelihood(x: jax.Array, loc: jax.Array, scale: float = LAPLACE_SCALE) -> jax.Array:
  """log Laplace(x; loc, scale) summed over every axis but the first: [B, ...] -> [B].

  log p = -log(2 scale) - |x - loc| / scale per element.
  """
  log_density = -math.log(2 * scale) - jnp.abs(x - loc) / scale
  return jnp.sum(log_density.reshape(log_density.shape[0], -1), axis=-1)


def gaussian_log_likelihood(x: jax.Array, loc: jax.Array, scale: float = 1.0) -> jax.Array:
  """log N(x; loc, scale^2) summed over every axis but the first: [B, ...] -> [B].

  log p = -log(2 pi scale^2) / 2 - (x - loc)^2 / (2 scale^2) per element.
  """
  log_density = -0.5 * math.log(2 * math.pi * scale**2) - (x - loc) ** 2 / (2 * scale**2)
  return jnp.sum(log_density.reshape(log_density.shape[0], -1), axis=-1)


def categorical_log_likelihood(targets: jax.Array, logits: jax.Array) -> jax.Array:
  """log Categorical(targets; softmax(logits)) summed over positions: [B, L] -> [B].

  Args:
    targets: int token ids [B, L].
    logits: [B, L, V] unnormalised log-probabilities (never probabilities: the reference
      code's pitfall).
  """
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(picked.reshape(picked.shape[0], -1), axis=-1)
