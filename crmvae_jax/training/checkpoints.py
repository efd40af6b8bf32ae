"""Checkpoints of a run: the Orbax manager of `workdir/checkpoints`, restoring the newest
readable step (unreadable ones are skipped, and quarantined while training), and the
trained model and parameters of a run for evaluation (`load_trained`).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm
from absl import logging

from crmvae_jax import data as data_lib
from crmvae_jax import runs
from crmvae_jax.core import models
from crmvae_jax.core.inference import TrainedModel
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.errors import UserError
from crmvae_jax.training.state import (create_model, create_optimizer, create_replica_states,
                                       replica_grid)


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.get("checkpoints_to_keep", 2),
      save_interval_steps=config.checkpoint_every_steps)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def _quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves an unreadable checkpoint out of the manager's directory; returns where."""
  directory = os.path.join(os.path.dirname(str(manager.directory)), "unreadable_checkpoints")
  os.makedirs(directory, exist_ok=True)
  destination = os.path.join(directory, f"{step}_{int(time.time())}")
  shutil.move(os.path.join(str(manager.directory), str(step)), destination)
  manager.reload()
  return destination


def restore_latest(manager: ocp.CheckpointManager, abstract, quarantine: bool = False):
  """The newest readable checkpoint restored into `abstract`'s structure, or None.

  A checkpoint that cannot be read (a truncated or half-written file) is skipped with
  a warning and the previous one is tried; with `quarantine` (training), it is also
  moved to `unreadable_checkpoints/` beside the checkpoints, so training can write that
  step again.
  """
  manager.reload()  # another process may have written or removed steps since it opened
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # Orbax raises many types; any of them means unreadable.
      where = f"; moved to {_quarantine(manager, step)}" if quarantine else ""
      message = (f"warning: checkpoint {step} in {manager.directory} is unreadable "
                 f"({type(error).__name__}){where}; falling back to the previous one.")
      logging.warning(message)
      tqdm.tqdm.write(message)
  return None


def has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


class TrainedRun(NamedTuple):
  """What `load_trained` gives: a trained replica and its data."""

  model: models.MultimodalVAE
  params: Any
  train_set: MultimodalDataset
  test_set: MultimodalDataset
  step: int


def load_trained(config: ml_collections.ConfigDict, workdir: str, replica: int = 0
                 ) -> TrainedRun:
  """The data, model and latest parameters of a run trained in `workdir`.

  Args:
    config: the run's config (its sweep grid says how many replicas were trained).
    workdir: the run's directory.
    replica: which replica of a sweep (see `replica_grid`); 0 for a single run.

  Returns:
    A `TrainedRun` (model, params, train_set, test_set, step).

  Raises:
    UserError: with the command that trains it, if `workdir` has no readable checkpoint.
  """
  train_set, test_set = data_lib.load(config.data)
  model = create_model(config, train_set)
  seeds, _ = replica_grid(config)
  if not 0 <= replica < len(seeds):
    raise UserError(f"replica must be in 0..{len(seeds) - 1}; got {replica}.")
  tx = create_optimizer(config)
  abstract = jax.eval_shape(
      lambda: create_replica_states(model, tx, train_set.batch(np.arange(2)), seeds))
  manager = checkpoint_manager(workdir, config)
  states = restore_latest(manager, abstract)
  manager.close()
  if states is None:
    raise UserError(
        f"No readable checkpoint in {os.path.abspath(workdir)}; train one first with: "
        f"python -m crmvae_jax.main --config=CONFIG --workdir={workdir}")
  state = jax.tree.map(lambda x: x[replica], states)
  return TrainedRun(model, state.params, train_set, test_set, int(state.step))


def load_run(workdir: str, replica: int = 0, batch_size: int = 256) -> TrainedModel:
  """The trained model of the run in `workdir` (`crmvae_jax.load`).

  Reads the run's saved config (`runs.load_config`), its data and its newest readable
  checkpoint; the model infers z from a subset of modalities as it was trained to.

  Args:
    workdir: the run's directory.
    replica: which (seed, beta) replica of a sweep (`state.replica_grid`); 0 for a run.
    batch_size: examples per compiled call of the model's methods.

  Returns:
    A `TrainedModel` whose `config`, `step`, `train_set` and `test_set` are the run's.

  Raises:
    UserError: no trained run or no readable checkpoint in `workdir`, or no such
      replica; the message says what to run or pass.
  """
  config = runs.load_config(workdir)
  seeds, _ = replica_grid(config)
  if not 0 <= replica < len(seeds):
    raise UserError(f"{workdir} holds replicas 0..{len(seeds) - 1}; pass replica= one of them "
                    f"(got {replica}).")
  model, params, train_set, test_set, step = load_trained(config, workdir, replica)
  trained = TrainedModel.from_config(model, params, config, batch_size)
  trained.config, trained.step = config, step
  trained.train_set, trained.test_set = train_set, test_set
  return trained
