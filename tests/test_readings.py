"""The readings the paper leaves open (objectives.READINGS): each non-default reading
against its own float64 formula, the evaluation posterior it implies, the config
switches, and the text redraw."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.model import models, objectives
from crmvae_jax.config import validation
from crmvae_jax.data import text
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.common.errors import UserError
from test_objectives import _expected_l, _kl, _poe, problem, quadratic_log_likelihood


def reference(name, means, variances, observed, a, c, beta, readings):
  """One batch element's objective under `readings`, written out from the docstrings."""
  dim, num_modalities = means.shape[1], len(means)
  prior = (np.zeros(dim), np.ones(dim))
  obs = [m for m in range(num_modalities) if observed[m]]
  pi = 1.0 / (len(obs) + 1)
  with_prior = float(readings.get("prior_expert", True))
  joint = _poe(means, variances, obs, prior_weight=with_prior)
  unimodal = {m: _poe(means, variances, [m], prior_weight=with_prior) for m in obs}
  recon = lambda q: sum(_expected_l(m, q, a, c) for m in obs)
  coordination_kl = pi * (_kl(joint, prior) + sum(_kl(joint, unimodal[m]) for m in obs))
  if name == "mvae":
    return (recon(joint) - beta * _kl(joint, prior)
            + sum(_expected_l(m, unimodal[m], a, c) - beta * _kl(unimodal[m], prior) for m in obs))
  if name == "mmjsd_poe":
    dynamic_prior = _poe(means, variances, obs, weights=np.full(num_modalities, pi),
                         prior_weight=pi)
    experts = {m: (means[m], variances[m]) for m in obs}
    js_kl = pi * (_kl(prior, dynamic_prior) + sum(_kl(experts[m], dynamic_prior) for m in obs))
    return recon(joint) - beta * js_kl
  if name == "mvtcae":
    return recon(joint) - beta * coordination_kl
  if name == "mvtcae_rescale":
    factor = {"2pi": 2 * pi, "pi/2": pi / 2}[readings.get("mvtcae_rescale_factor", "2pi")]
    return factor * recon(joint) - beta * coordination_kl
  if name == "crmvae":
    coefficient = {"pi": pi, "pi/2": pi / 2}[readings.get("crmvae_reconstruction", "pi")]
    return (coefficient * (recon(joint) + sum(_expected_l(m, unimodal[m], a, c) for m in obs))
            - beta * coordination_kl)
  if name == "mopoe":  # "full_only": the prior joins the full set's PoE only
    every = readings.get("mopoe_subset_prior", "every") == "every"
    subsets = [s for r in range(1, len(obs) + 1) for s in itertools.combinations(obs, r)]
    poe = lambda s: _poe(means, variances, s,
                         prior_weight=float(every or len(s) == num_modalities))
    return np.mean([recon(poe(s)) - beta * _kl(poe(s), prior) for s in subsets])
  if name == "mmjsd":  # mmjsd_prior_in_mixture: pi p + sum_m pi q_m, else sum_m q_m / |S|
    dynamic_prior = _poe(means, variances, obs, weights=np.full(num_modalities, pi),
                         prior_weight=pi)
    experts = {m: (means[m], variances[m]) for m in obs}
    js_kl = pi * (_kl(prior, dynamic_prior) + sum(_kl(experts[m], dynamic_prior) for m in obs))
    mixture_recon = (pi * recon(prior) + pi * sum(recon(experts[m]) for m in obs)
                     if readings.get("mmjsd_prior_in_mixture", False)
                     else np.mean([recon(experts[m]) for m in obs]))
    return mixture_recon - beta * js_kl
  raise KeyError(name)


NON_DEFAULT = [
    *[(name, {"prior_expert": False})
      for name in ("mvae", "mmjsd_poe", "mvtcae", "mvtcae_rescale", "crmvae")],
    ("crmvae", {"crmvae_reconstruction": "pi/2"}),
    ("crmvae", {"crmvae_reconstruction": "pi/2", "prior_expert": False}),
    ("mvtcae_rescale", {"mvtcae_rescale_factor": "pi/2"}),
    ("mopoe", {"mopoe_subset_prior": "full_only"}),
    ("mmjsd", {"mmjsd_prior_in_mixture": True}),
]


@pytest.mark.parametrize("name, readings", NON_DEFAULT)
def test_a_non_default_reading_converges_to_its_formula(name, readings):
  means, logvars, observed, a, c = problem(num_modalities=3, dim=3)
  beta = 0.7
  exact = np.mean([reference(name, means[:, b], np.exp(logvars[:, b]), observed[:, b], a, c,
                             beta, readings) for b in range(3)])
  default = np.mean([reference(name, means[:, b], np.exp(logvars[:, b]), observed[:, b], a, c,
                               beta, {}) for b in range(3)])
  copies = 2000
  tile = lambda x: jnp.asarray(np.tile(x, (1, copies) + (1,) * (x.ndim - 2)), jnp.float32)
  posteriors = Gaussian(tile(means), tile(logvars))
  mask = tile(observed).astype(bool)
  objective = objectives.get_objective(name)
  arguments = objectives.reading_arguments(name, readings)
  assert arguments == readings
  loss_fn = jax.jit(lambda rng: objective(
      posteriors, quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c)), rng, beta=beta,
      mask=mask, **arguments)[0])
  losses = np.array([loss_fn(jax.random.key(seed)) for seed in range(6)])
  estimate, standard_error = losses.mean(), losses.std(ddof=1) / np.sqrt(len(losses))
  assert abs(estimate + exact) < 5 * standard_error + 1e-3 * abs(exact)
  assert abs(exact - default) > 10 * standard_error  # the reading changes the value


def test_reading_arguments_pick_each_objectives_own_and_refuse_unknown_ones():
  readings = config_lib.readings_config().to_dict()
  assert objectives.reading_arguments("crmvae", readings) == {
      "prior_expert": True, "crmvae_reconstruction": "pi"}
  assert objectives.reading_arguments("mmvae", readings) == {}
  assert objectives.reading_arguments("mopoe", readings) == {"mopoe_subset_prior": "every"}
  with pytest.raises(ValueError, match="Unknown readings \\['prior'\\]"):
    objectives.reading_arguments("crmvae", {"prior": False})
  with pytest.raises(ValueError, match="crmvae_reconstruction must be one of"):
    objectives.crmvae(Gaussian(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4))),
                      lambda z: jnp.zeros(z.shape[:2]), jax.random.key(0), beta=1.0,
                      crmvae_reconstruction="2pi")


def test_paper_defaults_are_the_config_defaults():
  readings = config_lib.readings_config()
  assert {name: choices[0] for name, choices in objectives.READINGS.items()} == readings.to_dict()


@pytest.mark.parametrize("name, readings, kind", [
    ("crmvae", {}, "poe"), ("crmvae", {"prior_expert": False}, "poe_without_prior"),
    ("mopoe", {"mopoe_subset_prior": "full_only"}, "poe_without_prior"),
    ("mopoe", {"prior_expert": False}, "poe"),  # mopoe has no prior_expert reading
    ("mmvae", {"prior_expert": False}, "moe"), ("mmjsd", {"mmjsd_prior_in_mixture": True}, "moe"),
])
def test_evaluation_posterior_follows_the_training_reading(name, readings, kind):
  assert objectives.subset_posterior_kind(name, readings) == kind


def test_poe_without_prior_is_the_product_of_the_subset_only():
  rng = np.random.default_rng(0)
  posteriors = Gaussian(jnp.asarray(rng.normal(size=(3, 2, 4)), jnp.float32),
                        jnp.asarray(rng.normal(size=(3, 2, 4)), jnp.float32))
  subset = jnp.array([True, False, True])
  without = models.subset_posterior(posteriors, subset, "poe_without_prior")
  with_prior = models.subset_posterior(posteriors, subset, "poe")
  precision = np.exp(-np.asarray(posteriors.logvar))[[0, 2]]
  np.testing.assert_allclose(np.exp(-np.asarray(without.logvar)), precision.sum(0), rtol=1e-5)
  np.testing.assert_allclose(np.exp(-np.asarray(with_prior.logvar)), precision.sum(0) + 1,
                             rtol=1e-5)


def test_a_bad_reading_names_its_flag():
  config = config_lib.quickstart_config()
  config.readings.mopoe_subset_prior = "full"
  with pytest.raises(UserError, match=r"--config.readings.mopoe_subset_prior\); known "
                     r"readings: every, full_only; did you mean "
                     r"--config.readings.mopoe_subset_prior=full_only\?"):
    validation.validate_config(config)


def test_redrawn_texts_keep_their_names_at_every_allowed_start():
  labels = np.tile(np.arange(10), 200)
  ids = text.digit_texts(labels, np.random.default_rng(0))
  redraw_starts = jax.jit(text.redraw_starts)  # compiled once, for both draws
  redrawn = np.asarray(redraw_starts(ids, jax.random.key(1)))
  assert redrawn.dtype == np.int32 and redrawn.shape == ids.shape
  assert [s.strip() for s in text.decode(redrawn)] == [text.DIGIT_NAMES[d] for d in labels]
  starts = np.argmax(redrawn != text.SPACE_ID, axis=1)
  for digit in range(10):  # uniform over 0..L-1-len, as digit_texts draws them
    allowed = text.TEXT_LENGTH - len(text.DIGIT_NAMES[digit])
    counts = np.bincount(starts[labels == digit], minlength=allowed)
    assert len(counts) == allowed and counts.min() > 0.5 * 200 / allowed
  moved = np.mean(np.argmax(ids != text.SPACE_ID, axis=1) != starts)
  assert moved > 0.5  # most names changed position
  again = np.asarray(redraw_starts(ids, jax.random.key(2)))
  assert not np.array_equal(again, redrawn)
