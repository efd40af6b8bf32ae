"""Grids of runs: models x seeds x betas, every model's grid trained in one program.

`grid_runs` trains each model's (seed, beta) replicas at once (`config.sweep`; one
jitted step, vmapped over replicas and sharded over the devices), models one after
another, evaluates every replica with `evaluation.driver.evaluate`, and returns their
results and where they are; `run_grid` returns the results alone, and
`reporting.summaries.sweep_markdown` tabulates them. `crmvae_jax/sweep.py`,
`experiments/paper/mst_tables.py`, `experiments/paper/polymnist_figure2.py` and
`experiments/paper/beta_sweep.py` are its command lines.
"""


from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import ml_collections

from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.config import runs
from crmvae_jax.common.errors import UserError
from crmvae_jax.data import registry
from crmvae_jax.training import loop, state
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.evaluation import classifier_training, driver, judges

# The small setting: `crmvae_jax.config.defaults.small` (every data set shrunk the same way) for
# a fixed number of steps, with small evaluation samples.
SMALL_TRAIN_STEPS = config_lib.RUN_SIZES["sweep"]["num_train_steps"]
SMALL_EVAL_EXAMPLES = config_lib.RUN_SIZES["sweep"]["eval.num_examples"]


def small_setting(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` shrunk to finish on a CPU, judged by `evaluate`'s own judges: the
  `sweep` run size (`config_lib.RUN_SIZES`: the small size for SMALL_TRAIN_STEPS steps,
  SMALL_EVAL_EXAMPLES of each evaluation sample). The classifiers stay `config`'s
  (directory, epochs, examples): those `python -m crmvae_jax.classifiers` trains and
  `python -m crmvae_jax.evaluate` reads, so a small sweep's coherence compares with any
  evaluation's. FID stays as `config` asks (the sweep tables report it, or why it is
  missing)."""
  return config_lib.resize(config, "sweep")


def grid_config(config: ml_collections.ConfigDict, model: str, seeds: list[int],
                betas: list[float]) -> ml_collections.ConfigDict:
  """`config` training `model` for every (seed, beta) of the grid at once."""
  config = config.copy_and_resolve_references()
  config.model = model
  config.sweep.seeds = tuple(int(seed) for seed in seeds)
  config.sweep.betas = tuple(float(beta) for beta in betas)
  return config


def grid_directory(root: str, model: str, seeds: list[int], betas: list[float]) -> str:
  return os.path.join(root, f"{model}_s{'-'.join(map(str, seeds))}_b{'-'.join(map(str, betas))}")


def ensure_classifiers(config: ml_collections.ConfigDict) -> dict[str, str]:
  """Trains the classifiers that evaluating `config`'s data set needs unless they are
  stored: one per modality of digit-labelled data, the attribute classifier of an
  image-text data set with attributes (CelebA; CUB needs none).

  Returns:
    modality name -> the digest of its judge's parameters (`judges.stored_digests`, what
    evaluation records as `classifier_digest`); empty for image-text data.
  """
  directory = judges.default_directory(config)
  if registry.DATA_SETS[config.data.name].evaluation == "image_text":
    if (config.data.name in registry.names(attributes=True)
        and judges.read_metadata(directory, "image") is None):
      print(f"Training the attribute classifier of {config.data.name} into {directory}.")
      classifier_training.train_attribute_classifier(config)
    return {}
  train_set, _ = data_lib.load(config.data)
  modalities = modalities_of(config.data.name, train_set)
  missing = [m.name for m in modalities if judges.read_metadata(directory, m.name) is None]
  if missing:
    print(f"Training the classifiers of {config.data.name} into {directory} "
          f"(missing: {', '.join(missing)}).")
    classifier_training.train_classifiers(config)
  return judges.stored_digests(config, modalities, directory)


class GridRun(NamedTuple):
  """One evaluated replica of a grid: its results and the directory they are in."""

  results: dict
  eval_dir: str


def grid_runs(config: ml_collections.ConfigDict, models: Sequence[str], seeds: Sequence[int],
              betas: Sequence[float], root: str, collect_only: bool = False,
              workdir_of: Callable[[str], str] | None = None) -> list[GridRun]:
  """Trains every model's (seed, beta) grid that lacks results, evaluates each replica
  that lacks them, and returns every replica that has them.

  Args:
    config: the (possibly shrunk) experiment config.
    models: model names; each trains its whole grid in one program.
    seeds: seeds of the grid.
    betas: betas of the grid.
    root: the runs' directory.
    collect_only: read existing results only.
    workdir_of: model -> its run's directory; default `grid_directory(root, model,
      seeds, betas)`.

  Returns:
    Every replica with results, model by model, in the order of `state.replica_grid`.

  Raises:
    UserError: a model's directory holds a run with other model-defining fields.
  """
  if workdir_of is None:
    workdir_of = lambda model: grid_directory(root, model, list(seeds), list(betas))
  if not collect_only:
    ensure_classifiers(config)
  found, missing = [], []
  for model in models:
    model_config = grid_config(config, model, list(seeds), list(betas))
    workdir = workdir_of(model)
    paths = [results_path(model_config, workdir, replica)
             for replica in range(len(seeds) * len(betas))]
    if not collect_only and not all(os.path.isfile(path) for path in paths):
      runs.check_same_run(model_config, workdir, "pass those (the grid's seeds and betas, "
                          "--config.FIELD), or another --root", required=False)
      loop.train_and_evaluate(model_config, workdir)
      for replica, path in enumerate(paths):
        if not os.path.isfile(path):
          driver.evaluate(model_config, workdir, replica=replica)
    for path in paths:
      if os.path.isfile(path):
        with open(path) as f:
          found.append(GridRun(json.load(f), os.path.dirname(path)))
      else:
        missing.append(os.path.dirname(path))
  if missing:
    print(f"No results in {len(missing)} replica(s): {', '.join(missing)}.")
  return found


def results_path(config: ml_collections.ConfigDict, workdir: str, replica: int) -> str:
  return os.path.join(state.replica_directory(config, workdir, replica), "eval",
                      driver.RESULTS_FILE)


def grid_results(config: ml_collections.ConfigDict, models: Sequence[str], seeds: Sequence[int],
                 betas: Sequence[float], root: str, setting: str = "small",
                 collect_only: bool = False) -> list[dict]:
  """`run_grid` at the run size `setting` ('small': `small_setting`, 'full': `config` as
  written), as the sweep commands run it; refuses a grid without any results."""
  if setting == "small":
    config = small_setting(config)
  results = run_grid(config, models, seeds, betas, root, collect_only)
  if not results:
    raise UserError(f"No run under {root} has results; run without --collect_only.")
  return results


def run_grid(config: ml_collections.ConfigDict, models: Sequence[str], seeds: Sequence[int],
             betas: Sequence[float], root: str, collect_only: bool = False) -> list[dict]:
  """The results of `grid_runs` (every replica's `evaluate` results), in
  `grid_directory(root, ...)`."""
  return [run.results for run in grid_runs(config, models, seeds, betas, root, collect_only)]
