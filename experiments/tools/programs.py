"""What the speed scripts share, without flags: random data of a data set's shapes, one
compiled train step with its state (`Program`), and the CPU's description.

Used by experiments/tools/benchmark.py (against the PyTorch peer, on this machine) and
experiments/tools/gpu_check.py (one report on a GPU machine).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from crmvae_jax.config import cli
from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.model import models, objectives
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.data import registry
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.training import loop
from crmvae_jax.training import state as state_lib
from crmvae_jax.training import step as step_lib

LEARNING_RATE = 5e-4
# Private latents per modality for the models that have them (the size the added models'
# experiments train with).
PRIVATE_DIM = 8
# The repository, wherever the script is run from: the data sets' config files are in it.
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_data(data_name: str, num_modalities: int = 3) -> tuple[str, MultimodalDataset]:
  """A small data set of random arrays with the shapes of `data_name`'s modalities."""
  rng = np.random.default_rng(0)
  if data_name == "mst":
    arrays = {"mnist": rng.integers(0, 256, (8, 28, 28, 1), np.uint8),
              "svhn": rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
              "text": rng.integers(0, 71, (8, 8), np.int32)}
  else:
    arrays = {f"m{m}": rng.integers(0, 256, (8, 28, 28, 3), np.uint8)
              for m in range(num_modalities)}
  dataset = MultimodalDataset(tuple(arrays), arrays, {name: np.arange(8) for name in arrays},
                              np.zeros(8, np.int64))
  return data_name, dataset


def device_batch(dataset: MultimodalDataset, batch_size: int) -> dict:
  ids = np.arange(batch_size) % len(dataset)
  return jax.device_put(dataset.batch(ids), step_lib.batch_sharding(step_lib.create_mesh(1)))


def memory_figure(compiled) -> str:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return f"{stats['peak_bytes_in_use'] / 2**20:.0f} MiB peak"
  analysis = compiled.memory_analysis()
  total = analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
  return f"{total / 2**20:.0f} MiB compiled"


def model_of(objective: str, modalities, latent_dim: int,
             compute_dtype: str = "float32") -> models.MultimodalVAE:
  """The network `objective` trains, as training builds it (`training/state.py`): a joint
  encoder for JMVAE, auxiliary priors for MMVAE+, and PRIVATE_DIM private latents per
  modality for the models that have them."""
  if objectives.MODELS[objective].private:
    modalities = tuple(dataclasses.replace(m, private_dim=PRIVATE_DIM) for m in modalities)
  return state_lib.model_network(objective, modalities, latent_dim, compute_dtype)


class Program:
  """One replicated train step of `objective`, compiled, with its state: `seconds_per_step`
  times calls of it (the state carries over, as in training)."""

  def __init__(self, objective: str, data_name: str, num_replicas: int, batch_size: int,
               num_modalities: int = 3, mixture_estimator: str = "stratified",
               compute_dtype: str = "float32"):
    data_name, dataset = random_data(data_name, num_modalities)
    # The latent size that the data set's config file trains with.
    latent_dim = cli.load_config_file(
        os.path.join(REPOSITORY, registry.DATA_SETS[data_name].config_file)).latent_dim
    model = model_of(objective, modalities_of(data_name, dataset), latent_dim, compute_dtype)
    tx = optax.adam(LEARNING_RATE)
    mesh = step_lib.create_mesh(num_replicas)
    self.batch = device_batch(dataset, batch_size)
    self.states = jax.device_put(
        state_lib.create_replica_states(model, tx, self.batch, list(range(num_replicas))),
        step_lib.replica_sharding(mesh))
    self.betas = jax.device_put(jnp.ones(num_replicas), step_lib.replica_sharding(mesh))
    loss_fn = models.make_loss_fn(model, objective, mixture_estimator)
    step = jax.jit(step_lib.make_replicated_train_step(loss_fn, tx, mesh), donate_argnums=0)
    start = time.perf_counter()
    self.compiled = step.lower(self.states, self.batch, self.betas).compile()
    self.compile_seconds = time.perf_counter() - start
    self.examples_per_step = num_replicas * batch_size
    self.memory = memory_figure(self.compiled)
    self.seconds_per_step(1)  # warm-up

  def seconds_per_step(self, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      self.states, metrics = self.compiled(self.states, self.batch, self.betas)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps




def cpu_description() -> str:
  """The CPU's model name and the vector/matrix extensions that decide bfloat16 speed."""
  model, flags_seen = "unknown CPU", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
          model = value.strip()
        elif key.strip() == "flags":
          flags_seen = set(value.split())
          break
  except OSError:
    pass
  wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")
  present = [flag for flag in wanted if flag in flags_seen]
  listed = ", ".join(present) or "none of " + ", ".join(wanted)
  return f"{model}, {os.cpu_count()} cores; flags: {listed}"




def loop_seconds_per_step(batch_size: int, num_steps: int, window: int,
                          steps_per_dispatch: int | None = None) -> float:
  """Seconds per step of a whole quick-start training run (`loop.train_and_evaluate`) at
  `batch_size`, in its last logging window of `window` steps (after compilation, before
  the final evaluation): the rate the loop itself logs as train/examples_per_sec.
  `steps_per_dispatch`: the config's (None: the loop's default for the device)."""
  config = config_lib.quickstart_config()
  config.batch_size = batch_size
  config.num_train_steps = num_steps
  config.log_every_steps = window
  config.eval_every_steps = config.checkpoint_every_steps = num_steps
  config.eval_batches = 1
  config.figure_examples = 2
  config.disable_progress_bar = True
  if steps_per_dispatch is not None:
    config.steps_per_dispatch = steps_per_dispatch
  with tempfile.TemporaryDirectory() as workdir:
    [last] = loop.train_and_evaluate(config, workdir)
  return batch_size / last["train/examples_per_sec"]


def bare_step_seconds(batch_size: int, steps: int = 200) -> float:
  """Seconds per call of the quick start's jitted train step alone at `batch_size`, on a
  batch already on the device: what the loop costs without its host work."""
  config = config_lib.quickstart_config()
  train_set, _ = data_lib.load(config.data)
  model = state_lib.create_model(config, train_set)
  tx = state_lib.create_optimizer(config)
  mesh = step_lib.create_mesh(1)
  batch = device_batch(train_set, batch_size)
  states = jax.device_put(state_lib.create_replica_states(model, tx, batch, [0]),
                          step_lib.replica_sharding(mesh))
  step = jax.jit(step_lib.make_replicated_train_step(
      models.make_loss_fn(model, config.model), tx, mesh), donate_argnums=0)
  betas = jnp.ones(1)
  states, metrics = step(states, batch, betas)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    states, metrics = step(states, batch, betas)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - start) / steps
