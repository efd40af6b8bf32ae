"""The multi-host path for real, on one machine: `python -m crmvae_jax.main --multihost`
as two processes joined by `jax.distributed.initialize` (coordinator on 127.0.0.1, one
CPU device each, cross-process collectives through gloo, JAX's default CPU
implementation since 0.5.1), sharing one workdir as processes on a cluster share one
file system. Each run must equal ONE process with two devices running the same command:
the same checkpoints and the same logged losses.

The runs are subprocesses (jax.distributed can be initialised once per process), so
this module imports nothing of crmvae_jax: it tests the command line as a user runs it.
Compilation dominates their time; they share a persistent compilation cache in
.pytest_cache, so a second session runs several times faster than the first.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from training_runs import checkpoint_steps, read_checkpoint, subprocess_env

pytestmark = pytest.mark.slow  # every test here trains in subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 540  # per test; a cold cache on two busy cores takes about 4 minutes

# The quick start, tiny: checkpoints at steps 3 and 6, summaries at 2, 4 and 6, and one
# evaluation (with cross-generation figures) at the end.
TINY = ["--config=configs/quickstart.py", "--config.num_train_steps=6",
        "--config.batch_size=32", "--config.log_every_steps=2", "--config.eval_every_steps=6",
        "--config.checkpoint_every_steps=3", "--config.disable_progress_bar=True"]
NUM_STEPS = 6


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def run_together(commands: dict[str, tuple[list[str], dict]], log_dir, timeout: float
                 ) -> dict[str, int]:
  """Runs every command at once; returns their exit codes.

  When one fails, the others are killed: a process whose peer died would wait in a
  collective until the distributed runtime's heartbeat timeout. Killing is SIGKILL,
  since jax.distributed catches SIGTERM (its preemption notifier).
  """
  processes, logs = {}, {}
  for name, (argv, env) in commands.items():
    logs[name] = open(os.path.join(log_dir, f"{name}.log"), "w")
    processes[name] = subprocess.Popen([sys.executable, "-m", "crmvae_jax.main", *argv],
                                       cwd=REPO, env=env, stdout=logs[name],
                                       stderr=subprocess.STDOUT)
  deadline = time.monotonic() + timeout
  try:
    while any(p.poll() is None for p in processes.values()):
      failed = any(p.returncode not in (None, 0) for p in processes.values())
      if failed or time.monotonic() > deadline:
        for p in processes.values():
          if p.poll() is None:
            p.kill()
        break
      time.sleep(0.2)
    return {name: p.wait() for name, p in processes.items()}
  finally:
    for log in logs.values():
      log.close()


def log_tails(log_dir, lines: int = 25) -> str:
  tails = []
  for path in sorted(glob.glob(os.path.join(log_dir, "*.log"))):
    with open(path) as f:
      tails.append(f"--- {os.path.basename(path)}:\n" + "".join(f.readlines()[-lines:]))
  return "\n".join(tails)


def read_scalars(directory: str) -> dict[str, dict[int, float]]:
  """tag -> {step: value} from the one TensorBoard event file in `directory`."""
  from tensorboard.backend.event_processing import event_file_loader

  paths = glob.glob(os.path.join(directory, "events.out.tfevents*"))
  assert len(paths) == 1, f"expected one event file (process 0's) in {directory}: {paths}"
  scalars: dict[str, dict[int, float]] = {}
  for event in event_file_loader.EventFileLoader(paths[0]).Load():
    for value in event.summary.value:
      if value.HasField("image") or (value.HasField("tensor") and not value.tensor.float_val):
        continue  # the cross-generation images: not scalars
      number = value.tensor.float_val[0] if value.HasField("tensor") else value.simple_value
      scalars.setdefault(value.tag, {})[event.step] = float(number)
  return scalars


@pytest.mark.parametrize("mode, sweep_flags, num_replicas", [
    ("data_parallel", [], 1),
    ("replica_sweep", ["--config.sweep.seeds=(0,1)"], 2),
])
def test_two_processes_equal_one_process_with_two_devices(
    mode, sweep_flags, num_replicas, tmp_path, compilation_cache, record_property):
  one_process, two_processes = str(tmp_path / "one_process"), str(tmp_path / "two_processes")
  multihost = ["--multihost", f"--coordinator_address=127.0.0.1:{free_port()}",
               "--num_processes=2"]
  commands = {
      "one_process_two_devices": ([*TINY, *sweep_flags, f"--workdir={one_process}"],
                                  subprocess_env(2, compilation_cache)),
      **{f"process_{index}": ([*TINY, *sweep_flags, f"--workdir={two_processes}", *multihost,
                               f"--process_id={index}"], subprocess_env(1, compilation_cache))
         for index in range(2)},
  }
  start = time.perf_counter()
  codes = run_together(commands, str(tmp_path), TIMEOUT_S)
  wall_s = time.perf_counter() - start
  record_property("wall_s", round(wall_s, 1))
  print(f"\n{mode}: one process with two devices and two processes with one device each, "
        f"run side by side: {wall_s:.1f} s wall")
  assert all(code == 0 for code in codes.values()), f"exit codes {codes}\n{log_tails(tmp_path)}"

  # The same checkpoints, bit for bit. The two layouts run the same per-device
  # programs; the only cross-device reduction (the data-parallel gradient and loss sums)
  # adds two operands, and a + b == b + a exactly in floating point, so gloo's
  # all-reduce across processes and XLA's in-process one agree to the bit. (With more
  # than two devices the summation order could differ; then a tolerance of a few ulps
  # would be the right test.)
  assert checkpoint_steps(two_processes) == checkpoint_steps(one_process) == [3, NUM_STEPS]
  for step in (3, NUM_STEPS):
    expected, actual = read_checkpoint(one_process, step), read_checkpoint(two_processes, step)
    assert expected.keys() == actual.keys()
    assert np.all(actual["['step']"] == step)
    differences = {name: float(np.max(np.abs(actual[name].astype(np.float64) - expected[name])))
                   for name in expected if expected[name].size}
    assert all(np.array_equal(actual[name], expected[name]) for name in expected), (
        f"step {step}: largest differences "
        f"{sorted(differences.items(), key=lambda item: -item[1])[:5]}")
    assert all(leaf.shape[0] == num_replicas for leaf in actual.values())

  # The same losses in the summaries, which only process 0 writes (read_scalars checks
  # there is one event file per summary directory).
  for replica in range(num_replicas):
    directory = "" if num_replicas == 1 else f"replica_{replica}"
    expected = read_scalars(os.path.join(one_process, directory))
    actual = read_scalars(os.path.join(two_processes, directory))
    for tag in ("train/loss", "test/loss"):
      assert np.isfinite(actual[tag][NUM_STEPS])
      np.testing.assert_allclose(actual[tag][NUM_STEPS], expected[tag][NUM_STEPS], rtol=1e-5,
                                 err_msg=f"{tag}, replica {replica}")
    np.testing.assert_allclose([actual["train/loss"][s] for s in (2, 4)],
                               [expected["train/loss"][s] for s in (2, 4)], rtol=1e-5)
    assert glob.glob(os.path.join(two_processes, directory, "figures", "*.png"))
