r"""The paper's Tables 1, 2 and 5: eight models x three seeds, next to the paper's numbers.

Full (the config as written: 100 epochs of MNIST-SVHN-Text per run; for GPUs):

  python -m experiments.mst_tables --setting=full --root=workdirs/mst_tables

Small (the same pipeline shrunk to finish on a laptop CPU: 200 steps per run on at
most 20,000 training pairs, evaluation on 1,000 test pairs; offline with the
quick-start data):

  python -m experiments.mst_tables --setting=small --config=configs/quickstart.py

Every model trains its three seeds at once, as replicas of one program
(`crmvae_jax.sweeps.run_grid`: `train.train_and_evaluate` with `config.sweep.seeds`,
resumed if it has a checkpoint), and every replica is evaluated with
`evaluate.evaluate`, unless its `eval/results.json` exists. The classifiers are
trained first if any is missing (`crmvae_jax.classifiers`; the small setting keeps
its own under `<root>/classifiers`). Then Tables 1, 2 and 5 are printed and written
to `<root>/tables.md`: mean ± std over seeds, with the paper's rows on
MNIST-SVHN-Text. `--collect_only` skips training and evaluation and tabulates the
runs that have results. Select runs with e.g. `--models=crmvae,mvtcae --seeds=0,1`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from crmvae_jax import evaluate, sweeps, tables
from crmvae_jax.data.base import DataUnavailableError

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
    config = sweeps.small_setting(config, root)
  try:
    runs = sweeps.run_grid(config, _MODELS.value, [int(seed) for seed in _SEEDS.value],
                           [config.beta], root, _COLLECT_ONLY.value)
  except (DataUnavailableError, FileNotFoundError, ValueError) as error:
    sys.exit(f"error: {error}")
  if not runs:
    sys.exit(f"error: no run under {root} has results; run without --collect_only.")
  sweeps.write_markdown(root, "tables.md", evaluate.tables_markdown(runs))


if __name__ == "__main__":
  app.run(main)
