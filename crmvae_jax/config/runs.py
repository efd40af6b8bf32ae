"""A run's directory: its saved config, and which config changes make another run.

Training writes `WORKDIR/config.json` (`save_config`) before its first step, so every
tool that opens a trained run (`crmvae_jax.evaluate`,
the experiment scripts) reads the run's own settings (`load_config`) instead of asking
for its training flags again, and training refuses to resume a run with a config that
would build another model or read other data (`model_defining_differences`).

The file is the config's values as JSON (readable: `json.load(f)["model"]`), plus one
entry, `TYPES_KEY`, holding what JSON cannot say: which lists are tuples and the type
of every None placeholder, so that the loaded config equals the saved one and its
fields still take `--config.FIELD=VALUE` overrides of the right type.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from crmvae_jax.common import atomic
from crmvae_jax.common.errors import UserError
from crmvae_jax.config import defaults
from crmvae_jax.data.arrays import NETWORK_CHOICE_OF_OLDER_RUNS
from crmvae_jax.data.base import DEFAULT_MISSING_RATIO

CONFIG_FILE = "config.json"
# The identity of the data a run was trained on (`crmvae_jax.data.identity`).
DATA_FILE = "data.json"
# Dotted field -> type name, for the fields whose JSON form loses their type.
TYPES_KEY = "__types__"
_TYPES = {cls.__name__: cls for cls in (tuple, list, str, int, float, bool, dict)}

# Fields that decide the model's architecture, its objective, the data it sees or
# the order it sees them in (a prefix ending in '.' covers a whole group). A run
# resumed or evaluated with another value of any of them is another run.
MODEL_DEFINING = ("model", "beta", "latent_dim", "data.", "likelihood_weights", "batch_size",
                  "seed", "sweep.seeds", "sweep.betas", "mixture_estimator", "readings.",
                  "private_dims", "jmvae_alpha", "mmvae_plus_samples", "mmvae_plus_estimator")
# Model-defining fields added after runs were saved without them: their value in such a
# run (so that it still resumes and evaluates).
ADDED_FIELDS = {"data.missing_ratio": DEFAULT_MISSING_RATIO,
                "data.network_choice": NETWORK_CHOICE_OF_OLDER_RUNS,
                "data.order": None, "private_dims": None, "jmvae_alpha": 0.1,
                "mmvae_plus_samples": 10, "mmvae_plus_estimator": "dreg"}
# Fields of `data` that say where the same data is found, not which data it is.
DATA_LOCATIONS = ("data.data_dir", "data.captions_dir", "data.image_dir", "data.cache_dir",
                  "data.download")


def save_data_identity(workdir: str, identity: dict) -> str:
  """Writes the identity of the run's data (`crmvae_jax.data.identity`) to
  `workdir/data.json`, atomically."""
  return atomic.write_json(os.path.join(workdir, DATA_FILE), identity)


def check_same_data(workdir: str, identity: dict, fix: str) -> None:
  """Refuses to resume or evaluate `workdir`'s run on data other than its own.

  A run saved before runs recorded their data (no data.json) passes.

  Args:
    workdir: the run's directory.
    identity: the identity of the data about to be used (`crmvae_jax.data.identity`).
    fix: what the refusal tells the user to do.

  Raises:
    UserError: the saved identity differs; the message names what changed.
  """
  path = os.path.join(workdir, DATA_FILE)
  if not os.path.isfile(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise UserError(f"{path} is not readable ({error}); delete it to accept the current "
                    "data as the run's own.") from None
  if saved == json.loads(json.dumps(identity)):
    return
  flat_saved, flat_now = _flatten(saved), _flatten(identity)
  changed = sorted(field for field in set(flat_saved) | set(flat_now)
                   if flat_saved.get(field) != flat_now.get(field))
  described = ", ".join(f"{field} {flat_saved.get(field)!r} then, {flat_now.get(field)!r} now"
                        for field in changed)
  raise UserError(f"{workdir} was trained on other data ({described}); {fix}.")


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def train_command(workdir: str) -> str:
  """The command that trains a run into `workdir` (CONFIG: the user's config file)."""
  return f"python -m crmvae_jax.main --config=CONFIG --workdir={workdir}"


def check_workdir(workdir: str, flag: str = "--workdir") -> None:
  """Refuses a directory that cannot be written, before anything is computed.

  Args:
    workdir: the directory (it need not exist yet).
    flag: the flag that named it, for the message.

  Raises:
    UserError: `workdir` (or a directory above it) is a file, or the nearest existing
      directory above it is not writable.
  """
  if os.path.islink(workdir) and not os.path.exists(workdir):
    raise UserError(f"{flag}={workdir} is a link to {os.readlink(workdir)}, which does not "
                    "exist; create its target, remove the link, or pass another directory.")
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = ("is a file" if existing == os.path.abspath(workdir) else
             f"is inside {existing}, which is a file")
    raise UserError(f"{flag}={workdir} {where}; pass a directory (a new one, or one you "
                    "wrote before).")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UserError(f"{flag}={workdir}: {existing} is not writable; pass a directory you "
                    "can write to.")


def _encode(config: ml_collections.ConfigDict, prefix: str, types: dict[str, str]) -> dict:
  """The config's values as JSON values; `types` collects what JSON loses."""
  values = {}
  for key in config.keys():
    value, path = config[key], f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      values[key] = _encode(value, f"{path}.", types)
      continue
    if isinstance(value, tuple):
      types[path] = "tuple"
      value = json.loads(json.dumps(value))  # nested tuples become lists too
    elif value is None and config.get_type(key).__name__ in _TYPES:
      types[path] = config.get_type(key).__name__
    values[key] = value
  return values


def save_config(workdir: str, config: ml_collections.ConfigDict) -> str:
  """Writes `config` to `workdir/config.json`, atomically (a crash leaves the old file
  or the new one, never half of one).

  Returns:
    The file's path.

  Raises:
    UserError: the file cannot be written (`atomic.write_with`).
  """
  types: dict[str, str] = {}
  document = _encode(config, "", types)
  document[TYPES_KEY] = types
  return atomic.write_json(config_path(workdir), document)


def _as_tuple(value: Any) -> Any:
  return tuple(_as_tuple(item) for item in value) if isinstance(value, list) else value


def _decode(values: dict, types: dict[str, str]) -> dict:
  """Undoes `_encode` in place: tuples and typed None placeholders."""
  for path, type_name in types.items():
    *parents, key = path.split(".")
    parent = values
    for name in parents:
      parent = parent.get(name, {})
    if key not in parent or type_name not in _TYPES:
      continue
    if type_name == "tuple" and isinstance(parent[key], list):
      parent[key] = _as_tuple(parent[key])
    elif parent[key] is None:
      parent[key] = config_dict.placeholder(_TYPES[type_name])
  return values


def read_config(path: str) -> ml_collections.ConfigDict:
  """The config saved at `path` by `save_config` (unlocked).

  A file written before types were recorded (no `TYPES_KEY`) loads too, its lists
  read as tuples.

  Raises:
    UserError: the file does not exist, or is not a saved config.
  """
  workdir = os.path.dirname(path) or "."
  if not os.path.isfile(path):
    raise UserError(f"No trained run in {workdir} ({path} does not exist); train one first "
                    f"with: {train_command(workdir)}")
  try:
    with open(path) as f:
      document = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise UserError(f"{path} is not a readable saved config ({error}); delete it to "
                    f"retrain with: {train_command(workdir)}") from error
  if not isinstance(document, dict) or "model" not in document:
    raise UserError(f"{path} is not a saved training config; delete it to retrain with: "
                    f"{train_command(workdir)}")
  types = document.pop(TYPES_KEY, None)
  if types is None:  # an older run: every list was a tuple
    types = {field: "tuple" for field, value in _flatten(document).items()
             if isinstance(value, list)}
  _renamed_in_place(document, types)
  config = ml_collections.ConfigDict(_decode(document, types))
  if "eval" in config:
    # Evaluation settings added since the run was saved take today's defaults: they
    # define no model, and --config.eval.FIELD=VALUE can then set them on any run.
    _fill_missing(config.eval, defaults.evaluation_config())
  return config


def _renamed_in_place(document: dict, types: dict) -> None:
  """Moves the evaluation settings a run saved under their old names
  (`defaults.RENAMED_FIELDS`, e.g. eval.fid -> eval.fid.enabled) to their new ones."""
  evaluation = document.get("eval")
  if not isinstance(evaluation, dict):
    return
  moved = {}  # first take every old value out (eval.fid's flag has its group's name) ...
  for old, new in defaults.RENAMED_FIELDS.items():
    name = old.split(".", 1)[1]
    if name in evaluation and not isinstance(evaluation[name], dict):
      moved[new] = evaluation.pop(name)
      if old in types:
        types[new] = types.pop(old)
  for new, value in moved.items():  # ... then put each in its group
    group, leaf = new.split(".")[1:]
    evaluation.setdefault(group, {})[leaf] = value


def _fill_missing(config: ml_collections.ConfigDict, current: ml_collections.ConfigDict) -> None:
  """Adds to `config` every field of `current` it lacks, group by group."""
  for name in current.keys():
    if name not in config:
      config[name] = current[name]
    elif isinstance(current[name], ml_collections.ConfigDict) and isinstance(
        config[name], ml_collections.ConfigDict):
      _fill_missing(config[name], current[name])


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config `workdir`'s run was trained with (unlocked).

  Raises:
    UserError: `workdir` holds no saved config; the message names the command that
      trains one.
  """
  return read_config(config_path(workdir))


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
  """Dotted field name -> value, for every leaf of a (nested) config or dict."""
  if isinstance(values, ml_collections.ConfigDict):
    values = {key: values[key] for key in values.keys()}
  if not isinstance(values, dict):
    return {prefix[:-1]: values}
  flat = {}
  for key, value in values.items():
    flat.update(_flatten(value, f"{prefix}{key}."))
  return flat


def _with_added_fields(config) -> dict[str, Any]:
  """`config` flattened, with the `ADDED_FIELDS` a run saved before them lacks."""
  flat = _flatten(config)
  if "model" not in flat:  # not a run's config (or its recorded fields)
    return flat
  for field, value in ADDED_FIELDS.items():
    group = field.rpartition(".")[0]
    if not group or group + ".name" in flat:  # top level, or the group exists
      flat.setdefault(field, value)
  return flat


def _model_defining(field: str) -> bool:
  if field in DATA_LOCATIONS:
    return False
  return any(field.startswith(name) if name.endswith(".") else field == name
             for name in MODEL_DEFINING)


def _normalise(value: Any) -> Any:
  return [_normalise(item) for item in value] if isinstance(value, (list, tuple)) else value


def model_defining_differences(saved: ml_collections.ConfigDict,
                               new: ml_collections.ConfigDict) -> list[str]:
  """The fields that change the model or its data, where `new` differs from `saved`.

  Compared: `MODEL_DEFINING` (model, beta, latent_dim, every data.* field except the
  data's location `DATA_LOCATIONS`, likelihood_weights, batch_size, seed, sweep.seeds,
  sweep.betas, mixture_estimator). Ignored: how long and how visibly a run trains
  (num_train_steps, num_epochs, log/eval/checkpoint intervals, disable_progress_bar,
  learning_rate) and every eval.* setting. A field present in only one of the two
  differs.

  Args:
    saved: the run's config (`load_config`).
    new: the config it is about to be resumed or evaluated with.

  Returns:
    Sorted dotted field names, e.g. ['data.name', 'model']; empty when compatible.
  """
  flat_saved, flat_new = _with_added_fields(saved), _with_added_fields(new)
  missing = object()
  return sorted(
      field for field in set(flat_saved) | set(flat_new)
      if _model_defining(field)
      and _normalise(flat_saved.get(field, missing)) != _normalise(flat_new.get(field, missing)))


def model_defining_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config's `MODEL_DEFINING` fields as {dotted field: JSON value}, e.g. what each
  checkpoint records so that resuming can be checked even without config.json.

  The result compares with a config through `model_defining_differences` and
  `describe_differences` (a flat dict of dotted names flattens to itself).
  """
  return {field: _normalise(value) for field, value in sorted(_flatten(config).items())
          if _model_defining(field)}


def describe_differences(saved: ml_collections.ConfigDict, new: ml_collections.ConfigDict,
                         fields: list[str]) -> str:
  """'--config.model=crmvae (asked: mvae), ...': the run's values of `fields` as flags."""
  flat_saved, flat_new = _with_added_fields(saved), _with_added_fields(new)

  def shown(flat, field):
    return repr(flat[field]) if field in flat else "absent"

  return ", ".join(f"--config.{field}={shown(flat_saved, field)} (asked: "
                   f"{shown(flat_new, field)})" for field in fields)


def check_same_run(config: ml_collections.ConfigDict, workdir: str,
                   fix: str = f"leave out --config to use the run's own {CONFIG_FILE}, or "
                   "pass those values", required: bool = True) -> ml_collections.ConfigDict | None:
  """Refuses to open `workdir`'s run with a config that describes another run.

  Args:
    config: the config a tool was given for the run.
    workdir: the run's directory.
    fix: what the refusal tells the user to do (the tool's own flags).
    required: whether a workdir without a saved config is refused too; if not, it
      passes (a new run).

  Returns:
    The run's saved config, or None for a new run (`required=False`).

  Raises:
    UserError: no saved config in `workdir` (when `required`), or a model-defining
      field differs (the message names each field with the run's value, then `fix`).
  """
  if not required and not os.path.isfile(config_path(workdir)):
    return None
  saved = load_config(workdir)
  differences = model_defining_differences(saved, config)
  if differences:
    raise UserError(
        f"{workdir} was trained with {describe_differences(saved, config, differences)}; "
        f"{fix}.")
  return saved
