"""Restoring checkpoints: another model is refused (never quarantined), damage is
quarantined, checkpoints from before the model-defining fields were recorded still
restore exactly, and a run is not resumed past the steps asked for."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from crmvae_jax import config as config_lib
from crmvae_jax.errors import UserError
from crmvae_jax.training import checkpoints, loop


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


def test_a_checkpoint_without_recorded_fields_restores_exactly(tmp_path):
  manager = _manager(tmp_path)
  _save_old_style(manager, 20, _states(32))
  assert checkpoints.recorded_fields(manager, 20) is None
  _assert_equal(checkpoints.restore_latest(manager, _abstract(32), _config(), quarantine=True),
                _states(32))
  manager.close()


def test_a_saved_checkpoint_records_the_model_defining_fields(tmp_path):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 20, _states(32), _config())
  manager.wait_until_finished()
  recorded = checkpoints.recorded_fields(manager, 20)
  assert recorded["latent_dim"] == 32 and recorded["model"] == "crmvae"
  assert "learning_rate" not in recorded and "num_train_steps" not in recorded
  _assert_equal(checkpoints.restore_latest(manager, _abstract(32), _config(), quarantine=True),
                _states(32))
  manager.close()


def test_another_latent_size_is_refused_by_its_recorded_fields_not_quarantined(tmp_path):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 10, _states(32), _config())
  checkpoints.save(manager, 20, _states(32), _config())
  manager.wait_until_finished()
  with pytest.raises(UserError, match=r"Checkpoint 20 .* --config.latent_dim=32 \(asked: 16\); "
                     r"pass those values, or another --workdir"):
    checkpoints.restore_latest(manager, _abstract(16), _config(16), quarantine=True)
  assert sorted(manager.all_steps()) == [10, 20]
  assert not os.path.exists(tmp_path / checkpoints.UNREADABLE_DIR)
  manager.close()


def test_another_shape_without_recorded_fields_is_a_mismatch_naming_the_shapes(tmp_path):
  manager = _manager(tmp_path)
  _save_old_style(manager, 10, _states(32))
  _save_old_style(manager, 20, _states(32))
  with pytest.raises(UserError, match=r"holds another model: params.encoder.kernel is \(6, 32\) "
                     r"there, \(6, 16\) here; .*another --workdir"):
    checkpoints.restore_latest(manager, _abstract(16), _config(16), quarantine=True)
  assert sorted(manager.all_steps()) == [10, 20]
  assert not os.path.exists(tmp_path / checkpoints.UNREADABLE_DIR)
  manager.close()


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
