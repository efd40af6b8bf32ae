"""What every command line shares: the --config flag and one-line errors.

Every program (`crmvae_jax.main`, `.evaluate`, `.classifiers`,
`experiments/*`) starts with `cli.run(main, config=...)`, which

- defines `--config` with a default, so `--config.FIELD=VALUE` overrides work without
  a config file: the offline quick start (`QUICKSTART`), the config saved in the run
  named by `--workdir` (`RUN`), or a configs/*.py path;
- refuses, in one sentence, a config file that is missing, does not parse, has no
  `get_config` or returns no `ml_collections.ConfigDict`, and an override of a field
  the config lacks (naming the closest field);
- prints every other flag error, and every `UserError` that `main` raises, as one
  line `error: <message>` on stderr, with exit status 1;
- ends on SIGINT, SIGTERM or SIGHUP at any moment with one line and status 128 + the
  signal (training first saves its current step: `training.loop.StopSignals`), even
  where a library swallowed the exception the signal raised (`startup.stop_requested`).

Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import inspect
import os
import re
import signal
import sys
import traceback
import types
from collections.abc import Callable, Sequence

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.common import startup
from crmvae_jax.config import runs
from crmvae_jax.common import errors
from crmvae_jax.common.errors import UserError

# The default --config of training and of the classifiers: the quick start, whose
# file lives inside the package, so it works from any directory on a fresh install.
QUICKSTART = config_lib.__file__
# The default --config of a tool that opens a trained run: `--workdir`'s config.json
# (the quick start without --workdir).
RUN = "<the config.json of --workdir>"
# An --config.FIELD override on the command line: FIELD (absl also takes --noFIELD).
_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")


class Stopped(UserError):
  """SIGINT, SIGTERM or SIGHUP stopped the program outside training's own handling.

  Attributes:
    exit_code: 128 + the signal number, the shell's convention for a signalled program.
  """

  def __init__(self, signal_number: int):
    super().__init__(f"{signal.Signals(signal_number).name} stopped the program before it "
                     "finished; the same command runs it again (training resumes from its "
                     "last checkpoint).")
    self.exit_code = 128 + signal_number


def _raise_stopped(signal_number, frame) -> None:
  del frame
  startup.request_stop(signal_number)  # in case a library swallows the exception
  raise Stopped(signal_number)


# Flags that name a directory or file: an empty value (`--workdir=`) would silently mean
# the default or the current directory, so it is refused.
PATH_FLAGS = ("workdir", "results", "root", "report", "torch_weights", "output")
# Signals that end a program with one line (training saves first: loop.StopSignals).
STOP_SIGNALS = startup.STOP_SIGNALS


def exit_with(error: Exception | str) -> None:
  """Prints `error: <message>` as one line on stderr and exits with the error's
  `exit_code` (128 + the signal for a signalled run), else status 1.

  An error with `hard_exit` (a failed checkpoint write) ends the process at once: the
  threads of the failed write never finish, and a normal exit would wait for them.
  """
  hard_exit = getattr(error, "hard_exit", False)
  # A hard exit leaves a progress bar's line open (nothing unwinds to close it).
  print(("\n" if hard_exit else "") + "error: " + " ".join(str(error).split("\n")),
        file=sys.stderr)
  code = getattr(error, "exit_code", 1)
  if hard_exit:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def _flag_value(argv: Sequence[str], name: str) -> str | None:
  """The value of --name on a raw command line (before flags are parsed), or None."""
  for index, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      break
    if re.match(rf"^--?{name}=", arg):
      return arg.split("=", 1)[1]
    if re.match(rf"^--?{name}$", arg) and index + 1 < len(argv):
      return argv[index + 1]
  return None


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every dotted field name of `config`, nested groups included."""
  names = []
  for key in config.keys():
    names.append(f"{prefix}{key}")
    if isinstance(config[key], ml_collections.ConfigDict):
      names += _fields(config[key], f"{prefix}{key}.")
  return names


def check_override_names(config: ml_collections.ConfigDict, argv: Sequence[str],
                         source: str) -> None:
  """Refuses an --config.FIELD override whose FIELD `config` lacks.

  Args:
    config: the loaded config.
    argv: the raw command line.
    source: where the config came from, for the message.

  Raises:
    UserError: naming the unknown field and the closest known one.
  """
  known = _fields(config)
  for arg in argv[1:]:
    match = _OVERRIDE.match(arg)
    if match is None:
      continue
    field = match.group(1)
    renamed = config_lib.RENAMED_FIELDS.get(field)
    if renamed is not None:
      raise UserError(f"--config.{field} is now --config.{renamed}; pass that instead.")
    if field in known:
      continue
    [closest] = difflib.get_close_matches(field, known, n=1, cutoff=0.0)
    raise UserError(f"--config.{field} is not a field of {source}; did you mean "
                    f"--config.{closest}?")


@contextlib.contextmanager
def _errors_of_config_file(path: str):
  """An exception raised by the config file's own code (an import it lacks, a bug in
  get_config) becomes one line naming the file and its line; an exception raised in the
  package's code that the file calls keeps its traceback (a bug of ours)."""
  try:
    yield
  except UserError:
    raise
  except Exception as error:  # pylint: disable=broad-except
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if os.path.abspath(frame.filename) == os.path.abspath(path)]
    if not lines:
      raise
    message = " ".join(str(error).split()) or "no message"
    raise UserError(f"Config file {path}, line {lines[-1]}: {type(error).__name__}: {message}; "
                    "fix the file or pass another --config.") from None


def load_config_file(argument: str) -> ml_collections.ConfigDict:
  """The config that a --config value names: `PATH.py[:SETTING]` or a run's `config.json`.

  A .py file's `get_config(SETTING)` (or `get_config()`) must return a ConfigDict.

  Raises:
    UserError: the file is missing, does not parse, has no get_config, takes no such
      setting, or returns something other than a ConfigDict.
  """
  path, _, setting = argument.partition(":")
  if path.endswith(".json"):
    return runs.read_config(path)
  if os.path.isdir(path):
    inside = sorted(glob.glob(os.path.join(path, "*.py")))
    example = next((f for f in inside if not f.endswith("__init__.py")), None)
    hint = f"e.g. --config={example}" if example else "e.g. --config=configs/mst.py"
    raise UserError(f"--config={path} is a directory; pass a config file, {hint}.")
  if not os.path.isfile(path):
    siblings = glob.glob(os.path.join(os.path.dirname(path) or ".", "*.py"))
    close = difflib.get_close_matches(path, siblings, n=1, cutoff=0.6)
    hint = f"did you mean --config={close[0]}?" if close else "pass --config=configs/NAME.py."
    raise UserError(f"Config file {path} does not exist; {hint}")
  with open(path) as f:
    source = f.read()
  try:
    code = compile(source, path, "exec")
  except SyntaxError as error:
    raise UserError(f"Config file {path}, line {error.lineno}: {error.msg}; fix the file or "
                    "pass another --config.") from None
  # Compiled above and run here, so that only the file's own syntax errors are the
  # user's one-line error; an exception inside it keeps its traceback.
  module = types.ModuleType(f"config_{os.path.splitext(os.path.basename(path))[0]}")
  module.__file__ = path
  with _errors_of_config_file(path):
    exec(code, module.__dict__)  # pylint: disable=exec-used
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise UserError(f"Config file {path} defines no get_config(); it must define one that "
                    "returns an ml_collections.ConfigDict.")
  args = (setting,) if setting else ()
  try:
    inspect.signature(get_config).bind(*args)
  except TypeError:
    wanted = "no setting; drop" if setting else "a setting; add"
    raise UserError(f"{path}'s get_config takes {wanted} ':SETTING' in --config="
                    f"{argument}.") from None
  with _errors_of_config_file(path):
    config = get_config(*args)
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"Config file {path}: get_config() returned a {type(config).__name__}, "
                    "not an ml_collections.ConfigDict; return ml_collections.ConfigDict(...).")
  return config


class _ConfigParser(flags.ArgumentParser):
  """Parses --config values with `load_config_file` and checks the override names.

  It replaces ml_collections' own parser, which lets a syntax error or an unknown field
  escape as a traceback and a missing file surface only when the config is read.
  """

  def __init__(self, argv: Sequence[str]):
    self.argv = list(argv)

  def parse(self, argument):
    config = load_config_file(argument)
    source = "the quick-start config" if argument == QUICKSTART else argument
    check_override_names(config, self.argv, source)
    config.lock()  # a misspelt field assigned in code fails too
    return config

  def flag_type(self):
    return "config object"


def define_config_flag(argv: Sequence[str], default: str | None, help_string: str,
                       flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines --config (with --config.FIELD overrides) for the command line `argv`.

  Args:
    argv: the raw command line; its overrides become flags.
    default: a config path, `QUICKSTART`, `RUN` (`--workdir`'s saved config; the
      quick start without --workdir), or None (no default).
    help_string: the flag's help.
    flag_values: where to define it.

  Raises:
    UserError: the default config cannot be loaded, or an override names no field.
  """
  if default == RUN:
    workdir = _flag_value(argv, "workdir")
    default = runs.config_path(workdir) if workdir else QUICKSTART
  config_flags.DEFINE_config_file("config", None, help_string, flag_values=flag_values,
                                  lock_config=True, sys_argv=list(argv))
  flag_values["config"].parser = _ConfigParser(argv)
  # --helpshort lists the main module's key flags: --config is one of them.
  if argv:
    flag_values.register_key_flag_for_module(argv[0], flag_values["config"])
  if default is not None:
    # Parses the default now unless --config is given: that defines the override flags.
    flag_values.set_default("config", default)


def parse_flags(argv: Sequence[str], config_default: str | None = QUICKSTART,
                config_help: str = "A configs/*.py file; default: the offline quick start."
                ) -> list[str]:
  """app.run's flags_parser: defines --config, parses every flag, errors in one line.

  Args:
    argv: the raw command line.
    config_default: see `define_config_flag`; `False`: no --config flag at all.
    config_help: the --config help.

  Returns:
    The command line's remaining arguments, program name first.
  """
  try:
    if config_default is not False:
      define_config_flag(argv, config_default, config_help)
    return flags.FLAGS(list(argv))
  except UserError as error:
    exit_with(error)
  except flags.Error as error:
    exit_with(f"{error} (--helpfull lists the flags).")


def parse_numbers(values: Sequence[str], flag: str, kind: type = float) -> list:
  """The numbers of a list flag (e.g. --betas=0.5,1,2), or a UserError naming the flag."""
  try:
    return [kind(value) for value in values]
  except ValueError:
    what, example = ("integers", "0,1,2") if kind is int else ("numbers", "0.5,1,2")
    raise UserError(f"--{flag} must be a comma-separated list of {what}, e.g. "
                    f"--{flag}={example}; got {','.join(values)}.") from None


def check_names(values: Sequence[str], known: Sequence[str], flag: str) -> None:
  """Refuses a list flag's unknown names (e.g. --models=crmvea), naming the closest."""
  for value in values:
    if value not in known:
      close = difflib.get_close_matches(value, list(known), n=1)
      hint = f"did you mean {close[0]}? " if close else ""
      raise UserError(f"Unknown name {value!r} in --{flag}; {hint}known: {', '.join(known)}.")


# Compiled programs are kept here between runs, so a resumed or repeated run skips most
# of its compilation (seconds to a minute on a CPU).
COMPILATION_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "crmvae_jax", "xla")


def use_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache at `COMPILATION_CACHE`, unless the
  JAX_COMPILATION_CACHE_DIR environment variable already chose a directory (an empty
  value turns it off). It must precede the first compilation of the process."""
  import jax

  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)


def check_xla_flags() -> None:
  """Refuses an XLA_FLAGS that XLA would abort on (it ends the process with a fatal log
  line on any word it does not know): every word must be a --xla_NAME[=VALUE] flag.

  Raises:
    UserError: naming the first word that is not such a flag.
  """
  for word in os.environ.get("XLA_FLAGS", "").split():
    if not re.fullmatch(r"--xla_\w+(=\S*)?", word):
      raise UserError(f"XLA_FLAGS holds {word!r}, which is not an XLA flag (--xla_NAME=VALUE); "
                      "XLA would abort on it: fix or unset XLA_FLAGS.")


def _platform_error() -> UserError | None:
  """After a failure: a `UserError` if JAX has no usable device (JAX_PLATFORMS naming a
  platform this machine lacks, a GPU build without a GPU), else None.

  Asked only once something failed, since a multi-host run must not start JAX's backends
  before it joins its peers.
  """
  import jax

  try:
    jax.devices()
  except Exception as error:  # pylint: disable=broad-except  # RuntimeError, AssertionError
    platforms = os.environ.get("JAX_PLATFORMS")
    named = f"JAX_PLATFORMS={platforms}" if platforms else "JAX's default platforms"
    detail = " ".join(str(error).split()).split(". ")[0].rstrip(".") or type(error).__name__
    return UserError(f"JAX cannot start a device with {named} ({detail}); unset JAX_PLATFORMS "
                     "(or set it to cpu) on a machine without a GPU, or install the GPU build "
                     "with pip install -e '.[cuda12]' on a GPU machine.")
  return None


def run(main: Callable[[], None], config: str | None = QUICKSTART,
        config_help: str = "A configs/*.py file; default: the offline quick start.") -> None:
  """Runs `main()` as a command line (see the module docstring).

  Args:
    main: the program; it reads flags.FLAGS and raises UserError for what the user
      can fix.
    config: the --config default (`define_config_flag`), or False for no --config.
    config_help: the --config help.
  """

  def checked_main(argv):
    if len(argv) > 1:
      exit_with(f"Unexpected arguments {' '.join(argv[1:])}; flags are written --NAME=VALUE.")
    for name, value in flags.FLAGS.flag_values_dict().items():
      if value == "" and name in PATH_FLAGS:
        exit_with(f"--{name}= is empty; pass a directory or file (e.g. --{name}=workdirs/run), "
                  "or leave the flag out for its default.")
    try:
      check_xla_flags()
    except UserError as error:
      exit_with(error)
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # Orbax logs every save and restore at INFO
    for number in STOP_SIGNALS:  # by default they end the process silently
      signal.signal(number, _raise_stopped)
    try:
      main()
    except UserError as error:
      exit_with(error)
    except KeyboardInterrupt:  # a second Ctrl-C during training
      print("error: interrupted; the same command resumes from the last checkpoint.",
            file=sys.stderr)
      sys.exit(128 + signal.SIGINT)
    except Exception as error:  # pylint: disable=broad-except
      converted = errors.from_library_error(error) or _platform_error()
      if converted is None:
        raise  # a bug: its traceback is what a report needs
      exit_with(converted)
    if startup.stop_requested() is not None:  # a stop whose exception was swallowed
      exit_with(Stopped(startup.stop_requested()))

  use_compilation_cache()
  app.run(checked_main, flags_parser=lambda argv: parse_flags(argv, config, config_help))
