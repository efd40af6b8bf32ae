"""The one exception type for errors a user can fix.

Command lines catch `UserError` alone and print its message as one line, with a
non-zero exit; any other exception is a bug and keeps its traceback. A `UserError`
message is one sentence that names the fix: the flag, file or command to use.
"""

import errno


class UserError(Exception):
  """A problem with the user's input, files or environment, not with the code."""


# What libraries say, in their own words, when the machine is out of something. Orbax
# and TensorStore report a full disk as a ValueError or a RuntimeError carrying the OS's
# message; XLA reports exhausted memory as RESOURCE_EXHAUSTED.
_DISK_FULL = ("No space left on device", "Disk quota exceeded", "ENOSPC", "EDQUOT")
_READ_ONLY = ("Read-only file system", "EROFS")
_OUT_OF_MEMORY = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "Cannot allocate memory")


def _chain(error: BaseException):
  """`error`, then its causes and contexts, each once."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def resource_problem(error: BaseException) -> str | None:
  """'disk full', 'read-only' or 'out of memory' where `error` (or what caused it) is a
  library's report of a full disk, a read-only file system or exhausted memory, else None.
  """
  for link in _chain(error):
    if isinstance(link, MemoryError):
      return "out of memory"
    if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
      return "disk full"
    if isinstance(link, OSError) and link.errno == errno.EROFS:
      return "read-only"
    text = str(link)
    for words, problem in ((_DISK_FULL, "disk full"), (_READ_ONLY, "read-only"),
                           (_OUT_OF_MEMORY, "out of memory")):
      if any(word in text for word in words):
        return problem
  return None


def from_library_error(error: BaseException) -> UserError | None:
  """The one-sentence `UserError` for a library exception that reports the machine's
  limits (a full disk, a read-only file system, exhausted memory), else None (a bug,
  which keeps its traceback). Command lines call it at their boundary (`cli.run`)."""
  problem = resource_problem(error)
  if problem == "disk full":
    full = UserError("The disk is full (" + _first_line(error) + "); free space, then run the "
                     "same command again (what was saved before is kept; training resumes "
                     "from its last checkpoint).")
    # Libraries retry their writes at exit (TensorBoard's writers, Orbax's threads) and
    # print a traceback of the same full disk: the program ends without running them.
    full.hard_exit = True
    return full
  if problem == "read-only":
    return UserError("A directory this program writes is read-only (" + _first_line(error) +
                     "); make it writable or pass another --workdir.")
  if problem == "out of memory":
    return UserError("The machine ran out of memory (" + _first_line(error) + "); lower "
                     "--config.batch_size, the sweep's size or the evaluation's sizes "
                     "(--config.eval.batch_size), or use a machine with more memory.")
  return None


def _first_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return (text[:160] + "...") if len(text) > 160 else (text or type(error).__name__)
