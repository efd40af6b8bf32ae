"""Grids of runs: models x seeds x betas, every model's grid trained in one program.

`run_grid` trains each model's (seed, beta) replicas at once (`config.sweep`; one jitted
step, vmapped over replicas and sharded over the devices), models one after another,
evaluates every replica with `evaluation.driver.evaluate`, and returns their results;
`reporting.summaries.sweep_markdown` tabulates them. `experiments/sweep.py` and
`experiments/mst_tables.py` are its command lines.
"""


from __future__ import annotations

import json
import os

import ml_collections

from crmvae_jax import config as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.training import loop, state
from crmvae_jax.core.modalities import modalities_of
from crmvae_jax.evaluation import classifier_training, driver, judges

# The small setting: `crmvae_jax.config.small` (every data set shrunk the same way) for
# a fixed number of steps, with small evaluation samples.
SMALL_TRAIN_STEPS = 200
SMALL_EVAL_EXAMPLES = 1000


def small_setting(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` shrunk to finish on a CPU, judged by `evaluate`'s own judges.

  Returns:
    `config_lib.small(config)` (its data, batch, intervals) run for SMALL_TRAIN_STEPS
    steps, with SMALL_EVAL_EXAMPLES test pairs, prior samples, probe pairs and FID
    images. The classifiers stay `config`'s (directory, epochs, examples): those
    `python -m crmvae_jax.classifiers` trains and `python -m crmvae_jax.evaluate` reads,
    so a small sweep's coherence compares with any evaluation's. FID stays as `config`
    asks (the sweep tables report it, or why it is missing).
  """
  kept = {field: config.eval[field] for field in (
      "fid", "classifier_dir", "classifier_epochs", "classifier_max_train_examples")}
  config = config_lib.small(config)
  config.num_train_steps = SMALL_TRAIN_STEPS
  config.eval.num_examples = SMALL_EVAL_EXAMPLES
  config.eval.num_prior_samples = SMALL_EVAL_EXAMPLES
  config.eval.probe_train_examples = SMALL_EVAL_EXAMPLES
  config.eval.fid_examples = SMALL_EVAL_EXAMPLES
  for field, value in kept.items():
    config.eval[field] = value
  return config


def grid_config(config: ml_collections.ConfigDict, model: str, seeds: list[int],
                betas: list[float]) -> ml_collections.ConfigDict:
  """`config` training `model` for every (seed, beta) of the grid at once."""
  config = config.copy_and_resolve_references()
  config.model = model
  config.sweep.seeds = tuple(seeds)
  config.sweep.betas = tuple(betas)
  return config


def grid_directory(root: str, model: str, seeds: list[int], betas: list[float]) -> str:
  return os.path.join(root, f"{model}_s{'-'.join(map(str, seeds))}_b{'-'.join(map(str, betas))}")


def ensure_classifiers(config: ml_collections.ConfigDict) -> None:
  """Trains the classifiers of `config`'s data set unless every one is stored."""
  train_set, _ = data_lib.load(config.data)
  directory = judges.default_directory(config)
  missing = [m.name for m in modalities_of(config.data.name, train_set)
             if judges.read_metadata(directory, m.name) is None]
  if missing:
    print(f"Training the classifiers of {config.data.name} into {directory} "
          f"(missing: {', '.join(missing)}).")
    classifier_training.train_classifiers(config)


def results_path(config: ml_collections.ConfigDict, workdir: str, replica: int) -> str:
  return os.path.join(state.replica_directory(config, workdir, replica), "eval",
                      driver.RESULTS_FILE)


def run_grid(config: ml_collections.ConfigDict, models: list[str], seeds: list[int],
             betas: list[float], root: str, collect_only: bool = False) -> list[dict]:
  """Trains and evaluates every model's (seed, beta) grid that lacks results.

  Args:
    config: the (possibly shrunk) experiment config.
    models: model names; each trains its whole grid in one program.
    seeds: seeds of the grid.
    betas: betas of the grid.
    root: the runs' directory (see `grid_directory`).
    collect_only: read existing results only.

  Returns:
    The `evaluate` results of every replica that has them.
  """
  if not collect_only:
    ensure_classifiers(config)
  runs, missing = [], []
  for model in models:
    model_config = grid_config(config, model, seeds, betas)
    workdir = grid_directory(root, model, seeds, betas)
    replicas = range(len(seeds) * len(betas))
    if not collect_only and not all(
        os.path.isfile(results_path(model_config, workdir, r)) for r in replicas):
      loop.train_and_evaluate(model_config, workdir)
      for replica in replicas:
        driver.evaluate(model_config, workdir, replica=replica)
    for replica in replicas:
      path = results_path(model_config, workdir, replica)
      if os.path.isfile(path):
        with open(path) as f:
          runs.append(json.load(f))
      else:
        missing.append(path)
  if missing:
    print(f"No results in {len(missing)} replica(s): {', '.join(missing)}.")
  return runs
