"""JMVAE-kl: its objective against its closed form and against MVTCAE's coordination form,
its joint encoder, and a run that trains, infers from any subset and is evaluated."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from crmvae_jax.model import models, objectives
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.model.modality import Modality

from test_objectives import _kl, problem, quadratic_log_likelihood


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_with_the_product_as_its_joint_it_is_mvtcae_without_the_prior_expert(num_modalities):
  # The seed paper's remark: JMVAE's KL terms are MVTCAE's coordination terms; with
  # alpha = 1 and beta pi they weigh alike.
  means, logvars, _, a, c = problem(seed=6)
  means, logvars, a, c = (x[:num_modalities] for x in (means, logvars, a, c))
  posteriors = Gaussian(jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32))
  log_likelihood_fn = quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c))
  beta, pi = 0.9, 1.0 / (num_modalities + 1)
  rng = jax.random.key(2)
  mvtcae = jax.jit(lambda: objectives.mvtcae(posteriors, log_likelihood_fn, rng, beta=beta,
                                             prior_expert=False))()
  jmvae = jax.jit(lambda: objectives.jmvae(posteriors, log_likelihood_fn, rng, beta=beta * pi,
                                           alpha=1.0))()
  np.testing.assert_allclose(jmvae[0], mvtcae[0], rtol=1e-6)
  np.testing.assert_allclose(jmvae[1]["reconstruction"], mvtcae[1]["reconstruction"], rtol=1e-6)
  np.testing.assert_allclose(jmvae[1]["kl"] * pi, mvtcae[1]["kl"], rtol=1e-6)


def test_its_monte_carlo_value_converges_to_its_closed_form():
  means, logvars, observed, a, c = problem(seed=7)
  rng = np.random.default_rng(7)
  joint_means = rng.normal(0.0, 1.0, means.shape[1:])
  joint_logvars = rng.normal(-0.5, 0.3, means.shape[1:])
  beta, alpha = 0.7, 0.3
  exact = []
  for b in range(3):
    joint = (joint_means[b], np.exp(joint_logvars[b]))
    obs = [m for m in range(3) if observed[m, b]]
    reconstruction = sum(-0.5 * np.sum(a[m] * ((joint[0] - c[m]) ** 2 + joint[1])) for m in obs)
    prior = (np.zeros(3), np.ones(3))
    exact.append(reconstruction - beta * _kl(joint, prior) - beta * alpha * sum(
        _kl(joint, (means[m, b], np.exp(logvars[m, b]))) for m in obs))
  copies = 2000
  tile = lambda x: jnp.asarray(np.tile(x, (1, copies) + (1,) * (x.ndim - 2)), jnp.float32)
  tile_joint = lambda x: jnp.asarray(np.tile(x, (copies, 1)), jnp.float32)
  loss_fn = jax.jit(lambda rng: objectives.jmvae(
      Gaussian(tile(means), tile(logvars)), quadratic_log_likelihood(jnp.asarray(a),
                                                                     jnp.asarray(c)),
      rng, beta=beta, alpha=alpha, mask=tile(observed).astype(bool),
      joint=Gaussian(tile_joint(joint_means), tile_joint(joint_logvars)))[0])
  losses = np.array([loss_fn(jax.random.key(seed)) for seed in range(6)])
  estimate, standard_error = losses.mean(), losses.std(ddof=1) / np.sqrt(len(losses))
  assert standard_error < 0.01 * abs(np.mean(exact))
  assert abs(estimate + np.mean(exact)) < 5 * standard_error + 1e-3 * abs(np.mean(exact))


@pytest.mark.xdist_group("objective_gradients")
def test_gradients_reach_the_joint_and_the_unimodal_encoders():
  with jax.enable_x64(True):
    means, logvars, observed, a, c = problem(seed=8)
    joint_means = jnp.asarray(np.random.default_rng(8).normal(size=means.shape[1:]))
    log_likelihood_fn = quadratic_log_likelihood(jnp.asarray(a), jnp.asarray(c))

    def loss_fn(means, logvars, joint_means, joint_logvars):
      return objectives.jmvae(Gaussian(means, logvars), log_likelihood_fn, jax.random.key(1),
                              beta=0.8, alpha=0.4, mask=jnp.asarray(observed),
                              joint=Gaussian(joint_means, joint_logvars))[0]

    check_grads(jax.jit(loss_fn), (jnp.asarray(means), jnp.asarray(logvars), joint_means,
                                   0.1 * joint_means), order=1, modes=("rev",), eps=1e-5,
                atol=1e-4, rtol=1e-4)


def test_the_joint_encoder_reads_every_modality_and_serves_the_full_set_only():
  modalities = (Modality("a", "vector", (5,), None, 1.0, kind="vector"),
                Modality("b", "vector", (4,), None, 1.0, kind="vector"))
  model = models.MultimodalVAE(modalities=modalities, latent_dim=3, joint_encoder=True)
  rng = np.random.default_rng(0)
  batch = {"a": rng.normal(size=(6, 5)).astype(np.float32),
           "b": rng.normal(size=(6, 4)).astype(np.float32)}
  params = models.init_params(model, jax.random.key(0), batch)
  assert "joint" in params and "encoders_0" in params
  # One train step moves every parameter of the joint encoder too (both heads of each
  # modality's copy feed it).
  loss_fn = models.make_loss_fn(model, "jmvae")
  grads = jax.jit(jax.grad(lambda p: loss_fn(p, batch, jax.random.key(1), 1.0)[0]))(params)
  assert all(bool(np.any(np.asarray(g) != 0)) for g in jax.tree.leaves(grads["joint"]))
  inputs = models.model_inputs(modalities, batch)
  joint = model.apply({"params": params}, inputs, method=model.encode_joint)
  chex.assert_shape(joint.mean, (6, 3))
  changed = model.apply({"params": params}, [inputs[0], inputs[1] + 1.0],
                        method=model.encode_joint)
  assert not np.allclose(joint.mean, changed.mean)  # it reads b too
  experts = model.apply({"params": params}, inputs, method=model.encode)
  full = models.subset_posterior(experts, jnp.array([True, True]), "jmvae", joint)
  chex.assert_trees_all_equal(full, joint)
  alone = models.subset_posterior(experts, jnp.array([True, False]), "jmvae", joint)
  chex.assert_trees_all_close(alone, jax.tree.map(lambda x: x[0], experts), rtol=1e-5,
                              atol=1e-7)  # the product of one expert, in float32
  # Without a joint encoder the model's parameters are those of before it existed.
  plain = models.init_params(models.MultimodalVAE(modalities=modalities, latent_dim=3),
                             jax.random.key(0), batch)
  assert set(plain) == {"encoders_0", "encoders_1", "decoders_0", "decoders_1"}
  chex.assert_trees_all_equal(plain, {k: v for k, v in params.items() if k != "joint"})


@pytest.mark.slow
def test_a_jmvae_run_trains_infers_from_any_subset_and_is_evaluated(tmp_path):
  import crmvae_jax
  from crmvae_jax.common.errors import UserError
  from crmvae_jax.config import defaults as config_lib, validation
  from crmvae_jax.evaluation import classifier_training, driver
  from crmvae_jax.training import loop

  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.model = "jmvae"
  config.jmvae_alpha = 0.5
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  model = crmvae_jax.load(workdir)
  assert model.kind == "jmvae" and model.model.joint_encoder
  batch = model.test_set.batch(np.arange(4))
  both = model.encode({"mnist": batch["mnist"], "text": batch["text"]})
  alone = model.encode({"mnist": batch["mnist"]})
  assert both.shape == alone.shape == (4, 32) and not np.allclose(both, alone)
  classifier_training.train_classifiers(config)
  results = driver.evaluate(config, workdir, verbose=False)
  assert set(results["coherence"]) == {"R", "M<-T", "T<-M"}
  assert np.isfinite(list(results["log_likelihood"].values())).all()
  config.data.missing_ratio = 0.3
  with pytest.raises(UserError, match="jmvae's joint encoder reads every modality"):
    validation.validate_config(config)
