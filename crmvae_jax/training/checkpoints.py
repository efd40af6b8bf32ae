"""Checkpoints of a run: the Orbax manager of `workdir/checkpoints`, saving a step with
the model-defining fields of its config (`save`), restoring the newest readable step
(unreadable ones are skipped, and quarantined while training; one of another model is
refused, never quarantined), and the trained model and parameters of a run for
evaluation (`load_trained`).
"""

from __future__ import annotations

import contextlib
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
from crmvae_jax.common import atomic, errors
from crmvae_jax.config import runs, validation
from crmvae_jax.model import models
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.common.errors import UserError
from crmvae_jax.training.state import (create_model, create_optimizer, create_replica_states,
                                       replica_grid)


class CheckpointWriteError(UserError):
  """A checkpoint could not be written (a full disk, a read-only directory).

  Attributes:
    hard_exit: the command line must end the process without waiting for its threads:
      Orbax's threads of a failed save wait forever and would keep it from exiting.
  """

  hard_exit = True


def check_writable(workdir: str) -> None:
  """Refuses a `workdir/checkpoints` that is not a directory this process can write,
  before any checkpoint thread starts (a failed save leaves Orbax's threads waiting).

  Raises:
    UserError: it is a file, or creating a file in it fails (read-only, immutable,
      full); the message names it and the fix (`atomic.check_writable`).
  """
  atomic.check_writable(os.path.join(os.path.abspath(workdir), "checkpoints"),
                        "pass another --workdir", what="checkpoints")


def _os_error_in(error: BaseException) -> OSError | None:
  """The OSError behind `error` (itself, its cause or its context), if any."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def writing(manager: ocp.CheckpointManager):
  """Turns a failed checkpoint write into a `CheckpointWriteError` (one sentence).

  Raises:
    CheckpointWriteError: an OSError (full disk, read-only or vanished directory) in
      the block, or a library's report of a full disk or read-only file system in its
      own exception type (`errors.resource_problem`: Orbax raises ValueError); any
      other exception is a bug and passes unchanged.
  """
  try:
    yield
  except Exception as error:  # pylint: disable=broad-except
    os_error = _os_error_in(error)
    problem = errors.resource_problem(error)
    if os_error is None and problem is None:
      raise
    directory = str(manager.directory)
    if problem == "disk full":
      free = shutil.disk_usage(directory).free if os.path.isdir(directory) else None
      reason = "the disk is full" + (f", {free / 1e6:.1f} MB free" if free is not None else "")
    elif os_error is not None:
      reason = os_error.strerror or type(os_error).__name__
    else:
      reason = problem
    raise CheckpointWriteError(
        f"Cannot write a checkpoint in {directory} ({reason}); free space or make it "
        "writable, then the same command resumes from the last saved checkpoint (or pass "
        "another --workdir).") from error


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=config.get("checkpoints_to_keep", 2),
      save_interval_steps=config.checkpoint_every_steps)
  # The handler named up front: a manager that has not saved yet (a resume, an
  # evaluation) can then read a checkpoint's tree metadata (`shape_mismatch`); without
  # it Orbax returns None there and warns that item "default" cannot be restored.
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_handlers=ocp.StandardCheckpointHandler())


def _quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves an unreadable checkpoint out of the manager's directory; returns where."""
  directory = os.path.join(os.path.dirname(str(manager.directory)), UNREADABLE_DIR)
  os.makedirs(directory, exist_ok=True)
  destination = os.path.join(directory, f"{step}_{int(time.time())}")
  shutil.move(os.path.join(str(manager.directory), str(step)), destination)
  manager.reload()
  return destination


# The key of a checkpoint's custom metadata that holds `runs.model_defining_fields`.
MODEL_DEFINING_KEY = "model_defining"
# How often a reader lists the checkpoints again when the one it read was rotated away.
_ROTATION_ATTEMPTS = 10
UNREADABLE_DIR = "unreadable_checkpoints"


def save(manager: ocp.CheckpointManager, step: int, states, config) -> None:
  """Saves `states` as checkpoint `step`, recording the config's model-defining fields
  beside it, so that a resume is checked against them even without config.json."""
  manager.save(step, args=ocp.args.StandardSave(states), force=True,
               custom_metadata={MODEL_DEFINING_KEY: runs.model_defining_fields(config)})


def recorded_fields(manager: ocp.CheckpointManager, step: int) -> dict | None:
  """The model-defining fields checkpoint `step` recorded, or None (a checkpoint from
  before they were recorded, or one whose metadata cannot be read)."""
  try:
    custom = manager.metadata(step).custom_metadata or {}
  except Exception:  # pylint: disable=broad-except  # unreadable: restoring will tell
    return None
  fields = custom.get(MODEL_DEFINING_KEY)
  return fields if isinstance(fields, dict) else None


def _flat_shapes(tree) -> dict[str, tuple[int, ...]]:
  """Dotted path -> shape of every array leaf (Orbax's own naming of a saved tree)."""
  return {path: tuple(leaf.shape) for path, leaf in ocp.tree.to_flat_dict(tree, sep=".").items()
          if hasattr(leaf, "shape")}


def shape_mismatch(manager: ocp.CheckpointManager, step: int, abstract) -> str | None:
  """How checkpoint `step`'s arrays differ from `abstract`'s, or None when they match or
  the checkpoint's metadata cannot be read (then restoring decides whether it is
  damaged).

  Returns:
    e.g. 'params.encoder.Dense_0.kernel is (784, 32) there, (784, 16) here (and 7 more
    differences)'.
  """
  try:
    stored = manager.item_metadata(step)
    stored = _flat_shapes(getattr(stored, "tree", stored))
  except Exception:  # pylint: disable=broad-except  # unreadable metadata: damage, not a mismatch
    return None
  if not stored:
    return None
  wanted = _flat_shapes(abstract)
  differences = []
  # The parameters first: they name the layer, where the optimiser's copies repeat it.
  for path in sorted(set(stored) | set(wanted), key=lambda path: (not path.startswith("params."),
                                                                  path)):
    there, here = stored.get(path), wanted.get(path)
    if there != here:
      differences.append(f"{path} is {there or 'absent'} there, {here or 'absent'} here")
  if not differences:
    return None
  more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
  return differences[0] + more


def _check_same_model(manager: ocp.CheckpointManager, step: int, abstract, config) -> None:
  """Refuses checkpoint `step` if it holds another model: its recorded fields differ
  from `config`'s, or (for a checkpoint without them) its arrays' shapes differ."""
  workdir = os.path.dirname(str(manager.directory))
  fix = "pass those values, or another --workdir to start a new run"
  recorded = recorded_fields(manager, step)
  if recorded is not None and config is not None:
    differences = runs.model_defining_differences(recorded, config)
    if differences:
      raise UserError(
          f"Checkpoint {step} in {workdir} was trained with "
          f"{runs.describe_differences(recorded, config, differences)}; {fix}.")
  mismatch = shape_mismatch(manager, step, abstract)
  if mismatch is not None:
    raise UserError(f"Checkpoint {step} in {workdir} holds another model: {mismatch}; it was "
                    "trained with other values of --config.latent_dim, --config.model or "
                    f"another model-defining field; {fix}.")


def restore_latest(manager: ocp.CheckpointManager, abstract, config=None,
                   quarantine: bool = False):
  """The newest readable checkpoint restored into `abstract`'s structure, or None.

  A checkpoint of another model (its recorded model-defining fields differ from
  `config`'s, or its arrays' names or shapes differ from `abstract`'s) is refused,
  never skipped. A checkpoint that cannot be read (a truncated or half-written file)
  is skipped with a warning and the previous one is tried; with `quarantine`
  (training), it is also moved to `unreadable_checkpoints/` beside the checkpoints, so
  training can write that step again.

  Args:
    manager: the run's checkpoint manager.
    abstract: the states' structure (shapes and dtypes) to restore into.
    config: the config the states are restored for (None: no field check).
    quarantine: move unreadable checkpoints aside (training).

  Returns:
    The restored states, or None when there is no checkpoint (or, without
    `quarantine`, none readable).

  Raises:
    UserError: a checkpoint holds another model, or (with `quarantine`) every
      checkpoint was unreadable and none is left to resume.
  """
  # A reader beside a training run may list a step that the run's rotation removes
  # before it is read: it then lists the steps again and reads the newest one left.
  for attempt in range(_ROTATION_ATTEMPTS):
    manager.reload()  # another process may have written or removed steps since it opened
    steps = sorted(manager.all_steps(), reverse=True)
    rotated = False
    for index, step in enumerate(steps):
      try:
        _check_same_model(manager, step, abstract, config)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as error:  # pylint: disable=broad-except
        if not os.path.isdir(os.path.join(str(manager.directory), str(step))):
          rotated = True  # removed while we read it: neither damaged nor another model
          continue
        if isinstance(error, UserError):
          raise
        # Orbax raises many types; with the names and shapes checked above, any of them
        # means the files are damaged.
        where = f"; moved to {_quarantine(manager, step)}" if quarantine else ""
        then = ("falling back to the previous one" if index + 1 < len(steps) else
                "no earlier checkpoint is left")
        message = (f"warning: checkpoint {step} in {manager.directory} is unreadable "
                   f"({type(error).__name__}){where}; {then}.")
        logging.warning(message)
        tqdm.tqdm.write(message)
    if not rotated:
      break
    time.sleep(0.2 * (attempt + 1))
  if steps and quarantine:
    workdir = os.path.dirname(str(manager.directory))
    raise UserError(
        f"No readable checkpoint is left in {workdir} (the unreadable ones are in "
        f"{os.path.join(workdir, UNREADABLE_DIR)}/); to start afresh pass another --workdir "
        f"or remove {workdir}.")
  return None


def saved_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints in `workdir`, oldest first (none: an empty list), read
  from the folder names without opening a manager."""
  directory = os.path.join(workdir, "checkpoints")
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit()) if os.path.isdir(directory) else []


def has_checkpoints(workdir: str) -> bool:
  return bool(saved_steps(workdir))


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
  runs.check_same_data(workdir, data_lib.identity(config.data),
                       "give it the data it was trained on (the same files at "
                       "--config.data.path / test_path)")
  train_set, test_set = data_lib.load(config.data)
  model = create_model(config, train_set)
  seeds, _ = replica_grid(config)
  if not 0 <= replica < len(seeds):
    raise UserError(f"--replica must be in 0..{len(seeds) - 1} (the run has {len(seeds)} "
                    f"replica(s)); got {replica}.")
  tx = create_optimizer(config)
  abstract = jax.eval_shape(
      lambda: create_replica_states(model, tx, train_set.batch(np.arange(2)), seeds))
  manager = checkpoint_manager(workdir, config)
  states = restore_latest(manager, abstract, config)
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
  validation.check_saved_config(workdir)
  config = runs.load_config(workdir)
  seeds, _ = replica_grid(config)
  if not 0 <= replica < len(seeds):
    raise UserError(f"{workdir} holds replicas 0..{len(seeds) - 1}; pass replica= one of them "
                    f"(got {replica}).")
  model, params, train_set, test_set, step = load_trained(config, workdir, replica)
  return TrainedModel.from_config(model, params, config, batch_size, step=step,
                                  train_set=train_set, test_set=test_set)
