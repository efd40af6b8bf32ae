r"""The paper's beta sweeps on CUB and Bimodal CelebA: metrics against beta per model.

Full (the config as written: 150 epochs of CUB or 200 of CelebA per run; for GPUs):

  python -m experiments.paper.beta_sweep --setting=full --config=configs/cub.py \
      --config.data.captions_dir=DIR/text_c10 --root=workdirs/cub_sweep
  python -m experiments.paper.beta_sweep --setting=full --config=configs/celeba.py \
      --root=workdirs/celeba_sweep

Small (the same pipeline shrunk to finish on a CPU: 10 steps of batch 8 on at most
500 training and 100 test images, evaluation on 200 test pairs; `small_setting`):
`--setting=small`, the default. It runs on whatever data the config points at, e.g.
a few fake images written the way tests/test_image_text.py writes them.

Every model of --models (default MVAE, MoPoE-VAE, MVTCAE and CRMVAE) is trained once
in `<root>/<model>` with `training.loop.train_and_evaluate`, all of its (seed, beta) pairs
(--seeds x --betas) at once as replicas of one program, then every replica is
evaluated with `evaluation.driver.evaluate`, unless its results exist
(`crmvae_jax.sweeps.grid_runs`).
CelebA's attribute classifier is trained first if it is missing (the small setting
keeps it under `<root>/classifiers`). `--collect_only` skips training and evaluation
and reports the runs that have results.

Outputs, in `<root>`:
- `metrics_vs_beta.png`: every scalar metric (cosine similarity of the image and text
  latents; CelebA's attribute accuracy of images generated from text; FID of images
  generated from text when computed) against beta, one line per model, mean ± std
  over seeds: by our reading of the paper, its Figure 3 (CUB) and Figure 4 (CelebA);
- `generated_from_text.png`: images decoded from the posterior mean of the chosen
  texts (`config.eval.generation_texts`), one row per model and beta (first seed);
- `beta_sweep.md`: one table per metric, models by beta, also printed.

The default beta grid, BETAS = 0.1, 0.5, 1, 2, 5, is ours: the paper does not list
its values. A run's replica grid is fixed once it is trained: sweep other betas or
seeds under another --root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import flags
from matplotlib.figure import Figure

from crmvae_jax.common import atomic

from crmvae_jax.config import cli

from crmvae_jax import sweeps
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import registry
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation import driver
from crmvae_jax.reporting import plotting, tables

MODELS = ("mvae", "mopoe", "mvtcae", "crmvae")
BETAS = (0.1, 0.5, 1.0, 2.0, 5.0)
SEEDS = (0, 1, 2)

# The small setting: the `image_text_small` run size (`config_lib.RUN_SIZES`), few steps on
# a few hundred images, small evaluation samples.
_SIZE = config_lib.RUN_SIZES["image_text_small"]
SMALL_TRAIN_STEPS = _SIZE["num_train_steps"]
SMALL_BATCH_SIZE = _SIZE["batch_size"]
SMALL_TRAIN_IMAGES, SMALL_TEST_IMAGES = config_lib.DATA_CAPS["image_text_small"]
SMALL_EVAL_EXAMPLES = _SIZE["eval.num_examples"]

FIGURE_FILE = "metrics_vs_beta.png"
GRID_FILE = "generated_from_text.png"
TABLES_FILE = "beta_sweep.md"


def small_setting(config: ml_collections.ConfigDict, root: str) -> ml_collections.ConfigDict:
  """A copy of `config` shrunk to finish on a CPU; its classifier lives under `root`.

  Args:
    config: configs/cub.py or configs/celeba.py.
    root: the sweep's directory.

  Returns:
    The `tiny` run size of every config (`config_lib.resize`) with a little more to
    plot: SMALL_TRAIN_STEPS steps of SMALL_BATCH_SIZE pairs, at most
    SMALL_TRAIN_IMAGES training and SMALL_TEST_IMAGES test images, SMALL_EVAL_EXAMPLES
    evaluated test pairs and FID images, a 2-epoch attribute classifier. FID stays as
    `config` asks (the sweep plots it, or says why it is missing). A smaller data size
    on the command line is kept; every other field here replaces its command-line value.
  """
  config = config_lib.resize(config, "image_text_small")
  config.eval.classifier_dir = os.path.join(root, "classifiers")
  return config


def run_sweep(config: ml_collections.ConfigDict, models: Sequence[str],
              betas: Sequence[float], seeds: Sequence[int], root: str,
              collect_only: bool = False) -> list[sweeps.GridRun]:
  """Trains and evaluates every model over the grid seeds x betas
  (`sweeps.grid_runs`, model m in `<root>/<m>`); returns every replica with results."""
  return sweeps.grid_runs(config, models, seeds, betas, root, collect_only,
                          workdir_of=lambda model: os.path.join(root, model))


def _metric_values(runs: Sequence[sweeps.GridRun], metric: str) -> dict[str, dict[float, list[float]]]:
  """model -> beta -> per-seed values of one metric (runs without it are left out)."""
  values: dict[str, dict[float, list[float]]] = {}
  for run in runs:
    value = run.results.get(metric)
    if value is not None:
      values.setdefault(run.results["model"], {}).setdefault(
          run.results["beta"], []).append(value)
  return values


def _plotted_metrics(runs: Sequence[sweeps.GridRun]) -> list[str]:
  return [metric for metric in tables.SCALAR_METRICS if _metric_values(runs, metric)]


def _ordered_models(runs: Sequence[sweeps.GridRun]) -> list[str]:
  return tables.in_paper_order(sorted({run.results["model"] for run in runs}))


def metrics_figure(runs: Sequence[sweeps.GridRun], path: str) -> None:
  """Saves every scalar metric against beta (log axis), one line per model.

  Args:
    runs: evaluated replicas of one data set.
    path: the PNG to write.
  """
  metrics = _plotted_metrics(runs)
  data_name = runs[0].results["data"]
  all_betas = sorted({run.results["beta"] for run in runs})
  figure = Figure(figsize=(4.2 * len(metrics), 3.6))
  for index, metric in enumerate(metrics):
    axis = figure.add_subplot(1, len(metrics), index + 1)
    for model, by_beta in sorted(_metric_values(runs, metric).items(),
                                 key=lambda item: _ordered_models(runs).index(item[0])):
      betas = sorted(by_beta)
      means = [np.mean(by_beta[beta]) for beta in betas]
      deviations = [np.std(by_beta[beta]) for beta in betas]
      axis.errorbar(betas, means, yerr=deviations, marker="o", capsize=3,
                    label=tables.DISPLAY_NAMES.get(model, model))
    axis.set_xscale("log")
    axis.set_xticks(all_betas, [f"{beta:g}" for beta in all_betas])
    axis.minorticks_off()
    axis.set_xlabel("beta")
    axis.set_title(tables.SCALAR_METRICS[metric], fontsize=9)
    axis.grid(alpha=0.3)
  figure.axes[0].legend(fontsize=8)
  figure.suptitle(f"{data_name}: metrics against beta, mean ± std over seeds (the paper's "
                  f"{registry.DATA_SETS[data_name].paper_figure or 'figure'})", fontsize=10)
  figure.tight_layout()
  atomic.write_with(path, lambda f: figure.savefig(f, format="png", dpi=120))


def generation_grid(runs: Sequence[sweeps.GridRun], path: str) -> None:
  """Saves images generated from the chosen texts: one row per model and beta.

  Rows use each (model, beta)'s first seed; columns are the texts of the runs'
  evaluation grids.

  Args:
    runs: evaluated replicas with `evaluation.driver.GENERATED_FILE` in their
      evaluation directories.
    path: the PNG to write.
  """
  first_seed = min(run.results["seed"] for run in runs)
  rows, texts = [], None
  for model in _ordered_models(runs):
    chosen = sorted((run for run in runs if run.results["model"] == model
                     and run.results["seed"] == first_seed), key=lambda run: run.results["beta"])
    for run in chosen:
      with np.load(os.path.join(run.eval_dir, driver.GENERATED_FILE)) as generated:
        texts = [str(t) for t in generated["texts"]] if texts is None else texts
        rows.append((f"{tables.DISPLAY_NAMES.get(model, model)}\nbeta {run.results['beta']:g}",
                     generated["images"]))
  plotting.save_text_grid(texts, rows, path,
                          f"{runs[0].results['data']}: images from text (seed {first_seed})")


def sweep_tables(runs: Sequence[sweeps.GridRun]) -> str:
  """One Markdown table per metric: models by beta, mean ± std over seeds."""
  data_name = runs[0].results["data"]
  sections = [f"# Beta sweep: {data_name}, {len(_ordered_models(runs))} model(s), "
              f"{len(runs)} run(s)\n"]
  for metric in _plotted_metrics(runs):
    values = _metric_values(runs, metric)
    betas = sorted({beta for by_beta in values.values() for beta in by_beta})
    columns = [f"beta={beta:g}" for beta in betas]
    results = {model: {f"beta={beta:g}": seeds_values for beta, seeds_values in by_beta.items()}
               for model, by_beta in values.items()}
    sections += [f"## {tables.SCALAR_METRICS[metric]}\n",
                 tables.markdown_table(results, columns, decimals=1 if "fid" in metric else 3)]
  notes = sorted({run.results["fid_note"] for run in runs if "fid_note" in run.results})
  if notes:
    sections += ["## Notes\n", "\n".join(notes) + "\n"]
  return "\n".join(sections)


def write_report(runs: Sequence[sweeps.GridRun], root: str) -> str:
  """Writes the figure, the grid and the tables into `root`; returns the tables."""
  markdown = sweep_tables(runs)
  atomic.write_text(os.path.join(root, TABLES_FILE), markdown)
  metrics_figure(runs, os.path.join(root, FIGURE_FILE))
  generation_grid(runs, os.path.join(root, GRID_FILE))
  return markdown


def main() -> None:
  options = flags.FLAGS
  config = options.config
  if config is None or config.data.name not in registry.names(evaluation="image_text"):
    raise UserError("Pass --config=configs/cub.py or --config=configs/celeba.py.")
  cli.check_names(options.models, list(tables.MODEL_NAMES), "models")
  betas = cli.parse_numbers(options.betas, "betas")
  seeds = cli.parse_numbers(options.seeds, "seeds", int)
  root = options.root or os.path.join("workdirs",
                                      f"{config.data.name}_beta_sweep_{options.setting}")
  if options.setting == "small":
    config = small_setting(config, root)
  runs = run_sweep(config, options.models, betas, seeds, root, options.collect_only)
  if not runs:
    raise UserError(f"No run under {root} has results; run without --collect_only.")
  print(write_report(runs, root))
  print(f"Wrote {TABLES_FILE}, {FIGURE_FILE} and {GRID_FILE} in {root}.")


if __name__ == "__main__":
  # Defined here, not at import, so that tests and other scripts can import this
  # module next to others that define these flags.
  flags.DEFINE_list("models", list(MODELS), "Models to run.")
  flags.DEFINE_list("betas", [f"{beta:g}" for beta in BETAS], "Betas to sweep.")
  flags.DEFINE_list("seeds", [str(seed) for seed in SEEDS], "Seeds of every beta.")
  flags.DEFINE_string(
      "root", None, "Directory of the sweep; default workdirs/<data>_beta_sweep_<setting>.")
  flags.DEFINE_enum("setting", "small", ["small", "full"],
                    "small: shrunk to finish on a CPU; full: the config as written.")
  flags.DEFINE_bool("collect_only", False, "Only report the runs that already have results.")
  cli.run(main, config=None, config_help="configs/cub.py or configs/celeba.py; every run "
          "overrides its model and its (seed, beta) grid.")
