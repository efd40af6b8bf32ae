r"""The paper's Tables 1, 2 and 5: eight models x three seeds, next to the paper's numbers.

Full (the config as written: 100 epochs of MNIST-SVHN-Text per run; for GPUs):

  python -m experiments.paper.mst_tables --setting=full --root=workdirs/mst_tables

Small (the same pipeline shrunk to finish on a laptop CPU, `sweeps.small_setting`: 200
steps per run of the config's small setting, so at most 5,000 training pairs, and
evaluation on 1,000 test pairs; offline with the quick-start data):

  python -m experiments.paper.mst_tables --setting=small --config=configs/quickstart.py

Every model trains its three seeds at once, as replicas of one program
(`crmvae_jax.sweeps.run_grid`: `training.loop.train_and_evaluate` with `config.sweep.seeds`,
resumed if it has a checkpoint), and every replica is evaluated with
`evaluation.driver.evaluate`, unless its `eval/results.json` exists. The classifiers are
trained first if any is missing (`crmvae_jax.evaluation.classifier_training`, into the
directory `python -m crmvae_jax.evaluate` reads, in every setting). Then Tables 1, 2 and 5 are
printed and written to `<root>/tables.md`: mean ± std over seeds, with the paper's
rows on MNIST-SVHN-Text. `--collect_only` skips training and evaluation and tabulates the
runs that have results. Select runs with e.g. `--models=crmvae,mvtcae --seeds=0,1`.
"""

from __future__ import annotations

import os

from absl import flags

from crmvae_jax.config import cli

from crmvae_jax import sweeps
from crmvae_jax.reporting import summaries, tables
from crmvae_jax.data import registry

# The repository's configs/mst.py, wherever the script is run from.
MST_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          registry.DATA_SETS["mst"].config_file)

_MODELS = flags.DEFINE_list("models", list(tables.PAPER_MODEL_NAMES), "Models to run.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_ROOT = flags.DEFINE_string(
    "root", None, "Directory of the runs; default workdirs/<data>_tables_<setting>.")
_SETTING = flags.DEFINE_enum(
    "setting", "small", ["small", "full"],
    "small: shrunk to finish on a CPU; full: the config as written.")
_COLLECT_ONLY = flags.DEFINE_bool(
    "collect_only", False, "Only tabulate the runs that already have results.")


def main() -> None:
  cli.check_names(_MODELS.value, list(tables.MODEL_NAMES), "models")
  config = flags.FLAGS.config
  root = _ROOT.value or os.path.join("workdirs", f"{config.data.name}_tables_{_SETTING.value}")
  runs = sweeps.grid_results(config, _MODELS.value,
                             cli.parse_numbers(_SEEDS.value, "seeds", int), [config.beta], root,
                             _SETTING.value, _COLLECT_ONLY.value)
  summaries.write_markdown(root, "tables.md", summaries.tables_markdown(runs))


if __name__ == "__main__":
  cli.run(main, config=MST_CONFIG, config_help="The experiment config (default "
          "configs/mst.py); every run overrides its model and seed.")
