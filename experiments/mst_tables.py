r"""The paper's Tables 1, 2 and 5: eight models x three seeds, next to the paper's numbers.

Full (the config as written: 100 epochs of MNIST-SVHN-Text per run; for GPUs):

  python -m experiments.mst_tables --setting=full --root=workdirs/mst_tables

Small (the same pipeline shrunk to finish on a laptop CPU: 200 steps per run on at
most 20,000 training pairs, evaluation on 1,000 test pairs; offline with the
quick-start data):

  python -m experiments.mst_tables --setting=small --config=configs/quickstart.py

For every model and seed, the run `<root>/<model>_seed<seed>` is trained (resumed if
it has a checkpoint) with `train.train_and_evaluate` and evaluated with
`evaluate.evaluate`, unless its `eval/results.json` exists. The classifiers are
trained first if any is missing (`crmvae_jax.classifiers`; the small setting keeps
its own under `<root>/classifiers`). Then Tables 1, 2 and 5 are printed and written
to `<root>/tables.md`: mean ± std over seeds, with the paper's rows on
MNIST-SVHN-Text. `--collect_only` skips training and evaluation and tabulates the
runs that have results. Select runs with e.g. `--models=crmvae,mvtcae --seeds=0,1`.
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from crmvae_jax import classifiers, evaluate, tables, train
from crmvae_jax import data as data_lib
from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.modalities import modalities_of

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/mst.py", "The experiment config; every run overrides its model and seed.",
    lock_config=True)
_MODELS = flags.DEFINE_list("models", list(tables.MODEL_NAMES), "Models to run.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_ROOT = flags.DEFINE_string(
    "root", None, "Directory of the runs; default workdirs/<data>_tables_<setting>.")
_SETTING = flags.DEFINE_enum(
    "setting", "small", ["small", "full"],
    "small: shrunk to finish on a CPU; full: the config as written.")
_COLLECT_ONLY = flags.DEFINE_bool(
    "collect_only", False, "Only tabulate the runs that already have results.")

# The small setting: few steps, a few thousand pairs, small evaluation samples.
SMALL_TRAIN_STEPS = 200
SMALL_TRAIN_PAIRS = 20000
SMALL_TEST_PAIRS = 2000
SMALL_EVAL_EXAMPLES = 1000


def small_setting(config: ml_collections.ConfigDict, root: str) -> ml_collections.ConfigDict:
  """A copy of `config` shrunk to finish on a CPU; its classifiers live under `root`.

  Args:
    config: an experiment config.
    root: the runs' directory.

  Returns:
    The shrunk copy: SMALL_TRAIN_STEPS steps, at most SMALL_TRAIN_PAIRS training and
    SMALL_TEST_PAIRS test pairs where the data set can subsample, SMALL_EVAL_EXAMPLES
    test pairs, prior samples, probe pairs and FID images, 2 classifier epochs.
  """
  config = config.copy_and_resolve_references()
  config.num_train_steps = SMALL_TRAIN_STEPS
  config.log_every_steps = 50
  config.eval_every_steps = SMALL_TRAIN_STEPS
  config.checkpoint_every_steps = SMALL_TRAIN_STEPS
  config.eval_batches = 4
  if "max_train_pairs" in config.data:
    config.data.max_train_pairs = SMALL_TRAIN_PAIRS
    config.data.max_test_pairs = SMALL_TEST_PAIRS
  config.eval.classifier_dir = os.path.join(root, "classifiers")
  config.eval.classifier_epochs = 2
  config.eval.classifier_max_train_examples = SMALL_TRAIN_PAIRS
  config.eval.num_examples = SMALL_EVAL_EXAMPLES
  config.eval.num_prior_samples = SMALL_EVAL_EXAMPLES
  config.eval.probe_train_examples = SMALL_EVAL_EXAMPLES
  config.eval.fid_examples = SMALL_EVAL_EXAMPLES
  return config


def run_config(config: ml_collections.ConfigDict, model: str, seed: int
               ) -> ml_collections.ConfigDict:
  """`config` for one model and seed."""
  config = config.copy_and_resolve_references()
  config.model = model
  config.seed = seed
  return config


def ensure_classifiers(config: ml_collections.ConfigDict) -> None:
  """Trains the classifiers of `config`'s data set unless every one is stored."""
  train_set, _ = data_lib.load(config.data)
  directory = classifiers.default_directory(config)
  missing = [m.name for m in modalities_of(config.data.name, train_set)
             if classifiers.read_metadata(directory, m.name) is None]
  if missing:
    print(f"Training the classifiers of {config.data.name} into {directory} "
          f"(missing: {', '.join(missing)}).")
    classifiers.train_classifiers(config)


def results_path(workdir: str) -> str:
  return os.path.join(workdir, "eval", evaluate.RESULTS_FILE)


def run_all(config: ml_collections.ConfigDict, models: list[str], seeds: list[int], root: str,
            collect_only: bool) -> list[dict]:
  """Trains and evaluates every (model, seed) that has no results; returns all results.

  Args:
    config: the (possibly shrunk) experiment config.
    models: model names.
    seeds: seeds.
    root: the runs' directory; run (model, seed) is `<root>/<model>_seed<seed>`.
    collect_only: read existing results only.

  Returns:
    The `evaluate` results of every run that has them.
  """
  if not collect_only:
    ensure_classifiers(config)
  runs, missing = [], []
  for model in models:
    for seed in seeds:
      workdir = os.path.join(root, f"{model}_seed{seed}")
      if not collect_only and not os.path.isfile(results_path(workdir)):
        model_config = run_config(config, model, seed)
        train.train_and_evaluate(model_config, workdir)
        evaluate.evaluate(model_config, workdir)
      if os.path.isfile(results_path(workdir)):
        with open(results_path(workdir)) as f:
          runs.append(json.load(f))
      else:
        missing.append(workdir)
  if missing:
    print(f"No results in {len(missing)} run(s): {', '.join(missing)}.")
  return runs


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  unknown = sorted(set(_MODELS.value) - set(tables.MODEL_NAMES))
  if unknown:
    raise app.UsageError(f"Unknown models {unknown}; known: {', '.join(tables.MODEL_NAMES)}.")
  config = _CONFIG.value
  root = _ROOT.value or os.path.join("workdirs", f"{config.data.name}_tables_{_SETTING.value}")
  if _SETTING.value == "small":
    config = small_setting(config, root)
  try:
    runs = run_all(config, _MODELS.value, [int(seed) for seed in _SEEDS.value], root,
                   _COLLECT_ONLY.value)
  except (DataUnavailableError, FileNotFoundError, ValueError) as error:
    sys.exit(f"error: {error}")
  if not runs:
    sys.exit(f"error: no run under {root} has results; run without --collect_only.")
  markdown = evaluate.tables_markdown(runs)
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "tables.md"), "w") as f:
    f.write(markdown)
  print(markdown)
  print(f"Wrote {os.path.join(root, 'tables.md')}.")


if __name__ == "__main__":
  app.run(main)
