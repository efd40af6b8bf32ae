"""MMVAE+ (`objectives.mmvae_plus`): its bound and both of its gradients against a
restatement of the formulas, missing modalities, the learned auxiliary priors, and a run.

The bound's Monte Carlo value against an independent float64 reference is in
tests/test_objectives.py, with the other objectives.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import models, objectives
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.model.modality import Modality

M, B, D, P, K, X = 2, 3, 2, 2, 3, 4
BETA = 0.7


def fixed_noise(shape):
  """A deterministic, varied stand-in for N(0, 1) noise of `shape`."""
  size = int(np.prod(shape))
  return 1.3 * jnp.sin(1.0 + 0.7 * jnp.arange(size, dtype=jnp.float32)).reshape(shape)


@pytest.fixture
def deterministic_samples(monkeypatch):
  """Every reparameterised draw is mean + std * fixed_noise(shape), so that a
  restatement of the formula can use the very samples the objective uses."""
  monkeypatch.setattr(Gaussian, "sample",
                      lambda self, rng: self.mean + jnp.exp(0.5 * self.logvar) * fixed_noise(
                          self.mean.shape))


def problem(seed=0):
  rng = np.random.default_rng(seed)
  normal = lambda scale, *shape: jnp.asarray(rng.normal(0.0, scale, shape), jnp.float32)
  phi = {"mean": normal(1.0, M, B, D), "logvar": normal(0.4, M, B, D),
         "w_mean": normal(1.0, M, B, P), "w_logvar": normal(0.4, M, B, P)}
  theta = {"decoder": normal(0.6, M, D + P, X), "auxiliary_logvar": normal(0.4, M, P)}
  data = normal(1.0, M, B, X)
  return phi, theta, data


def log_likelihood_fn_for(theta, data):
  def log_likelihood_fn(rows):  # [M, N, D + P] -> [M, N], N a multiple of B
    copies = rows.shape[1] // B
    targets = jnp.tile(data, (1, copies, 1))
    return -0.5 * jnp.sum((jnp.einsum("mnd,mdx->mnx", rows, theta["decoder"]) - targets) ** 2,
                          axis=-1)
  return log_likelihood_fn


def ours(phi, theta, data, mask=None, estimator="dreg"):
  return objectives.mmvae_plus(
      Gaussian(phi["mean"], phi["logvar"]), log_likelihood_fn_for(theta, data),
      jax.random.key(0), beta=BETA, mask=mask,
      private=Gaussian(phi["w_mean"], phi["w_logvar"]),
      auxiliary=Gaussian(jnp.zeros((M, P)), theta["auxiliary_logvar"]), samples=K,
      estimator=estimator)[0]


def log_normal(x, mean, logvar):
  return -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + logvar + (x - mean) ** 2 / jnp.exp(logvar), -1)


def restated_log_weights(sampled, scored, theta, data):
  """lw [K, M, B] written out source by source and decoder by decoder: the samples from
  the parameters `sampled`, the densities log q with the parameters `scored`."""
  z = sampled["mean"] + jnp.exp(0.5 * sampled["logvar"]) * fixed_noise((K, M, B, D))
  w = sampled["w_mean"] + jnp.exp(0.5 * sampled["w_logvar"]) * fixed_noise((K, M, B, P))
  r = jnp.exp(0.5 * theta["auxiliary_logvar"])[None, None, :, None] * fixed_noise(
      (K, M, M, B, P))
  rows = []
  for m in range(M):
    per_sample = []
    for k in range(K):
      total = 0.0
      for n in range(M):
        w_n = w[k, m] if n == m else r[k, m, n]
        recon = jnp.concatenate([z[k, m], w_n], -1) @ theta["decoder"][n]
        total += -0.5 * jnp.sum((recon - data[n]) ** 2, -1)
      log_moe = jax.nn.logsumexp(jnp.stack([
          log_normal(z[k, m], scored["mean"][n], scored["logvar"][n]) for n in range(M)]),
          axis=0) - jnp.log(M)
      log_ratio = (log_normal(z[k, m], 0.0, 0.0) + log_normal(w[k, m], 0.0, 0.0) - log_moe
                   - log_normal(w[k, m], scored["w_mean"][m], scored["w_logvar"][m]))
      per_sample.append(total + BETA * log_ratio)
    rows.append(jnp.stack(per_sample))
  return jnp.stack(rows, axis=1)


def restated_bound(phi, theta, data):
  lw = restated_log_weights(phi, phi, theta, data)
  return jnp.mean(jax.nn.logsumexp(lw, axis=0) - jnp.log(K))


def test_the_value_and_the_iwae_gradient_are_those_of_the_restated_bound(deterministic_samples):
  phi, theta, data = problem()
  for estimator in ("dreg", "iwae"):
    np.testing.assert_allclose(jax.jit(ours, static_argnames="estimator")(
        phi, theta, data, estimator=estimator), -restated_bound(phi, theta, data), rtol=1e-5)
  expected = jax.jit(jax.grad(lambda p, t: -restated_bound(p, t, data), argnums=(0, 1)))(
      phi, theta)
  got = jax.jit(jax.grad(lambda p, t: ours(p, t, data, estimator="iwae"), argnums=(0, 1)))(
      phi, theta)
  chex.assert_trees_all_close(got, expected, rtol=2e-4, atol=2e-5)


def test_the_dreg_gradient_weights_the_samples_by_v_squared_and_the_rest_by_v(
    deterministic_samples):
  phi, theta, data = problem(seed=1)
  lw, pullback = jax.jit(lambda p, t: jax.vjp(lambda sampled, t: restated_log_weights(
      sampled, jax.lax.stop_gradient(p), t, data), p, t))(phi, theta)
  v = jax.nn.softmax(lw, axis=0)
  scale = -1.0 / (M * B)  # the loss is minus the mean over batch and sources
  through_samples, _ = pullback(scale * v ** 2)
  _, through_the_rest = pullback(scale * v)
  got_phi, got_theta = jax.jit(jax.grad(lambda p, t: ours(p, t, data), argnums=(0, 1)))(
      phi, theta)
  chex.assert_trees_all_close(got_phi, through_samples, rtol=2e-4, atol=2e-5)
  chex.assert_trees_all_close(got_theta, through_the_rest, rtol=2e-4, atol=2e-5)
  # The decoders' gradient is the IWAE's exactly (DReG changes only the encoders').
  iwae = jax.jit(jax.grad(lambda p, t: ours(p, t, data, estimator="iwae"), argnums=(0, 1)))
  iwae_phi, iwae_theta = iwae(phi, theta)
  np.testing.assert_allclose(got_theta["decoder"], iwae_theta["decoder"], rtol=2e-4, atol=2e-5)
  assert not np.allclose(got_phi["mean"], iwae_phi["mean"], rtol=1e-3)


def test_with_one_sample_dreg_is_the_gradient_with_the_encoders_densities_held(
    deterministic_samples):
  phi, theta, data = problem(seed=2)
  with_one = lambda p, t, estimator: objectives.mmvae_plus(
      Gaussian(p["mean"], p["logvar"]), log_likelihood_fn_for(t, data), jax.random.key(0),
      beta=BETA, private=Gaussian(p["w_mean"], p["w_logvar"]),
      auxiliary=Gaussian(jnp.zeros((M, P)), t["auxiliary_logvar"]), samples=1,
      estimator=estimator)[0]
  expected = jax.jit(jax.grad(
      lambda p: -jnp.mean(_one_sample_log_weights(p, phi, theta, data))))(phi)
  got = jax.jit(jax.grad(lambda p: with_one(p, theta, "dreg")))(phi)
  chex.assert_trees_all_close(got, expected, rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(with_one(phi, theta, "dreg"), with_one(phi, theta, "iwae"))


def _one_sample_log_weights(sampled, scored, theta, data):
  global K
  saved, K = K, 1
  try:
    return restated_log_weights(sampled, jax.lax.stop_gradient(scored), theta, data)
  finally:
    K = saved


@pytest.mark.parametrize("estimator", ["dreg", "iwae"])
def test_a_missing_modality_changes_nothing_of_its_example(estimator):
  phi, theta, data = problem(seed=3)
  mask = jnp.array([[True, True, True], [True, False, True]])  # example 1 lacks modality 1
  loss = lambda p, d: objectives.mmvae_plus(
      Gaussian(p["mean"], p["logvar"]), log_likelihood_fn_for(theta, d), jax.random.key(5),
      beta=BETA, mask=mask, private=Gaussian(p["w_mean"], p["w_logvar"]), samples=K,
      estimator=estimator)[0]
  changed = {key: value.at[1, 1].add(3.0) for key, value in phi.items()}
  other_data = data.at[1, 1].add(3.0)
  loss = jax.jit(loss)
  base = loss(phi, data)
  np.testing.assert_allclose(loss(changed, data), base, rtol=1e-6)
  np.testing.assert_allclose(loss(phi, other_data), base, rtol=1e-6)
  grads = jax.jit(jax.grad(loss))(phi, data)
  for value in grads.values():
    np.testing.assert_array_equal(value[1, 1], 0.0)
    assert np.abs(value[0, 1]).sum() > 0


def vector_modalities_and_batch(private_dims, batch_size, seed):
  """Two vector modalities a (5 numbers) and b (4) with private latents of `private_dims`,
  and a batch of `batch_size` standard normal examples."""
  modalities = tuple(Modality(name, "vector", (size,), None, 1.0, kind="vector", private_dim=p)
                     for name, size, p in zip("ab", (5, 4), private_dims))
  rng = np.random.default_rng(seed)
  batch = {m.name: rng.normal(size=(batch_size,) + m.shape).astype(np.float32)
           for m in modalities}
  return modalities, batch


def test_the_model_learns_its_auxiliary_priors():
  modalities, batch = vector_modalities_and_batch((3, 2), 6, seed=0)
  model = models.MultimodalVAE(modalities=modalities, latent_dim=2, auxiliary_priors=True)
  params = models.init_params(model, jax.random.key(0), batch)
  np.testing.assert_array_equal(params["auxiliary_logvar"], np.zeros((2, 3)))
  loss_fn = models.make_loss_fn(model, "mmvae_plus", options={"samples": 2})
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, batch, jax.random.key(1), 1.0)[0]))(params)
  # r_a reaches decoder b's cross-reconstruction of a's samples, and back: every dim a
  # decoder reads has a gradient; b's third dim, which no decoder reads, none.
  assert np.all(grads["auxiliary_logvar"][0] != 0)
  assert np.all(grads["auxiliary_logvar"][1, :2] != 0)
  assert grads["auxiliary_logvar"][1, 2] == 0
  # The plain model has no such parameter, and the loss refuses it.
  plain = models.MultimodalVAE(modalities=modalities, latent_dim=2)
  assert "auxiliary_logvar" not in models.init_params(plain, jax.random.key(0), batch)
  with pytest.raises(ValueError, match="auxiliary priors"):
    models.make_loss_fn(plain, "mmvae_plus")


def test_bad_arguments_name_themselves():
  phi, theta, data = problem()
  with pytest.raises(ValueError, match="estimator must be one of"):
    ours(phi, theta, data, estimator="score")
  with pytest.raises(ValueError, match="samples must be an int >= 1; got 0"):
    objectives.mmvae_plus(Gaussian(phi["mean"], phi["logvar"]),
                          log_likelihood_fn_for(theta, data), jax.random.key(0), beta=1.0,
                          samples=0)
  with pytest.raises(ValueError, match=r"auxiliary must be shaped \[M, P\] = \(2, 2\)"):
    objectives.mmvae_plus(Gaussian(phi["mean"], phi["logvar"]),
                          log_likelihood_fn_for(theta, data), jax.random.key(0), beta=1.0,
                          private=Gaussian(phi["w_mean"], phi["w_logvar"]),
                          auxiliary=Gaussian(jnp.zeros((M, 3)), jnp.zeros((M, 3))))


@pytest.mark.slow
def test_a_run_trains_generates_and_is_evaluated(tmp_path):
  import crmvae_jax
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.evaluation import classifier_training, driver
  from crmvae_jax.training import loop

  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.model = "mmvae_plus"
  config.private_dims = (4, 2)
  config.mmvae_plus_samples = 2
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  model = crmvae_jax.load(workdir)
  assert model.params["auxiliary_logvar"].shape == (2, 4)
  assert np.abs(model.params["auxiliary_logvar"]).sum() > 0  # it was learned
  images = model.test_set.batch(np.arange(3))["mnist"]
  generated = model.generate({"mnist": images}, rng=1)
  assert generated["mnist"].shape == (3, 28, 28, 1) and generated["text"].shape == (3, 8)
  assert model.sample(2, rng=0)["text"].shape == (2, 8)
  classifier_training.train_classifiers(config)
  results = driver.evaluate(config, workdir, verbose=False)
  assert set(results["coherence"]) == {"R", "M<-T", "T<-M"}


def test_in_bfloat16_the_loss_is_float32_s_within_a_percent_and_the_priors_stay_float32():
  modalities, batch = vector_modalities_and_batch((3, 2), 16, seed=1)
  results = {}
  for dtype in models.COMPUTE_DTYPES:
    model = models.MultimodalVAE(modalities=modalities, latent_dim=2, auxiliary_priors=True,
                                 compute_dtype=dtype)
    params = models.init_params(model, jax.random.key(0), batch)
    loss_fn = models.make_loss_fn(model, "mmvae_plus", options={"samples": 3})
    (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, batch, jax.random.key(2), 1.0)
    results[dtype] = loss, grads
  np.testing.assert_allclose(results["bfloat16"][0], results["float32"][0], rtol=1e-2)
  assert results["bfloat16"][1]["auxiliary_logvar"].dtype == jnp.float32


@pytest.mark.slow
def test_a_sweep_of_two_seeds_trains_each_replica_as_its_single_run(tmp_path):
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.training import loop

  def tiny(seeds=(), seed=0):
    config = config_lib.resize(config_lib.quickstart_config(), "tiny")
    config.model, config.private_dims, config.mmvae_plus_samples = "mmvae_plus", (2, 2), 2
    config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 6
    config.seed, config.sweep.seeds = seed, seeds
    return config

  sweep = loop.train_and_evaluate(tiny(seeds=(0, 1)), str(tmp_path / "sweep"))
  [single] = loop.train_and_evaluate(tiny(seed=1), str(tmp_path / "single"))
  np.testing.assert_allclose(sweep[1]["test/loss"], single["test/loss"], rtol=1e-4)
  assert sweep[0]["test/loss"] != sweep[1]["test/loss"]


def test_generation_may_draw_a_missing_modality_s_private_latent_from_its_auxiliary_prior():
  from crmvae_jax.model.inference import TrainedModel

  modalities, batch = vector_modalities_and_batch((3, 3), 2000, seed=0)
  model = models.MultimodalVAE(modalities=modalities, latent_dim=2, auxiliary_priors=True)
  params = models.init_params(model, jax.random.key(0), batch)
  params["auxiliary_logvar"] = jnp.log(jnp.array([[1.0, 1.0, 1.0], [9.0, 0.25, 4.0]]))
  trained = TrainedModel(model, params, "moe", batch_size=1000)
  given_a = {"a": batch["a"]}
  auxiliary = trained.private_latents(given_a, rng=1, private_prior="auxiliary")
  prior = trained.private_latents(given_a, rng=1)
  # b is not given: its w is drawn from r_b (standard deviations 3, 0.5, 2) or N(0, I).
  np.testing.assert_allclose(auxiliary[1].std(axis=0), [3.0, 0.5, 2.0], rtol=0.08)
  np.testing.assert_allclose(prior[1].std(axis=0), [1.0, 1.0, 1.0], rtol=0.08)
  np.testing.assert_array_equal(auxiliary[0], prior[0])  # a's own posterior either way
  generated = trained.generate(given_a, rng=1, private_prior="auxiliary")
  assert generated["b"].shape == (2000, 4)
  plain = TrainedModel(models.MultimodalVAE(modalities=modalities, latent_dim=2),
                       {k: v for k, v in params.items() if k != "auxiliary_logvar"}, "moe")
  with pytest.raises(ValueError, match="needs a model with learned auxiliary priors"):
    plain.private_latents(given_a, rng=1, private_prior="auxiliary")
  with pytest.raises(ValueError, match="pass 'prior' or 'auxiliary'"):
    trained.private_latents(given_a, rng=1, private_prior="r")
