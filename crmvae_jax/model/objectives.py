"""The multimodal VAE objectives (docs/models.md), as pure functions: the paper's eight,
and those with private latents.

Every objective has one calling convention, so training never special-cases a model:

    loss, terms = objective(posteriors, log_likelihood_fn, rng, beta=..., mask=None)

- `posteriors`: Gaussian with arrays [M, B, D], the M unimodal experts q_m(z|x_m)
  (the prior p(z) = N(0, I) is expert 0 and is added here, not passed in).
- `log_likelihood_fn(z)`: latents [M, B, D] -> [M, B]; row m is
  l_m(z[m]) = lambda_m log p(x_m | z[m]), decoder m applied to its own row of z. A
  joint reconstruction passes the same z in every row; CRMVAE's unimodal
  reconstructions pass each modality its own sample, so no decoder runs more often
  than it must. Where several sets of latents are decoded (CRMVAE's and MVAE's joint
  and unimodal samples, the stratified estimator's components) they go in one call of
  the function's optional `stacked` attribute, [K, M, B, D] -> [K, M, B]
  (`distributions.decode_stack`; without it, a vmap).
- `rng`: PRNG key for the reparameterised samples.
- `beta`: weight of every KL term; a Python number or a traced array (sweeps vmap it).
- `mask`: optional booleans [M, B], True where modality m is observed.
- `mixture_estimator`: "stratified" (default) or "sampled"; how expectations under a
  mixture posterior are estimated. Only the mixture-based objectives (mmvae, mopoe,
  mmjsd) have one; the others take the argument for a uniform signature.

Each returns `loss`, the negative objective averaged over the batch (a scalar to
minimise), and `terms`, named batch-averaged parts for logging:
`reconstruction` (the objective's likelihood part), `kl` (its divergence part, before
beta) and `log_likelihoods` [M] (per-modality expected log-likelihood under the joint
or mixture posterior). With a mask, pi_m = 1/(|S|+1) over the observed set S.

Notation follows docs/models.md: q(z|X) = PoE(all observed) with the prior expert,
q~_m = PoE({m}) = p q_m, pi_m = 1/(M+1) for m = 0..M.

The paper's identities (docs/models.md): Lemma 1 (`mvtcae` is an ELBO with
a dynamic prior), Lemma 2 (with a mixture posterior, `mvtcae` >= `mmjsd`), and Eq. 8
(Appendix D) and Eq. 9 (Appendix E), identities in expectation; Eq. 8's 1/2 on the
reconstruction is what CRMVAE's pi replaces (`crmvae`, `mvtcae_rescale`).

Readings. Where the paper leaves a choice open and the reference implementations
differ, the objective takes it as a keyword argument whose default is the paper's
reading (`READINGS`; `config.readings` sets them, `reading_arguments` picks an
objective's own):

- `prior_expert` (mvae, mmjsd_poe, mvtcae, mvtcae_rescale, crmvae): the N(0, I) expert
  inside q(z|X) and q~_m (the paper's section 3.2) or not (MultiVae: q~_m = q_m).
- `crmvae_reconstruction`: CRMVAE's reconstruction coefficient, "pi" on both terms (the
  paper's section 4: from Eq. 8's 1/2 to pi_m) or "pi/2" (MultiVae's 1/(2(M+1)); the
  same optimum as beta doubled).
- `mvtcae_rescale_factor`: "2pi" (the maths of appendix H: CRMVAE's reconstruction is 2
  pi times MVTCAE's in expectation, by Eq. 8) or "pi/2" (its text).
- `mopoe_subset_prior`: the prior expert in "every" subset's PoE (paper) or in the
  "full_only" set's (the MoPoE authors' code).
- `mmjsd_prior_in_mixture`: MMJSD's reconstruction mixture over q_1..q_M (paper) or
  also over the prior, every component weighted pi (the authors' code).
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from typing import Any, Callable, Literal, Mapping, Protocol

import jax
import jax.numpy as jnp

from crmvae_jax.model import distributions as dist
from crmvae_jax.model.distributions import Gaussian

LogLikelihoodFn = Callable[[jax.Array], jax.Array]
Terms = dict[str, jax.Array]


class Objective(Protocol):

  def __call__(
      self,
      posteriors: Gaussian,
      log_likelihood_fn: LogLikelihoodFn,
      rng: jax.Array,
      *,
      beta: float | jax.Array,
      mask: jax.Array | None = None,
      mixture_estimator: str = "stratified",
      **readings: Any,
  ) -> tuple[jax.Array, Terms]:
    ...


# The paper's reading of every open choice (module docstring), and the alternatives.
READINGS: dict[str, tuple] = {
    "prior_expert": (True, False),
    "crmvae_reconstruction": ("pi", "pi/2"),
    "mvtcae_rescale_factor": ("2pi", "pi/2"),
    "mopoe_subset_prior": ("every", "full_only"),
    "mmjsd_prior_in_mixture": (False, True),
}


def _check_reading(name: str, value) -> None:
  if value not in READINGS[name]:
    raise ValueError(f"{name} must be one of {READINGS[name]}; got {value!r}.")


def _validated(posteriors: Gaussian, mask: jax.Array | None, beta) -> jax.Array:
  """Checks shapes and beta at trace time; returns the mask [M, B] (all True if None)."""
  mean, logvar = jnp.shape(posteriors.mean), jnp.shape(posteriors.logvar)
  if len(mean) != 3 or mean != logvar:
    raise ValueError(
        "posteriors must hold mean and logvar of one shape [M, B, D]; got mean "
        f"{mean} and logvar {logvar}.")
  if isinstance(beta, numbers.Real) and beta < 0:
    raise ValueError(f"beta must be non-negative; got beta={beta}.")
  if mask is None:
    return jnp.ones(mean[:2], bool)
  if jnp.shape(mask) != mean[:2]:
    raise ValueError(
        f"mask must be shaped [M, B] = {mean[:2]} to match posteriors {mean}; got "
        f"{jnp.shape(mask)}.")
  return jnp.asarray(mask, bool)


def _checked(log_likelihood_fn: LogLikelihoodFn, num_modalities: int, batch: int):
  """Wraps log_likelihood_fn so a wrong output shape fails at trace time, by name."""

  def checked(fn, z, expected):
    log_likelihoods = fn(z)
    if jnp.shape(log_likelihoods) != expected:
      raise ValueError(
          f"log_likelihood_fn must map latents {jnp.shape(z)} to {expected}; "
          f"got {jnp.shape(log_likelihoods)}.")
    return log_likelihoods

  def checked_fn(z):
    return checked(log_likelihood_fn, z, (num_modalities, batch))

  stacked = getattr(log_likelihood_fn, "stacked", None)
  if stacked is not None:
    checked_fn.stacked = lambda z: checked(stacked, z, (z.shape[0], num_modalities, batch))
  return checked_fn


def _prepare(posteriors, log_likelihood_fn, mask, beta):
  mask = _validated(posteriors, mask, beta)
  num_modalities, batch = mask.shape
  return mask, _checked(log_likelihood_fn, num_modalities, batch)


def _joint(posteriors: Gaussian, mask: jax.Array, prior_expert: bool) -> Gaussian:
  """q(z|X) = PoE of the observed experts, with the prior expert or without."""
  _check_reading("prior_expert", prior_expert)
  return dist.product_of_experts(posteriors, mask, prior_weight=1.0 if prior_expert else 0.0)


def _unimodal(posteriors: Gaussian, prior_expert: bool) -> Gaussian:
  """q~_m = p q_m with the prior expert, q_m itself without: [M, B, D]."""
  _check_reading("prior_expert", prior_expert)
  return dist.unimodal_products(posteriors) if prior_expert else posteriors


def _prior_like(posteriors: Gaussian) -> Gaussian:
  return dist.standard_normal(posteriors.mean.shape[1:], posteriors.mean.dtype)


def _pi(mask: jax.Array) -> jax.Array:
  """pi = 1/(|S|+1) per batch element: [B]."""
  return 1.0 / (1.0 + jnp.sum(mask, axis=0))


def _coordination_kl(joint: Gaussian, unimodal: Gaussian, mask: jax.Array) -> jax.Array:
  """sum_{m=0..M} pi_m KL(q(z|X) || q~_m) with q~_0 = p: [B]."""
  pi = _pi(mask)
  to_prior = dist.kl_divergence(joint, dist.standard_normal(joint.mean.shape, joint.mean.dtype))
  joint_per_expert = jax.tree.map(lambda a: a[None], joint)
  to_unimodal = jnp.sum(
      jnp.where(mask, dist.kl_divergence(joint_per_expert, unimodal), 0.0), axis=0)
  return pi * (to_prior + to_unimodal)


def _finish(objective_value, reconstruction, kl, log_likelihoods) -> tuple[jax.Array, Terms]:
  terms = {
      "reconstruction": jnp.mean(reconstruction),
      "kl": jnp.mean(kl),
      "log_likelihoods": jnp.mean(log_likelihoods, axis=-1),
  }
  return -jnp.mean(objective_value), terms


def _joint_reconstruction(joint: Gaussian, log_likelihood_fn, rng, mask) -> jax.Array:
  """l_m(z), z ~ q(z|X) shared by every modality, masked: [M, B]."""
  num_modalities = mask.shape[0]
  log_likelihoods = dist.expected_log_likelihoods(joint, log_likelihood_fn, rng, num_modalities)
  return jnp.where(mask, log_likelihoods, 0.0)


def _joint_and_unimodal_reconstructions(
    joint: Gaussian, unimodal: Gaussian, log_likelihood_fn, rng, mask
) -> tuple[jax.Array, jax.Array]:
  """l_m(z), z ~ q(z|X) shared by every modality, and l_m(z_m), z_m ~ q~_m, each
  modality decoding its own sample; masked, [M, B] each. Both are decoded in one call
  (`distributions.decode_stack`)."""
  joint_rng, unimodal_rng = jax.random.split(rng)
  z_joint = jnp.broadcast_to(joint.sample(joint_rng), unimodal.mean.shape)
  z = jnp.stack([z_joint, unimodal.sample(unimodal_rng)])  # [2, M, B, D]
  joint_log_likelihoods, unimodal_log_likelihoods = jnp.where(
      mask, dist.decode_stack(log_likelihood_fn, z), 0.0)
  return joint_log_likelihoods, unimodal_log_likelihoods


def _mixture_reconstruction(mixture, log_likelihood_fn, rng, mask, mixture_estimator):
  """E_{mixture}[l_m] for every modality m, masked: [M, B]."""
  log_likelihoods = dist.expected_log_likelihoods(
      mixture, log_likelihood_fn, rng, mask.shape[0], mixture_estimator)
  return jnp.where(mask, log_likelihoods, 0.0)


def mvae(posteriors, log_likelihood_fn, rng, *, beta, mask=None, mixture_estimator="stratified",
         prior_expert=True):
  """MVAE (Wu & Goodman 2018): the joint ELBO plus every unimodal ELBO.

  L = ELBO(X; q(z|X)) + sum_m ELBO(x_m; q~_m),
  ELBO(X_S; q) = E_q[sum_{m in S} l_m] - beta KL(q || p).

  The optional k extra random subsets of Wu & Goodman are not included.
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  prior = _prior_like(posteriors)
  joint = _joint(posteriors, mask, prior_expert)
  unimodal = _unimodal(posteriors, prior_expert)
  joint_log_likelihoods, unimodal_log_likelihoods = _joint_and_unimodal_reconstructions(
      joint, unimodal, log_likelihood_fn, rng, mask)
  reconstruction = jnp.sum(joint_log_likelihoods + unimodal_log_likelihoods, axis=0)
  kl = dist.kl_divergence(joint, prior) + jnp.sum(
      jnp.where(mask, dist.kl_divergence(unimodal, prior), 0.0), axis=0)
  return _finish(reconstruction - beta * kl, reconstruction, kl, joint_log_likelihoods)


def mmvae(posteriors, log_likelihood_fn, rng, *, beta, mask=None, mixture_estimator="stratified"):
  """MMVAE (Shi et al. 2019), stratified over the M unimodal experts.

  L = (1/M) sum_m ( E_{q_m}[sum_m' l_m'] - beta KL(q_m || p) ).
  """
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  mixture = dist.mixture_of_experts(posteriors, mask)
  log_likelihoods = _mixture_reconstruction(
      mixture, log_likelihood_fn, rng, mask, mixture_estimator)
  reconstruction = jnp.sum(log_likelihoods, axis=0)
  kl = jnp.sum(mixture.weights * dist.kl_divergence(posteriors, _prior_like(posteriors)), axis=0)
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


def _subset_mixture(posteriors: Gaussian, mask: jax.Array, subset_prior: str = "every"
                    ) -> dist.Mixture:
  """MoPoE: PoE(S) for every non-empty subset S, weighted uniformly over the subsets
  of the observed modalities (a subset with a missing member gets weight 0). The
  prior expert joins every PoE(S), or (`subset_prior="full_only"`) only the full set's."""
  _check_reading("mopoe_subset_prior", subset_prior)
  subsets = jnp.asarray(dist.nonempty_subsets(mask.shape[0]))  # [K, M]

  def component(subset):
    members = subset[:, None] & mask  # [M, B]
    # Without the prior, a subset with no observed member would be 0/0; its weight is 0,
    # so any finite component will do: the prior.
    with_prior = (subset_prior == "every") | jnp.all(subset) | ~jnp.any(members, axis=0)
    return dist.product_of_experts(posteriors, members,
                                   prior_weight=with_prior[:, None].astype(posteriors.mean.dtype))

  components = jax.vmap(component)(subsets)
  observed_subset = jnp.all(~subsets[:, :, None] | mask[None], axis=1)  # [K, B]
  weights = observed_subset / jnp.sum(observed_subset, axis=0, keepdims=True)
  return dist.Mixture(components, weights)


def mopoe(posteriors, log_likelihood_fn, rng, *, beta, mask=None, mixture_estimator="stratified",
          mopoe_subset_prior="every"):
  """MoPoE-VAE (Sutter et al. 2021): a mixture over the PoEs of every subset.

  L = sum_S w_S ( E_{PoE(S)}[sum_m l_m] - beta KL(PoE(S) || p) ),
  over the 2^M - 1 non-empty subsets S, w_S uniform; PoE(S) includes the prior
  (`mopoe_subset_prior="full_only"`: only the full set's does, as in the authors' code).
  """
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  mixture = _subset_mixture(posteriors, mask, mopoe_subset_prior)
  log_likelihoods = _mixture_reconstruction(
      mixture, log_likelihood_fn, rng, mask, mixture_estimator)
  reconstruction = jnp.sum(log_likelihoods, axis=0)
  kl = jnp.sum(
      mixture.weights * dist.kl_divergence(mixture.components, _prior_like(posteriors)), axis=0)
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


def _jensen_shannon_kl(posteriors: Gaussian, mask: jax.Array) -> jax.Array:
  """sum_{m=0..M} pi_m KL(q_m || f), f the pi-weighted PoE of q_0 = p, q_1..q_M: [B]."""
  pi = _pi(mask)
  prior = _prior_like(posteriors)
  dynamic_prior = dist.product_of_experts(posteriors, mask, weights=pi, prior_weight=pi[:, None])
  to_experts = jnp.where(mask, dist.kl_divergence(posteriors, dynamic_prior), 0.0)
  return pi * (dist.kl_divergence(prior, dynamic_prior) + jnp.sum(to_experts, axis=0))


def _mixture_with_prior(posteriors: Gaussian, mask: jax.Array) -> dist.Mixture:
  """sum_{m=0..M} pi_m q_m with q_0 = p: the prior as one more component."""
  prior = jax.tree.map(lambda a: a[None], _prior_like(posteriors))
  components = jax.tree.map(lambda p, q: jnp.concatenate([p, q]), prior, posteriors)
  observed = jnp.concatenate([jnp.ones_like(mask[:1]), mask])
  return dist.Mixture(components, observed * _pi(mask)[None])


def mmjsd(posteriors, log_likelihood_fn, rng, *, beta, mask=None, mixture_estimator="stratified",
          mmjsd_prior_in_mixture=False):
  """MMJSD (Sutter et al. 2020): MoE reconstruction, Jensen-Shannon regulariser.

  L = E_{MoE(all)}[sum_m l_m] - beta sum_{m=0..M} pi_m KL(q_m || f),
  f = the pi-weighted PoE of q_0 = p, q_1..q_M (the "dynamic prior"). With
  `mmjsd_prior_in_mixture` (the authors' code) the reconstruction mixture is
  sum_{m=0..M} pi_m q_m, the prior included.
  """
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  _check_reading("mmjsd_prior_in_mixture", mmjsd_prior_in_mixture)
  mixture = (_mixture_with_prior(posteriors, mask) if mmjsd_prior_in_mixture
             else dist.mixture_of_experts(posteriors, mask))
  log_likelihoods = _mixture_reconstruction(
      mixture, log_likelihood_fn, rng, mask, mixture_estimator)
  reconstruction = jnp.sum(log_likelihoods, axis=0)
  kl = _jensen_shannon_kl(posteriors, mask)
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


def mmjsd_poe(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
              mixture_estimator="stratified", prior_expert=True):
  """MMJSD with the reconstruction under the joint PoE posterior.

  L = E_{q(z|X)}[sum_m l_m] - beta sum_{m=0..M} pi_m KL(q_m || f).
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  joint = _joint(posteriors, mask, prior_expert)
  log_likelihoods = _joint_reconstruction(joint, log_likelihood_fn, rng, mask)
  reconstruction = jnp.sum(log_likelihoods, axis=0)
  kl = _jensen_shannon_kl(posteriors, mask)
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


def _mvtcae_parts(posteriors, log_likelihood_fn, rng, mask, prior_expert):
  joint = _joint(posteriors, mask, prior_expert)
  unimodal = _unimodal(posteriors, prior_expert)
  log_likelihoods = _joint_reconstruction(joint, log_likelihood_fn, rng, mask)
  return log_likelihoods, _coordination_kl(joint, unimodal, mask)


def mvtcae(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
           mixture_estimator="stratified", prior_expert=True):
  """MVTCAE (Hwang et al. 2021), in the paper's coordination form.

  L = E_{q(z|X)}[sum_m l_m] - beta sum_{m=0..M} pi_m KL(q(z|X) || q~_m),  q~_0 = p.

  Lemma 1: this is the ELBO whose prior is the pi-weighted geometric mean
  prod_m q~_m^{pi_m} (unnormalised; see `distributions.weighted_product_log_normaliser`).
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  log_likelihoods, kl = _mvtcae_parts(posteriors, log_likelihood_fn, rng, mask, prior_expert)
  reconstruction = jnp.sum(log_likelihoods, axis=0)
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


def mvtcae_rescale(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
                   mixture_estimator="stratified", prior_expert=True,
                   mvtcae_rescale_factor="2pi"):
  """MVTCAE with its reconstruction rescaled by 2 pi (paper appendix H).

  L = 2 pi E_{q(z|X)}[sum_m l_m] - beta sum_{m=0..M} pi_m KL(q(z|X) || q~_m):
  2 pi is the factor by which CRMVAE's pi replaces the 1/2 of Eq. 8 (Appendix D), so
  that in expectation the reconstruction is CRMVAE's (`mvtcae_rescale_factor="pi/2"`:
  the factor as appendix H's text writes it).
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  _check_reading("mvtcae_rescale_factor", mvtcae_rescale_factor)
  log_likelihoods, kl = _mvtcae_parts(posteriors, log_likelihood_fn, rng, mask, prior_expert)
  factor = 2.0 if mvtcae_rescale_factor == "2pi" else 0.5
  reconstruction = factor * _pi(mask) * jnp.sum(log_likelihoods, axis=0)
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


def crmvae(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
           mixture_estimator="stratified", prior_expert=True, crmvae_reconstruction="pi"):
  """CRMVAE: coordination plus unimodal reconstructions from every q~_m.

  L = pi E_{q(z|X)}[sum_m l_m] + sum_{m=1..M} pi_m E_{q~_m}[l_m]
      - beta sum_{m=0..M} pi_m KL(q(z|X) || q~_m),  q~_0 = p.

  The paper's section 4 takes the coefficient from the 1/2 of Eq. 8 (Appendix D, an
  identity in expectation) to pi_m, on the joint and on every unimodal reconstruction.
  `crmvae_reconstruction="pi/2"` halves both reconstruction coefficients (MultiVae's
  1/(2(M+1))), which has the optimum of beta doubled.
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  _check_reading("crmvae_reconstruction", crmvae_reconstruction)
  joint = _joint(posteriors, mask, prior_expert)
  unimodal = _unimodal(posteriors, prior_expert)
  joint_log_likelihoods, unimodal_log_likelihoods = _joint_and_unimodal_reconstructions(
      joint, unimodal, log_likelihood_fn, rng, mask)
  coefficient = _pi(mask) * (1.0 if crmvae_reconstruction == "pi" else 0.5)
  reconstruction = coefficient * jnp.sum(joint_log_likelihoods + unimodal_log_likelihoods, axis=0)
  kl = _coordination_kl(joint, unimodal, mask)
  return _finish(reconstruction - beta * kl, reconstruction, kl, joint_log_likelihoods)


# Models with private latents (docs/models.md, "Private latents"). Each modality m also
# has w_m with the prior N(0, I) and the posterior q(w_m|x_m) from its own encoder; its
# decoder reads (z, w_m). `private` is the Gaussian [M, B, P] of every q(w_m|x_m), a
# modality's dims past its own P_m holding the prior (`MultimodalVAE.encode_private`).
# w is drawn from a stream of its own (`PRIVATE_STREAM` folded into the step's key), so
# the shared samples are the ones the model without private latents draws: with P = 0,
# `crmvae_private` is `crmvae` and `mopoe_private` is `mopoe`, exactly.
PRIVATE_STREAM = 1_000_003


def _no_private(posteriors: Gaussian) -> Gaussian:
  """Private posteriors of width 0: [M, B, 0]."""
  return dist.Gaussian(posteriors.mean[..., :0], posteriors.logvar[..., :0])


def _checked_private(private: Gaussian | None, posteriors: Gaussian) -> Gaussian:
  """The private posteriors [M, B, P] (width 0 for None), shaped like `posteriors`."""
  private = _no_private(posteriors) if private is None else private
  if jnp.shape(private.mean)[:2] != jnp.shape(posteriors.mean)[:2]:
    raise ValueError(f"private must be shaped [M, B, P] like posteriors "
                     f"{jnp.shape(posteriors.mean)}; got {jnp.shape(private.mean)}.")
  return private


def _private_parts(private: Gaussian | None, posteriors: Gaussian, rng: jax.Array,
                   mask: jax.Array):
  """(w ~ q(w|X) [M, B, P], sum over observed m of KL(q(w_m|x_m) || N(0, I)) [B])."""
  private = _checked_private(private, posteriors)
  w = private.sample(jax.random.fold_in(rng, PRIVATE_STREAM))
  kl = dist.kl_divergence(private, dist.standard_normal(private.mean.shape, private.mean.dtype))
  return w, jnp.sum(jnp.where(mask, kl, 0.0), axis=0)


def _reading_private(log_likelihood_fn: LogLikelihoodFn, w: jax.Array) -> LogLikelihoodFn:
  """log_likelihood_fn over shared latents whose rows also carry modality m's w_m: z [M,
  B, D] -> l_m((z_m, w_m)); its `stacked` alike over [K, M, B, D]."""

  def with_w(z):
    return jnp.concatenate([z, jnp.broadcast_to(w, z.shape[:-1] + w.shape[-1:])], axis=-1)

  def fn(z):
    return log_likelihood_fn(with_w(z))

  fn.stacked = lambda z: dist.decode_stack(log_likelihood_fn, with_w(z))
  return fn


def crmvae_private(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
                   mixture_estimator="stratified", prior_expert=True,
                   crmvae_reconstruction="pi", private=None):
  """CRMVAE with private latents: our extension of Eq. 8, not the paper's (docs/models.md).

  L = pi E_{q(z|X) q(w|X)}[sum_m l_m(z, w_m)] + sum_m pi_m E_{q~_m(z) q(w_m|x_m)}[l_m(z, w_m)]
      - beta sum_{m=0..M} pi_m KL(q(z|X) || q~_m) - beta sum_m KL(q(w_m|x_m) || p(w_m)).

  The shared part is `crmvae`'s; each modality's two reconstructions read the same
  w_m ~ q(w_m|x_m), and each private latent pays its own KL to its prior, as in a VAE.
  """
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  w, private_kl = _private_parts(private, posteriors, rng, mask)
  loss, terms = crmvae(posteriors, _reading_private(log_likelihood_fn, w), rng, beta=beta,
                       mask=mask, mixture_estimator=mixture_estimator,
                       prior_expert=prior_expert, crmvae_reconstruction=crmvae_reconstruction)
  return _with_private_kl(loss, terms, private_kl, beta)


def mopoe_private(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
                  mixture_estimator="stratified", mopoe_subset_prior="every", private=None):
  """MoPoE with modality-specific subspaces (Sutter et al. 2021's MNIST-SVHN-Text code):

  L = sum_S w_S ( E_{PoE(S)} E_{q(w|X)}[sum_m l_m(z, w_m)] - beta KL(PoE(S) || p) )
      - beta sum_m KL(q(w_m|x_m) || p(w_m)).

  Every modality reconstructs from the subset's z and its own w_m ~ q(w_m|x_m).
  """
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  w, private_kl = _private_parts(private, posteriors, rng, mask)
  loss, terms = mopoe(posteriors, _reading_private(log_likelihood_fn, w), rng, beta=beta,
                      mask=mask, mixture_estimator=mixture_estimator,
                      mopoe_subset_prior=mopoe_subset_prior)
  return _with_private_kl(loss, terms, private_kl, beta)


def _with_private_kl(loss, terms, private_kl, beta) -> tuple[jax.Array, Terms]:
  """The shared objective's loss and terms plus beta times the private latents' KL."""
  return (loss + beta * jnp.mean(private_kl),
          {**terms, "kl": terms["kl"] + jnp.mean(private_kl)})


def jmvae(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
          mixture_estimator="stratified", joint=None, alpha=0.1):
  """JMVAE-kl (Suzuki et al. 2016), with a joint encoder q(z|X) of its own:

  L = E_{q(z|X)}[sum_m l_m] - beta ( KL(q(z|X) || p) + alpha sum_m KL(q(z|X) || q_m) ),

  the q_m the unimodal encoders' experts (no prior expert), which the KL terms pull
  towards the joint posterior so that they can stand in for it when a modality is
  missing. At beta = 1 this is the paper's L_JM with its alpha; beta scales every
  divergence, as in the other models (so a beta sweep keeps alpha's proportion).
  `joint`: the joint encoder's Gaussian [B, D]; None stands for the product of the
  observed experts without the prior (with which, for alpha = 1 and beta pi, L is
  `mvtcae`'s coordination form without the prior expert, `tests/test_jmvae.py`). Its
  joint encoder reads every modality, so it trains on complete examples only.
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  if joint is None:
    joint = _joint(posteriors, mask, prior_expert=False)
  elif jnp.shape(joint.mean) != jnp.shape(posteriors.mean)[1:]:
    raise ValueError(f"joint must be shaped [B, D] = {jnp.shape(posteriors.mean)[1:]}; got "
                     f"{jnp.shape(joint.mean)}.")
  log_likelihoods = _joint_reconstruction(joint, log_likelihood_fn, rng, mask)
  reconstruction = jnp.sum(log_likelihoods, axis=0)
  to_prior = dist.kl_divergence(joint, _prior_like(posteriors))
  joint_per_expert = jax.tree.map(lambda a: a[None], joint)
  to_unimodal = jnp.sum(jnp.where(mask, dist.kl_divergence(joint_per_expert, posteriors), 0.0),
                        axis=0)
  kl = to_prior + alpha * to_unimodal
  return _finish(reconstruction - beta * kl, reconstruction, kl, log_likelihoods)


MMVAE_PLUS_ESTIMATORS = ("dreg", "iwae")


def mmvae_plus(posteriors, log_likelihood_fn, rng, *, beta, mask=None,
               mixture_estimator="stratified", private=None, auxiliary=None, samples=10,
               estimator="dreg"):
  """MMVAE+ (Palumbo et al. 2023): a mixture-of-experts shared z, private w_m, and
  auxiliary priors r_n(w_n) with a learned scale for cross-modal reconstruction.

  For every observed modality m and K = `samples` draws z_k ~ q(z|x_m), w_k ~ q(w_m|x_m):

    lw_k^m = sum_n l_n(z_k, w_k^n) + beta ( log p(z_k, w_k) - log q_MoE(z_k|X)
                                            - log q(w_k|x_m) ),

  with w_k^n = w_k for n = m and a draw of r_n for every other n (`auxiliary`, [M, P]:
  mean 0 and the learned log-variance; None: N(0, I)), p = N(0, I) on (z, w_m) and
  q_MoE = the uniform mixture of the observed q(z|x_n). The objective is the IWAE bound
  with the average over modalities outside the log, as in the authors' code and
  MultiVae's: L = (1/|S|) sum_m log (1/K) sum_k exp(lw_k^m).

  `estimator="dreg"` (the authors' default): the loss's value is -L, its gradient the
  doubly reparameterised estimator (Tucker et al. 2018): normalised weights v_k =
  softmax_k(lw^m) held constant, log q taken with the encoder's outputs held constant,
  gradients reaching (z_k, w_k) scaled by v_k^2 and all others (the decoders, r_n) by
  v_k. With K > 1 it decodes every sample twice in one call (the samples live, then
  held), which the two scalings need. "iwae": the gradient of L itself.
  """
  del mixture_estimator
  mask, log_likelihood_fn = _prepare(posteriors, log_likelihood_fn, mask, beta)
  if estimator not in MMVAE_PLUS_ESTIMATORS:
    raise ValueError(f"estimator must be one of {MMVAE_PLUS_ESTIMATORS}; got {estimator!r}.")
  if not isinstance(samples, numbers.Integral) or samples < 1:
    raise ValueError(f"samples must be an int >= 1; got {samples!r}.")
  num_modalities, batch, _ = jnp.shape(posteriors.mean)
  private = _checked_private(private, posteriors)
  width = jnp.shape(private.mean)[-1]
  dtype = posteriors.mean.dtype
  if auxiliary is None:
    auxiliary = dist.standard_normal((num_modalities, width), dtype)
  elif jnp.shape(auxiliary.mean) != (num_modalities, width):
    raise ValueError(f"auxiliary must be shaped [M, P] = {(num_modalities, width)}; got "
                     f"{jnp.shape(auxiliary.mean)}.")

  def draws(gaussian, key, shape):
    return Gaussian(*(jnp.broadcast_to(a, shape) for a in gaussian)).sample(key)

  shared_rng, private_rng, auxiliary_rng = jax.random.split(rng, 3)
  z = draws(posteriors, shared_rng, (samples,) + posteriors.mean.shape)  # [K, M, B, D]
  w = draws(private, private_rng, (samples,) + private.mean.shape)  # [K, M, B, P]
  # r_n for decoder n of the sample from m: [K, M (source), M (decoder), B, P].
  r = draws(jax.tree.map(lambda a: a[:, None, :], auxiliary), auxiliary_rng,
            (samples, num_modalities, num_modalities, batch, width))

  frozen = estimator == "dreg"
  experts = jax.lax.stop_gradient(posteriors) if frozen else posteriors
  own_private = jax.lax.stop_gradient(private) if frozen else private
  # log q_MoE(z|X): every expert n at every sample of every source m, [K, M, N, B].
  expert_log_probs = experts.log_prob(z[:, :, None])
  log_moe = (jax.nn.logsumexp(jnp.where(mask[None, None], expert_log_probs, -jnp.inf), axis=2)
             - jnp.log(jnp.sum(mask, axis=0)))
  log_ratio = (dist.standard_normal(z.shape, dtype).log_prob(z)
               + dist.standard_normal(w.shape, dtype).log_prob(w)
               - log_moe - own_private.log_prob(w))  # [K, M, B]

  own = jnp.eye(num_modalities, dtype=bool)[None, :, :, None, None]

  def decoded(z, w, r):  # -> l_n at the samples of source m: [K', M, N, B], masked by n
    shared = jnp.broadcast_to(z[:, :, None], z.shape[:2] + (num_modalities,) + z.shape[2:])
    latents = jnp.concatenate([shared, jnp.where(own, w[:, :, None], r)], axis=-1)
    log_likelihoods = dist.decode_stack(log_likelihood_fn,
                                        latents.reshape((-1,) + latents.shape[2:]))
    return jnp.where(mask[None, None], log_likelihoods.reshape(latents.shape[:-1]), 0.0)

  count = jnp.sum(mask, axis=0)

  def over_sources(per_source):  # [M, B] -> [B]: the mean over the observed sources
    return jnp.sum(jnp.where(mask, per_source, 0.0), axis=0) / count

  def iwae(lw):  # [K, M, B] -> [B]
    return over_sources(jax.nn.logsumexp(lw, axis=0) - jnp.log(samples))

  two_paths = frozen and samples > 1
  if two_paths:
    # One decoder call for both paths: the samples live, then held (r live in both).
    held = jax.lax.stop_gradient
    both = decoded(jnp.concatenate([z, held(z)]), jnp.concatenate([w, held(w)]),
                   jnp.concatenate([r, r]))
    log_likelihoods, held_log_likelihoods = both[:samples], both[samples:]
  else:
    log_likelihoods = decoded(z, w, r)
  lw = jnp.sum(log_likelihoods, axis=2) + beta * log_ratio  # [K, M, B]
  if not frozen:
    bound = iwae(lw)
  else:
    if two_paths:
      v = jax.lax.stop_gradient(jax.nn.softmax(lw, axis=0))
      # Through the samples v^2 (the v of the sum and the authors' gradient hook's v),
      # through the rest v: v^2 from lw, v - v^2 from the held samples' lw.
      held_lw = jnp.sum(held_log_likelihoods, axis=2) + beta * held(log_ratio)
      surrogate = jnp.sum(v ** 2 * lw + (v - v ** 2) * held_lw, axis=0)
    else:  # K = 1: v = 1
      surrogate = lw[0]
    surrogate = over_sources(surrogate)
    bound = jax.lax.stop_gradient(iwae(lw)) + surrogate - jax.lax.stop_gradient(surrogate)

  # Observed sources only: [K, M, N, B].
  per_source = jnp.where(mask[None, :, None], log_likelihoods, 0.0)
  reconstruction = over_sources(jnp.mean(jnp.sum(per_source, axis=2), axis=0))
  kl = over_sources(jnp.mean(-log_ratio, axis=0))
  log_likelihood_per_target = jnp.sum(jnp.mean(per_source, axis=0), axis=0) / count  # [N, B]
  return _finish(bound, reconstruction, kl, log_likelihood_per_target)


# How a model infers z from a subset S of the modalities at evaluation: "poe", PoE(S)
# with the prior expert; "poe_without_prior", PoE(S) without it; "moe", the uniform
# mixture of the q_m in S (`subset_posterior_kind`).
# "jmvae": the joint encoder for the full set, PoE(S) without the prior otherwise.
SubsetPosteriorKind = Literal["poe", "poe_without_prior", "moe", "jmvae"]


@dataclasses.dataclass(frozen=True)
class Model:
  """What a model is, in one place: its objective, how it infers z from a proper subset
  of the modalities at evaluation (docs/metrics.md: "poe", PoE(S) with the prior
  expert, or "moe", the uniform mixture of the q_m in S), and its name in tables."""

  objective: Objective
  subset_posterior: SubsetPosteriorKind
  display_name: str
  # Whether it takes private latents (`private=`, `MultimodalVAE.encode_private`).
  private: bool = False
  # Whether it has a joint encoder of its own (`joint=`, `MultimodalVAE.encode_joint`).
  joint_encoder: bool = False
  # Whether it learns auxiliary priors r_m(w_m) (`auxiliary=`,
  # `MultimodalVAE.auxiliary_prior`); it takes private latents too.
  auxiliary_priors: bool = False


# Every model, in the paper's table order.
MODELS: dict[str, Model] = {
    "mvae": Model(mvae, "poe", "MVAE"),
    "mmvae": Model(mmvae, "moe", "MMVAE"),
    "mopoe": Model(mopoe, "poe", "MoPoE-VAE"),
    "mmjsd": Model(mmjsd, "moe", "MMJSD"),
    "mmjsd_poe": Model(mmjsd_poe, "poe", "MMJSD-PoE"),
    "mvtcae": Model(mvtcae, "poe", "MVTCAE"),
    "mvtcae_rescale": Model(mvtcae_rescale, "poe", "MVTCAE (rescale)"),
    "crmvae": Model(crmvae, "poe", "CRMVAE"),
    # With private latents (config.private_dims).
    "mopoe_private": Model(mopoe_private, "poe", "MoPoE-VAE, private", private=True),
    "crmvae_private": Model(crmvae_private, "poe", "CRMVAE, private", private=True),
    "jmvae": Model(jmvae, "jmvae", "JMVAE", joint_encoder=True),
    "mmvae_plus": Model(mmvae_plus, "moe", "MMVAE+", private=True, auxiliary_priors=True),
}
OBJECTIVES: dict[str, Objective] = {name: model.objective for name, model in MODELS.items()}
SUBSET_POSTERIOR = {name: model.subset_posterior for name, model in MODELS.items()}
DISPLAY_NAMES = {name: model.display_name for name, model in MODELS.items()}


def objective_options(config) -> dict[str, Any]:
  """The objective's own settings from a run's config (not readings: choices of the
  model's definition): JMVAE's alpha (`config.jmvae_alpha`), MMVAE+'s number of
  importance samples and gradient estimator (`config.mmvae_plus_samples`,
  `config.mmvae_plus_estimator`)."""
  if config.model == "jmvae":
    return {"alpha": float(config.get("jmvae_alpha", 0.1))}
  if config.model == "mmvae_plus":
    return {"samples": int(config.get("mmvae_plus_samples", 10)),
            "estimator": str(config.get("mmvae_plus_estimator", "dreg"))}
  return {}


def reading_arguments(name: str, readings: Mapping[str, Any] | None) -> dict[str, Any]:
  """The keyword arguments of objective `name` among `readings` (missing: the paper's)."""
  accepted = inspect.signature(get_objective(name)).parameters
  readings = dict(readings or {})
  unknown = set(readings) - set(READINGS)
  if unknown:
    raise ValueError(f"Unknown readings {sorted(unknown)}; known: {', '.join(READINGS)}.")
  return {key: value for key, value in readings.items() if key in accepted}


def subset_posterior_kind(name: str, readings: Mapping[str, Any] | None = None
                          ) -> SubsetPosteriorKind:
  """How model `name` infers z from a proper subset of modalities at evaluation:
  'moe', 'poe' (PoE(S) with the prior expert) or 'poe_without_prior', following the
  readings it was trained with (`prior_expert`, `mopoe_subset_prior`)."""
  kind = SUBSET_POSTERIOR[name]
  arguments = reading_arguments(name, readings)
  if kind == "poe" and (arguments.get("prior_expert", True) is False
                        or arguments.get("mopoe_subset_prior") == "full_only"):
    return "poe_without_prior"
  return kind


def get_objective(name: str) -> Objective:
  """The objective registered as `name`; unknown names list the known ones."""
  if name not in OBJECTIVES:
    raise ValueError(f"Unknown objective {name!r}; known objectives: {', '.join(OBJECTIVES)}.")
  return OBJECTIVES[name]
