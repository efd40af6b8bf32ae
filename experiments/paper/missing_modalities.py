r"""Training with missing modalities: cross-coherence against the fraction missing.

    python -m experiments.paper.missing_modalities                 # 6 runs, about 25 min on 2 cores
    python -m experiments.paper.missing_modalities --models=crmvae --ratios=0,0.3

Trains each model on the quick start's data (`configs/quickstart.py`: 4,500 MNIST
digits and their names, the text weighted 8, 10,500 steps) with each modality of each
training pair missing with probability `--config.data.missing_ratio` = each of
`--ratios` (seeded, never both of a pair), evaluates it on the complete test pairs
(`crmvae_jax.evaluation.driver.evaluate`), and writes a table of cross-coherence to
`experiments/results/missing_modalities.md` (and every result to
`missing_modalities.json`). Runs that have results are not redone.
"""

from __future__ import annotations

import json
import os

from absl import flags

from crmvae_jax.config import cli

from crmvae_jax import sweeps
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.evaluation import driver
from crmvae_jax.reporting import tables
from crmvae_jax.training import loop

_MODELS = flags.DEFINE_list("models", ["crmvae", "mvtcae"], "Models.")
_RATIOS = flags.DEFINE_list("ratios", ["0", "0.3", "0.6"], "Missing ratios.")
_SEED = flags.DEFINE_integer("seed", 0, "The runs' seed.")
_ROOT = flags.DEFINE_string("root", "workdirs/missing_modalities", "Runs and classifiers.")
_RESULTS = flags.DEFINE_string("results", "experiments/results", "Table and results.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps; default the quick start's.")


def run(model: str, ratio: float, seed: int, root: str, steps: int | None) -> dict:
  """Trains (or resumes) and evaluates one run; returns its results."""
  config = config_lib.quickstart_config()
  config.model, config.seed, config.data.missing_ratio = model, seed, ratio
  config.disable_progress_bar = True
  config.eval.classifier_dir = os.path.join(root, "classifiers")
  config.eval.coherence.prior_samples = 1000
  config.eval.log_likelihood.samples = 0
  if steps:
    config.num_train_steps = steps
  workdir = os.path.join(root, f"{model}_missing{ratio:g}_seed{seed}")
  results_path = os.path.join(workdir, "eval", driver.RESULTS_FILE)
  if os.path.isfile(results_path):
    with open(results_path) as f:
      return json.load(f)
  sweeps.ensure_classifiers(config)
  loop.train_and_evaluate(config, workdir)
  return driver.evaluate(config, workdir)


def table(rows: list[tuple[str, float, dict]]) -> str:
  """Markdown: one row per (model, ratio): the cross-coherences and their mean."""
  columns = [c for c in rows[0][2]["coherence"] if c != tables.JOINT_COHERENCE_COLUMN]
  body = [[model, f"{ratio:g}"] + [f"{results['coherence'][c]:.3f}" for c in columns]
          + [f"{sum(results['coherence'][c] for c in columns) / len(columns):.3f}",
             f"{results['coherence'][tables.JOINT_COHERENCE_COLUMN]:.3f}"]
          for model, ratio, results in rows]
  return tables.markdown(["model", "missing ratio", *columns, "mean cross", "R"], body)


def main() -> None:
  rows = [(model, float(ratio), run(model, float(ratio), _SEED.value, _ROOT.value, _STEPS.value))
          for model in _MODELS.value for ratio in _RATIOS.value]
  markdown = ("# Training with missing modalities (experiments/paper/missing_modalities.py)\n\n"
              f"Quick-start data, seed {_SEED.value}, evaluated on complete test pairs; "
              "each modality of each training pair missing with the given probability.\n\n"
              + table(rows))
  os.makedirs(_RESULTS.value, exist_ok=True)
  with open(os.path.join(_RESULTS.value, "missing_modalities.md"), "w") as f:
    f.write(markdown)
  with open(os.path.join(_RESULTS.value, "missing_modalities.json"), "w") as f:
    json.dump([{"model": m, "missing_ratio": r, "results": res} for m, r, res in rows], f,
              indent=1)
  print(markdown)


if __name__ == "__main__":
  cli.run(main, config=False)
