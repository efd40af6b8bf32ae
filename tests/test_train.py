"""Training end to end: train steps on the MST networks, checkpoints and resumption,
the quick start, data-parallel equivalence and bad configs."""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mst as mst_config
from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.data import input_pipeline
from crmvae_jax.training import checkpoints, loop
from crmvae_jax.training import state as state_lib
from crmvae_jax.training import step as step_lib
from crmvae_jax.model import models, objectives
from crmvae_jax.common.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_mst_config(data_dir, model="crmvae"):
  config = mst_config.get_config()
  config.model = model
  config.data.data_dir = data_dir
  config.data.download = False
  config.data.multiplication = 1
  config.batch_size = 8
  if objectives.MODELS[model].private:  # exercised with private latents
    config.private_dims = (2, 3, 2)
  return config


def test_mst_model_has_the_mst_networks_and_likelihood_weights(mst_data_dir):
  train_set, _ = data_lib.load(tiny_mst_config(mst_data_dir).data)
  model = state_lib.create_model(tiny_mst_config(mst_data_dir), train_set)
  assert [m.network for m in model.modalities] == ["mnist", "svhn", "mst_text"]
  np.testing.assert_allclose([m.likelihood_weight for m in model.modalities],
                             [3072 / 784, 1.0, 384.0])


def _assert_one_jitted_step_updates_every_parameter(config, train_set, name, num_modalities):
  model = state_lib.create_model(config, train_set)
  tx = state_lib.create_optimizer(config)
  batch = train_set.batch(np.arange(8))
  # One compiled initialisation (op by op, every initialiser compiles apart).
  state = jax.jit(lambda: state_lib.create_train_state(model, tx, batch, seed=0))()
  step = jax.jit(step_lib.make_train_step(models.make_loss_fn(model, name), tx))
  new_state, metrics = step(state, batch, jnp.float32(1.0))
  assert int(new_state.step) == 1
  assert np.isfinite(float(metrics["loss"]))
  assert metrics["log_likelihoods"].shape == (num_modalities,)
  # Compared on the host: op by op, `!=` and `any` would compile once per leaf shape.
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         state.params, new_state.params)
  assert all(jax.tree.leaves(changed))  # every encoder and decoder got a gradient


# The unit tier's one jitted train step: the quick start's small networks (an MNIST
# MLP and the MST text convolutions), the whole path from config to updated state.
# (On the worker that loads the quick-start data for the other unit tests.)
@pytest.mark.xdist_group("quickstart_data")
def test_one_train_step_on_quickstart_networks():
  config = config_lib.quickstart_config()
  config.batch_size = 8
  train_set, _ = data_lib.load(config.data)
  assert [m.network for m in state_lib.create_model(config, train_set).modalities] == [
      "mnist", "mst_text"]
  _assert_one_jitted_step_updates_every_parameter(config, train_set, "crmvae", 2)


# Every model's step on the MST networks (the SVHN convolutions take the longest to
# compile); the unit tier keeps the quick start's step above.
@pytest.mark.slow
@pytest.mark.parametrize("name", objectives.OBJECTIVES)
def test_one_train_step_on_mst_networks(name, mst_data_dir):
  config = tiny_mst_config(mst_data_dir, name)
  train_set, _ = data_lib.load(config.data)
  _assert_one_jitted_step_updates_every_parameter(config, train_set, name, 3)


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


@pytest.mark.slow
def test_quickstart_trains_checkpoints_and_resumes_exactly(tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  [first_leg] = loop.train_and_evaluate(quickstart_config(1), resumed)
  [second_leg] = loop.train_and_evaluate(quickstart_config(30), resumed)
  [uninterrupted] = loop.train_and_evaluate(quickstart_config(30), straight)

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
  model, params, _, _, step = checkpoints.load_trained(quickstart_config(30), workdir)
  return model, params, step


EIGHT_DEVICES = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import json
    import jax, jax.numpy as jnp, numpy as np
    from crmvae_jax.config import defaults as config_lib
    from crmvae_jax import data
    from crmvae_jax.training import state as state_lib
    from crmvae_jax.training import step as step_lib
    from crmvae_jax.model import models

    config = config_lib.quickstart_config()
    train_set, _ = data.load(config.data)
    model = state_lib.create_model(config, train_set)
    tx = state_lib.create_optimizer(config)
    batch = train_set.batch(np.arange(32))
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = step_lib.create_mesh(1, devices)
      state = jax.device_put(state_lib.create_train_state(model, tx, batch, 0), step_lib.replicated(mesh))
      step = jax.jit(step_lib.make_train_step(models.make_loss_fn(model, "crmvae"), tx),
                     in_shardings=(step_lib.replicated(mesh), step_lib.batch_sharding(mesh),
                                   step_lib.replicated(mesh)))
      sharded_batch = jax.device_put(batch, step_lib.batch_sharding(mesh))
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


@pytest.mark.slow
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
    ("beta", -0.5, "--config.beta must be a finite number >= 0; got -0.5"),
    ("mixture_estimator", "exact", "(--config.mixture_estimator); known mixture estimators"),
    ("batch_size", 0, "--config.batch_size must be an integer >= 1"),
])
def test_bad_configs_fail_fast(field, value, message, tmp_path):
  config = config_lib.quickstart_config()
  config[field] = value
  with pytest.raises(UserError) as error:
    loop.train_and_evaluate(config, str(tmp_path))
  assert message in str(error.value)
  assert not os.path.exists(tmp_path / "checkpoints")


def run_main(*flags):
  return subprocess.run([sys.executable, "-m", "crmvae_jax.main", *flags], capture_output=True,
                        text=True, cwd=REPO, timeout=300)


@pytest.mark.slow
def test_main_reports_a_bad_config_in_one_line_without_traceback(tmp_path):
  completed = run_main("--config=configs/quickstart.py", "--config.model=vae",
                       f"--workdir={tmp_path}")
  assert completed.returncode == 1
  assert "Traceback" not in completed.stderr
  assert completed.stderr.strip().splitlines()[-1].startswith("error: Unknown model 'vae'")


@pytest.mark.slow
def test_main_names_the_missing_data_set_and_the_flag(tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  completed = run_main("--config=configs/mst.py", f"--config.data.data_dir={empty}",
                       "--config.data.download=False", f"--workdir={tmp_path / 'run'}")
  assert completed.returncode == 1
  assert "Traceback" not in completed.stderr
  last_line = completed.stderr.strip().splitlines()[-1]
  assert "mnist" in last_line and str(empty) in last_line and "--config.data.data_dir" in last_line


@pytest.mark.xdist_group("quickstart_data")
def test_device_data_gathers_the_same_batches_as_the_host():
  config = config_lib.quickstart_config()
  train_set, _ = data_lib.load(config.data)
  mesh = step_lib.create_mesh(1)
  ids = np.array([3, 4000, 17, 17])
  on_device = jax.jit(lambda data, ids: data.batch(ids))(step_lib.DeviceData.create(train_set, mesh),
                                                         ids)
  on_host = train_set.batch(ids)
  for name in train_set.modalities:
    np.testing.assert_array_equal(on_device[name], on_host[name])


def test_chunks_end_at_every_host_action():
  config = config_lib.quickstart_config()
  config.steps_per_dispatch, config.log_every_steps = 7, 10
  config.eval_every_steps, config.checkpoint_every_steps = 25, 15
  stops, step = [], 0
  while step < 40:
    step = loop.next_stop(step, config, 40)
    stops.append(step)
  assert stops == [7, 10, 15, 20, 25, 30, 37, 40]


@pytest.mark.slow
def test_a_multi_step_dispatch_equals_single_steps_bit_for_bit():
  config = config_lib.quickstart_config()
  train_set, _ = data_lib.load(config.data)
  model = state_lib.create_model(config, train_set)
  tx = state_lib.create_optimizer(config)
  mesh = step_lib.create_mesh(1)
  step = step_lib.make_replicated_train_step(models.make_loss_fn(model, "crmvae"), tx, mesh)
  data = step_lib.DeviceData.create(train_set, mesh)
  ids = np.stack(list(itertools.islice(input_pipeline.train_batch_ids(len(train_set), 16, 0), 4)))
  betas, healthy = jnp.ones(1), jnp.full(1, -1, jnp.int32)
  fresh = lambda: state_lib.create_replica_states(model, tx, train_set.batch(np.arange(2)), [0])
  multi_step = jax.jit(step_lib.make_multi_step(step, mesh))
  chunked = fresh()
  for start, stop in ((0, 1), (1, 4)):  # as a resumed run would: 1 step, then 3
    rows = np.zeros_like(ids)
    rows[:stop - start] = ids[start:stop]
    chunked, _, first_non_finite = multi_step(chunked, data, rows, stop - start, betas, healthy)
    assert int(first_non_finite[0]) == -1
  whole, metrics, _ = multi_step(fresh(), data, ids, 4, betas, healthy)
  assert int(whole.step[0]) == int(chunked.step[0]) == 4
  jax.tree.map(np.testing.assert_array_equal, chunked.params, whole.params)
  assert np.isfinite(metrics["grad_norm"]).all() and metrics["grad_norm"][0] > 0

  one_at_a_time = fresh()  # K = 1, the CPU default: no loop, the plain step
  for row in ids:
    one_at_a_time, _, _ = multi_step(one_at_a_time, data, row[None], 1, betas, healthy)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               one_at_a_time.params, whole.params)


@pytest.mark.slow
def test_a_diverging_run_stops_naming_the_step_and_keeps_its_finite_checkpoint(tmp_path):
  workdir = str(tmp_path)
  loop.train_and_evaluate(quickstart_config(10), workdir)
  config = quickstart_config(30)
  config.learning_rate = 1e8
  with pytest.raises(loop.TrainingDiverged, match=r"Training diverged at step (1[1-9]|20): .*"
                     r"lower --config.learning_rate \(now 1e\+08\)"):
    loop.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]
  trained = checkpoints.load_trained(quickstart_config(10), workdir)
  params, step = trained.params, trained.step
  assert step == 10 and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


@pytest.mark.slow
def test_checkpoints_are_written_only_at_their_interval_and_the_last_step(tmp_path):
  config = quickstart_config(13)
  config.log_every_steps, config.checkpoint_every_steps, config.checkpoints_to_keep = 2, 6, 10
  loop.train_and_evaluate(config, str(tmp_path))  # Orbax alone would also save step 2
  assert sorted(map(int, os.listdir(tmp_path / "checkpoints"))) == [6, 12, 13]


@pytest.mark.slow
def test_resuming_with_another_model_or_latent_size_is_refused(tmp_path):
  workdir = str(tmp_path)
  loop.train_and_evaluate(quickstart_config(10), workdir)
  config = quickstart_config(20)
  config.model, config.latent_dim = "mvae", 16
  with pytest.raises(UserError, match=r"--config.latent_dim=32 \(asked: 16\), "
                     r"--config.model='crmvae' \(asked: 'mvae'\); resume it with those values"):
    loop.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"] == "crmvae"  # the run's own config is kept
  loop.train_and_evaluate(quickstart_config(20), workdir)  # more steps: allowed


@pytest.mark.slow
def test_a_second_training_on_a_locked_workdir_is_refused(tmp_path):
  with loop.WorkdirLock(str(tmp_path)):
    with pytest.raises(UserError, match=f"Another training \\(pid {os.getpid()} .*\\) is "
                       f"running in {tmp_path}"):
      loop.train_and_evaluate(quickstart_config(10), str(tmp_path))
  loop.train_and_evaluate(quickstart_config(10), str(tmp_path))  # released


@pytest.mark.slow
def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
  workdir = str(tmp_path)
  loop.train_and_evaluate(quickstart_config(20), workdir)
  latest = os.path.join(workdir, "checkpoints", "20")
  for root, _, files in os.walk(latest):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(max(0, os.path.getsize(f.name) // 2))
  step = checkpoints.load_trained(quickstart_config(20), workdir).step
  assert step == 10
  [resumed] = loop.train_and_evaluate(quickstart_config(20), workdir)
  assert "checkpoint 20" in capsys.readouterr().out
  assert os.listdir(os.path.join(workdir, "unreadable_checkpoints"))
  step = checkpoints.load_trained(quickstart_config(20), workdir).step
  assert step == 20 and np.isfinite(resumed["train/loss"])


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_says_how_to_resume(tmp_path):
  flags = [f"--workdir={tmp_path}", "--config.num_train_steps=100000",
           "--config.steps_per_dispatch=5", "--config.checkpoint_every_steps=100000",
           "--config.eval_every_steps=100000", "--config.disable_progress_bar=True"]
  process = subprocess.Popen([sys.executable, "-m", "crmvae_jax.main", *flags], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and not glob.glob(str(tmp_path / "events.out.tfevents*")):
    time.sleep(0.5)  # the summary writer opens once training starts
  time.sleep(3)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM
  assert "Traceback" not in stderr
  last_line = stderr.strip().splitlines()[-1]
  assert re.fullmatch(r"error: SIGTERM stopped training at step \d+ of 100000 after saving it; "
                      r"the same command resumes it\.", last_line)
  saved_step = int(re.search(r"step (\d+)", last_line).group(1))
  assert os.listdir(tmp_path / "checkpoints") == [str(saved_step)]
