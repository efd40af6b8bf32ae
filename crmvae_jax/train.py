"""Training: config -> data -> model -> objective -> optax update -> metrics/checkpoints.

`train_and_evaluate(config, workdir)` is the one entry point, as in Flax's examples.
The train step is pure, `(state, batch, beta) -> (state, metrics)`, and jitted with
the batch split over the data axis of a device mesh and the state replicated, so the
same code runs on one CPU, one GPU or eight GPUs. The state is one pytree, so Orbax
checkpoints it and sweeps vmap it over replicas without special cases.

The training set lives on the devices (`DeviceData`) and several steps run per
dispatch (`make_multi_step`), so the host's Python only acts at log, eval and
checkpoint intervals; it also guards the run (`WorkdirLock`, `StopSignals`, the
finiteness check, `restore_latest`'s fallback past unreadable checkpoints).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import signal
import threading
import time
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from crmvae_jax import data as data_lib
from crmvae_jax import input_pipeline, runs, validation
from crmvae_jax.reporting import plotting
from crmvae_jax.core import models, objectives
from crmvae_jax.errors import UserError
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.core.modalities import Modality, modalities_of


@flax.struct.dataclass
class TrainState:
  """Everything a run carries from step to step.

  Attributes:
    step: int32 scalar, the number of updates applied.
    params: the model's parameters.
    opt_state: optax state.
    rng: raw uint32 PRNG key [2]; step t's randomness is fold_in(rng, t).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def replica_grid(config) -> tuple[list[int], list[float]]:
  """The (seed, beta) of every replica: the grid config.sweep.seeds x config.sweep.betas.

  An empty list means the single value config.seed (or config.beta), so a plain run is
  the grid of one replica.
  """
  seeds = list(config.sweep.seeds) or [config.seed]
  betas = list(config.sweep.betas) or [config.beta]
  return ([seed for seed in seeds for _ in betas], [float(beta) for _ in seeds for beta in betas])


def create_mesh(num_replicas: int = 1, devices=None) -> Mesh:
  """A ('replica', 'data') mesh over `devices` (default: every device JAX sees).

  Replicas are spread over as many devices as divide both their number and the device
  count; the remaining factor splits the batch. One replica: every device is a data
  device.
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  replica_devices = math.gcd(num_replicas, devices.size)
  return Mesh(devices.reshape(replica_devices, devices.size // replica_devices),
              ("replica", "data"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The batch axis split over the data devices, the same on every replica device."""
  return NamedSharding(mesh, PartitionSpec("data"))


def replica_sharding(mesh: Mesh) -> NamedSharding:
  """A leading replica axis split over the replica devices (states, betas, metrics)."""
  return NamedSharding(mesh, PartitionSpec("replica"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
  data_devices = mesh.shape["data"]
  if batch_size % data_devices:
    raise UserError(
        f"--config.batch_size={batch_size} must be divisible by the {data_devices} "
        "devices it is split over.")


def put_global(tree, sharding: NamedSharding):
  """Places host arrays that every process holds in full as global arrays with `sharding`;
  with several processes each contributes the parts its own devices hold."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree)


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """Moves a host batch onto the mesh, split over the data devices."""
  return put_global(batch, batch_sharding(mesh))


@flax.struct.dataclass
class DeviceData:
  """A paired data set held on the devices: base arrays and pair indices.

  A batch is gathered inside the jitted step from example ids, so training moves only
  ids [K, B] from the host, once per K steps (`make_multi_step`).

  Attributes:
    arrays: modality name -> base array (uint8 images or int32 tokens), replicated.
    indices: modality name -> int32 [N]; pair i uses arrays[name][indices[name][i]].
  """

  arrays: dict
  indices: dict

  @classmethod
  def create(cls, dataset: data_lib.MultimodalDataset, mesh: Mesh) -> "DeviceData":
    host = cls(arrays={m: dataset.arrays[m] for m in dataset.modalities},
               indices={m: dataset.indices[m].astype(np.int32) for m in dataset.modalities})
    return put_global(host, replicated(mesh))

  def batch(self, ids: jax.Array) -> dict:
    """The stored arrays of pairs `ids` [B]: {modality: [B, ...]}."""
    return {name: array[self.indices[name][ids]] for name, array in self.arrays.items()}


def create_model(config, train_set) -> models.MultimodalVAE:
  modalities = modalities_of(config.data.name, train_set, config.get("likelihood_weights"))
  return models.MultimodalVAE(modalities=modalities, latent_dim=config.latent_dim)


def create_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate)


def create_train_state(model, tx, example_batch: dict, seed: int) -> TrainState:
  """A fresh state: parameters from PRNGKey(seed), the step rng from it too."""
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(seed))
  params = models.init_params(model, init_rng, example_batch)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), rng=step_rng)


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
  """train_step(state, batch, beta) -> (state, metrics): one Adam update, pure.

  The metrics are the loss, its terms and the gradient's global norm (the training
  health check watches the loss and that norm).
  """

  def train_step(state: TrainState, batch: dict, beta) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng, beta)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, "grad_norm": optax.global_norm(grads), **terms}

  return train_step


def create_replica_states(model, tx, example_batch: dict, seeds: list[int]) -> TrainState:
  """States of every replica stacked on a leading axis [R]; replica r is exactly the
  state `create_train_state(..., seeds[r])` of a single run."""
  # One compiled initialisation, instead of one small compile per parameter.
  initialise = jax.jit(jax.vmap(lambda seed: create_train_state(model, tx, example_batch, seed)))
  return initialise(jnp.asarray(seeds, jnp.uint32))


def make_replicated_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                               mesh: Mesh | None = None) -> Callable:
  """step(states [R], batch, betas [R]) -> (states, metrics [R]): every replica takes
  its own update on the shared batch.

  With a mesh, each replica device group runs the vmapped step for its own replicas
  (manual over 'replica'), while the batch stays split over 'data' automatically, so
  the sampling noise is the same whatever the number of devices. (Letting the SPMD
  partitioner split the vmapped replica axis instead would split the grouped
  convolutions that vmap makes of batched kernels, which XLA rejects.)
  """
  step = jax.vmap(make_train_step(loss_fn, tx), in_axes=(0, None, 0))
  return manual_over_replicas(step, mesh, (True, False, True), (True, True))


def manual_over_replicas(function: Callable, mesh: Mesh | None, split_inputs: tuple[bool, ...],
                         split_outputs: tuple[bool, ...]) -> Callable:
  """`function` run by each replica device group on its own replicas (shard_map, manual
  over 'replica' only); inputs and outputs marked True are split over 'replica', the
  others replicated. Without a mesh, or with one replica group, `function` itself."""
  if mesh is None or mesh.shape["replica"] == 1:
    return function
  spec = lambda split: PartitionSpec("replica") if split else PartitionSpec()
  outputs = tuple(map(spec, split_outputs))
  return jax.shard_map(function, mesh=mesh, in_specs=tuple(map(spec, split_inputs)),
                       out_specs=outputs if len(outputs) > 1 else outputs[0],
                       axis_names={"replica"}, check_vma=False)


def make_multi_step(replicated_step: Callable, mesh: Mesh | None = None) -> Callable:
  """Several train steps in one dispatch, so the host's loop costs once per K steps.

  multi_step(states [R], data, ids [K, B], num_steps, betas [R], first_non_finite [R])
  -> (states, metrics, first_non_finite): applies `replicated_step` to the batches
  ids[0..num_steps-1] (rows past num_steps are ignored; num_steps is traced, so one
  compilation serves every chunk length). `metrics` [R] are the last step's.
  `first_non_finite` [R] carries, from chunk to chunk on the devices, the first step
  whose loss or gradient norm was not finite (-1: none yet); later steps still run, and
  the host checks it before logging or saving anything, without a sync per chunk.

  With K = 1 there is no loop: XLA's CPU backend runs convolution gradients inside a
  loop body on a slow path (about 30x slower for a weight gradient, measured), so CPU
  runs take one step per dispatch (`steps_per_dispatch_for`). The loop body is the same
  computation whatever the chunk length, so with a given K a run resumed at any step
  equals an uninterrupted one bit for bit.
  """

  def multi_step(states, data: DeviceData, ids, num_steps, betas, first_non_finite):

    def body(index, carry):
      states, _, first_non_finite = carry
      batch = data.batch(ids[index])
      if mesh is not None:
        batch = jax.lax.with_sharding_constraint(batch, batch_sharding(mesh))
      states, metrics = replicated_step(states, batch, betas)
      finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
      first_non_finite = jnp.where((first_non_finite < 0) & ~finite, states.step,
                                   first_non_finite)
      return states, metrics, first_non_finite

    if ids.shape[0] == 1:
      return body(0, (states, None, first_non_finite))
    metrics_shape = jax.eval_shape(body, 0, (states, None, first_non_finite))[1]
    initial = (states, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape),
               first_non_finite)
    return jax.lax.fori_loop(0, num_steps, body, initial)

  return multi_step


def steps_per_dispatch_for(config) -> int:
  """config.steps_per_dispatch, or where it is None: 1 on CPU (see `make_multi_step`),
  100 on accelerators, where a step takes about a millisecond and the host's Python
  would otherwise dominate."""
  if config.steps_per_dispatch is not None:
    return config.steps_per_dispatch
  return 1 if jax.default_backend() == "cpu" else 100


def make_eval_step(loss_fn: Callable) -> Callable:
  """eval_step(params, batch, rng, beta) -> metrics (the objective on held-out data)."""

  def eval_step(params, batch, rng, beta):
    loss, terms = loss_fn(params, batch, rng, beta)
    return {"loss": loss, **terms}

  return eval_step


def flat_metrics(metrics: dict, modalities: tuple[Modality, ...], prefix: str) -> dict[str, float]:
  """Scalars for logging: the per-modality vector becomes one entry per modality."""
  flat = {}
  for name, value in metrics.items():
    value = np.asarray(value)
    if name == "log_likelihoods":
      for modality, per_modality in zip(modalities, value):
        flat[f"{prefix}/log_likelihood/{modality.name}"] = float(per_modality)
    else:
      flat[f"{prefix}/{name}"] = float(value)
  return flat


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


def total_steps(config, num_train_examples: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * input_pipeline.steps_per_epoch(num_train_examples, config.batch_size)


def evaluate_loss(eval_step, params, test_set, config, put, betas) -> dict:
  """The objective of every replica averaged over (at most config.eval_batches) test
  batches, the same seeded random ones at every step; metrics [R]."""
  sums, count = None, 0
  for index, ids in enumerate(input_pipeline.eval_batch_ids(
      len(test_set), config.batch_size, config.eval_batches, seed=config.data.seed)):
    metrics = eval_step(params, put(test_set.batch(ids)), jax.random.PRNGKey(index), betas)
    sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    count += 1
  if count == 0:
    raise UserError(
        f"The test set has {len(test_set)} examples, fewer than one batch of "
        f"{config.batch_size}.")
  return jax.tree.map(lambda total: total / count, sums)


def save_cross_generation(model, params, test_set, config, path, title) -> None:
  """Writes the cross-generation grid of seeded random test examples to `path`."""
  batch = test_set.batch(input_pipeline.sample_ids(len(test_set), config.figure_examples,
                                                   config.eval.seed))
  kind = objectives.subset_posterior_kind(config.model, config.get("readings"))
  plotting.cross_generation_figure(model, params, batch, kind, data_lib.text_decoders(test_set),
                                   path, title=title)


def replica_directory(config: ml_collections.ConfigDict, workdir: str, replica: int = 0) -> str:
  """Where one replica writes summaries, figures and evaluations: `workdir` itself for a
  single run, `workdir/replica_<r>` for replica r of a sweep."""
  num_replicas = len(replica_grid(config)[0])
  return workdir if num_replicas == 1 else os.path.join(workdir, f"replica_{replica}")


class _Outputs:
  """Where a run writes, per replica: TensorBoard scalars and figures (process 0 only)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, num_replicas: int):
    self.directories = [replica_directory(config, workdir, r) for r in range(num_replicas)]
    self.enabled = jax.process_index() == 0
    self.writers = [plotting.summary_writer(d) for d in self.directories] if self.enabled else []

  def scalars(self, step: int, per_replica: list[dict[str, float]]) -> None:
    for writer, scalars in zip(self.writers, per_replica):
      plotting.write_scalars(writer, step, scalars)

  def figure_path(self, replica: int, step: int) -> str:
    return os.path.join(self.directories[replica], "figures", f"cross_generation_{step:08d}.png")

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


def _per_replica(metrics, modalities, prefix, num_replicas) -> list[dict[str, float]]:
  metrics = to_host(metrics)
  return [flat_metrics(jax.tree.map(lambda x: x[r], metrics), modalities, prefix)
          for r in range(num_replicas)]


class TrainingDiverged(UserError):
  """The loss or the gradient norm stopped being finite; nothing non-finite was saved."""


class TrainingInterrupted(UserError):
  """SIGINT or SIGTERM stopped training after saving the current step.

  Attributes:
    exit_code: 128 + the signal number, the shell's convention for a signalled program.
  """

  def __init__(self, message: str, signal_number: int):
    super().__init__(message)
    self.exit_code = 128 + signal_number


class WorkdirLock:
  """An exclusive lock on a workdir, so two trainings never write one run.

  `fcntl.flock` locks belong to the open file: the kernel releases them when the
  process dies, even by SIGKILL, so a killed run never leaves a stale lock behind.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "train.lock")
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise UserError(
          f"Another training ({holder}) is running in {os.path.dirname(self.path)}; wait for it "
          "to finish or pass another --workdir.") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"pid {os.getpid()} on {os.uname().nodename}")
    self._file.flush()
    return self

  def __exit__(self, *exc_info) -> None:
    self._file.close()  # releases the lock


class StopSignals:
  """Turns SIGINT and SIGTERM into a request to stop at the next chunk boundary.

  SLURM sends SIGTERM before preempting a job; Ctrl-C sends SIGINT. The first signal
  only sets `signal_number`, so the loop can finish its steps and save; a second
  Ctrl-C stops at once. Handlers can only be installed from the main thread; elsewhere
  this does nothing.
  """

  def __init__(self):
    self.signal_number: int | None = None
    self._previous = {}

  def _handle(self, signal_number, frame):
    if self.signal_number is not None and signal_number == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_number = signal_number
    tqdm.tqdm.write(f"{signal.Signals(signal_number).name}: saving after the current steps "
                    "(Ctrl-C again stops at once, losing them).")

  def requested(self) -> int | None:
    """The signal that asked to stop, agreed on by every process (they must stop at
    the same step, since saving is collective)."""
    if jax.process_count() == 1:
      return self.signal_number
    every = multihost_utils.process_allgather(np.int32(self.signal_number or 0))
    return int(np.max(every)) or None

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is threading.main_thread():
      for number in (signal.SIGINT, signal.SIGTERM):
        self._previous[number] = signal.signal(number, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for number, handler in self._previous.items():
      signal.signal(number, handler)


def next_stop(step: int, config, num_steps: int) -> int:
  """The step at which the host must next act: log, evaluate, checkpoint or finish, or
  at most `steps_per_dispatch_for(config)` steps on."""
  def next_multiple(interval):
    return (step // interval + 1) * interval

  return min(num_steps, step + steps_per_dispatch_for(config),
             next_multiple(config.log_every_steps),
             next_multiple(config.eval_every_steps), next_multiple(config.checkpoint_every_steps))


def _divergence_message(first_non_finite: np.ndarray, seeds, betas, config) -> str:
  replica = int(np.argmax(first_non_finite >= 0))
  where = f" (replica seed {seeds[replica]}, beta {betas[replica]:g})" if len(seeds) > 1 else ""
  return (f"Training diverged at step {first_non_finite[replica]}{where}: the loss or gradient "
          f"norm is not finite; lower --config.learning_rate (now {config.learning_rate:g}) or "
          "beta; the last finite checkpoint is kept.")


def to_host(tree):
  """Global device arrays as numpy arrays on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, float]]:
  """Trains `config.model` on `config.data`, checkpointing and evaluating in `workdir`.

  Every (seed, beta) of the config's sweep grid (`replica_grid`; one replica for a plain
  run) trains at once in one jitted step, vmapped over replicas and sharded over the
  devices. The training set lives on the devices, and up to config.steps_per_dispatch
  steps run per dispatch; the host acts only to log, evaluate, checkpoint and check
  that the loss and gradient norm are finite.

  Resumes from the newest readable checkpoint in `workdir` (same step, same data
  order), refusing a config that changes the model or data. SIGINT and SIGTERM save
  the current step and raise `TrainingInterrupted`; a non-finite loss raises
  `TrainingDiverged` before anything non-finite is saved.

  Returns:
    The last logged train and test metrics of every replica.
  """
  validation.validate_config(config)
  runs.check_workdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock:
    if has_checkpoints(workdir):
      runs.check_same_run(config, workdir, "resume it with those values, or pass another "
                          "--workdir", required=False)
    if jax.process_index() == 0:
      runs.save_config(workdir, config)
    return _train(config, workdir)


def has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def _train(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, float]]:
  seeds, betas = replica_grid(config)
  num_replicas = len(seeds)
  train_set, test_set = data_lib.load(config.data)
  validation.check_split_sizes(config, len(train_set), len(test_set))
  model = create_model(config, train_set)
  tx = create_optimizer(config)
  mesh = create_mesh(num_replicas)
  check_batch_divides(config.batch_size, mesh)
  loss_fn = models.make_loss_fn(model, config.model, config.mixture_estimator,
                                config.get("readings"), config.data.get("text_redraw", False))

  states = create_replica_states(model, tx, train_set.batch(np.arange(2)), seeds)
  states = jax.device_put(states, replica_sharding(mesh))
  manager = checkpoint_manager(workdir, config)
  restored = restore_latest(manager, jax.tree.map(ocp.utils.to_shape_dtype_struct, states),
                            quarantine=True)
  states = states if restored is None else restored
  start_step = int(to_host(states.step)[0])
  num_steps = total_steps(config, len(train_set))
  beta_values = list(betas)
  betas = jax.device_put(jnp.asarray(betas, jnp.float32), replica_sharding(mesh))

  data = DeviceData.create(train_set, mesh)
  rows = min(steps_per_dispatch_for(config), num_steps)
  ids_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
  multi_step = jax.jit(
      make_multi_step(make_replicated_train_step(loss_fn, tx, mesh), mesh),
      in_shardings=(replica_sharding(mesh), replicated(mesh), ids_sharding, replicated(mesh),
                    replica_sharding(mesh), replica_sharding(mesh)),
      out_shardings=(replica_sharding(mesh),) * 3, donate_argnums=(0, 5))
  eval_step = jax.jit(manual_over_replicas(
      jax.vmap(make_eval_step(loss_fn), in_axes=(0, None, None, 0)), mesh,
      (True, False, False, True), (True,)))

  outputs = _Outputs(config, workdir, num_replicas)
  tqdm.tqdm.write(
      f"{config.model} on {config.data.name}: modalities "
      f"{[m.name for m in model.modalities]}, {len(train_set)} train / {len(test_set)} test "
      f"pairs, {num_replicas} replica(s) on a {dict(mesh.shape)} mesh, steps "
      f"{start_step}..{num_steps}, workdir {workdir}")
  batch_ids = input_pipeline.train_batch_ids(
      len(train_set), config.batch_size, config.data.seed, start_step)
  last = [{} for _ in range(num_replicas)]
  progress = tqdm.tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True,
                       disable=config.disable_progress_bar or not outputs.enabled)

  def log_train(step, metrics, examples_per_sec):
    train_metrics = _per_replica(metrics, model.modalities, "train", num_replicas)
    for replica_metrics, replica_last in zip(train_metrics, last):
      replica_metrics["train/examples_per_sec"] = examples_per_sec
      replica_last.update(replica_metrics)
    outputs.scalars(step, train_metrics)
    progress.set_postfix(loss=f"{train_metrics[0]['train/loss']:.2f}",
                         ex_per_s=f"{examples_per_sec:.0f}")

  def evaluate_and_draw(step):
    put = lambda batch: put_batch(batch, mesh)
    test_metrics = _per_replica(
        evaluate_loss(eval_step, states.params, test_set, config, put, betas),
        model.modalities, "test", num_replicas)
    for replica_metrics, replica_last in zip(test_metrics, last):
      replica_last.update(replica_metrics)
    outputs.scalars(step, test_metrics)
    host_params = to_host(states.params)  # a collective: every process must take part
    if not outputs.enabled:
      return
    for r in range(num_replicas):
      save_cross_generation(model, jax.tree.map(lambda x: x[r], host_params), test_set,
                            config, outputs.figure_path(r, step),
                            f"{config.model}, seed {seeds[r]}, beta {beta_values[r]:g}, step {step}")
    tqdm.tqdm.write(f"step {step}: test loss "
                    + ", ".join(f"{m['test/loss']:.2f}" for m in test_metrics)
                    + f"; cross-generations in {os.path.dirname(outputs.figure_path(0, step))}")

  def save(step):
    # The decision is ours (Orbax's default policy would also save the first step it sees).
    if step not in manager.all_steps():
      manager.save(step, args=ocp.args.StandardSave(states), force=True)

  host_intervals = (config.log_every_steps, config.eval_every_steps,
                    config.checkpoint_every_steps)
  first_non_finite = jax.device_put(jnp.full(num_replicas, -1, jnp.int32), replica_sharding(mesh))
  chunk_lengths = {}
  window_start, window_steps = time.perf_counter(), 0
  step = start_step
  try:
    with progress, StopSignals() as stop:
      while step < num_steps:
        end = next_stop(step, config, num_steps)
        ids = np.zeros((rows, config.batch_size), np.int32)
        for row in range(end - step):
          ids[row] = next(batch_ids)
        if end - step not in chunk_lengths:  # a few distinct values: placed once each
          chunk_lengths[end - step] = put_global(np.int32(end - step), replicated(mesh))
        states, metrics, first_non_finite = multi_step(
            states, data, put_global(ids, ids_sharding), chunk_lengths[end - step], betas,
            first_non_finite)
        progress.update(end - step)
        window_steps += end - step
        step = end
        host_action = step == num_steps or any(step % n == 0 for n in host_intervals)
        # Several processes must agree on stopping (a collective), so they ask only when
        # the host acts anyway; one process asks after every chunk.
        stopping = stop.requested() if host_action or jax.process_count() == 1 else None
        if not (host_action or stopping):
          continue  # nothing for the host to do: dispatch the next chunk without waiting
        diverged_at = np.asarray(to_host(first_non_finite))
        if np.any(diverged_at >= 0):
          raise TrainingDiverged(_divergence_message(diverged_at, seeds, beta_values, config))
        if step % config.log_every_steps == 0 or step == num_steps:
          log_train(step, metrics, window_steps * config.batch_size
                    / (time.perf_counter() - window_start))
          window_start, window_steps = time.perf_counter(), 0
        if step % config.eval_every_steps == 0 or step == num_steps:
          evaluate_and_draw(step)
        if step % config.checkpoint_every_steps == 0 or step == num_steps or stopping:
          save(step)
        if stopping and step < num_steps:
          manager.wait_until_finished()
          raise TrainingInterrupted(
              f"{signal.Signals(stopping).name} stopped training at step {step} of "
              f"{num_steps} after saving it; the same command resumes it.", stopping)
  finally:
    manager.wait_until_finished()
    manager.close()
    outputs.close()
  return last
