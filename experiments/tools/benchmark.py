"""Training throughput, compile time and memory of every objective, against the
PyTorch peer (MultiVae), of replicas, against the number of modalities, and the
training loop's host overhead.

    python -m experiments.tools.benchmark                      # every table
    python -m experiments.tools.benchmark --sections=objectives --steps=50

Tables (Markdown, on whatever devices JAX sees):
1. objectives: each of the eight objectives on the MNIST-SVHN-Text networks at
   --batch_size, in each of --compute_dtypes (float32 and bfloat16: `config.compute_dtype`):
   compile time, examples/s after compilation, and memory (the device's
   peak where it reports one, else XLA's compiled estimate: arguments + temporaries).
   Mixture objectives are measured with both estimators (`mopoe:sampled`). Where the
   peer's venv exists (`. experiments/peer/setup.sh`, or --peer_python), MultiVae's
   examples/s for crmvae, mvtcae and mopoe (sampled subsets, as MultiVae does) are
   measured in the same run, taking turns for --rounds rounds, with the ratio of the
   medians.
2. replicas: R = 1, 2, 4, 8 replicas (seeds) of one model trained by one jitted step,
   against R single runs one after another: the speedup of one program.
3. modalities: PolyMNIST networks with M = 2..5 modalities.
4. networks: each MNIST-SVHN-Text encoder and decoder alone, forward and forward+backward
   (parameter gradients of the sum of its outputs) ms at --batch_size, in each of
   --compute_dtypes, beside the same PyTorch modules of the peer
   (`experiments/peer/networks.py`, run by the peer's venv): where a train step's time
   goes, and which side is faster where.
5. loop: the whole training loop (`training.loop.train_and_evaluate`) on a tiny setting (the
   quick-start data at batch 8), where compute is small: its time per step in its last
   logging window (the rate it logs, after compilation), against a bare jitted step
   called in a tight loop on a batch already on the device. The difference is the
   host's overhead per step. The section only uses what every version of the loop has,
   so the same script measures an older checkout too.

Data are random arrays of the right shapes (except in the loop section). The first
lines name the CPU (model name and its AVX-512 / AMX / bfloat16 flags): speed figures
mean little without it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from crmvae_jax.model import models, networks, objectives
from experiments.tools import programs, timing

FLAGS = flags.FLAGS
flags.DEFINE_list("sections", ["objectives", "replicas", "modalities", "networks", "loop"],
                  "Tables to print.")
MIXTURE_MODELS = ("mmvae", "mopoe", "mmjsd")
flags.DEFINE_list(
    "models", list(objectives.OBJECTIVES) + [f"{name}:sampled" for name in MIXTURE_MODELS],
    "Objectives for the first table; NAME:sampled uses the sampled mixture estimator.")
flags.DEFINE_string(
    "peer_python", os.environ.get("PEER_PY", os.path.expanduser(
        "~/.cache/crmvae_jax/peer-venv/bin/python")),
    "Python of the MultiVae venv (`. experiments/peer/setup.sh` makes it and sets $PEER_PY); "
    "MultiVae's columns are left out where it is absent.")
flags.DEFINE_string("peer_script", os.path.join(programs.REPOSITORY, "experiments", "peer",
                                                "multivae_mst.py"), "MultiVae's benchmark.")
flags.DEFINE_integer("loop_batch_size", 8, "Batch of the loop section (small: host-bound).")
flags.DEFINE_integer("loop_steps", 600, "Steps of the loop section's run.")
flags.DEFINE_integer("loop_window", 200, "Its logging window; the last one is timed.")
flags.DEFINE_string("replica_model", "crmvae", "Objective of the replica and modality tables.")
flags.DEFINE_list("replicas", ["1", "2", "4", "8"], "Replica counts R.")
flags.DEFINE_list("num_modalities", ["2", "3", "4", "5"], "PolyMNIST modality counts M.")
flags.DEFINE_list("compute_dtypes", ["float32", "bfloat16"],
                  "Compute dtypes of the objectives and networks tables (config.compute_dtype).")
flags.DEFINE_integer("batch_size", 256, "Examples per step (per replica).")
flags.DEFINE_integer("steps", 20, "Timed steps after compilation.")
flags.DEFINE_integer("rounds", 3, "Objectives table: timed rounds per side, taking turns with "
                     "MultiVae; medians are reported.")

REPOSITORY = programs.REPOSITORY


def measure(objective: str, data_name: str, num_replicas: int, batch_size: int, steps: int,
            num_modalities: int = 3, mixture_estimator: str = "stratified") -> dict:
  """Compile time, seconds per step and memory of one replicated train step."""
  program = programs.Program(objective, data_name, num_replicas, batch_size, num_modalities,
                    mixture_estimator)
  seconds_per_step = program.seconds_per_step(steps)
  return {"compile_s": program.compile_seconds, "step_s": seconds_per_step,
          "examples_per_s": program.examples_per_step / seconds_per_step,
          "memory": program.memory}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
  print(f"\n### {title}\n")
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  for row in rows:
    print("| " + " | ".join(row) + " |")


# Our objective name (with estimator) -> MultiVae's model name in the peer script.
PEER_MODELS = {"crmvae": "crmvae", "mvtcae": "mvtcae", "mopoe:sampled": "mopoe"}


def peer_examples_per_s(names: list[str]) -> dict[str, float]:
  """MultiVae's examples/s for the peer `names`, or {} where its venv is absent."""
  if not names or not os.path.exists(FLAGS.peer_python):
    return {}
  script = os.path.abspath(FLAGS.peer_script)
  env = {**os.environ, "BATCH": str(FLAGS.batch_size), "LATENT": "32"}
  completed = subprocess.run([FLAGS.peer_python, script, *names], capture_output=True,
                             text=True, env=env, cwd=tempfile.gettempdir(), check=True)
  return {name: float(figure) for name, figure in
          re.findall(r"^multivae (\w+) examples/s ([\d.]+)$", completed.stdout, re.MULTILINE)}


def objectives_table() -> None:
  """Per objective and compute dtype: compile time, examples/s and memory, beside
  MultiVae's float32 examples/s.

  Both sides are timed --rounds times, taking turns (MultiVae's whole run, then each of
  ours), so that a change in the machine's load hits both; each figure is the median of
  its rounds, and the ratio is the ratio of the medians.
  """
  peer_names = [PEER_MODELS[name] for name in FLAGS.models if name in PEER_MODELS]
  compiled = {}
  for name in FLAGS.models:
    objective, _, estimator = name.partition(":")
    for dtype in FLAGS.compute_dtypes:
      compiled[name, dtype] = programs.Program(
          objective, "mst", 1, FLAGS.batch_size, mixture_estimator=estimator or "stratified",
          compute_dtype=dtype)
  ours = {key: [] for key in compiled}
  peer_rounds = {}
  for _ in range(FLAGS.rounds):
    for peer_name, figure in peer_examples_per_s(peer_names).items():
      peer_rounds.setdefault(peer_name, []).append(figure)
    for key, program in compiled.items():
      ours[key].append(program.examples_per_step / program.seconds_per_step(FLAGS.steps))
  peer = {name: float(np.median(figures)) for name, figures in peer_rounds.items()}
  rows = []
  for (name, dtype), program in compiled.items():
    examples_per_s = float(np.median(ours[name, dtype]))
    float32_figure = float(np.median(ours.get((name, "float32"), [np.nan])))
    row = [name, dtype, f"{program.compile_seconds:.1f}", f"{examples_per_s:.0f}",
           f"{1e3 * program.examples_per_step / examples_per_s:.1f}", program.memory,
           f"{examples_per_s / float32_figure:.2f}x"]
    peer_figure = peer.get(PEER_MODELS.get(name, ""))
    if peer:
      row += ([f"{peer_figure:.0f}", f"{examples_per_s / peer_figure:.2f}x"]
              if peer_figure else ["", ""])
    rows.append(row)
  header = ["model", "compute dtype", "compile s", "examples/s", "ms/step", "memory",
            "vs our float32"]
  if peer:
    header += ["MultiVae float32 examples/s", "vs MultiVae"]
  print_table(f"Objectives, MNIST-SVHN-Text networks, batch {FLAGS.batch_size}, latent 32; "
              f"medians of {FLAGS.rounds} rounds", header, rows)
  print("\nPer round (examples/s): " + "; ".join(
      f"{name} {' '.join(f'{v:.0f}' for v in figures)}"
      for name, figures in {**{f"MultiVae {k}": v for k, v in peer_rounds.items()},
                            **{f"{n} {d}": v for (n, d), v in ours.items()}}.items()))


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


# Our network name -> the peer's (experiments/peer/networks.py).
PEER_NETWORKS = {"mnist": "mnist", "svhn": "svhn", "mst_text": "text"}


def our_network_ms(compute_dtype: str = "float32", latent_dim: int = 32
                   ) -> dict[str, tuple[float, float]]:
  """{peer name_role: (forward ms, forward+backward ms)} of our MST networks, computing
  in `compute_dtype` from float32 parameters, as `models.apply` does."""
  dtype = jnp.dtype(compute_dtype)
  rng = np.random.default_rng(0)
  batch = FLAGS.batch_size
  inputs = {"mnist": rng.random((batch, 28, 28, 1), np.float32),
            "svhn": rng.random((batch, 32, 32, 3), np.float32),
            "mst_text": np.asarray(jax.nn.one_hot(rng.integers(0, 71, (batch, 8)), 71))}
  latents = jnp.asarray(rng.standard_normal((batch, latent_dim), np.float32))
  figures = {}
  for name, peer_name in PEER_NETWORKS.items():
    spec = networks.NETWORKS[name]
    encoder_class, decoder_class = spec.encoder, spec.decoder
    for role, module, x in (("enc", encoder_class(latent_dim=latent_dim), jnp.asarray(inputs[name])),
                            ("dec", decoder_class(latent_dim=latent_dim), latents)):
      params = module.init(jax.random.PRNGKey(0), x)

      def run(params, module=module, x=x):
        return models.cast_floating(
            module.apply(models.cast_floating(params, dtype), x.astype(dtype)), jnp.float32)

      def outputs_sum(params, run=run):
        return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(run(params)))

      forward = jax.jit(run)
      figures[f"{peer_name}_{role}"] = tuple(timing.median_ms(
          [forward, jax.jit(jax.grad(outputs_sum))], (params,), repeats=20))
  return figures


def peer_network_ms() -> dict[str, tuple[float, float]]:
  """The same figures for MultiVae's modules, or {} where the peer's venv is absent."""
  if not os.path.exists(FLAGS.peer_python):
    return {}
  script = os.path.join(REPOSITORY, "experiments", "peer", "networks.py")
  env = {**os.environ, "BATCH": str(FLAGS.batch_size), "LATENT": "32"}
  completed = subprocess.run([FLAGS.peer_python, script, os.path.abspath(FLAGS.peer_script)],
                             capture_output=True, text=True, env=env,
                             cwd=tempfile.gettempdir(), check=True)
  return {name: (float(forward), float(backward)) for name, forward, backward in re.findall(
      r"^peer (\w+) fwd ([\d.]+) fwdbwd ([\d.]+)$", completed.stdout, re.MULTILINE)}


def networks_table() -> None:
  ours = {dtype: our_network_ms(dtype) for dtype in FLAGS.compute_dtypes}
  peer = peer_network_ms()
  names = list(next(iter(ours.values())))
  totals = {dtype: [sum(figures[i] for figures in ours[dtype].values()) for i in (0, 1)]
            for dtype in ours}
  peer_total = [sum(figures[i] for figures in peer.values()) for i in (0, 1)] if peer else None
  rows = []
  for name in names + ["all six"]:
    row = [name]
    for dtype in ours:
      forward, backward = ours[dtype][name] if name in ours[dtype] else totals[dtype]
      row += [f"{forward:.1f}", f"{backward:.1f}"]
    if peer:
      peer_forward, peer_backward = peer[name] if name in peer else peer_total
      row += [f"{peer_forward:.1f}", f"{peer_backward:.1f}"]
      for dtype in ours:
        backward = ours[dtype][name][1] if name in ours[dtype] else totals[dtype][1]
        row.append(f"{peer_backward / backward:.2f}x")
    rows.append(row)
  header = ["network"]
  for dtype in ours:
    header += [f"{dtype} fwd ms", f"{dtype} fwd+bwd ms"]
  if peer:
    header += ["MultiVae fwd ms", "MultiVae fwd+bwd ms"]
    header += [f"fwd+bwd speedup {dtype}" for dtype in ours]
  print_table(f"MST networks alone, batch {FLAGS.batch_size}, latent 32 (speedup: MultiVae's "
              "float32 time / ours)", header, rows)


def loop_table() -> None:
  per_step = programs.loop_seconds_per_step(FLAGS.loop_batch_size, FLAGS.loop_steps,
                                           FLAGS.loop_window)
  bare = programs.bare_step_seconds(FLAGS.loop_batch_size)
  print_table(f"Training loop on the quick-start data, batch {FLAGS.loop_batch_size}, last "
              f"{FLAGS.loop_window} of {FLAGS.loop_steps} steps",
              ["loop ms/step", "bare jitted step ms", "host overhead ms/step"],
              [[f"{1e3 * per_step:.2f}", f"{1e3 * bare:.2f}", f"{1e3 * (per_step - bare):.2f}"]])


def main(argv):
  del argv
  print(f"devices: {jax.devices()}")
  print(f"CPU: {programs.cpu_description()}")
  sections = {"objectives": objectives_table, "replicas": replicas_table,
              "modalities": modalities_table, "networks": networks_table, "loop": loop_table}
  for section in FLAGS.sections:
    sections[section]()


if __name__ == "__main__":
  app.run(main)
