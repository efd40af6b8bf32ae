"""Replicated training: R (seed, beta) replicas in one program equal R single runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.model import models
from crmvae_jax.training import checkpoints, loop, state
from crmvae_jax.training import step as step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(num_steps=8, seeds=(), betas=(), seed=0, beta=1.0):
  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  config.num_train_steps = num_steps
  config.eval_every_steps = config.checkpoint_every_steps = num_steps
  config.seed, config.beta = seed, beta
  config.sweep.seeds, config.sweep.betas = seeds, betas
  return config


def test_replica_grid_is_seeds_by_betas():
  assert state.replica_grid(tiny_config(seeds=(0, 1), betas=(0.5, 2.0))) == (
      [0, 0, 1, 1], [0.5, 2.0, 0.5, 2.0])
  assert state.replica_grid(tiny_config(seed=3, beta=0.1)) == ([3], [0.1])


@pytest.mark.slow
def test_replicas_equal_single_runs(tmp_path):
  sweep = tiny_config(seeds=(0, 1), betas=(0.5, 2.0))
  sweep_metrics = loop.train_and_evaluate(sweep, str(tmp_path / "sweep"))
  assert len(sweep_metrics) == 4
  for replica, (seed, beta) in ((3, (1, 2.0)), (0, (0, 0.5))):
    single = tiny_config(seed=seed, beta=beta)
    [single_metrics] = loop.train_and_evaluate(single, str(tmp_path / f"single_{replica}"))
    np.testing.assert_allclose(sweep_metrics[replica]["test/loss"], single_metrics["test/loss"],
                               rtol=1e-4)
    *_, sweep_params, _ = _params(sweep, tmp_path / "sweep", replica)
    *_, single_params, _ = _params(single, tmp_path / f"single_{replica}", 0)
    # Adam turns ulp-level differences in a near-zero gradient (grouped convolutions for
    # stacked kernels against plain ones) into up to 2 x learning rate per step for that
    # element, so after 8 steps trained parameters are compared tensor by tensor; the
    # gradient test below checks the replicated computation element by element.
    jax.tree.map(lambda a, b: np.testing.assert_array_less(
        np.linalg.norm(a - b), 1e-4 * np.linalg.norm(b)), sweep_params, single_params)
  # Replicas really differ: other seeds and betas give other losses.
  assert len({round(m["test/loss"], 3) for m in sweep_metrics}) == 4
  for replica in range(4):
    assert os.path.exists(tmp_path / "sweep" / f"replica_{replica}" / "figures" /
                          "cross_generation_00000008.png")


@pytest.mark.slow
def test_every_replica_has_the_gradient_of_its_single_run():
  config = tiny_config()
  train_set, _ = data_lib.load(config.data)
  model = state.create_model(config, train_set)
  loss_fn = models.make_loss_fn(model, config.model)
  batch = train_set.batch(np.arange(32))
  seeds, betas = [0, 1, 1], jnp.array([0.5, 0.5, 2.0])
  states = state.create_replica_states(model, state.create_optimizer(config), batch, seeds)
  gradient = jax.grad(lambda params, beta: loss_fn(params, batch, jax.random.PRNGKey(3), beta)[0])
  replicated = jax.jit(jax.vmap(gradient))(states.params, betas)
  for replica in range(len(seeds)):
    single = jax.jit(gradient)(jax.tree.map(lambda x: x[replica], states.params), betas[replica])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[replica], b, rtol=1e-4, atol=1e-6),
                 replicated, single)


def _params(config, workdir, replica):
  model, params, _, _, step = checkpoints.load_trained(config, str(workdir), replica)
  return model, params, step


EIGHT_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import json
    import jax, jax.numpy as jnp, numpy as np
    from crmvae_jax.config import defaults as config_lib
    from crmvae_jax import data
    from crmvae_jax.training import state
    from crmvae_jax.training import step as step_lib
    from crmvae_jax.model import models

    config = config_lib.quickstart_config()
    train_set, _ = data.load(config.data)
    model = state.create_model(config, train_set)
    tx = state.create_optimizer(config)
    batch = train_set.batch(np.arange(32))
    seeds, betas = [0, 1, 2, 3], jnp.array([0.5, 1.0, 2.0, 4.0])
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = step_lib.create_mesh(len(seeds), devices)
      states = jax.device_put(state.create_replica_states(model, tx, batch, seeds),
                              step_lib.replica_sharding(mesh))
      step = jax.jit(step_lib.make_replicated_train_step(models.make_loss_fn(model, "crmvae"), tx, mesh),
                     in_shardings=(step_lib.replica_sharding(mesh), step_lib.batch_sharding(mesh),
                                   step_lib.replica_sharding(mesh)))
      for _ in range(3):
        states, metrics = step(states, step_lib.put_batch(batch, mesh), betas)
      results.append((dict(mesh.shape), np.asarray(metrics["loss"]).tolist(),
                      jax.device_get(states.params)))
    (_, losses_1, params_1), (mesh_8, losses_8, params_8) = results
    relative = lambda a, b: float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))
    print(json.dumps({"mesh": mesh_8, "losses_1": losses_1, "losses_8": losses_8,
                      "parameters": max(jax.tree.leaves(jax.tree.map(relative, params_1, params_8)))}))
""")


@pytest.mark.slow
def test_replicas_on_eight_simulated_devices_match_one_device():
  completed = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], capture_output=True,
                             text=True, cwd=REPO, check=True)
  result = json.loads(completed.stdout.strip().splitlines()[-1])
  assert result["mesh"] == {"replica": 4, "data": 2}  # replicas and the batch both split
  np.testing.assert_allclose(result["losses_8"], result["losses_1"], rtol=1e-5)
  assert len(set(result["losses_1"])) == 4
  assert result["parameters"] < 1e-3  # see test_train: Adam amplifies float noise early


@pytest.mark.slow
def test_sweep_of_two_seeds_by_two_betas_writes_its_table(tmp_path):
  from crmvae_jax import sweeps
  from crmvae_jax.common.errors import UserError
  from crmvae_jax.reporting import summaries

  config = tiny_config(num_steps=6)
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  config.eval.classifier_epochs = 1
  config.eval.classifier_max_train_examples = 1000
  config.eval.num_examples = 200
  config.eval.coherence.prior_samples = 200
  config.eval.latent.train_examples = 200
  config.eval.fid.enabled = False
  runs = sweeps.run_grid(config, ["crmvae"], [0, 1], [0.5, 2.0], str(tmp_path / "runs"))
  assert sorted((run["seed"], run["beta"]) for run in runs) == [
      (0, 0.5), (0, 2.0), (1, 0.5), (1, 2.0)]
  markdown = summaries.sweep_markdown(runs)
  assert "| CRMVAE, beta 0.5, 2 seed(s) |" in markdown
  assert "| CRMVAE, beta 2, 2 seed(s) |" in markdown
  assert markdown.count("## Table 1") == 2  # the full tables, once per beta
  # Collecting again reads the stored results without training.
  again = sweeps.grid_results(config, ["crmvae"], [0, 1], [0.5, 2.0], str(tmp_path / "runs"),
                              setting="full", collect_only=True)
  assert again == runs
  with pytest.raises(UserError, match=r"No run under .*elsewhere has results; run without "
                     r"--collect_only"):
    sweeps.grid_results(config, ["crmvae"], [0, 1], [0.5, 2.0], str(tmp_path / "elsewhere"),
                        setting="full", collect_only=True)
  # `evaluate` on the sweep prints one table, a row per (seed, beta), not four.
  workdir = sweeps.grid_directory(str(tmp_path / "runs"), "crmvae", [0, 1], [0.5, 2.0])
  completed = subprocess.run([sys.executable, "-m", "crmvae_jax.evaluate",
                              f"--workdir={workdir}"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             timeout=900)
  assert completed.returncode == 0, completed.stderr[-2000:]
  rows = [line for line in completed.stdout.splitlines() if line.startswith("| seed")]
  assert [row.split("|")[1].strip() for row in rows] == [
      "seed 0, beta 0.5", "seed 1, beta 0.5", "seed 0, beta 2", "seed 1, beta 2"]
  assert "## Table 1" not in completed.stdout
  with open(os.path.join(workdir, "eval", "sweep.md")) as f:
    assert f.read().count("| seed") == 4
