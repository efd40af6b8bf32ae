"""The eight objectives against their formulas (docs/models.md), the paper's lemmas, gradients
and bad input."""

from __future__ import annotations

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import objectives
from crmvae_jax.reporting import tables
from crmvae_jax.model.distributions import Gaussian

NAMES = tuple(objectives.OBJECTIVES)
MIXTURE_OBJECTIVES = ("mmvae", "mopoe", "mmjsd", "mopoe_private")
# The models with private latents, called here without them (private=None), are their
# shared models exactly (tests/test_private_latents.py tests them with private latents).
WITHOUT_PRIVATE = {"crmvae_private": "crmvae", "mopoe_private": "mopoe"}
# MMVAE+'s bound is an ELBO, affine in beta with loss = -(reconstruction - beta kl), only
# with one importance sample; and its default gradient is DReG's, not the value's
# derivative (tests/test_mmvae_plus.py checks it).
AS_ELBO = {"mmvae_plus": {"samples": 1}}
EXACT_GRADIENT = {"mmvae_plus": {"estimator": "iwae"}}


def objective_for(name, options=None):
  """The objective `name` with the keyword arguments `options` gives it (if any)."""
  objective = objectives.get_objective(name)
  extra = (options or {}).get(name)
  return functools.partial(objective, **extra) if extra else objective


# An independent float64 numpy reference of every objective's formula, for one
# batch element, with the quadratic log-likelihood
#   l_m(z) = -1/2 sum_d a[m, d] (z_d - c[m, d])^2,
# whose expectation under N(mean, var) is -1/2 sum_d a[m, d] ((mean_d - c[m, d])^2 + var_d).

def _poe(means, variances, members, weights=None, prior_weight=1.0):
  weights = np.ones(len(means)) if weights is None else weights
  precision = prior_weight + sum(weights[k] / variances[k] for k in members)
  mean = sum(weights[k] * means[k] / variances[k] for k in members) / precision
  return mean, 1.0 / precision


def _kl(q, p):
  (mq, vq), (mp, vp) = q, p
  return 0.5 * np.sum(np.log(vp) - np.log(vq) + (vq + (mq - mp) ** 2) / vp - 1.0)


def _expected_l(m, q, a, c):
  mean, var = q
  return -0.5 * np.sum(a[m] * ((mean - c[m]) ** 2 + var))


def _mmvae_plus_reference(means, variances, obs, a, c, beta, samples=10, draws=50_000):
  """MMVAE+ without private latents: (1/|S|) sum_m E[log (1/K) sum_k exp lw_k^m], lw_k^m =
  sum_n l_n(z_k) + beta (log p(z_k) - log q_MoE(z_k|X)), z_k ~ q_m; by float64 Monte Carlo
  with 50,000 draws of the K samples: its standard error (about 0.002 on the convergence
  test's problem, where the value is -3.2) is half that of the 12,000 draws it judges;
  200,000 draws would take 5.5 s instead of 1 s."""
  rng = np.random.default_rng(0)
  log_normal = lambda z, mean, var: -0.5 * np.sum(
      np.log(2 * np.pi * var) + (z - mean) ** 2 / var, axis=-1)
  bounds = []
  for m in obs:
    z = means[m] + np.sqrt(variances[m]) * rng.standard_normal((draws, samples, means.shape[1]))
    log_likelihood = sum(-0.5 * np.sum(a[n] * (z - c[n]) ** 2, axis=-1) for n in obs)
    log_moe = (np.logaddexp.reduce([log_normal(z, means[n], variances[n]) for n in obs], axis=0)
               - np.log(len(obs)))
    lw = log_likelihood + beta * (log_normal(z, 0.0, 1.0) - log_moe)
    bounds.append(np.mean(np.logaddexp.reduce(lw, axis=1) - np.log(samples)))
  return np.mean(bounds)


def reference_objective(name, means, variances, observed, a, c, beta):
  name = WITHOUT_PRIVATE.get(name, name)
  dim = means.shape[1]
  prior = (np.zeros(dim), np.ones(dim))
  obs = [m for m in range(len(means)) if observed[m]]
  pi = 1.0 / (len(obs) + 1)
  joint = _poe(means, variances, obs)
  unimodal = {m: _poe(means, variances, [m]) for m in obs}
  experts = {m: (means[m], variances[m]) for m in obs}
  recon = lambda q: sum(_expected_l(m, q, a, c) for m in obs)
  coordination_kl = pi * (_kl(joint, prior) + sum(_kl(joint, unimodal[m]) for m in obs))
  dynamic_prior = _poe(means, variances, obs, weights=np.full(len(means), pi), prior_weight=pi)
  js_kl = pi * (_kl(prior, dynamic_prior) + sum(_kl(experts[m], dynamic_prior) for m in obs))
  moe_recon = np.mean([recon(experts[k]) for k in obs])
  if name == "mvae":
    return (recon(joint) - beta * _kl(joint, prior)
            + sum(_expected_l(m, unimodal[m], a, c) - beta * _kl(unimodal[m], prior) for m in obs))
  if name == "mmvae":
    return np.mean([recon(experts[k]) - beta * _kl(experts[k], prior) for k in obs])
  if name == "mopoe":
    subsets = [s for r in range(1, len(obs) + 1) for s in itertools.combinations(obs, r)]
    return np.mean([recon(_poe(means, variances, s)) - beta * _kl(_poe(means, variances, s), prior)
                    for s in subsets])
  if name == "mmjsd":
    return moe_recon - beta * js_kl
  if name == "mmjsd_poe":
    return recon(joint) - beta * js_kl
  if name == "mvtcae":
    return recon(joint) - beta * coordination_kl
  if name == "mvtcae_rescale":
    return 2 * pi * recon(joint) - beta * coordination_kl
  if name == "jmvae":  # without a joint encoder: the product of the experts, no prior
    product = _poe(means, variances, obs, prior_weight=0.0)
    return (recon(product) - beta * _kl(product, prior)
            - beta * 0.1 * sum(_kl(product, experts[m]) for m in obs))
  if name == "mmvae_plus":
    return _mmvae_plus_reference(means, variances, obs, a, c, beta)
  if name == "crmvae":
    return (pi * recon(joint) + pi * sum(_expected_l(m, unimodal[m], a, c) for m in obs)
            - beta * coordination_kl)
  raise KeyError(name)


def quadratic_log_likelihood(a, c):
  def log_likelihood_fn(z):  # [M, B, D] -> [M, B]
    return -0.5 * jnp.sum(a[:, None] * (z - c[:, None]) ** 2, axis=-1)
  return log_likelihood_fn


def problem(seed=0, num_modalities=3, dim=3):
  rng = np.random.default_rng(seed)
  means = rng.normal(0.0, 1.0, (num_modalities, 3, dim))  # 3 distinct batch elements
  logvars = rng.normal(-0.5, 0.5, (num_modalities, 3, dim))
  observed = np.ones((num_modalities, 3), bool)
  observed[1, 1] = False  # element 1 misses modality 1
  observed[0, 2] = observed[2, 2] = False  # element 2 sees modality 1 only
  a = rng.uniform(0.3, 1.0, (num_modalities, dim))
  c = rng.normal(0.0, 1.0, (num_modalities, dim))
  return means, logvars, observed, a, c


class MonteCarloConvergenceTest(chex.TestCase, parameterized.TestCase):
  """Each objective's Monte Carlo value converges to the exact value of its formula."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      *[(name, "stratified") for name in NAMES], *[(name, "sampled") for name in MIXTURE_OBJECTIVES])
  def test_converges_to_closed_form(self, name, estimator):
    means, logvars, observed, a, c = problem()
    beta = 0.7
    exact = np.mean([
        reference_objective(name, means[:, b], np.exp(logvars[:, b]), observed[:, b], a, c, beta)
        for b in range(3)])
    copies = 2000  # every distinct element repeated, so the batch mean is a MC average
    tile = lambda x: jnp.asarray(np.tile(x, (1, copies) + (1,) * (x.ndim - 2)), jnp.float32)
    posteriors = Gaussian(tile(means), tile(logvars))
    mask = tile(observed).astype(bool)
    objective = objectives.get_objective(name)
    log_likelihood_fn = quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c))

    @self.variant
    def loss_fn(rng):
      return objective(posteriors, log_likelihood_fn, rng, beta=beta, mask=mask,
                       mixture_estimator=estimator)[0]

    losses = np.array([loss_fn(jax.random.key(seed)) for seed in range(6)])
    estimate, standard_error = losses.mean(), losses.std(ddof=1) / np.sqrt(len(losses))
    self.assertLess(standard_error, 0.01 * abs(exact))
    self.assertLess(abs(estimate + exact), 5 * standard_error + 1e-3 * abs(exact))


@pytest.mark.parametrize("name", NAMES)
def test_beta_may_be_traced_and_vmapped(name):
  means, logvars, observed, a, c = problem(seed=1)
  posteriors = Gaussian(jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32))
  log_likelihood_fn = quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c))
  objective = objective_for(name, AS_ELBO)
  loss_at = lambda beta: objective(posteriors, log_likelihood_fn, jax.random.key(0), beta=beta)[0]
  betas = jnp.array([0.0, 0.5, 2.0])
  vmapped = jax.jit(jax.vmap(loss_at))(betas)
  # Against beta as a Python float, compiled once per value (op by op, every primitive
  # of the objective would compile apart).
  loss_at_constant = jax.jit(loss_at, static_argnums=0)
  looped = np.array([loss_at_constant(float(beta)) for beta in betas])
  np.testing.assert_allclose(vmapped, looped, rtol=1e-5)
  # The loss is affine in beta: L(beta) = -recon + beta * kl.
  np.testing.assert_allclose(vmapped[2] - vmapped[0], 4 * (vmapped[1] - vmapped[0]), rtol=1e-4)


# The float32 objectives run compiled as one program each in these tests: op by op,
# every primitive would compile apart (about 0.1 s each).
@pytest.mark.parametrize("name", NAMES)
def test_terms_are_named_batch_means(name):
  means, logvars, observed, a, c = problem(seed=2)
  posteriors = Gaussian(jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32))
  loss, terms = jax.jit(lambda: objective_for(name, AS_ELBO)(
      posteriors, quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c)), jax.random.key(0),
      beta=0.3, mask=jnp.asarray(observed)))()
  chex.assert_shape(loss, ())
  chex.assert_shape(terms["log_likelihoods"], (3,))
  np.testing.assert_allclose(loss, -(terms["reconstruction"] - 0.3 * terms["kl"]), rtol=1e-5)
  assert float(terms["kl"]) > 0.0


def likelihood_problem():
  """Laplace, categorical and Laplace modalities decoded linearly from z."""
  rng = np.random.default_rng(3)
  batch, dim = 2, 2
  image = jnp.asarray(rng.uniform(0, 1, (batch, 4)))
  tokens = jnp.asarray(rng.integers(0, 5, (batch, 3)))
  image2 = jnp.asarray(rng.uniform(0, 1, (batch, 2)))
  weights = (jnp.asarray(rng.normal(0, 1, (dim, 4))), jnp.asarray(rng.normal(0, 1, (dim, 15))),
             jnp.asarray(rng.normal(0, 1, (dim, 2))))
  means = jnp.asarray(rng.normal(0, 1, (3, batch, dim)))
  logvars = jnp.asarray(rng.normal(-0.3, 0.3, (3, batch, dim)))

  def log_likelihood_fn_for(decoder_weights):
    def log_likelihood_fn(z):  # the decoder outputs are z @ W_m
      return jnp.stack([
          dist.laplace_log_likelihood(image, z[0] @ decoder_weights[0]),
          dist.categorical_log_likelihood(tokens, (z[1] @ decoder_weights[1]).reshape(batch, 3, 5)),
          dist.laplace_log_likelihood(image2, z[2] @ decoder_weights[2]),
      ])
    return log_likelihood_fn

  return means, logvars, weights, log_likelihood_fn_for


# One worker runs every gradient check: op-by-op dispatch (the without_jit variants)
# compiles each primitive once per process, and the objectives share most of theirs.
@pytest.mark.xdist_group("objective_gradients")
class GradientTest(chex.TestCase, parameterized.TestCase):
  """Numerical gradient checks w.r.t. means, log-variances and decoder parameters."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*NAMES)
  def test_gradients(self, name):
    with jax.enable_x64(True):
      means, logvars, weights, log_likelihood_fn_for = likelihood_problem()
      mask = jnp.array([[True, True], [True, False], [False, True]])
      objective = objective_for(name, EXACT_GRADIENT)

      @self.variant
      def loss_fn(means, logvars, decoder_weights):
        return objective(Gaussian(means, logvars), log_likelihood_fn_for(decoder_weights),
                         jax.random.key(4), beta=0.8, mask=mask)[0]

      check_grads(loss_fn, (means, logvars, weights), order=1, modes=("rev",), eps=1e-5,
                  atol=1e-4, rtol=1e-4)


def test_masked_modality_is_the_same_as_an_absent_one():
  means, logvars, _, a, c = problem(seed=5)
  posteriors = Gaussian(jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32))
  mask = jnp.asarray(np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]], bool))
  a, c = jnp.asarray(a), jnp.asarray(c)
  for name in ("mvtcae", "mmjsd_poe", "mvtcae_rescale"):  # one joint sample: same noise
    objective = objectives.get_objective(name)

    @jax.jit
    def masked_and_absent():
      masked, _ = objective(posteriors, quadratic_log_likelihood(a, c), jax.random.key(0),
                            beta=0.5, mask=mask)
      absent, _ = objective(jax.tree.map(lambda x: x[:2], posteriors),
                            quadratic_log_likelihood(a[:2], c[:2]), jax.random.key(0),
                            beta=0.5)
      return masked, absent

    masked, absent = masked_and_absent()
    np.testing.assert_allclose(masked, absent, rtol=1e-5)


# One worker: the three Lemma 2 cases share one compiled function.
@pytest.mark.xdist_group("objective_lemmas")
class LemmaTest(parameterized.TestCase):
  """The paper's identities, checked on random experts (each computed in one jitted
  function: the identities are about the values, and op-by-op dispatch of the 10^5-draw
  estimates would compile every primitive separately)."""

  def test_lemma1_mvtcae_is_the_elbo_with_the_dynamic_prior(self):
    # Pointwise: sum_{m=0..M} pi log q~_m(z) = log f(z) + log Z, f the normalised
    # pi-weighted PoE and Z its normaliser; so MVTCAE's regulariser equals
    # E_q[log q - sum_m pi log q~_m] = KL(q || f) - log Z exactly, and MVTCAE's objective
    # is the ELBO with the (unnormalised) geometric-mean prior prod_m q~_m^pi.
    means, logvars, _, a, c = problem(seed=6)

    @jax.jit
    def lemma1(means, logvars, a, c):
      posteriors = Gaussian(means, logvars)
      num_modalities = means.shape[0]
      pi = 1.0 / (num_modalities + 1)
      joint = dist.product_of_experts(posteriors)
      unimodal = dist.unimodal_products(posteriors)
      prior = dist.standard_normal(joint.mean.shape, joint.mean.dtype)
      experts = jax.tree.map(lambda p, u: jnp.concatenate([p[None], u]), prior, unimodal)
      weights = jnp.full(experts.mean.shape[:-1], pi)
      dynamic_prior = dist.product_of_experts(experts, weights=weights, prior_weight=0.0)
      log_normaliser = dist.weighted_product_log_normaliser(experts, weights)

      z = jax.vmap(joint.sample)(jax.random.split(jax.random.key(0), 50_000))  # [S, B, D]
      log_geometric_mean = pi * jnp.sum(experts.log_prob(z[:, None]), axis=1)
      _, terms = objectives.mvtcae(posteriors, quadratic_log_likelihood(a, c),
                                   jax.random.key(1), beta=1.0)
      return {
          "log_geometric_mean": log_geometric_mean,
          "normalised_dynamic_prior": dynamic_prior.log_prob(z) + log_normaliser,
          "kl": terms["kl"],
          "monte_carlo_kl": jnp.mean(joint.log_prob(z) - log_geometric_mean),
          "closed_form_kl": jnp.mean(dist.kl_divergence(joint, dynamic_prior) - log_normaliser),
      }

    with jax.enable_x64(True):
      values = lemma1(*map(jnp.asarray, (means, logvars, a, c)))
    self.assertEqual(values["kl"].dtype, jnp.float64)
    np.testing.assert_allclose(
        values["log_geometric_mean"], values["normalised_dynamic_prior"], rtol=1e-9)
    np.testing.assert_allclose(values["kl"], values["monte_carlo_kl"], rtol=5e-3)
    np.testing.assert_allclose(values["kl"], values["closed_form_kl"], rtol=1e-9)

  @parameterized.parameters(0, 1, 2)
  def test_lemma2_with_a_mixture_posterior_mvtcae_bounds_mmjsd(self, seed):
    # With the posterior r = sum_{m=0..M} pi_m q_m (q_0 = p), the MVTCAE regulariser
    # sum_m pi_m KL(r || q_m) = KL(r || f) - log Z is at most MMJSD's
    # sum_m pi_m KL(q_m || f) - log Z (convexity of KL in its first argument), so
    # L_mvtcae >= L_mmjsd for the same reconstruction and beta >= 0.
    means, logvars, _, a, c = problem(seed=seed)
    with jax.enable_x64(True):
      mvtcae_kl, mmjsd_kl = _lemma2_regularisers(
          *map(jnp.asarray, (means, logvars, a, c)), jax.random.key(seed))
    self.assertEqual(mvtcae_kl.dtype, jnp.float64)
    self.assertLess(float(mvtcae_kl), float(mmjsd_kl))
    # The gap is KL-convexity's, not Monte Carlo noise: it is well above it.
    self.assertGreater(float(mmjsd_kl - mvtcae_kl), 0.05)


@jax.jit
def _lemma2_regularisers(means, logvars, a, c, rng):
  """Lemma 2's two regularisers (both less the same log Z): MVTCAE's, by Monte Carlo
  under the mixture posterior, and MMJSD's, in closed form."""
  posteriors = Gaussian(means, logvars)
  prior = dist.standard_normal(posteriors.mean.shape[1:], posteriors.mean.dtype)
  experts = jax.tree.map(lambda p, q: jnp.concatenate([p[None], q]), prior, posteriors)
  pi = jnp.full(experts.mean.shape[:-1], 1.0 / experts.mean.shape[0])
  mixture = dist.Mixture(experts, pi)
  z = jax.vmap(mixture.sample)(jax.random.split(rng, 100_000))
  mvtcae_kl = jnp.mean(
      mixture.log_prob(z) - jnp.sum(pi * experts.log_prob(z[:, None]), axis=1))
  _, mmjsd_terms = objectives.mmjsd(posteriors, quadratic_log_likelihood(a, c),
                                    jax.random.key(0), beta=1.0)
  log_normaliser = jnp.mean(dist.weighted_product_log_normaliser(experts, pi))
  return mvtcae_kl, mmjsd_terms["kl"] - log_normaliser


def valid_arguments():
  means, logvars, observed, a, c = problem(seed=7)
  posteriors = Gaussian(jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32))
  return posteriors, quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c)), jnp.asarray(observed)


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_fail_at_trace_time_naming_the_argument(name):
  posteriors, log_likelihood_fn, mask = valid_arguments()
  objective = objectives.get_objective(name)

  def traced(posteriors, log_likelihood_fn=log_likelihood_fn, mask=None):
    return jax.jit(lambda p, m: objective(p, log_likelihood_fn, jax.random.key(0), beta=1.0,
                                          mask=m))(posteriors, mask)

  with pytest.raises(ValueError, match=r"posteriors .*\(3, 3, 3\).*\(3, 3, 2\)"):
    traced(Gaussian(posteriors.mean, posteriors.logvar[..., :2]))
  with pytest.raises(ValueError, match=r"posteriors .*\[M, B, D\]"):
    traced(jax.tree.map(lambda x: x[0], posteriors))
  with pytest.raises(ValueError, match=r"mask .*\(3, 3\).*\(2, 3\)"):
    traced(posteriors, mask=mask[:2])
  with pytest.raises(ValueError, match=r"log_likelihood_fn .*\(3, 3\).*\(3,\)"):
    traced(posteriors, lambda z: log_likelihood_fn(z)[:, 0])


@pytest.mark.parametrize("name", NAMES)
def test_negative_beta_fails_naming_the_value(name):
  posteriors, log_likelihood_fn, _ = valid_arguments()
  with pytest.raises(ValueError, match=r"beta=-0\.5"):
    objectives.get_objective(name)(posteriors, log_likelihood_fn, jax.random.key(0), beta=-0.5)


def test_unknown_objective_lists_known_ones():
  with pytest.raises(ValueError, match="'vae'.*mvae, mmvae, mopoe, mmjsd, mmjsd_poe, mvtcae, "
                                       "mvtcae_rescale, crmvae"):
    objectives.get_objective("vae")


def test_the_model_registry_is_the_one_source_of_model_facts():
  assert list(objectives.MODELS) == ["mvae", "mmvae", "mopoe", "mmjsd", "mmjsd_poe", "mvtcae",
                                     "mvtcae_rescale", "crmvae", "mopoe_private",
                                     "crmvae_private", "jmvae", "mmvae_plus"]
  assert [name for name, m in objectives.MODELS.items() if m.private] == [
      "mopoe_private", "crmvae_private", "mmvae_plus"]
  assert [name for name, m in objectives.MODELS.items() if m.auxiliary_priors] == [
      "mmvae_plus"]
  assert tables.PAPER_MODEL_NAMES == tuple(objectives.MODELS)[:8]
  assert [name for name, m in objectives.MODELS.items() if m.joint_encoder] == ["jmvae"]
  assert {name for name, m in objectives.MODELS.items() if m.subset_posterior == "moe"} == {
      "mmvae", "mmjsd", "mmvae_plus"}
  assert all(m.subset_posterior in ("poe", "moe", "jmvae") for m in objectives.MODELS.values())
  assert tables.MODEL_NAMES == tuple(objectives.MODELS)
  assert tables.DISPLAY_NAMES["mopoe"] == "MoPoE-VAE"
  for name, m in objectives.MODELS.items():
    assert objectives.get_objective(name) is m.objective
    assert objectives.subset_posterior_kind(name) == m.subset_posterior
