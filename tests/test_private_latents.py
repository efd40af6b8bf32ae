"""Private (modality-specific) latents: the objectives with them against their closed
forms, their exact reduction to the shared models without them, the model that encodes and
decodes them, and a run that trains, generates and evaluates with them."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import models, objectives
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.model.modality import Modality

from test_objectives import problem, reference_objective  # the shared models' closed forms

PRIVATE = {"crmvae_private": "crmvae", "mopoe_private": "mopoe"}


def private_problem(seed=0, private_dim=2):
  means, logvars, observed, a, c = problem(seed)
  rng = np.random.default_rng(seed + 100)
  num_modalities, batch, _ = means.shape
  w_means = rng.normal(0.0, 1.0, (num_modalities, batch, private_dim))
  w_logvars = rng.normal(-0.5, 0.5, (num_modalities, batch, private_dim))
  b = rng.uniform(0.3, 1.0, (num_modalities, private_dim))
  e = rng.normal(0.0, 1.0, (num_modalities, private_dim))
  return means, logvars, observed, a, c, w_means, w_logvars, b, e


def separable_log_likelihood(a, c, b, e, dim):
  """l_m(z, w) = -1/2 sum_d a (z_d - c)^2 - 1/2 sum_p b (w_p - e)^2 on rows [.., D + P]."""
  def log_likelihood_fn(rows):  # [M, B, D + P] -> [M, B]
    z, w = rows[..., :dim], rows[..., dim:]
    return (-0.5 * jnp.sum(a[:, None] * (z - c[:, None]) ** 2, axis=-1)
            - 0.5 * jnp.sum(b[:, None] * (w - e[:, None]) ** 2, axis=-1))
  return log_likelihood_fn


def reference_private(name, means, variances, observed, a, c, w_means, w_variances, b, e, beta):
  """The closed form of one batch element: the shared model's, plus each observed
  modality's expected private term (read by both of CRMVAE's reconstructions, pi each;
  once by MoPoE's, whose subset weights sum to 1), minus beta times its KL to N(0, I)."""
  shared = reference_objective(PRIVATE[name], means, variances, observed, a, c, beta)
  obs = [m for m in range(len(means)) if observed[m]]
  pi = 1.0 / (len(obs) + 1)
  coefficient = 2 * pi if name == "crmvae_private" else 1.0
  private = 0.0
  for m in obs:
    expected = -0.5 * np.sum(b[m] * ((w_means[m] - e[m]) ** 2 + w_variances[m]))
    kl = 0.5 * np.sum(w_variances[m] + w_means[m] ** 2 - 1.0 - np.log(w_variances[m]))
    private += coefficient * expected - beta * kl
  return shared + private


@pytest.mark.parametrize("name, estimator", [
    ("crmvae_private", "stratified"), ("mopoe_private", "stratified"),
    ("mopoe_private", "sampled")])
def test_with_private_latents_the_monte_carlo_value_converges_to_the_closed_form(
    name, estimator):
  means, logvars, observed, a, c, w_means, w_logvars, b, e = private_problem()
  beta, dim = 0.7, means.shape[-1]
  exact = np.mean([reference_private(
      name, means[:, k], np.exp(logvars[:, k]), observed[:, k], a, c, w_means[:, k],
      np.exp(w_logvars[:, k]), b, e, beta) for k in range(3)])
  copies = 2000
  tile = lambda x: jnp.asarray(np.tile(x, (1, copies) + (1,) * (x.ndim - 2)), jnp.float32)
  posteriors, private = Gaussian(tile(means), tile(logvars)), Gaussian(tile(w_means),
                                                                        tile(w_logvars))
  log_likelihood_fn = separable_log_likelihood(*map(jnp.asarray, (a, c, b, e)), dim)
  loss_fn = jax.jit(lambda rng: objectives.get_objective(name)(
      posteriors, log_likelihood_fn, rng, beta=beta, mask=tile(observed).astype(bool),
      mixture_estimator=estimator, private=private)[0])
  losses = np.array([loss_fn(jax.random.key(seed)) for seed in range(6)])
  estimate, standard_error = losses.mean(), losses.std(ddof=1) / np.sqrt(len(losses))
  assert standard_error < 0.01 * abs(exact)
  assert abs(estimate + exact) < 5 * standard_error + 1e-3 * abs(exact)


@pytest.mark.parametrize("name", list(PRIVATE))
def test_without_private_latents_each_is_its_shared_model_bit_for_bit(name):
  means, logvars, observed, a, c = problem(seed=4)
  posteriors = Gaussian(jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32))
  log_likelihood_fn = separable_log_likelihood(
      jnp.asarray(a), jnp.asarray(c), jnp.zeros((3, 0)), jnp.zeros((3, 0)), means.shape[-1])
  mask = jnp.asarray(observed)

  def run(objective_name, **private):
    return jax.jit(lambda rng: objectives.get_objective(objective_name)(
        posteriors, log_likelihood_fn, rng, beta=0.6, mask=mask,
        mixture_estimator="sampled" if "mopoe" in objective_name else "stratified",
        **private))(jax.random.key(3))

  shared_loss, shared_terms = run(PRIVATE[name])
  empty = Gaussian(posteriors.mean[..., :0], posteriors.logvar[..., :0])
  for private in ({}, {"private": None}, {"private": empty}):
    loss, terms = run(name, **private)
    np.testing.assert_array_equal(loss, shared_loss)
    chex.assert_trees_all_equal(terms, shared_terms)


@pytest.mark.xdist_group("objective_gradients")
@pytest.mark.parametrize("name", list(PRIVATE))
def test_gradients_reach_the_private_posteriors(name):
  with jax.enable_x64(True):
    means, logvars, observed, a, c, w_means, w_logvars, b, e = private_problem(seed=5)
    log_likelihood_fn = separable_log_likelihood(*map(jnp.asarray, (a, c, b, e)),
                                                 means.shape[-1])

    # The shared posteriors' gradients are test_objectives.py's (the same code path).
    def loss_fn(w_means, w_logvars):
      return objectives.get_objective(name)(
          Gaussian(jnp.asarray(means), jnp.asarray(logvars)), log_likelihood_fn,
          jax.random.key(4), beta=0.8, mask=jnp.asarray(observed),
          private=Gaussian(w_means, w_logvars))[0]

    arguments = (jnp.asarray(w_means), jnp.asarray(w_logvars))
    check_grads(jax.jit(loss_fn), arguments, order=1, modes=("rev",), eps=1e-5, atol=1e-4,
                rtol=1e-4)
    # A modality's private posterior gets no gradient where the modality is missing.
    gradient = jax.jit(jax.grad(loss_fn))(*arguments)
    np.testing.assert_array_equal(np.asarray(gradient)[~observed], 0.0)


def test_the_model_encodes_and_decodes_private_latents_per_modality():
  modalities = (Modality("a", "vector", (5,), None, 1.0, kind="vector", private_dim=3),
                Modality("b", "vector", (4,), None, 1.0, kind="vector"))
  model = models.MultimodalVAE(modalities=modalities, latent_dim=2)
  batch = {"a": np.ones((6, 5), np.float32), "b": np.ones((6, 4), np.float32)}
  params = models.init_params(model, jax.random.key(0), batch)
  inputs = models.model_inputs(modalities, batch)
  shared, private = model.apply({"params": params}, inputs, method=model.encode_private)
  chex.assert_shape(shared.mean, (2, 6, 2))
  chex.assert_shape(private.mean, (2, 6, 3))
  # Modality b has no private latent: its row is the prior's, N(0, 1).
  np.testing.assert_array_equal(private.mean[1], 0.0)
  np.testing.assert_array_equal(private.logvar[1], 0.0)
  chex.assert_trees_all_equal(shared, model.apply({"params": params}, inputs,
                                                  method=model.encode))
  z = np.random.default_rng(0).normal(size=(2, 6, 2)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(2, 6, 3)).astype(np.float32)
  decode = lambda rows: model.apply({"params": params}, jnp.asarray(rows), method=model.decode)
  with_w = decode(np.concatenate([z, w], -1))
  other_w = decode(np.concatenate([z, w + 1.0], -1))
  assert not np.allclose(with_w[0], other_w[0])  # a reads its w
  np.testing.assert_array_equal(with_w[1], other_w[1])  # b reads none
  # Without w, every w_m is its prior's mean.
  chex.assert_trees_all_equal(decode(z), decode(np.concatenate([z, 0 * w], -1)))
  # The networks of a private modality have D + P_m inputs or outputs; the others D.
  assert params["decoders_0"]["TorchDense_0"]["kernel"].shape[0] == 5
  assert params["decoders_1"]["TorchDense_0"]["kernel"].shape[0] == 2


def test_without_private_dims_the_parameters_are_those_of_before():
  modalities = (Modality("a", "vector", (5,), None, 1.0, kind="vector"),)
  batch = {"a": np.ones((2, 5), np.float32)}
  plain = models.init_params(models.MultimodalVAE(modalities=modalities, latent_dim=3),
                             jax.random.key(0), batch)
  zero = models.init_params(models.MultimodalVAE(
      modalities=(Modality("a", "vector", (5,), None, 1.0, kind="vector", private_dim=0),),
      latent_dim=3), jax.random.key(0), batch)
  chex.assert_trees_all_equal(plain, zero)


@pytest.mark.slow
def test_a_run_with_private_latents_trains_resumes_generates_and_is_evaluated(tmp_path):
  import crmvae_jax
  from crmvae_jax.common.errors import UserError
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.evaluation import classifier_training, driver
  from crmvae_jax.training import loop

  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.model = "crmvae_private"
  config.private_dims = (4, 2)
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  model = crmvae_jax.load(workdir)
  assert [m.private_dim for m in model.modalities] == [4, 2]
  images = model.test_set.batch(np.arange(3))["mnist"]
  # Given modalities read their own w, the others their prior's: mean or sample.
  mean = model.generate({"mnist": images}, rng=None)
  again = model.generate({"mnist": images}, rng=None)
  chex.assert_trees_all_equal(mean, again)
  sampled = model.generate({"mnist": images}, rng=1)
  assert sampled["mnist"].shape == (3, 28, 28, 1) and sampled["text"].shape == (3, 8)
  w = model.private_latents({"mnist": images})
  chex.assert_shape(w, (2, 3, 4))
  np.testing.assert_array_equal(w[1], 0.0)  # text not given: its prior's mean
  assert np.abs(w[0]).sum() > 0
  assert np.all(np.isfinite(model.log_likelihood({"mnist": images}, num_samples=4)))
  assert model.sample(2, rng=0)["text"].shape == (2, 8)
  # Evaluated like any run, the log-likelihood for every proposal included.
  classifier_training.train_classifiers(config)
  results = driver.evaluate(config, workdir, verbose=False)
  assert set(results["coherence"]) == {"R", "M<-T", "T<-M"}
  assert set(results["log_likelihood"]) == {"M+T", "M", "T"}
  assert all(np.isfinite(value) for value in results["log_likelihood"].values())
  # Resuming with other private sizes is another model.
  config.private_dims = (4, 3)
  config.num_train_steps = 8
  with pytest.raises(UserError, match=r"private_dims=\(4, 2\) \(asked: \(4, 3\)\)"):
    loop.train_and_evaluate(config, workdir)


@pytest.mark.parametrize("fields, message", [
    ({"model": "crmvae", "private_dims": (4, 4)},
     r"--config.model=crmvae has no private latents, but --config.private_dims=\(4, 4\) asks "
     r"for them; use one of mopoe_private, crmvae_private"),
    ({"model": "crmvae_private", "private_dims": (4, -1)}, "private_dims must be a tuple of"),
    # MMVAE+ has private latents by definition, and settings of its own.
    ({"model": "mmvae_plus"}, r"mmvae_plus has private latents by definition; give each "
                              r"modality its size, e.g. --config.private_dims='\(8,8\)'"),
    ({"model": "mmvae_plus", "private_dims": (0, 0)}, "private latents by definition"),
    ({"model": "mmvae_plus", "private_dims": (4, 4), "mmvae_plus_samples": 0},
     "mmvae_plus_samples"),
    ({"model": "mmvae_plus", "private_dims": (4, 4), "mmvae_plus_estimator": "reinforce"},
     "mmvae_plus_estimator"),
])
def test_private_dims_that_cannot_train_are_refused_before_anything_runs(fields, message):
  from crmvae_jax.common.errors import UserError
  from crmvae_jax.config import defaults as config_lib, validation

  config = config_lib.quickstart_config()
  for field, value in fields.items():
    config[field] = value
  with pytest.raises(UserError, match=message):
    validation.validate_config(config)


def test_private_dims_of_another_length_than_the_modalities_are_refused():
  from crmvae_jax.common.errors import UserError
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.data import quickstart
  from crmvae_jax.training import state

  config = config_lib.quickstart_config()
  config.model, config.private_dims = "crmvae_private", (4, 4, 4)
  train_set, _ = quickstart.load(config.data)
  with pytest.raises(UserError, match=r"private_dims has 3 entries for the 2 modalities "
                     r"\['mnist', 'text'\]; pass one per modality, e.g. "
                     r"--config.private_dims='\(8,8\)'"):
    state.create_model(config, train_set)


# The ex-post sampler (model/samplers.py).

def test_the_gaussian_mixture_sampler_recovers_a_known_mixture_and_samples_it():
  from crmvae_jax.model import samplers

  rng = np.random.default_rng(0)
  centres = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 5.0]])
  labels = rng.integers(0, 3, 6000)
  latents = centres[labels] + 0.5 * rng.normal(size=(6000, 2))
  sampler = samplers.GaussianMixtureSampler.fit(latents, num_components=3, seed=0)
  order = np.argsort(sampler.means[:, 0] + 0.1 * sampler.means[:, 1])
  np.testing.assert_allclose(sampler.means[order], centres[[1, 2, 0]], atol=0.05)
  np.testing.assert_allclose(sampler.covariances, np.broadcast_to(0.25 * np.eye(2),
                                                                  (3, 2, 2)), atol=0.03)
  z = sampler.sample(30000, jax.random.key(1))
  assert z.dtype == np.float32 and z.shape == (30000, 2)
  np.testing.assert_allclose(z.mean(0), latents.mean(0), atol=0.1)
  np.testing.assert_allclose(np.cov(z.T), np.cov(latents.T), atol=0.2)  # variances 6 and 11
  np.testing.assert_array_equal(z, sampler.sample(30000, jax.random.key(1)))  # seeded
  # The density integrates to one on a grid and peaks at the centres.
  grid = np.stack(np.meshgrid(np.linspace(-9, 9, 181), np.linspace(-6, 10, 161)), -1)
  density = np.exp(sampler.log_density(grid.reshape(-1, 2)))
  assert abs(density.sum() * 0.1 * 0.1 - 1.0) < 0.01
  with pytest.raises(ValueError, match="needs latents \\[N, D\\] with N >= 3"):
    samplers.GaussianMixtureSampler.fit(latents[:2], num_components=3)


@pytest.mark.slow
def test_a_run_samples_from_its_ex_post_sampler_and_evaluation_reports_both(tmp_path):
  import crmvae_jax
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.evaluation import classifier_training, driver
  from crmvae_jax.reporting import summaries
  from crmvae_jax.training import loop

  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  config.eval.extra_metrics = ("ex_post_sampler",)
  config.eval.ex_post_sampler.components = 3
  config.eval.ex_post_sampler.examples = 300
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  model = crmvae_jax.load(workdir)
  sampler = model.fit_sampler(num_components=3, max_examples=300)
  assert sampler.means.shape == (3, model.latent_dim)
  # Its samples lie where the posterior means are, not spread as N(0, I).
  z = sampler.sample(2000, jax.random.key(0))
  batch = model.train_set.batch(np.arange(300))
  means = model.latents({name: batch[name] for name in model.names})
  np.testing.assert_allclose(z.mean(0), means.mean(0), atol=0.15)
  drawn = model.sample(4, rng=0, sampler=sampler)
  assert drawn["mnist"].shape == (4, 28, 28, 1)
  assert not np.array_equal(drawn["mnist"], model.sample(4, rng=0)["mnist"])
  classifier_training.train_classifiers(config)
  results = driver.evaluate(config, workdir, verbose=False)
  assert set(results["ex_post_sampler"]) == {"R (prior)", "R (GMM)", "cFD M (prior)",
                                             "cFD M (GMM)"}
  # R from the prior is coherence's R, judged on other samples of the same size.
  assert all(0.0 <= results["ex_post_sampler"][f"R ({s})"] <= 1.0 for s in ("prior", "GMM"))
  assert "ex-post sampler" in summaries.tables_markdown([results])


def _without_private_columns(params, modalities, latent_dim):
  """The parameters of the same vector networks without private latents: the encoders'
  heads keep their first D outputs, the decoders' first layers their first D inputs."""
  plain = jax.tree.map(lambda a: a, params)
  for m, modality in enumerate(modalities):
    heads = plain[f"encoders_{m}"]["LatentHeads_0"]
    for head in ("mean", "logvar"):
      heads[head] = {"kernel": heads[head]["kernel"][:, :latent_dim],
                     "bias": heads[head]["bias"][:latent_dim]}
    first = plain[f"decoders_{m}"]["TorchDense_0"]
    first["kernel"] = first["kernel"][:latent_dim]
  return plain


def test_the_log_likelihood_of_unread_private_latents_is_that_of_the_model_without_them():
  """Private latents whose posteriors are the prior and that no decoder reads change
  neither the samples of z nor the weights: the estimate is the shared model's."""
  from crmvae_jax.model.inference import TrainedModel

  latent_dim = 2
  plain_modalities = (Modality("a", "vector", (5,), None, 1.0, kind="vector"),
                      Modality("b", "vector", (4,), None, 1.0, kind="vector"))
  modalities = tuple(dataclasses.replace(m, private_dim=p)
                     for m, p in zip(plain_modalities, (3, 2)))
  rng = np.random.default_rng(0)
  batch = {"a": rng.normal(size=(6, 5)).astype(np.float32),
           "b": rng.normal(size=(6, 4)).astype(np.float32)}
  model = models.MultimodalVAE(modalities=modalities, latent_dim=latent_dim)
  params = models.init_params(model, jax.random.key(0), batch)
  for m in range(2):  # q(w_m|x_m) = N(0, I), and no decoder reads w_m
    heads = params[f"encoders_{m}"]["LatentHeads_0"]
    for head in ("mean", "logvar"):
      heads[head]["kernel"] = heads[head]["kernel"].at[:, latent_dim:].set(0.0)
      heads[head]["bias"] = heads[head]["bias"].at[latent_dim:].set(0.0)
    first = params[f"decoders_{m}"]["TorchDense_0"]
    first["kernel"] = first["kernel"].at[latent_dim:].set(0.0)
  plain = models.MultimodalVAE(modalities=plain_modalities, latent_dim=latent_dim)
  private_model = TrainedModel(model, params, "poe")
  plain_model = TrainedModel(plain, _without_private_columns(params, modalities, latent_dim),
                             "poe")
  for proposal in (["a", "b"], ["a"]):
    with_private = private_model.log_likelihood(batch, 64, rng=3, proposal=proposal)
    without = plain_model.log_likelihood(batch, 64, rng=3, proposal=proposal)
    np.testing.assert_allclose(with_private, without, rtol=1e-5)
  # With posteriors of their own the private latents do change it.
  params_read = jax.tree.map(lambda a: a, params)
  params_read["decoders_0"]["TorchDense_0"]["kernel"] = (
      params_read["decoders_0"]["TorchDense_0"]["kernel"].at[latent_dim:].set(1.0))
  read = TrainedModel(model, params_read, "poe").log_likelihood(batch, 64, rng=3)
  assert not np.allclose(read, private_model.log_likelihood(batch, 64, rng=3), rtol=1e-3)
