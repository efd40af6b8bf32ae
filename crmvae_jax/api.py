"""The package's Python API: train, judge, evaluate and load a run from Python.

    import crmvae_jax
    model = crmvae_jax.fit({"image": images, "vec": vectors, "labels": labels},
                           workdir="workdirs/mine", networks={"vec": (MyEncoder(), MyDecoder())})
    crmvae_jax.train_judges("workdirs/mine")      # one classifier per modality
    results = crmvae_jax.evaluate("workdirs/mine")  # coherence, probes, ... (docs/metrics.md)
    model.generate({"image": images[:8]}, ["vec"])   # crmvae_jax/model/inference.py
    model = crmvae_jax.load("workdirs/mine")       # later, in another process

Each function is what a command line does (`crmvae_jax.main`, `crmvae_jax.classifiers`,
`crmvae_jax.evaluate`), with the same checkpoints, resume, TensorBoard files, progress
bar and checks; a run started here can be resumed or evaluated from the command line and
the other way round. Errors a user can fix raise `crmvae_jax.UserError` with one
sentence; a stop (Ctrl-C, SIGTERM) saves the step and raises `TrainingInterrupted`, and
calling `fit` again resumes. docs/python.md walks through it.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from crmvae_jax.common import digests, xla_setup
from crmvae_jax.common.errors import UserError

if TYPE_CHECKING:
  import ml_collections

  from crmvae_jax.model.inference import TrainedModel

# Networks of a modality: (encoder, decoder), each a Flax module class or instance.
Networks = Mapping[str, tuple[Any, Any]]
# Where `fit` keeps arrays it was given in memory, inside the run's directory, so that the
# run can be resumed and evaluated later (also from the command line).
DATA_FOLDER = "data"


def _start() -> None:
  # Before JAX starts its CPU backend (a no-op once it has): the package's convolutions.
  xla_setup.prefer_eigen_convolutions()


def load(workdir: str, replica: int = 0, batch_size: int = 256,
         networks: Networks | None = None) -> "TrainedModel":
  """The trained model of the run in `workdir`.

  Args:
    workdir: the run's directory (what `fit` or `python -m crmvae_jax.main --workdir`
      wrote).
    replica: which seed of a run that trained several at once (`config.sweep.seeds`).
    batch_size: examples per compiled call of the returned model (an int >= 1).
    networks: your own network classes, {modality: (Encoder, Decoder)}, where the run
      recorded classes that this process cannot import (defined in another notebook or
      inside a function); their settings come from the run's config.

  Returns:
    A `crmvae_jax.model.inference.TrainedModel` with encode, generate, sample,
    reconstruct and log_likelihood, and the run's `config`, `step`, `train_set` and
    `test_set`.

  Raises:
    UserError: the directory holds no run, or a run this version cannot read (one
      sentence naming what to do).
  """
  _start()
  # Imported here, not at the top: `import crmvae_jax` stays quick and imports no JAX.
  from crmvae_jax.training.checkpoints import load_run  # pylint: disable=import-outside-toplevel

  if networks:
    _register_recorded(workdir, networks)
  return load_run(workdir, replica, batch_size)


def fit(data: Mapping[str, np.ndarray] | str | None = None, *, workdir: str,
        model: str = "crmvae", networks: Networks | None = None,
        test_data: Mapping[str, np.ndarray] | str | None = None,
        config: "ml_collections.ConfigDict | None" = None,
        settings: Mapping[str, Any] | None = None, judges: bool = False,
        coherence_curves: bool = True) -> "TrainedModel":
  """Trains a model and returns it, as `python -m crmvae_jax.main` does.

  Calling it again with the same arguments resumes the run from its newest checkpoint
  (or returns the finished model); other data or another model in the same `workdir` is
  refused.

  Args:
    data: your own data: {name: array} with one array per modality (images uint8 or
      floats in [0, 1] [N, S, S, C], texts integer ids [N, L], vectors floats [N, F]) and
      optionally "labels" (int [N]) and "masks" (bool [N, M]), as in docs/data.md; or the
      path of such an .npz file (or a directory of them). Arrays are written once to
      `workdir`/data/ so that the run can be resumed and evaluated later. None: the data
      set of `config` (e.g. `crmvae_jax.config.defaults.get_config()`, the quick start).
    workdir: the run's directory: checkpoints, TensorBoard files, figures, its config.
    model: the objective, a name of docs/models.md ('crmvae', 'mvtcae', 'mopoe', ...).
    networks: your own networks, {modality: (encoder, decoder)}: Flax module classes or
      instances (an instance's settings are recorded with the run). Each is built with
      `latent_dim=D` (and the modality's `out_channels`, `size`, `vocab_size` or `length`
      where the module declares such a field); the encoder maps the modality's input
      ([B, S, S, C] floats in [0, 1], one-hot text [B, L, V], vectors [B, F]) to (mean,
      logvar) [B, D] each, the decoder maps z [B, D] to the likelihood's location (an
      image's pixels, a text's logits [B, L, V]). Other modalities keep the networks
      chosen for their arrays. Only with your own `data`.
    test_data: the test split, like `data`; default: a seeded 10% of `data`
      (`settings={"data.test_fraction": ...}`).
    config: the whole config to start from (default: your own arrays' config,
      `crmvae_jax.config.defaults.arrays_config()`, or the quick start's without `data`).
    settings: config fields to change, by dotted name, e.g. {"num_train_steps": 3000,
      "likelihood_weights": (1.0, 8.0), "data.modalities": {...}}.
    judges: first train the judges of the data (one classifier per modality, as
      `train_judges` does; needs labels), unless they are stored already, so that
      TensorBoard shows coherence from the first evaluation on.
    coherence_curves: write the coherence of every evaluation to TensorBoard when the
      run's judges are stored.

  Returns:
    The trained model (`crmvae_jax.model.inference.TrainedModel`), as `load` returns it.

  Raises:
    UserError: a value the user can fix (one sentence naming it).
    crmvae_jax.training.guards.TrainingInterrupted: a stop signal saved the step.
  """
  _start()
  from crmvae_jax.config import defaults, runs  # pylint: disable=import-outside-toplevel
  from crmvae_jax.evaluation import coherence  # pylint: disable=import-outside-toplevel
  from crmvae_jax.training import loop  # pylint: disable=import-outside-toplevel

  if not isinstance(workdir, (str, os.PathLike)) or not str(workdir):
    raise UserError(f"workdir is {workdir!r}; give the run's directory, e.g. "
                    "workdir='workdirs/mine'.")
  workdir = os.fspath(workdir)
  if config is None:
    config = defaults.arrays_config() if data is not None else defaults.quickstart_config()
  config = copy.deepcopy(config)  # the caller's config stays as it was
  config.model = model
  _apply_settings(config, settings or {})
  if data is None and test_data is not None:
    raise UserError("test_data is given without data; give both, or neither to train on "
                    "the config's data set.")
  if data is not None or networks:
    if config.data.name != "arrays":
      raise UserError(f"data= and networks= are for your own arrays, but the config trains on "
                      f"{config.data.name!r}; leave config= out (your arrays' config is the "
                      "default) or pass crmvae_jax.config.defaults.arrays_config().")
  if data is None and config.data.name == "arrays" and not config.data.get("path"):
    raise UserError("No data: pass data={name: array, ...} or the path of an .npz file.")
  # Validated before anything is written into the workdir.
  if data is None:
    loop.check_run(config, workdir)
  else:
    runs.check_workdir(workdir)
  if data is not None:
    has_run = _has_run(workdir)
    config.data.path = _stored(data, workdir, "train", has_run)
    if test_data is not None:
      config.data.test_path = _stored(test_data, workdir, "test", has_run)
    if config.eval.get("classifier_dir") is None:
      # The run's own judges, beside it: two runs on other data never share judges.
      config.eval.classifier_dir = os.path.join(workdir, "classifiers")
    if not isinstance(data, (str, os.PathLike)):
      _declare_order(config, data)
  for name, pair in (networks or {}).items():
    _declare_networks(config, name, pair)
  if judges:
    _train_judges_once(config)
  eval_scalars = coherence.training_scalars(config) if coherence_curves else None
  loop.train_and_evaluate(config, workdir, eval_scalars)
  return load(workdir)


def train_judges(workdir: str, settings: Mapping[str, Any] | None = None) -> dict[str, float]:
  """Trains the run's judges, one classifier per modality on its real training data (as
  `python -m crmvae_jax.classifiers` does), and stores them where the run's evaluation
  reads them (`config.eval.classifier_dir`). Needs labels.

  Args:
    workdir: the run's directory.
    settings: evaluation fields to change, e.g. {"eval.classifier_epochs": 5}.

  Returns:
    modality name -> the judge's test accuracy.
  """
  _start()
  from crmvae_jax.config import runs, validation  # pylint: disable=import-outside-toplevel
  from crmvae_jax.evaluation import classifier_training  # pylint: disable=import-outside-toplevel

  config = runs.load_config(workdir)
  _apply_settings(config, settings or {})
  validation.validate_config(config)
  return classifier_training.train_classifiers(config)


def evaluate(workdir: str, settings: Mapping[str, Any] | None = None, replica: int = 0,
             verbose: bool = True) -> dict:
  """Evaluates the run's newest checkpoint with its data set's metrics, as
  `python -m crmvae_jax.evaluate --workdir` does (docs/metrics.md): writes
  `workdir`/eval/results.json, tables.md and the cross-generation figure.

  Args:
    workdir: the run's directory.
    settings: evaluation fields to change, e.g. {"eval.num_examples": 200}.
    replica: which (seed, beta) of a sweep.
    verbose: print the tables.

  Returns:
    The results (what results.json holds).

  Raises:
    UserError: e.g. a judge is missing or belongs to other data (naming `train_judges`).
  """
  _start()
  from crmvae_jax.config import runs, validation  # pylint: disable=import-outside-toplevel
  from crmvae_jax.evaluation import driver  # pylint: disable=import-outside-toplevel

  config = runs.load_config(workdir)
  _apply_settings(config, settings or {})
  validation.validate_config(config)
  return driver.evaluate(config, workdir, replica, verbose=verbose)


def _apply_settings(config: "ml_collections.ConfigDict", settings: Mapping[str, Any]) -> None:
  """Sets each dotted field of `settings` on `config`, refusing unknown names and values
  of the wrong type in one sentence."""
  from crmvae_jax.config import defaults  # pylint: disable=import-outside-toplevel

  for name, value in settings.items():
    renamed = defaults.RENAMED_FIELDS.get(str(name))
    if renamed is not None:
      raise UserError(f"settings names {name!r}, which is now {renamed!r}; use that name.")
    try:
      defaults.set_field(config, str(name), value)
    except (KeyError, AttributeError):
      raise UserError(f"settings names {name!r}, which the config has not; see the fields "
                      "of crmvae_jax/config/defaults.py (e.g. 'num_train_steps', "
                      "'eval.num_examples').") from None
    except TypeError as error:
      raise UserError(f"settings[{name!r}] = {value!r} has the wrong type ({error}).") from None


def _has_run(workdir: str) -> bool:
  from crmvae_jax.training.checkpoints import has_checkpoints  # pylint: disable=import-outside-toplevel

  return os.path.isdir(workdir) and has_checkpoints(workdir)


def _arrays_of(data: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
  if not isinstance(data, Mapping) or not data:
    raise UserError(f"{what} is {type(data).__name__}; give a dict of arrays, {{name: array}} "
                    "(one per modality, with optional 'labels' and 'masks'), or an .npz path.")
  arrays = {}
  for name, array in data.items():
    array = np.asarray(array)
    if array.dtype == object:
      raise UserError(f"{what}[{name!r}] holds Python objects; give numeric arrays.")
    arrays[str(name)] = array
  return arrays


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 of the arrays' names, dtypes, shapes and values (16 hex digits)."""
  return digests.arrays_sha256(arrays)[:16]


def _stored(data: Mapping[str, np.ndarray] | str, workdir: str, split: str,
            has_run: bool) -> str:
  """The path the run reads `data` from: an .npz path as it is, arrays written (once) to
  `workdir`/data/<split>.npz. Arrays other than the stored ones are refused where a run
  trained on those exists, since its checkpoints belong to them."""
  from crmvae_jax.common import atomic  # pylint: disable=import-outside-toplevel

  if isinstance(data, (str, os.PathLike)):
    return os.fspath(data)
  arrays = _arrays_of(data, "data" if split == "train" else "test_data")
  path = os.path.join(workdir, DATA_FOLDER, f"{split}.npz")
  digest_path = path + ".sha256"
  digest = content_digest(arrays)
  recorded = open(digest_path).read().strip() if os.path.isfile(digest_path) else None
  if recorded == digest and os.path.isfile(path):
    return path  # the same arrays: the file (and the run's record of it) stays
  if has_run:
    raise UserError(f"{workdir} holds a run trained on other {split} arrays than these; pass "
                    "another workdir= to train on them, or the same arrays to resume it.")
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  atomic.write_bytes(path, buffer.getvalue())
  atomic.write_text(digest_path, digest + "\n")
  return path


def _modalities_dict(config: "ml_collections.ConfigDict") -> dict:
  declared = config.data.get("modalities") or {}
  return declared.to_dict() if hasattr(declared, "to_dict") else dict(declared)


def _declare_order(config: "ml_collections.ConfigDict", data: Mapping) -> None:
  """The run's modalities in `data`'s order (`config.data.order`), unless the config
  orders them already."""
  from crmvae_jax.data import arrays  # pylint: disable=import-outside-toplevel

  if config.data.get("order") is None:
    config.data.order = tuple(str(name) for name in data if name not in arrays.RESERVED)


def _train_judges_once(config: "ml_collections.ConfigDict") -> None:
  """Trains the data's judges unless every modality's is stored for this very data."""
  from crmvae_jax import data as data_lib  # pylint: disable=import-outside-toplevel
  from crmvae_jax.config import validation  # pylint: disable=import-outside-toplevel
  from crmvae_jax.evaluation import classifier_training  # pylint: disable=import-outside-toplevel
  from crmvae_jax.evaluation import judges as judges_lib  # pylint: disable=import-outside-toplevel

  validation.validate_config(config)
  names = data_lib.load(config.data)[0].modalities
  if not judges_lib.stored_for_data(config, names):
    classifier_training.train_classifiers(config)


def _declare_networks(config: "ml_collections.ConfigDict", name: str, pair) -> None:
  """Records modality `name`'s own (encoder, decoder) in `config.data.modalities`."""
  from crmvae_jax.model import user_networks as networks_lib  # pylint: disable=import-outside-toplevel

  if not isinstance(pair, (tuple, list)) or len(pair) != 2:
    raise UserError(f"networks[{name!r}] is {pair!r}; give a pair (encoder, decoder) of Flax "
                    "module classes or instances.")
  modalities = _modalities_dict(config)
  spec = dict(modalities.get(name) or {})
  for role, module in zip(("encoder", "decoder"), pair):
    network_class = module if isinstance(module, type) else type(module)
    spec[role] = networks_lib.register(network_class)
    spec[f"{role}_options"] = {} if isinstance(module, type) else networks_lib.options_of(module)
  modalities[name] = spec
  config.data.modalities = modalities


def _register_recorded(workdir: str, networks: Networks) -> None:
  """Registers the classes of `networks` under the paths the run recorded for them."""
  from crmvae_jax.config import runs  # pylint: disable=import-outside-toplevel
  from crmvae_jax.model import user_networks as networks_lib  # pylint: disable=import-outside-toplevel

  declared = runs.load_config(workdir).data.get("modalities") or {}
  for name, pair in networks.items():
    spec = declared.get(name) or {}
    if not spec.get("encoder"):
      raise UserError(f"The run in {workdir} records no networks of its own for {name!r}; "
                      "drop it from networks=.")
    for role, module in zip(("encoder", "decoder"), pair):
      networks_lib.register(module if isinstance(module, type) else type(module), spec[role])
