"""What guards a training run, apart from the loop itself: one training per workdir
(`WorkdirLock`), stop signals that save first (`StopSignals`), the errors a stopped or
diverged run ends with, and the checks made before training starts (a sweep that does
not fit in memory, a run asked for fewer steps than it has).
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from crmvae_jax.common import startup
from crmvae_jax.common.errors import UserError


class TrainingDiverged(UserError):
  """The loss, the gradient norm or the updated state stopped being finite; nothing
  non-finite was saved."""


class TrainingInterrupted(UserError):
  """SIGINT, SIGTERM or SIGHUP stopped training after saving the current step.

  Attributes:
    exit_code: 128 + the signal number, the shell's convention for a signalled program.
  """

  def __init__(self, message: str, signal_number: int):
    super().__init__(message)
    self.exit_code = 128 + signal_number


class WorkdirLock:
  """An exclusive lock on a directory, so two programs never write one run (or one set
  of judges) at once.

  `fcntl.flock` locks belong to the open file: the kernel releases them when the
  process dies, even by SIGKILL, so a killed program never leaves a stale lock behind.

  Args:
    workdir: the directory (it must exist).
    file_name: the lock file inside it.
    activity: what holds the lock, for the message ('training', 'classifier training').
    flag: the flag that chooses the directory, for the message.
  """

  def __init__(self, workdir: str, file_name: str = "train.lock", activity: str = "training",
               flag: str = "--workdir"):
    self.path = os.path.join(workdir, file_name)
    self.activity = activity
    self.flag = flag
    self._file = None

  def __enter__(self) -> "WorkdirLock":
    try:
      self._file = open(self.path, "a+")
    except OSError as error:
      raise UserError(f"Cannot open the lock file {self.path} ({error.strerror}); remove it "
                      f"(no {self.activity} may be running there) or pass another "
                      f"{self.flag}.") from None
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise UserError(
          f"Another {self.activity} ({holder}) is running in {os.path.dirname(self.path)}; "
          f"wait for it to finish or pass another {self.flag}.") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"pid {os.getpid()} on {os.uname().nodename}")
    self._file.flush()
    return self

  def __exit__(self, *exc_info) -> None:
    self._file.close()  # releases the lock


class StopSignals:
  """Turns SIGINT, SIGTERM and SIGHUP into a request to stop at the next chunk boundary.

  SLURM sends SIGTERM before preempting a job; Ctrl-C sends SIGINT; a closed terminal
  sends SIGHUP. The first signal
  only sets `signal_number`, so the loop can finish its steps and save; a second
  Ctrl-C stops at once. Handlers can only be installed from the main thread; elsewhere
  this does nothing.
  """

  def __init__(self):
    self.signal_number: int | None = None
    self._previous = {}

  def _handle(self, signal_number, frame):
    if self.signal_number is not None and signal_number == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_number = signal_number
    tqdm.tqdm.write(f"{signal.Signals(signal_number).name}: saving after the current steps "
                    "(Ctrl-C again stops at once, losing them).")

  def requested(self) -> int | None:
    """The signal that asked to stop, agreed on by every process (they must stop at
    the same step, since saving is collective)."""
    if jax.process_count() == 1:
      return self.signal_number
    every = multihost_utils.process_allgather(np.int32(self.signal_number or 0))
    return int(np.max(every)) or None

  def __enter__(self) -> "StopSignals":
    pending = startup.stop_requested()
    if pending is not None:  # asked before training started, and swallowed on the way
      raise TrainingInterrupted(f"{signal.Signals(pending).name} stopped the program before "
                                "training started; the same command starts it again.", pending)
    if threading.current_thread() is threading.main_thread():
      for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        self._previous[number] = signal.signal(number, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for number, handler in self._previous.items():
      signal.signal(number, handler)


def _divergence_message(first_non_finite: np.ndarray, seeds, betas, config,
                        has_checkpoint: bool = True) -> str:
  replica = int(np.argmax(first_non_finite >= 0))
  where = f" (replica seed {seeds[replica]}, beta {betas[replica]:g})" if len(seeds) > 1 else ""
  weights = config.get("likelihood_weights")
  causes = f"lower --config.learning_rate (now {config.learning_rate:g}) or beta"
  if weights:  # set by the user: the first thing to look at
    causes = (f"lower --config.learning_rate (now {config.learning_rate:g}), "
              f"--config.likelihood_weights (now {tuple(weights)}) or beta")
  kept = ("the last finite checkpoint is kept" if has_checkpoint else
          "no checkpoint had been saved yet, so nothing was written")
  return (f"Training diverged at step {first_non_finite[replica]}{where}: the loss, gradient "
          f"norm or updated parameters are not finite; {causes}; {kept}.")


def available_memory_bytes() -> int | None:
  """The memory training can still use: the free memory of the local accelerators
  (their `memory_stats`), or on CPU the host's available RAM (/proc/meminfo's
  MemAvailable); None where neither can be read."""
  devices = jax.local_devices()
  if devices[0].platform != "cpu":
    stats = [device.memory_stats() or {} for device in devices]
    if all("bytes_limit" in s for s in stats):
      return sum(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
    return None
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError):
    return None


def check_sweep_fits(state_bytes: int, data_bytes: int, num_replicas: int,
                     available: int | None) -> None:
  """Refuses a sweep whose replicas cannot fit in memory, before any is created.

  Each replica holds its state, its gradients and its new state at once (about three
  times the state's bytes; activations come on top, so this is a lower bound), and the
  training set is held once.

  Args:
    state_bytes: the bytes of one replica's state (parameters, optimiser state).
    data_bytes: the bytes of the training set on the devices.
    num_replicas: the sweep's number of replicas.
    available: the bytes available (`available_memory_bytes`); None: not checked.

  Raises:
    UserError: the estimate exceeds `available`; names both and a grid that fits.
  """
  per_replica = 3 * state_bytes
  needed = data_bytes + num_replicas * per_replica
  if available is None or needed <= available:
    return
  fits = max(0, (available - data_bytes) // per_replica)
  raise UserError(
      f"The sweep's {num_replicas} replicas need at least {needed / 1e9:.1f} GB "
      f"({per_replica / 1e6:.1f} MB each), more than the {available / 1e9:.1f} GB available; "
      f"sweep at most {fits} replicas at once with fewer --config.sweep.seeds or "
      "--config.sweep.betas (and run the rest in another --workdir).")


def check_not_past(start_step: int, num_steps: int, workdir: str) -> None:
  """Refuses to resume a run whose checkpoint is past the steps asked for.

  Args:
    start_step: the step of the restored checkpoint.
    num_steps: the steps the config asks for.
    workdir: the run's directory, for the message.

  Raises:
    UserError: `start_step` > `num_steps`, naming both and the fix.
  """
  if start_step > num_steps:
    raise UserError(
        f"{workdir} is already at step {start_step}, past the {num_steps} steps asked for; "
        f"pass --config.num_train_steps={start_step} or more to resume it, or another "
        "--workdir to train a new run.")
