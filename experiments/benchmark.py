"""Training throughput, compile time and memory of every objective, of replicas, and
against the number of modalities.

    python -m experiments.benchmark                      # all three tables
    python -m experiments.benchmark --sections=objectives --steps=50

Tables (Markdown, on whatever devices JAX sees):
1. objectives: each of the eight objectives on the MNIST-SVHN-Text networks at
   --batch_size: compile time, examples/s after compilation, and memory (the device's
   peak where it reports one, else XLA's compiled estimate: arguments + temporaries).
2. replicas: R = 1, 2, 4, 8 replicas (seeds) of one model trained by one jitted step,
   against R single runs one after another: the speedup of one program.
3. modalities: PolyMNIST networks with M = 2..5 modalities.

Data are random arrays of the right shapes: the input pipeline is not measured.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from crmvae_jax import models, objectives, train
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.modalities import modalities_of

FLAGS = flags.FLAGS
flags.DEFINE_list("sections", ["objectives", "replicas", "modalities"], "Tables to print.")
flags.DEFINE_list("models", list(objectives.OBJECTIVES), "Objectives for the first table.")
flags.DEFINE_string("replica_model", "crmvae", "Objective of the replica and modality tables.")
flags.DEFINE_list("replicas", ["1", "2", "4", "8"], "Replica counts R.")
flags.DEFINE_list("num_modalities", ["2", "3", "4", "5"], "PolyMNIST modality counts M.")
flags.DEFINE_integer("batch_size", 256, "Examples per step (per replica).")
flags.DEFINE_integer("steps", 20, "Timed steps after compilation.")

LEARNING_RATE = 5e-4


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


def random_batch(dataset: MultimodalDataset, batch_size: int) -> dict:
  ids = np.arange(batch_size) % len(dataset)
  return jax.device_put(dataset.batch(ids), train.batch_sharding(train.create_mesh(1)))


def memory_figure(compiled) -> str:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return f"{stats['peak_bytes_in_use'] / 2**20:.0f} MiB peak"
  analysis = compiled.memory_analysis()
  total = analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
  return f"{total / 2**20:.0f} MiB compiled"


def measure(objective: str, data_name: str, num_replicas: int, batch_size: int, steps: int,
            num_modalities: int = 3) -> dict:
  """Compile time, seconds per step and memory of one replicated train step."""
  data_name, dataset = random_data(data_name, num_modalities)
  latent_dim = 32 if data_name == "mst" else 512
  model = models.MultimodalVAE(modalities_of(data_name, dataset), latent_dim)
  tx = optax.adam(LEARNING_RATE)
  mesh = train.create_mesh(num_replicas)
  batch = random_batch(dataset, batch_size)
  states = jax.device_put(train.create_replica_states(model, tx, batch, list(range(num_replicas))),
                          train.replica_sharding(mesh))
  betas = jax.device_put(jnp.ones(num_replicas), train.replica_sharding(mesh))
  step = jax.jit(train.make_replicated_train_step(models.make_loss_fn(model, objective), tx, mesh),
                 donate_argnums=0)
  start = time.perf_counter()
  compiled = step.lower(states, batch, betas).compile()
  compile_seconds = time.perf_counter() - start
  states, metrics = compiled(states, batch, betas)  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    states, metrics = compiled(states, batch, betas)
  jax.block_until_ready(metrics)
  seconds_per_step = (time.perf_counter() - start) / steps
  return {"compile_s": compile_seconds, "step_s": seconds_per_step,
          "examples_per_s": num_replicas * batch_size / seconds_per_step,
          "memory": memory_figure(compiled)}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
  print(f"\n### {title}\n")
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  for row in rows:
    print("| " + " | ".join(row) + " |")


def objectives_table() -> None:
  rows = []
  for name in FLAGS.models:
    result = measure(name, "mst", 1, FLAGS.batch_size, FLAGS.steps)
    rows.append([name, f"{result['compile_s']:.1f}", f"{result['examples_per_s']:.0f}",
                 f"{1e3 * result['step_s']:.1f}", result["memory"]])
  print_table(f"Objectives, MNIST-SVHN-Text networks, batch {FLAGS.batch_size}",
              ["model", "compile s", "examples/s", "ms/step", "memory"], rows)


def replicas_table() -> None:
  results = {r: measure(FLAGS.replica_model, "mst", r, FLAGS.batch_size, FLAGS.steps)
             for r in sorted({1, *map(int, FLAGS.replicas)})}
  single_step = results[1]["step_s"]  # R single runs one after another take R times this
  rows = []
  for num_replicas, result in results.items():
    sequential = num_replicas * single_step
    rows.append([str(num_replicas), f"{result['compile_s']:.1f}",
                 f"{result['examples_per_s']:.0f}", f"{1e3 * result['step_s']:.1f}",
                 f"{1e3 * sequential:.1f}", f"{sequential / result['step_s']:.2f}x",
                 result["memory"]])
  print_table(f"Replicas of {FLAGS.replica_model} in one program, MNIST-SVHN-Text, batch "
              f"{FLAGS.batch_size} each",
              ["R", "compile s", "examples/s (all replicas)", "ms/step", "ms for R single steps",
               "speedup", "memory"], rows)


def modalities_table() -> None:
  rows = []
  for num_modalities in map(int, FLAGS.num_modalities):
    result = measure(FLAGS.replica_model, "polymnist", 1, FLAGS.batch_size, FLAGS.steps,
                     num_modalities)
    rows.append([str(num_modalities), f"{result['compile_s']:.1f}",
                 f"{result['examples_per_s']:.0f}", f"{1e3 * result['step_s']:.1f}",
                 result["memory"]])
  print_table(f"{FLAGS.replica_model} on PolyMNIST networks against M, batch {FLAGS.batch_size}",
              ["M", "compile s", "examples/s", "ms/step", "memory"], rows)


def main(argv):
  del argv
  print(f"devices: {jax.devices()}")
  sections = {"objectives": objectives_table, "replicas": replicas_table,
              "modalities": modalities_table}
  for section in FLAGS.sections:
    sections[section]()


if __name__ == "__main__":
  app.run(main)
