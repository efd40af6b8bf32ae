"""Training end to end: train steps on the MST networks, checkpoints and resumption,
the quick start, data-parallel equivalence and bad configs."""

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

from configs import mst as mst_config
from crmvae_jax import config as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax import models, objectives, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_mst_config(data_dir, model="crmvae"):
  config = mst_config.get_config()
  config.model = model
  config.data.data_dir = data_dir
  config.data.download = False
  config.data.multiplication = 1
  config.batch_size = 8
  return config


@pytest.mark.parametrize("name", list(objectives.OBJECTIVES))
def test_one_train_step_on_mst_networks(name, mst_data_dir):
  config = tiny_mst_config(mst_data_dir, name)
  train_set, _ = data_lib.load(config.data)
  model = train.create_model(config, train_set)
  assert [m.network for m in model.modalities] == ["mnist", "svhn", "mst_text"]
  np.testing.assert_allclose([m.likelihood_weight for m in model.modalities],
                             [3072 / 784, 1.0, 384.0])
  tx = train.create_optimizer(config)
  batch = train_set.batch(np.arange(8))
  state = train.create_train_state(model, tx, batch, seed=0)
  step = jax.jit(train.make_train_step(models.make_loss_fn(model, name), tx))
  new_state, metrics = step(state, batch, jnp.float32(1.0))
  assert int(new_state.step) == 1
  assert np.isfinite(float(metrics["loss"])) and metrics["log_likelihoods"].shape == (3,)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
  assert all(jax.tree.leaves(changed))  # every encoder and decoder got a gradient


def quickstart_config(num_steps):
  config = config_lib.quickstart_config()
  config.batch_size = 64
  config.num_train_steps = num_steps
  config.log_every_steps = 10
  config.eval_every_steps = 30
  config.checkpoint_every_steps = 10
  config.eval_batches = 2
  config.figure_examples = 4
  config.disable_progress_bar = True
  return config


def test_quickstart_trains_checkpoints_and_resumes_exactly(tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  [first_leg] = train.train_and_evaluate(quickstart_config(1), resumed)
  [second_leg] = train.train_and_evaluate(quickstart_config(30), resumed)
  [uninterrupted] = train.train_and_evaluate(quickstart_config(30), straight)

  assert second_leg["test/loss"] < 0.8 * first_leg["test/loss"]  # it learns
  np.testing.assert_allclose(second_leg["test/loss"], uninterrupted["test/loss"], rtol=1e-5)
  *_, params_resumed, step_resumed = _trained(resumed)
  *_, params_straight, step_straight = _trained(straight)
  assert step_resumed == step_straight == 30
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               params_resumed, params_straight)

  assert sorted(os.listdir(os.path.join(straight, "checkpoints")))[-1] == "30"
  assert os.path.exists(os.path.join(straight, "figures", "cross_generation_00000030.png"))
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(straight))
  with open(os.path.join(straight, "config.json")) as f:
    assert json.load(f)["model"] == "crmvae"


def _trained(workdir):
  model, params, _, _, step = train.load_trained(quickstart_config(30), workdir)
  return model, params, step


EIGHT_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import json
    import jax, jax.numpy as jnp, numpy as np
    from crmvae_jax import config as config_lib, data, models, train

    config = config_lib.quickstart_config()
    train_set, _ = data.load(config.data)
    model = train.create_model(config, train_set)
    tx = train.create_optimizer(config)
    batch = train_set.batch(np.arange(32))
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = train.create_mesh(1, devices)
      state = jax.device_put(train.create_train_state(model, tx, batch, 0), train.replicated(mesh))
      step = jax.jit(train.make_train_step(models.make_loss_fn(model, "crmvae"), tx),
                     in_shardings=(train.replicated(mesh), train.batch_sharding(mesh),
                                   train.replicated(mesh)))
      sharded_batch = jax.device_put(batch, train.batch_sharding(mesh))
      assert len(sharded_batch["mnist"].sharding.device_set) == len(devices)
      loss_fn = models.make_loss_fn(model, "crmvae")
      grads = jax.jit(jax.grad(lambda p: loss_fn(p, sharded_batch, jax.random.PRNGKey(1), 1.0)[0]))(
          state.params)
      for _ in range(3):
        state, metrics = step(state, sharded_batch, jnp.float32(1.0))
      results.append((float(metrics["loss"]), jax.device_get(grads), jax.device_get(state.params)))
    (loss_1, grads_1, params_1), (loss_8, grads_8, params_8) = results
    relative = lambda a, b: float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))
    print(json.dumps({
        "devices": len(jax.devices()), "loss_1": loss_1, "loss_8": loss_8,
        "gradient": max(jax.tree.leaves(jax.tree.map(relative, grads_1, grads_8))),
        "parameters": max(jax.tree.leaves(jax.tree.map(relative, params_1, params_8)))}))
""")


def test_eight_simulated_devices_match_one_device():
  completed = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], capture_output=True,
                             text=True, cwd=REPO, check=True)
  result = json.loads(completed.stdout.strip().splitlines()[-1])
  assert result["devices"] == 8
  np.testing.assert_allclose(result["loss_8"], result["loss_1"], rtol=1e-5)
  assert result["gradient"] < 1e-4  # float32 reduction order, relative to each leaf's scale
  # Adam divides by sqrt(v): near-zero gradients amplify float noise in the first steps.
  assert result["parameters"] < 1e-3


@pytest.mark.parametrize("field, value, message", [
    ("model", "vae", "Unknown model 'vae' (--config.model); known models: mvae, mmvae"),
    ("beta", -0.5, "--config.beta must be non-negative; got [-0.5]"),
    ("mixture_estimator", "exact", "--config.mixture_estimator must be"),
    ("batch_size", 0, "--config.batch_size must be positive"),
])
def test_bad_configs_fail_fast(field, value, message):
  config = config_lib.quickstart_config()
  config[field] = value
  with pytest.raises(ValueError) as error:
    train.validate_config(config)
  assert message in str(error.value)


def run_main(*flags):
  return subprocess.run([sys.executable, "-m", "crmvae_jax.main", *flags], capture_output=True,
                        text=True, cwd=REPO, timeout=300)


def test_main_reports_a_bad_config_in_one_line_without_traceback(tmp_path):
  completed = run_main("--config=configs/quickstart.py", "--config.model=vae",
                       f"--workdir={tmp_path}")
  assert completed.returncode == 1
  assert "Traceback" not in completed.stderr
  assert completed.stderr.strip().splitlines()[-1].startswith("error: Unknown model 'vae'")


def test_main_names_the_missing_data_set_and_the_flag(tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  completed = run_main("--config=configs/mst.py", f"--config.data.data_dir={empty}",
                       "--config.data.download=False", f"--workdir={tmp_path / 'run'}")
  assert completed.returncode == 1
  assert "Traceback" not in completed.stderr
  last_line = completed.stderr.strip().splitlines()[-1]
  assert "mnist" in last_line and str(empty) in last_line and "--config.data.data_dir" in last_line
