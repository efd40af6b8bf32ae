"""Training: config -> data -> model -> objective -> optax update -> metrics/checkpoints.

`train_and_evaluate(config, workdir)` is the one entry point, as in Flax's examples.
The train step is pure, `(state, batch, beta) -> (state, metrics)`, and jitted with
the batch split over the data axis of a device mesh and the state replicated, so the
same code runs on one CPU, one GPU or eight GPUs. The state is one pytree, so Orbax
checkpoints it and sweeps vmap it over replicas without special cases.
"""

from __future__ import annotations

import json
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
  if config.model not in objectives.OBJECTIVES:
    raise ValueError(
        f"Unknown model {config.model!r} (--config.model); known models: "
        f"{', '.join(objectives.OBJECTIVES)}.")
  if config.beta < 0:
    raise ValueError(f"--config.beta must be non-negative; got {config.beta}.")
  if config.mixture_estimator not in ("stratified", "sampled"):
    raise ValueError(
        f"--config.mixture_estimator must be 'stratified' or 'sampled'; got "
        f"{config.mixture_estimator!r}.")
  for field in ("batch_size", "latent_dim"):
    if config[field] <= 0:
      raise ValueError(f"--config.{field} must be positive; got {config[field]}.")
  if config.learning_rate <= 0:
    raise ValueError(f"--config.learning_rate must be positive; got {config.learning_rate}.")


def data_mesh(devices=None) -> Mesh:
  """A one-axis mesh named 'data' over `devices` (default: every device JAX sees)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_divides(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.devices.size:
    raise ValueError(
        f"--config.batch_size={batch_size} must be divisible by the {mesh.devices.size} "
        "devices it is split over.")


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


def load_trained(config: ml_collections.ConfigDict, workdir: str):
  """The data, model and latest parameters of a run trained in `workdir`.

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
  tx = create_optimizer(config)
  state = jax.eval_shape(
      lambda: create_train_state(model, tx, train_set.batch(np.arange(2)), config.seed))
  state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(state))
  manager.close()
  return model, state.params, train_set, test_set, int(state.step)


def total_steps(config, num_train_examples: int) -> int:
  if config.num_train_steps > 0:
    return config.num_train_steps
  return config.num_epochs * input_pipeline.steps_per_epoch(num_train_examples, config.batch_size)


def evaluate_loss(eval_step, params, test_set, config, put, beta) -> dict:
  """The objective averaged over (at most config.eval_batches) test batches."""
  sums, count = None, 0
  for index, ids in enumerate(input_pipeline.eval_batch_ids(
      len(test_set), config.batch_size, config.eval_batches)):
    metrics = eval_step(params, put(test_set.batch(ids)), jax.random.PRNGKey(index), beta)
    sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    count += 1
  if count == 0:
    raise ValueError(
        f"The test set has {len(test_set)} examples, fewer than one batch of "
        f"{config.batch_size}.")
  return jax.tree.map(lambda total: total / count, sums)


def save_cross_generation(model, params, test_set, config, workdir, step) -> str:
  """Writes the cross-generation grid of the first test examples; returns its path."""
  batch = test_set.batch(np.arange(min(config.figure_examples, len(test_set))))
  kind = objectives.SUBSET_POSTERIOR[config.model]
  path = os.path.join(workdir, "figures", f"cross_generation_{step:08d}.png")
  plotting.cross_generation_figure(model, params, batch, kind, data_lib.text_decoders(test_set),
                                   path, title=f"{config.model}, step {step}")
  return path


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains `config.model` on `config.data`, checkpointing and evaluating in `workdir`.

  Resumes from the latest checkpoint in `workdir` if there is one (same step, same data
  order). Returns the last logged train and test metrics.
  """
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))

  train_set, test_set = data_lib.load(config.data)
  model = create_model(config, train_set)
  tx = create_optimizer(config)
  mesh = data_mesh()
  check_batch_divides(config.batch_size, mesh)
  put = lambda batch: jax.device_put(batch, batch_sharding(mesh))
  loss_fn = models.make_loss_fn(model, config.model, config.mixture_estimator)

  state = create_train_state(model, tx, train_set.batch(np.arange(2)), config.seed)
  state = jax.device_put(state, replicated(mesh))
  manager = checkpoint_manager(workdir, config)
  state = restore_or_keep(manager, state)
  start_step = int(state.step)
  num_steps = total_steps(config, len(train_set))
  beta = jnp.float32(config.beta)

  train_step = jax.jit(
      make_train_step(loss_fn, tx),
      in_shardings=(replicated(mesh), batch_sharding(mesh), replicated(mesh)),
      out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0)
  eval_step = jax.jit(make_eval_step(loss_fn))

  tqdm.tqdm.write(
      f"{config.model} on {config.data.name}: modalities "
      f"{[m.name for m in model.modalities]}, {len(train_set)} train / {len(test_set)} test "
      f"pairs, {mesh.devices.size} device(s), steps {start_step}..{num_steps}, workdir {workdir}")
  writer = plotting.summary_writer(workdir)
  batches = input_pipeline.train_batches(
      train_set, config.batch_size, config.data.seed, start_step, put)
  last_metrics: dict[str, float] = {}
  progress = tqdm.tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True,
                       disable=config.get("disable_progress_bar", False))
  window_start, window_steps = time.perf_counter(), 0
  with progress:
    for step in range(start_step + 1, num_steps + 1):
      state, metrics = train_step(state, next(batches), beta)
      window_steps += 1
      if step % config.log_every_steps == 0 or step == num_steps:
        metrics = jax.device_get(metrics)
        elapsed = time.perf_counter() - window_start
        last_metrics.update(flat_metrics(metrics, model.modalities, "train"))
        last_metrics["train/examples_per_sec"] = window_steps * config.batch_size / elapsed
        plotting.write_scalars(writer, step, last_metrics)
        progress.set_postfix(loss=f"{float(metrics['loss']):.2f}",
                             ex_per_s=f"{last_metrics['train/examples_per_sec']:.0f}")
        window_start, window_steps = time.perf_counter(), 0
      if step % config.eval_every_steps == 0 or step == num_steps:
        test_metrics = flat_metrics(
            jax.device_get(evaluate_loss(eval_step, state.params, test_set, config, put, beta)),
            model.modalities, "test")
        last_metrics.update(test_metrics)
        plotting.write_scalars(writer, step, test_metrics)
        figure = save_cross_generation(model, state.params, test_set, config, workdir, step)
        tqdm.tqdm.write(f"step {step}: train loss {float(metrics['loss']):.2f}, test loss "
                        f"{test_metrics['test/loss']:.2f}; cross-generations: {figure}")
      manager.save(step, args=ocp.args.StandardSave(state), force=step == num_steps)
      progress.update(1)
  manager.wait_until_finished()
  manager.close()
  writer.close()
  return last_metrics
