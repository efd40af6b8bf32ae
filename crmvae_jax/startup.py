"""SIGTERM and SIGHUP while a command line is still importing its modules.

Importing JAX and the package takes a second or two, before `crmvae_jax.cli.run` installs
its handlers. A scheduler's SIGTERM in that window would otherwise end the process
silently with status -15. Each entry point calls `exit_on_stop_signals()` first: the
signal then ends the process with one line and status 128 + the signal. Nothing has been
written at that point, so ending at once loses nothing. `cli.run` replaces the handlers
with its own as soon as the program starts.
"""

from __future__ import annotations

import os
import signal
import sys

# Signals that end a command line with one line (training saves first).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _exit_now(signal_number, frame) -> None:
  del frame
  sys.stderr.write(f"error: {signal.Signals(signal_number).name} stopped the program while it "
                   "was starting, before it wrote anything; the same command starts it "
                   "again.\n")
  sys.stderr.flush()
  os._exit(128 + signal_number)  # no traceback from inside an import; nothing to clean up


def exit_on_stop_signals() -> None:
  """Until `cli.run` takes over: SIGTERM or SIGHUP exits with one line (module docstring)."""
  for number in STOP_SIGNALS:
    signal.signal(number, _exit_now)
