"""SIGINT, SIGTERM and SIGHUP while a command line is still importing its modules.

Importing JAX and the package takes a second or two, before `crmvae_jax.config.cli.run` installs
its handlers. A scheduler's SIGTERM in that window would otherwise end the process
silently with status -15, and a Ctrl-C would raise KeyboardInterrupt wherever the
import happens to be, where a library may catch it and carry on. Each entry point calls
`exit_on_stop_signals()` first: the signal then ends the process with one line and
status 128 + the signal. Nothing has been written at that point, so ending at once loses
nothing. `cli.run` replaces the handlers with its own as soon as the program starts.

Later handlers raise an exception, which a library may swallow (a signal that arrives
while JAX runs a Python callback); they also record the signal (`request_stop`), so
that the program still stops where it next looks (`stop_requested`): before training
starts, and before it exits with status 0.
"""

from __future__ import annotations

import os
import signal
import sys

from crmvae_jax.common import xla_setup

# Signals that end a command line with one line (training saves first).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_requested: list[int] = []


def request_stop(signal_number: int) -> None:
  """Records that `signal_number` asked the program to stop."""
  _requested.append(signal_number)


def stop_requested() -> int | None:
  """The first stop signal received since the program started, or None."""
  return _requested[0] if _requested else None


def _exit_now(signal_number, frame) -> None:
  del frame
  sys.stderr.write(f"error: {signal.Signals(signal_number).name} stopped the program while it "
                   "was starting, before it wrote anything; the same command starts it "
                   "again.\n")
  sys.stderr.flush()
  os._exit(128 + signal_number)  # no traceback from inside an import; nothing to clean up


def exit_on_stop_signals() -> None:
  """Until `cli.run` takes over: SIGINT, SIGTERM or SIGHUP exits with one line (module
  docstring)."""
  for number in STOP_SIGNALS:
    signal.signal(number, _exit_now)


def start_program() -> None:
  """What every program of the package does first, before its imports start JAX: stop
  signals end it with one line (`exit_on_stop_signals`), and XLA's CPU convolutions are
  set as the package measures fastest (`xla_setup.prefer_eigen_convolutions`). Importing
  the package changes neither; a notebook gets the XLA setting from `crmvae_jax.load`
  (or by calling `xla_setup.prefer_eigen_convolutions()` before its first computation)."""
  exit_on_stop_signals()
  xla_setup.prefer_eigen_convolutions()
