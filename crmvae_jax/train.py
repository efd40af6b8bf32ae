"""Training: config -> data -> model -> objective -> optax update -> metrics/checkpoints.

`train_and_evaluate(config, workdir)` is the one entry point, as in Flax's examples.
The train step is pure, `(state, batch, beta) -> (state, metrics)`, and jitted with
the batch split over the data axis of a device mesh and the state replicated, so the
same code runs on one CPU, one GPU or eight GPUs. The state is one pytree, so Orbax
checkpoints it and sweeps vmap it over replicas without special cases.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from crmvae_jax import data as data_lib
from crmvae_jax import input_pipeline, models, objectives, plotting
from crmvae_jax.modalities import Modality, modalities_of


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


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, with one sentence, on a config that cannot train."""
  betas = list(config.sweep.betas) or [config.beta]
  if any(beta < 0 for beta in betas):
    raise ValueError(f"--config.beta must be non-negative; got {betas}.")
  if config.model not in objectives.OBJECTIVES:
    raise ValueError(
        f"Unknown model {config.model!r} (--config.model); known models: "
        f"{', '.join(objectives.OBJECTIVES)}.")
  if config.mixture_estimator not in ("stratified", "sampled"):
    raise ValueError(
        f"--config.mixture_estimator must be 'stratified' or 'sampled'; got "
        f"{config.mixture_estimator!r}.")
  for field in ("batch_size", "latent_dim"):
    if config[field] <= 0:
      raise ValueError(f"--config.{field} must be positive; got {config[field]}.")
  if config.learning_rate <= 0:
    raise ValueError(f"--config.learning_rate must be positive; got {config.learning_rate}.")


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
    raise ValueError(
        f"--config.batch_size={batch_size} must be divisible by the {data_devices} "
        "devices it is split over.")


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """Moves a host batch onto the mesh; with several processes each feeds its own part."""
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  # Every process holds the same global batch (same data, same seed): each contributes
  # the rows of its own devices.
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), batch)


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
  """train_step(state, batch, beta) -> (state, metrics): one Adam update, pure."""

  def train_step(state: TrainState, batch: dict, beta) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng, beta)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, **terms}

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
  if mesh is None or mesh.shape["replica"] == 1:
    return step
  replica = PartitionSpec("replica")
  return jax.shard_map(step, mesh=mesh, in_specs=(replica, PartitionSpec(), replica),
                       out_specs=(replica, replica), axis_names={"replica"}, check_vma=False)


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


def restore_or_keep(manager: ocp.CheckpointManager, state):
  """The latest checkpoint restored into `state`'s structure, or `state` if none."""
  step = manager.latest_step()
  if step is None:
    return state
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def load_trained(config: ml_collections.ConfigDict, workdir: str, replica: int = 0):
  """The data, model and latest parameters of a run trained in `workdir`.

  Args:
    config: the run's config (its sweep grid says how many replicas were trained).
    workdir: the run's directory.
    replica: which replica of a sweep (see `replica_grid`); 0 for a single run.

  Returns:
    (model, params, train_set, test_set, step).

  Raises:
    FileNotFoundError: with the command that trains it, if `workdir` has no checkpoint.
  """
  train_set, test_set = data_lib.load(config.data)
  model = create_model(config, train_set)
  manager = checkpoint_manager(workdir, config)
  if manager.latest_step() is None:
    raise FileNotFoundError(
        f"No checkpoint in {os.path.abspath(workdir)}; train one first with: python -m "
        f"crmvae_jax.main --config=CONFIG --workdir={workdir}")
  seeds, _ = replica_grid(config)
  if not 0 <= replica < len(seeds):
    raise ValueError(f"replica must be in 0..{len(seeds) - 1}; got {replica}.")
  tx = create_optimizer(config)
  abstract = jax.eval_shape(
      lambda: create_replica_states(model, tx, train_set.batch(np.arange(2)), seeds))
  states = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))
  manager.close()
  state = jax.tree.map(lambda x: x[replica], states)
  return model, state.params, train_set, test_set, int(state.step)


def total_steps(config, num_train_examples: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * input_pipeline.steps_per_epoch(num_train_examples, config.batch_size)


def evaluate_loss(eval_step, params, test_set, config, put, betas) -> dict:
  """The objective of every replica averaged over (at most config.eval_batches) test
  batches; metrics [R]."""
  sums, count = None, 0
  for index, ids in enumerate(input_pipeline.eval_batch_ids(
      len(test_set), config.batch_size, config.eval_batches)):
    metrics = eval_step(params, put(test_set.batch(ids)), jax.random.PRNGKey(index), betas)
    sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    count += 1
  if count == 0:
    raise ValueError(
        f"The test set has {len(test_set)} examples, fewer than one batch of "
        f"{config.batch_size}.")
  return jax.tree.map(lambda total: total / count, sums)


def save_cross_generation(model, params, test_set, config, path, title) -> None:
  """Writes the cross-generation grid of the first test examples to `path`."""
  batch = test_set.batch(np.arange(min(config.figure_examples, len(test_set))))
  kind = objectives.SUBSET_POSTERIOR[config.model]
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
  metrics = jax.device_get(metrics)
  return [flat_metrics(jax.tree.map(lambda x: x[r], metrics), modalities, prefix)
          for r in range(num_replicas)]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> list[dict[str, float]]:
  """Trains `config.model` on `config.data`, checkpointing and evaluating in `workdir`.

  Every (seed, beta) of the config's sweep grid (`replica_grid`; one replica for a plain
  run) trains at once in one jitted step, vmapped over replicas and sharded over the
  devices. Resumes from the latest checkpoint in `workdir` if there is one (same step,
  same data order).

  Returns:
    The last logged train and test metrics of every replica.
  """
  validate_config(config)
  seeds, betas = replica_grid(config)
  num_replicas = len(seeds)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  train_set, test_set = data_lib.load(config.data)
  model = create_model(config, train_set)
  tx = create_optimizer(config)
  mesh = create_mesh(num_replicas)
  check_batch_divides(config.batch_size, mesh)
  put = lambda batch: put_batch(batch, mesh)
  loss_fn = models.make_loss_fn(model, config.model, config.mixture_estimator)

  states = create_replica_states(model, tx, train_set.batch(np.arange(2)), seeds)
  states = jax.device_put(states, replica_sharding(mesh))
  manager = checkpoint_manager(workdir, config)
  states = restore_or_keep(manager, states)
  start_step = int(states.step[0])
  num_steps = total_steps(config, len(train_set))
  betas = jax.device_put(jnp.asarray(betas, jnp.float32), replica_sharding(mesh))

  train_step = jax.jit(
      make_replicated_train_step(loss_fn, tx, mesh),
      in_shardings=(replica_sharding(mesh), batch_sharding(mesh), replica_sharding(mesh)),
      out_shardings=(replica_sharding(mesh), replica_sharding(mesh)), donate_argnums=0)
  eval_step = jax.jit(jax.vmap(make_eval_step(loss_fn), in_axes=(0, None, None, 0)))

  outputs = _Outputs(config, workdir, num_replicas)
  tqdm.tqdm.write(
      f"{config.model} on {config.data.name}: modalities "
      f"{[m.name for m in model.modalities]}, {len(train_set)} train / {len(test_set)} test "
      f"pairs, {num_replicas} replica(s) on a {dict(mesh.shape)} mesh, steps "
      f"{start_step}..{num_steps}, workdir {workdir}")
  batches = input_pipeline.train_batches(
      train_set, config.batch_size, config.data.seed, start_step, put)
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
    test_metrics = _per_replica(
        evaluate_loss(eval_step, states.params, test_set, config, put, betas),
        model.modalities, "test", num_replicas)
    for replica_metrics, replica_last in zip(test_metrics, last):
      replica_last.update(replica_metrics)
    outputs.scalars(step, test_metrics)
    if not outputs.enabled:
      return
    for r in range(num_replicas):
      save_cross_generation(model, jax.tree.map(lambda x: x[r], states.params), test_set, config,
                            outputs.figure_path(r, step),
                            f"{config.model}, seed {seeds[r]}, beta {betas[r]:g}, step {step}")
    tqdm.tqdm.write(f"step {step}: test loss "
                    + ", ".join(f"{m['test/loss']:.2f}" for m in test_metrics)
                    + f"; cross-generations in {os.path.dirname(outputs.figure_path(0, step))}")

  window_start, window_steps = time.perf_counter(), 0
  try:
    with progress:
      for step in range(start_step + 1, num_steps + 1):
        states, metrics = train_step(states, next(batches), betas)
        window_steps += 1
        if step % config.log_every_steps == 0 or step == num_steps:
          log_train(step, metrics, window_steps * config.batch_size
                    / (time.perf_counter() - window_start))
          window_start, window_steps = time.perf_counter(), 0
        if step % config.eval_every_steps == 0 or step == num_steps:
          evaluate_and_draw(step)
        manager.save(step, args=ocp.args.StandardSave(states), force=step == num_steps)
        progress.update(1)
  finally:
    batches.close()
  manager.wait_until_finished()
  manager.close()
  outputs.close()
  return last
