"""Restoring checkpoints: another model is refused (never quarantined), damage is
quarantined, checkpoints from before the model-defining fields were recorded still
restore exactly, and a run is not resumed past the steps asked for."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from crmvae_jax.common import atomic
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.common.errors import UserError
from crmvae_jax.training import checkpoints, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _states(latent_dim: int) -> dict:
  rng = np.random.default_rng(latent_dim)
  return {"step": jnp.int32(20),
          "params": {"encoder": {"kernel": jnp.asarray(rng.normal(size=(6, latent_dim)),
                                                       jnp.float32)},
                     "decoder": {"bias": jnp.asarray(rng.normal(size=(6,)), jnp.float32)}}}


def _abstract(latent_dim: int) -> dict:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, _states(latent_dim))


def _config(latent_dim: int = 32):
  config = config_lib.quickstart_config()
  config.latent_dim = latent_dim
  return config


def _manager(workdir):
  return checkpoints.checkpoint_manager(str(workdir), _config())


def _save_old_style(manager, step, states):
  """As the code saved before checkpoints recorded their model-defining fields."""
  manager.save(step, args=ocp.args.StandardSave(states), force=True)
  manager.wait_until_finished()


def _assert_equal(restored, states):
  assert jax.tree.all(jax.tree.map(
      lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), restored, states))


def _assert_restores_the_states_of_latent_32(manager):
  _assert_equal(checkpoints.restore_latest(manager, _abstract(32), _config(), quarantine=True),
                _states(32))
  manager.close()


def _assert_latent_16_refused_and_nothing_moved(manager, tmp_path, message):
  """Restoring as latent 16 is refused with `message`; checkpoints 10 and 20 stay."""
  with pytest.raises(UserError, match=message):
    checkpoints.restore_latest(manager, _abstract(16), _config(16), quarantine=True)
  assert sorted(manager.all_steps()) == [10, 20]
  assert not os.path.exists(tmp_path / checkpoints.UNREADABLE_DIR)
  manager.close()


def test_a_checkpoint_without_recorded_fields_restores_exactly(tmp_path):
  manager = _manager(tmp_path)
  _save_old_style(manager, 20, _states(32))
  assert checkpoints.recorded_fields(manager, 20) is None
  _assert_restores_the_states_of_latent_32(manager)


def test_a_saved_checkpoint_records_the_model_defining_fields(tmp_path):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 20, _states(32), _config())
  manager.wait_until_finished()
  recorded = checkpoints.recorded_fields(manager, 20)
  assert recorded["latent_dim"] == 32 and recorded["model"] == "crmvae"
  assert "learning_rate" not in recorded and "num_train_steps" not in recorded
  _assert_restores_the_states_of_latent_32(manager)


def test_another_latent_size_is_refused_by_its_recorded_fields_not_quarantined(tmp_path):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 10, _states(32), _config())
  checkpoints.save(manager, 20, _states(32), _config())
  manager.wait_until_finished()
  _assert_latent_16_refused_and_nothing_moved(
      manager, tmp_path, r"Checkpoint 20 .* --config.latent_dim=32 \(asked: 16\); pass those "
      r"values, or another --workdir")


@pytest.mark.parametrize("fresh", [False, True], ids=["same manager", "fresh manager"])
def test_another_shape_without_recorded_fields_is_a_mismatch_naming_the_shapes(tmp_path, fresh,
                                                                               caplog):
  # A resume opens a fresh manager in a new process: it must read the saved tree's
  # shapes too (a manager that had not saved once returned no tree metadata, and the
  # shapes went unchecked), and without Orbax's "could not be restored" warning.
  manager = _manager(tmp_path)
  _save_old_style(manager, 10, _states(32))
  _save_old_style(manager, 20, _states(32))
  if fresh:
    manager.close()
    manager = _manager(tmp_path)
  assert checkpoints.shape_mismatch(manager, 20, _abstract(16)).startswith(
      "params.encoder.kernel is (6, 32) there, (6, 16) here")
  assert "could not be restored" not in caplog.text
  _assert_latent_16_refused_and_nothing_moved(
      manager, tmp_path, r"holds another model: params.encoder.kernel is \(6, 32\) there, "
      r"\(6, 16\) here; .*another --workdir")


def _truncate(directory):
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 2)


def test_a_damaged_checkpoint_is_quarantined_and_the_previous_one_restored(tmp_path, capsys):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 10, _states(32), _config())
  checkpoints.save(manager, 20, _states(8), _config())
  manager.wait_until_finished()
  _truncate(tmp_path / "checkpoints" / "20")
  restored = checkpoints.restore_latest(manager, _abstract(32), _config(), quarantine=True)
  _assert_equal(restored, _states(32))
  assert "checkpoint 20" in capsys.readouterr().out
  assert sorted(manager.all_steps()) == [10]
  assert len(os.listdir(tmp_path / checkpoints.UNREADABLE_DIR)) == 1
  manager.close()


def test_no_readable_checkpoint_left_is_refused_not_restarted(tmp_path, capsys):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 20, _states(32), _config())
  manager.wait_until_finished()
  _truncate(tmp_path / "checkpoints" / "20")
  with pytest.raises(UserError, match=r"No readable checkpoint is left in .*unreadable_checkpoints/"
                     r"\); to start afresh pass another --workdir or remove"):
    checkpoints.restore_latest(manager, _abstract(32), _config(), quarantine=True)
  out = capsys.readouterr().out
  assert "no earlier checkpoint is left" in out and "falling back" not in out
  manager.close()


def test_resuming_past_the_steps_asked_for_is_refused():
  loop.check_not_past(60, 60, "w")  # a finished run, asked for the same steps
  with pytest.raises(UserError, match=r"w is already at step 10500, past the 60 steps asked for; "
                     r"pass --config.num_train_steps=10500 or more"):
    loop.check_not_past(10500, 60, "w")


def test_a_failed_checkpoint_write_is_one_sentence_and_a_bug_is_not():
  manager = type("Manager", (), {"directory": "/run/checkpoints"})()
  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=r"Cannot write a checkpoint in /run/checkpoints \(Read-only file "
                     r"system\); free space or make it writable"):
    with checkpoints.writing(manager):
      try:
        raise OSError(30, "Read-only file system")
      except OSError as error:
        raise RuntimeError("Orbax's wrapper") from error
  with pytest.raises(ValueError):
    with checkpoints.writing(manager):
      raise ValueError("a bug")


def test_a_checkpoint_directory_that_is_a_file_or_unwritable_is_refused(tmp_path, monkeypatch):
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "checkpoints").write_text("not a directory")
  with pytest.raises(UserError, match=r"checkpoints is a file, not a directory for checkpoints; "
                     "move it away or pass another --workdir"):
    checkpoints.check_writable(str(tmp_path / "a"))

  def refuse(*args, **kwargs):
    raise OSError(30, "Read-only file system")

  monkeypatch.setattr(atomic.tempfile, "TemporaryFile", refuse)
  with pytest.raises(UserError, match=r"Cannot write checkpoints in .*b/checkpoints \(Read-only "
                     r"file system\); make it writable or pass another --workdir"):
    checkpoints.check_writable(str(tmp_path / "b"))


# Orbax's threads of a failed save wait forever; the command line must still end.
_FAILING_SAVE = """
import os, shutil, sys
import jax.numpy as jnp
from crmvae_jax.config import cli, defaults as config_lib
from crmvae_jax.training import checkpoints
workdir = sys.argv[1]
manager = checkpoints.checkpoint_manager(workdir, config_lib.quickstart_config())
shutil.rmtree(os.path.join(workdir, "checkpoints"))
open(os.path.join(workdir, "checkpoints"), "w").close()
try:
  with checkpoints.writing(manager):
    checkpoints.save(manager, 1, {"a": jnp.ones(3)}, config_lib.quickstart_config())
    manager.wait_until_finished()
except checkpoints.CheckpointWriteError as error:
  manager.close()
  cli.exit_with(error)
"""


@pytest.mark.slow
def test_a_failed_save_ends_the_process_instead_of_hanging(tmp_path):
  completed = subprocess.run([sys.executable, "-c", _FAILING_SAVE, str(tmp_path)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
  assert completed.returncode == 1
  assert completed.stderr.strip().splitlines()[-1].startswith(
      "error: Cannot write a checkpoint in")


def _train_argv(workdir) -> list[str]:
  return [sys.executable, "-m", "crmvae_jax.main", "--config.num_train_steps=4",
          "--config.checkpoint_every_steps=2", f"--workdir={workdir}"]


@pytest.mark.slow
def test_training_into_a_checkpoints_file_exits_in_one_line(tmp_path):
  (tmp_path / "checkpoints").write_text("a file")
  completed = subprocess.run(_train_argv(tmp_path), cwd=REPO, capture_output=True, text=True,
                             timeout=120)
  assert completed.returncode == 1
  assert "Traceback" not in completed.stderr
  assert completed.stderr.strip().splitlines()[-1].startswith(
      f"error: {tmp_path}/checkpoints is a file")


@pytest.mark.slow
def test_training_into_a_read_only_checkpoints_directory_exits_in_one_line(tmp_path):
  directory = tmp_path / "checkpoints"
  directory.mkdir()
  # As root, file modes do not stop writes: only a read-only mount does.
  mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(directory), str(directory)],
                           capture_output=True).returncode == 0
  if not mounted:
    if os.geteuid() == 0:
      pytest.skip("needs a read-only bind mount (mount --bind -o ro), which is not permitted here")
    directory.chmod(0o555)
  try:
    completed = subprocess.run(_train_argv(tmp_path), cwd=REPO, capture_output=True,
                               text=True, timeout=120)
  finally:
    if mounted:
      subprocess.run(["umount", str(directory)], check=True)
    else:
      directory.chmod(0o755)
  assert completed.returncode == 1
  assert "Traceback" not in completed.stderr
  assert completed.stderr.strip().splitlines()[-1].startswith(
      f"error: Cannot write checkpoints in {directory} (")


def test_a_sweep_too_large_for_memory_is_refused_with_a_grid_that_fits():
  loop.check_sweep_fits(10_000_000, 1_000_000, 4, 200_000_000)
  loop.check_sweep_fits(10_000_000, 1_000_000, 1000, None)  # unknown memory: not checked
  with pytest.raises(UserError, match=r"The sweep's 1000 replicas need at least 30.0 GB \(30.0 MB "
                     r"each\), more than the 24.0 GB available; sweep at most 799 replicas"):
    loop.check_sweep_fits(10_000_000, 24_000_000, 1000, 24_000_000_000)
  assert loop.available_memory_bytes() > 0
