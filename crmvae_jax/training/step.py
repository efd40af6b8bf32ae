"""The train and eval steps and how they run on devices: the ('replica', 'data') mesh and
its shardings, the training set held on the devices (`DeviceData`), the pure train
step `(state, batch, beta) -> (state, metrics)`, vmapped over replicas, and several
steps per dispatch (`make_multi_step`), so the same code runs on one CPU, one GPU or
eight GPUs.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from crmvae_jax import data as data_lib
from crmvae_jax.common.errors import UserError
from crmvae_jax.training.state import TrainState


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
    if dataset.masks is not None:  # per pair: its own row
      host.arrays["mask"] = dataset.masks
      host.indices["mask"] = np.arange(len(dataset), dtype=np.int32)
    return put_global(host, replicated(mesh))

  def batch(self, ids: jax.Array) -> dict:
    """The stored arrays of pairs `ids` [B]: {modality: [B, ...]}, and 'mask' [B, M]
    when the data set has missing modalities."""
    return {name: array[self.indices[name][ids]] for name, array in self.arrays.items()}


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
  """train_step(state, batch, *args) -> (state, metrics): one update by `tx`, pure.

  `loss_fn(params, batch, rng, *args) -> (loss, terms)` gets the step's rng and the
  step's further arguments (the model's beta; none in `supervised.fit`). The metrics
  are the loss, its terms and the gradient's global norm (the training health check
  watches the loss and that norm).
  """

  def train_step(state: TrainState, batch, *args) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng, *args)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, "grad_norm": optax.global_norm(grads), **terms}

  return train_step


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


def replicas_all_finite(tree) -> jax.Array:
  """[R] bools: whether every floating-point entry of replica r is finite.

  Args:
    tree: arrays stacked over replicas on their leading axis [R, ...].

  Returns:
    A bool array [R] (True for a tree without floating-point leaves).
  """
  leaves = [leaf for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)]
  if not leaves:
    return jnp.ones(jax.tree.leaves(tree)[0].shape[:1], bool)
  return functools.reduce(jnp.logical_and, [
      jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1) for leaf in leaves])


def make_multi_step(replicated_step: Callable, mesh: Mesh | None = None) -> Callable:
  """Several train steps in one dispatch, so the host's loop costs once per K steps.

  multi_step(states [R], data, ids [K, B], num_steps, betas [R], first_non_finite [R])
  -> (states, metrics, first_non_finite): applies `replicated_step` to the batches
  ids[0..num_steps-1] (rows past num_steps are ignored; num_steps is traced, so one
  compilation serves every chunk length). `metrics` [R] are the last step's.
  `first_non_finite` [R] carries, from chunk to chunk on the devices, the first step
  whose loss or gradient norm, or whose updated parameters or optimiser state, were not
  finite (-1: none yet); later steps still run, and the host checks it before logging
  or saving anything, without a sync per chunk, so no non-finite state is saved.

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
      finite = (jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
                & replicas_all_finite((states.params, states.opt_state)))
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


def to_host(tree):
  """Global device arrays as numpy arrays on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)
