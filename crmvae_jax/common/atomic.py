"""Files written for the user, whole or not at all.

Every file the program writes for the user (results, tables, figures, classifier
metadata, data caches, a run's config) goes through `write_with`: the content is
written to a temporary file in the same directory, flushed to the disk, and only then
renamed over the old file (`os.replace` is atomic on one file system). A full disk, a
read-only directory or a crash mid-write therefore leaves the previous file intact,
never an empty or truncated one, and the failure is one sentence (`UserError`) naming
the path, and for a full disk how much was needed and how much is free.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import IO, Any

from crmvae_jax.common.errors import UserError


def _megabytes(size: int) -> str:
  """A size people read: '3.2 MB', '12.4 kB', '512 bytes' (a results file is a few kB,
  which '0.0 MB' hid)."""
  if size >= 1e6:
    return f"{size / 1e6:.1f} MB"
  if size >= 1e3:
    return f"{size / 1e3:.1f} kB"
  return f"{size} bytes"


def _free_bytes(directory: str) -> int | None:
  try:
    return shutil.disk_usage(directory).free
  except OSError:
    return None


def write_error(path: str, error: OSError, needed: int | None = None,
                at_least: bool = False) -> UserError:
  """The one-sentence UserError for a failed write of `path`.

  Args:
    path: the file that could not be written.
    error: the OSError the write raised.
    needed: the bytes the file needed, if known.
    at_least: `needed` is only what was written before the disk filled.

  Returns:
    The error to raise: for a full disk (ENOSPC, EDQUOT) it says how much was needed
    and how much is free; otherwise it names the system's reason.
  """
  directory = os.path.dirname(os.path.abspath(path))
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    free = _free_bytes(directory)
    amounts = []
    if needed is not None:
      amounts.append(f"it needs {'more than ' if at_least else ''}{_megabytes(needed)}")
    if free is not None:
      amounts.append(f"{_megabytes(free)} is free")
    detail = f" ({', '.join(amounts)})" if amounts else ""
    return UserError(f"Cannot write {path}: the disk is full{detail}; free some space on it "
                     "or write elsewhere (another --workdir or directory flag), and the "
                     "previous file is kept.")
  reason = error.strerror or type(error).__name__
  return UserError(f"Cannot write {path} ({reason}); make {directory} writable or write "
                   "elsewhere (another --workdir or directory flag), and the previous file "
                   "is kept.")


def check_writable(directory: str, fix: str, what: str = "") -> None:
  """Refuses, before anything is computed, a directory where no file can be written.

  Args:
    directory: where the results will go (created if missing).
    fix: what the user can do besides making it writable (or moving a file in its
      way), e.g. 'pass another --workdir'.
    what: what goes there, for the message ('checkpoints'); empty: files.

  Raises:
    UserError: `directory` is a file, or creating it or a file in it fails (read-only,
      full); the message names it, the reason and `fix`.
  """
  if os.path.islink(directory) and not os.path.exists(directory):
    raise UserError(f"{directory} is a link to {os.readlink(directory)}, which does not exist"
                    f"{' (meant for ' + what + ')' if what else ''}; create its target, remove "
                    f"the link, or {fix}.")
  if os.path.lexists(directory) and not os.path.isdir(directory):
    raise UserError(f"{directory} is a file, not a directory{' for ' + what if what else ''}; "
                    f"move it away or {fix}.")
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as error:
    raise UserError(f"Cannot write {what + ' ' if what else ''}in {directory} "
                    f"({error.strerror or type(error).__name__}); make it writable or {fix}."
                    ) from None


def _file_mode() -> int:
  """0o666 less the process's umask: the mode `open` would give a new file (mkstemp's
  own 0o600 would hide results from the user's group)."""
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("Umask:"):
          return 0o666 & ~int(line.split()[1], 8)
  except OSError:
    pass
  return 0o644


def write_with(path: str, write: Callable[[IO[bytes]], None], size: int | None = None) -> str:
  """Writes a file through `write(binary_file)`, atomically.

  Args:
    path: the file to (re)place; its directory is created.
    write: writes the whole content into the open binary file it is given.
    size: the content's size in bytes if known beforehand (for a full disk's message;
      else the bytes written before the failure are reported).

  Returns:
    `path`.

  Raises:
    UserError: the directory or the file could not be written (full disk, read-only
      directory); the old file, if any, is left as it was and no temporary remains.
  """
  directory = os.path.dirname(os.path.abspath(path))
  temporary = None
  written = None
  try:
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                             suffix=".partial", dir=directory)
    with os.fdopen(descriptor, "wb") as f:
      os.fchmod(f.fileno(), _file_mode())
      try:
        write(f)
        f.flush()
      finally:
        with contextlib.suppress(OSError, ValueError):
          written = f.tell()
      os.fsync(f.fileno())  # the content is on the disk before the name points at it
    os.replace(temporary, path)
    temporary = None
  except OSError as error:
    raise write_error(path, error, size if size is not None else written,
                      at_least=size is None) from error
  finally:
    if temporary is not None:
      with contextlib.suppress(OSError):  # cleaning up must not hide the first error
        os.unlink(temporary)
  return path


def write_bytes(path: str, data: bytes) -> str:
  """Writes `data` to `path` atomically (`write_with`); returns `path`."""
  return write_with(path, lambda f: f.write(data), size=len(data))


def write_text(path: str, text: str) -> str:
  """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path: str, document: Any, indent: int | None = 2) -> str:
  """Writes `document` as JSON (with a final newline) to `path` atomically; returns
  `path`. A document that is not JSON raises TypeError before anything is written."""
  return write_text(path, json.dumps(document, indent=indent) + "\n")


def update_json(path: str, change: Callable[[Any], Any], empty: Any = None,
                indent: int | None = 2) -> Any:
  """Reads the JSON document at `path` (`empty` if there is none), applies `change` and
  writes its result back atomically, all under an exclusive lock on `path + '.lock'`, so
  that processes updating one file side by side keep each other's changes (each would
  otherwise write back the document as it read it, dropping the other's). Returns the
  document written."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if os.path.isfile(path):
      with open(path) as f:
        document = json.load(f)
    else:
      document = empty
    document = change(document)
    write_json(path, document, indent)
  return document
