"""A training killed with SIGKILL at random moments and restarted with the same command
until it completes ends with exactly the parameters of an uninterrupted run.

SIGKILL gives the program no chance to clean up: the kills land during start-up,
during training and in the middle of a checkpoint write (seeded random delays after the
moment each phase is seen in the workdir), and then at a random moment of a run's
lifetime. Every restart must resume from whatever the killed run left behind.

The runs are subprocesses of `python -m crmvae_jax.main`, as a user (or a cluster's
requeue) runs them; they share a persistent compilation cache, which the uninterrupted
run fills, so every restart skips compilation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from training_runs import read_checkpoint, subprocess_env

# Every test here trains in subprocesses, with XLA's optimising compiler, as users'
# runs do: the bit-for-bit claim is about the programs users run (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.optimized]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20261125
NUM_STEPS = 40
FLAGS = ["--config=configs/quickstart.py", f"--config.num_train_steps={NUM_STEPS}",
         "--config.checkpoint_every_steps=5", "--config.batch_size=32",
         f"--config.eval_every_steps={NUM_STEPS}", "--config.log_every_steps=5",
         "--config.disable_progress_bar=True"]
RUN_TIMEOUT_S = 300
KILLS = ("start-up", "training", "checkpoint write", "random")


def checkpoint_entries(workdir: str) -> list[str]:
  directory = os.path.join(workdir, "checkpoints")
  return os.listdir(directory) if os.path.isdir(directory) else []


def committed_steps(workdir: str) -> list[int]:
  return sorted(int(name) for name in checkpoint_entries(workdir) if name.isdigit())


class Run:
  """One start of the training command, its output appended to `log_path`."""

  def __init__(self, workdir: str, env: dict, log_path: str):
    self.log = open(log_path, "a")
    self.log.write(f"=== start at {time.strftime('%H:%M:%S')}\n")
    self.log.flush()
    self.start = time.monotonic()
    self.process = subprocess.Popen(
        [sys.executable, "-m", "crmvae_jax.main", *FLAGS, f"--workdir={workdir}"],
        cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)

  def running(self) -> bool:
    if time.monotonic() - self.start > RUN_TIMEOUT_S:
      self.process.kill()
      raise AssertionError(f"a run took longer than {RUN_TIMEOUT_S} s")
    return self.process.poll() is None

  def wait_until(self, condition, poll_s: float = 0.002) -> bool:
    """Polls `condition` while the process runs; True if it held before the exit."""
    while self.running():
      if condition():
        return True
      time.sleep(poll_s)
    return False

  def kill(self) -> bool:
    """SIGKILL; True if the process was still running."""
    alive = self.process.poll() is None
    if alive:
      self.process.kill()
    self.process.wait()
    self.log.close()
    return alive

  def finish(self) -> int:
    code = self.process.wait(timeout=max(1.0, RUN_TIMEOUT_S - (time.monotonic() - self.start)))
    self.log.close()
    return code


def log_tail(path: str, lines: int = 30) -> str:
  with open(path) as f:
    return "".join(f.readlines()[-lines:])


def test_sigkilled_and_restarted_training_ends_bit_for_bit_like_an_uninterrupted_one(
    tmp_path, compilation_cache, record_property):
  env = subprocess_env(1, compilation_cache)
  rng = np.random.default_rng(SEED)
  start = time.perf_counter()

  straight, straight_log = str(tmp_path / "straight"), str(tmp_path / "straight.log")
  run = Run(straight, env, straight_log)
  code = run.finish()
  straight_s = time.perf_counter() - start
  assert code == 0, log_tail(straight_log)
  assert committed_steps(straight)[-1] == NUM_STEPS

  crashed, crashed_log = str(tmp_path / "crashed"), str(tmp_path / "crashed.log")
  kills = []  # (kind, seconds after the start, committed steps before -> after)
  starts, warm_start_s = 0, straight_s
  for kind in KILLS:
    run = Run(crashed, env, crashed_log)
    starts += 1
    before = committed_steps(crashed)
    if kind == "start-up":  # before the first step: imports, data, compilation
      delay = rng.uniform(0.5, 2.5)
      run.wait_until(lambda: time.monotonic() - run.start > delay, 0.01)
    elif kind == "training":  # soon after this start's first checkpoint
      newest = before[-1] if before else 0
      if run.wait_until(lambda: any(step > newest for step in committed_steps(crashed))):
        warm_start_s = time.monotonic() - run.start  # start-up with a warm compilation cache
        delay = time.monotonic() + rng.uniform(0.0, 0.5)
        run.wait_until(lambda: time.monotonic() > delay)
    elif kind == "checkpoint write":  # while Orbax writes: a temporary directory exists
      seen = {name for name in checkpoint_entries(crashed) if not name.isdigit()}
      if run.wait_until(lambda: any(not name.isdigit() and name not in seen
                                    for name in checkpoint_entries(crashed))):
        delay = time.monotonic() + rng.uniform(0.0, 0.01)
        run.wait_until(lambda: time.monotonic() > delay, 0.001)
    else:  # a random moment of a restart's life: start-up, training or saving
      delay = rng.uniform(0.3, 1.3) * warm_start_s
      run.wait_until(lambda: time.monotonic() - run.start > delay, 0.01)
    elapsed = time.monotonic() - run.start
    if run.kill():
      kills.append((kind, round(elapsed, 2), before[-1:], committed_steps(crashed)[-1:]))
    else:
      assert run.process.returncode == 0, log_tail(crashed_log)

  for _ in range(3):  # a run killed while starting may need more than one restart
    if committed_steps(crashed) and committed_steps(crashed)[-1] == NUM_STEPS:
      break
    code = Run(crashed, env, crashed_log).finish()
    starts += 1
    assert code == 0, log_tail(crashed_log)
  wall_s = time.perf_counter() - start

  assert committed_steps(crashed)[-1] == NUM_STEPS, log_tail(crashed_log)
  expected, actual = read_checkpoint(straight, NUM_STEPS), read_checkpoint(crashed, NUM_STEPS)
  assert expected.keys() == actual.keys()
  max_difference = max(float(np.max(np.abs(actual[k].astype(np.float64) - expected[k])))
                       for k in expected if expected[k].size)
  report = (f"{len(kills)} kills {kills}, {starts - 1} restarts, max parameter difference "
            f"{max_difference}, uninterrupted run {straight_s:.1f} s, test {wall_s:.1f} s wall")
  print("\n" + report)
  record_property("crash_resume", report)
  assert len(kills) >= 3, report
  assert all(np.array_equal(actual[k], expected[k]) for k in expected), report
