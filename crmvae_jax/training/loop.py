"""Training: config -> data -> model -> objective -> optax update -> metrics/checkpoints.

`train_and_evaluate(config, workdir)` is the one entry point, as in Flax's examples: it
builds the state (`state`), runs the jitted multi-step (`step`) and checkpoints
(`checkpoints`). The host's Python only acts at log, eval and checkpoint intervals; it
also guards the run (`guards.WorkdirLock`, `guards.StopSignals`, the finiteness check,
`restore_latest`'s fallback past unreadable checkpoints).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm
from jax.sharding import NamedSharding, PartitionSpec

from crmvae_jax import data as data_lib
from crmvae_jax.data import input_pipeline, text
from crmvae_jax.config import runs, validation
from crmvae_jax.model import models, objectives
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.model.modality import Modality
from crmvae_jax.common.errors import UserError
from crmvae_jax.reporting import plotting
from crmvae_jax.training import checkpoints
from crmvae_jax.training.checkpoints import checkpoint_manager, has_checkpoints, restore_latest
# The guards are part of the loop's interface (`loop.TrainingDiverged`, ...).
from crmvae_jax.training.guards import (StopSignals, TrainingDiverged,  # noqa: F401
                                        TrainingInterrupted, WorkdirLock, _divergence_message,
                                        available_memory_bytes, check_not_past,
                                        check_sweep_fits)
from crmvae_jax.training.state import (create_model, create_optimizer, create_replica_states,
                                       create_train_state, replica_directory, replica_grid)
from crmvae_jax.training.step import (DeviceData, check_batch_divides, create_mesh,
                                      make_eval_step, make_multi_step,
                                      make_replicated_train_step, manual_over_replicas,
                                      put_batch, put_global, replica_sharding, replicated,
                                      steps_per_dispatch_for, to_host)


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


def save_cross_generation(trained: TrainedModel, test_set, config, path, title) -> None:
  """Writes the cross-generation grid of seeded random test examples to `path`."""
  batch = test_set.batch(input_pipeline.sample_ids(len(test_set), config.figure_examples,
                                                   config.eval.seed))
  plotting.cross_generation_figure(trained, batch, data_lib.text_decoders(test_set), path,
                                   title=title)


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

  def figure(self, replica: int, step: int) -> None:
    """The cross-generation figure of `step`, drawn already, as TensorBoard's image
    `cross_generation` of the replica."""
    plotting.write_image(self.writers[replica], step, "cross_generation",
                         self.figure_path(replica, step))

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


def _per_replica(metrics, modalities, prefix, num_replicas) -> list[dict[str, float]]:
  metrics = to_host(metrics)
  return [flat_metrics(jax.tree.map(lambda x: x[r], metrics), modalities, prefix)
          for r in range(num_replicas)]


def next_stop(step: int, config, num_steps: int) -> int:
  """The step at which the host must next act: log, evaluate, checkpoint or finish, or
  at most `steps_per_dispatch_for(config)` steps on."""
  def next_multiple(interval):
    return (step // interval + 1) * interval

  return min(num_steps, step + steps_per_dispatch_for(config),
             next_multiple(config.log_every_steps),
             next_multiple(config.eval_every_steps), next_multiple(config.checkpoint_every_steps))


def _state_bytes(model, tx, train_set) -> int:
  """The bytes of one replica's training state, from its shapes alone."""
  state = jax.eval_shape(lambda: create_train_state(model, tx, train_set.batch(np.arange(2)), 0))
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))


class _Run:
  """What the loop of one training shares between its chunks of steps and the host's
  actions: the data, model, mesh and jitted steps, the replicas' states (restored from
  the newest readable checkpoint), the checkpoint manager, the outputs and the last
  logged metrics of every replica.

  Building it loads the data, restores the states, opens the summary writers and
  announces the run; `close` waits for the last checkpoint and closes the writers.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str,
               eval_scalars: EvalScalars | None = None):
    self.config = config
    self.eval_scalars = eval_scalars
    self.seeds, self.beta_values = replica_grid(config)
    self.num_replicas = len(self.seeds)
    self.train_set, self.test_set = data_lib.load(config.data)
    validation.check_split_sizes(config, len(self.train_set), len(self.test_set))
    self.model = create_model(config, self.train_set)
    tx = create_optimizer(config)
    self.mesh = create_mesh(self.num_replicas)
    check_batch_divides(config.batch_size, self.mesh)
    augment = (text.redraw_augmentation(self.model.modalities)
               if config.data.get("text_redraw", False) else None)
    loss_fn = models.make_loss_fn(self.model, config.model, config.mixture_estimator,
                                  config.get("readings"), augment,
                                  objectives.objective_options(config))
    if self.num_replicas > 1:
      check_sweep_fits(_state_bytes(self.model, tx, self.train_set),
                       sum(array.nbytes for array in self.train_set.arrays.values()),
                       self.num_replicas, available_memory_bytes())
    self.num_steps = total_steps(config, len(self.train_set))
    self._restore(tx, workdir)
    self.betas = jax.device_put(jnp.asarray(self.beta_values, jnp.float32),
                                replica_sharding(self.mesh))
    self._jit_steps(loss_fn, tx)
    self.outputs = _Outputs(config, workdir, self.num_replicas)
    tqdm.tqdm.write(
        f"{config.model} on {config.data.name}: modalities "
        f"{[m.name for m in self.model.modalities]}, {len(self.train_set)} train / "
        f"{len(self.test_set)} test pairs, {self.num_replicas} replica(s) on a "
        f"{dict(self.mesh.shape)} mesh, steps {self.start_step}..{self.num_steps}, workdir "
        f"{workdir}")
    self.batch_ids = input_pipeline.train_batch_ids(
        len(self.train_set), config.batch_size, config.data.seed, self.start_step)
    self.last = [{} for _ in range(self.num_replicas)]
    self.progress = tqdm.tqdm(
        total=self.num_steps, initial=self.start_step, unit="step", dynamic_ncols=True,
        disable=config.disable_progress_bar or not self.outputs.enabled)
    self.first_non_finite = jax.device_put(jnp.full(self.num_replicas, -1, jnp.int32),
                                           replica_sharding(self.mesh))
    self.chunk_lengths = {}
    self.metrics = None
    self.window_start, self.window_steps = time.perf_counter(), 0

  def _restore(self, tx, workdir: str) -> None:
    """Fresh states of every replica, replaced by the newest readable checkpoint's;
    refuses a checkpoint of another model, and one past `num_steps`."""
    states = create_replica_states(self.model, tx, self.train_set.batch(np.arange(2)),
                                   self.seeds)
    states = jax.device_put(states, replica_sharding(self.mesh))
    self.manager = checkpoint_manager(workdir, self.config)
    try:
      restored = restore_latest(self.manager,
                                jax.tree.map(ocp.utils.to_shape_dtype_struct, states),
                                self.config, quarantine=True)
      self.states = states if restored is None else restored
      self.start_step = int(to_host(self.states.step)[0])
      check_not_past(self.start_step, self.num_steps, workdir)
    except BaseException:
      self.manager.close()  # its threads would otherwise keep the process from exiting
      raise

  def _jit_steps(self, loss_fn, tx) -> None:
    """The training set on the devices, the jitted multi-step and eval step."""
    mesh = self.mesh
    self.data = DeviceData.create(self.train_set, mesh)
    self.rows = min(steps_per_dispatch_for(self.config), self.num_steps)
    self.ids_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    self.multi_step = jax.jit(
        make_multi_step(make_replicated_train_step(loss_fn, tx, mesh), mesh),
        in_shardings=(replica_sharding(mesh), replicated(mesh), self.ids_sharding,
                      replicated(mesh), replica_sharding(mesh), replica_sharding(mesh)),
        out_shardings=(replica_sharding(mesh),) * 3, donate_argnums=(0, 5))
    self.eval_step = jax.jit(manual_over_replicas(
        jax.vmap(make_eval_step(loss_fn), in_axes=(0, None, None, 0)), mesh,
        (True, False, False, True), (True,)))

  def due(self, step: int, interval: int) -> bool:
    """Whether an action every `interval` steps (and at the last step) is due."""
    return step % interval == 0 or step == self.num_steps

  def dispatch(self, step: int, end: int) -> None:
    """Runs steps step..end-1 in one dispatch, without waiting for them."""
    ids = np.zeros((self.rows, self.config.batch_size), np.int32)
    for row in range(end - step):
      ids[row] = next(self.batch_ids)
    if end - step not in self.chunk_lengths:  # a few distinct values: placed once each
      self.chunk_lengths[end - step] = put_global(np.int32(end - step), replicated(self.mesh))
    self.states, self.metrics, self.first_non_finite = self.multi_step(
        self.states, self.data, put_global(ids, self.ids_sharding),
        self.chunk_lengths[end - step], self.betas, self.first_non_finite)
    self.progress.update(end - step)
    self.window_steps += end - step

  def check_finite(self) -> None:
    """Raises `TrainingDiverged` if any step so far had a non-finite loss, gradient norm,
    parameter or optimiser state (checked before anything is logged or saved)."""
    diverged_at = np.asarray(to_host(self.first_non_finite))
    if np.any(diverged_at >= 0):
      raise TrainingDiverged(
          _divergence_message(diverged_at, self.seeds, self.beta_values, self.config,
                              has_checkpoint=bool(self.manager.all_steps())))

  def log_train(self, step: int) -> None:
    """Logs the last step's train metrics and the throughput since the last log."""
    examples_per_sec = (self.window_steps * self.config.batch_size
                        / (time.perf_counter() - self.window_start))
    train_metrics = _per_replica(self.metrics, self.model.modalities, "train", self.num_replicas)
    for replica_metrics, replica_last in zip(train_metrics, self.last):
      replica_metrics["train/examples_per_sec"] = examples_per_sec
      replica_last.update(replica_metrics)
    self.outputs.scalars(step, train_metrics)
    self.progress.set_postfix(loss=f"{train_metrics[0]['train/loss']:.2f}",
                              ex_per_s=f"{examples_per_sec:.0f}")
    self.window_start, self.window_steps = time.perf_counter(), 0

  def evaluate_and_draw(self, step: int) -> None:
    """Logs the test loss of every replica and draws its cross-generations."""
    config, model, mesh = self.config, self.model, self.mesh
    put = lambda batch: put_batch(batch, mesh)
    test_metrics = _per_replica(
        evaluate_loss(self.eval_step, self.states.params, self.test_set, config, put, self.betas),
        model.modalities, "test", self.num_replicas)
    for replica_metrics, replica_last in zip(test_metrics, self.last):
      replica_last.update(replica_metrics)
    self.outputs.scalars(step, test_metrics)
    host_params = to_host(self.states.params)  # a collective: every process must take part
    if not self.outputs.enabled:
      return
    for r in range(self.num_replicas):
      trained = TrainedModel.from_config(model, jax.tree.map(lambda x: x[r], host_params),
                                         config)
      save_cross_generation(
          trained, self.test_set, config, self.outputs.figure_path(r, step),
          f"{config.model}, seed {self.seeds[r]}, beta {self.beta_values[r]:g}, step {step}")
      self.outputs.figure(r, step)
      if self.eval_scalars is not None:
        scalars = self.eval_scalars(trained, self.test_set)
        self.last[r].update(scalars)
        plotting.write_scalars(self.outputs.writers[r], step, scalars)
    figures = os.path.dirname(self.outputs.figure_path(0, step))
    tqdm.tqdm.write(f"step {step}: test loss "
                    + ", ".join(f"{m['test/loss']:.2f}" for m in test_metrics)
                    + f"; cross-generations in {figures}")

  def save(self, step: int) -> None:
    """Checkpoints the states at `step` unless that step is saved already."""
    # The decision is ours (Orbax's default policy would also save the first step it sees).
    if step not in self.manager.all_steps():
      with checkpoints.writing(self.manager):
        checkpoints.save(self.manager, step, self.states, self.config)

  def wait_for_checkpoints(self) -> None:
    """Waits until the checkpoints being written are on disk.

    Raises:
      CheckpointWriteError: one could not be written.
    """
    with checkpoints.writing(self.manager):
      self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the last checkpoint, then closes the manager and the writers (also
    when that checkpoint failed)."""
    try:
      self.wait_for_checkpoints()
    finally:
      self.manager.close()
      self.outputs.close()


# (trained model of a replica, test set) -> named scalars, written to TensorBoard at every
# evaluation (`crmvae_jax.evaluation.coherence.training_scalars`: coherence).
EvalScalars = Callable[[TrainedModel, Any], dict[str, float]]


def check_run(config: ml_collections.ConfigDict, workdir: str) -> None:
  """What is refused before devices, data or compilation are touched, in a second: a
  config that cannot train (`validation.validate_config`) and a workdir that cannot be
  written (`runs.check_workdir`). `train_and_evaluate` starts with it."""
  validation.validate_config(config)
  runs.check_workdir(workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       eval_scalars: EvalScalars | None = None,
                       join: Callable[[], None] | None = None) -> list[dict[str, float]]:
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

  At every evaluation the test loss, the cross-generation figure (a PNG and TensorBoard's
  image `cross_generation`) and, with `eval_scalars`, its scalars are written.

  Args:
    config: the run's config (checked here first, `check_run`).
    workdir: its directory.
    eval_scalars: scalars of every evaluation for TensorBoard (`coherence.training_scalars`).
    join: called once the config and workdir pass their checks, before any device is
      touched: a multi-host run joins its processes there, so that a bad value fails in
      a second, not after the wait (`crmvae_jax.main --multihost`).

  Returns:
    The last logged train and test metrics of every replica.
  """
  check_run(config, workdir)
  if join is not None:
    join()
  os.makedirs(workdir, exist_ok=True)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock:
    checkpoints.check_writable(workdir)
    if has_checkpoints(workdir):
      validation.check_saved_config(workdir)
      runs.check_same_run(config, workdir, "resume it with those values, or pass another "
                          "--workdir", required=False)
      runs.check_same_data(workdir, data_lib.identity(config.data),
                           "resume it on the data it was trained on, or pass another --workdir")
    return _train(config, workdir, eval_scalars)


def _train(config: ml_collections.ConfigDict, workdir: str,
           eval_scalars: EvalScalars | None = None) -> list[dict[str, float]]:
  """The loop: chunks of jitted steps, and between them the host's actions at their
  intervals (log, evaluate, checkpoint), the finiteness check and the stop signals."""
  run = _Run(config, workdir, eval_scalars)
  step, num_steps = run.start_step, run.num_steps
  try:
    # Only once the checkpoints are known to be this run's: a refused config must not
    # replace the run's own config.json.
    if jax.process_index() == 0:
      runs.save_config(workdir, config)
      runs.save_data_identity(workdir, data_lib.identity(config.data))
    with run.progress, StopSignals() as stop:
      while step < num_steps:
        end = next_stop(step, config, num_steps)
        run.dispatch(step, end)
        step = end
        host_action = any(run.due(step, interval) for interval in (
            config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps))
        # Several processes must agree on stopping (a collective), so they ask only when
        # the host acts anyway; one process asks after every chunk.
        stopping = stop.requested() if host_action or jax.process_count() == 1 else None
        if not (host_action or stopping):
          continue  # nothing for the host to do: dispatch the next chunk without waiting
        run.check_finite()
        if run.due(step, config.log_every_steps):
          run.log_train(step)
        if run.due(step, config.eval_every_steps):
          run.evaluate_and_draw(step)
        if run.due(step, config.checkpoint_every_steps) or stopping:
          run.save(step)
        if stopping and step < num_steps:
          run.wait_for_checkpoints()
          raise TrainingInterrupted(
              f"{signal.Signals(stopping).name} stopped training at step {step} of "
              f"{num_steps} after saving it; the same command resumes it.", stopping)
  finally:
    run.close()
  return run.last
