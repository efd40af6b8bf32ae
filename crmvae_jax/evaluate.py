"""Evaluation of a trained run: coherence, FID, classifier-Frechet distance and latent
probes (docs/metrics.md).

    python -m crmvae_jax.evaluate --workdir=workdirs/mst_crmvae

reads the run's own config (`DIR/config.json`, written by training), so it evaluates
any run and any sweep without its training flags; `--config.eval.FIELD=VALUE` changes
the evaluation settings. A quick-start run (`python -m crmvae_jax.main --workdir=DIR`,
then `python -m crmvae_jax.classifiers`) evaluates offline in about a minute on a CPU.
It computes, on `config.eval.num_examples` test pairs (a seeded random choice; -1: all):

- cross-coherence (Table 1): for every target modality and every non-empty subset S
  of the other modalities, z ~ the model's own posterior of S (PoE(S) or MoE(S),
  `model.objectives.SUBSET_POSTERIOR`), the target's decoder mean classified and compared
  with the label. One compiled generator serves every subset: S is a mask.
- joint coherence R (Table 1): z ~ N(0, I), every modality decoded and classified;
  the fraction of samples on which all predictions agree.
- generated digit names judged by Levenshtein distance, with the mean distance to
  the predicted name (`evaluation.judges.DigitNameJudge`).
- FID (Table 2) of every image modality generated from every other single modality,
  against the real test images of that modality (needs the Inception weights; without
  them FID is skipped with a one-sentence note of which file to provide). With
  `config.eval.fid.by_subset_size`, from conditioning subsets of every size instead
  (at most `config.eval.fid.subsets_per_size` per size), for Figure 2;
  `reporting.summaries.by_subset_size` averages any result's columns per subset size.
- classifier-Frechet distance, always (no weights to fetch): the Frechet distance of
  the same directions, on the same pairs and the same generated images, in the
  feature space of the project's own classifier of the target modality (its
  penultimate layer, `evaluation.judges.Classifier.features`), so Table 2's comparison
  exists on every machine. Its scale is the classifier's, not Inception's: compare
  models judged by one set of classifiers, never with the paper's FIDs.
- latent linear probes (Table 5): logistic regression on the posterior means of every
  non-empty subset, trained on up to `config.eval.latent.train_examples` training pairs
  (default 500, the reference code's setting).

FID and the classifier-Frechet distance use `config.eval.fid.examples` of the
evaluated pairs, a seeded random choice (`evaluation.fid.fid_pairs`), and the figure shows
`config.figure_examples` of them, another: test pairs may be stored in label order
(MNIST-SVHN-Text's are, digit by digit), where the first pairs all show one digit.

It writes `DIR/eval/results.json`, `DIR/eval/tables.md` (Tables 1, 2 and 5 in the
paper's layout, with the paper's rows on MNIST-SVHN-Text) and
`DIR/eval/cross_generation.png` (for each replica r of a sweep, or `--replica=r`
alone: `DIR/replica_r/eval/...`), and prints the tables. For a sweep it prints one
table instead, a row per (seed, beta) and mean +- std over seeds for each beta, and
writes it to `DIR/eval/sweep.md`. It refuses to run when a classifier is missing,
naming the command that trains it.

Image-text runs (CUB image-caption, Bimodal CelebA) are evaluated by the same command
with their data sets' metrics instead (docs/metrics.md): the cosine similarity of the
image's and the text's own posterior means; images generated from text, their FID
against the real images of the same pairs and, on CelebA, their attributes read by an
attribute classifier; and a grid of images generated from `config.eval.generation_texts`
(`DIR/eval/generated_from_text.png` and `.npz`).

    python -m crmvae_jax.evaluate --workdir=workdirs/celeba_crmvae --train_classifier

first trains CelebA's attribute classifier with the run's config and stores it in
`--config.eval.classifier_dir` (default `classifiers/celeba`); with
--config=configs/celeba.py and no --workdir it only trains the classifier.

This module is the command line of `crmvae_jax.evaluation.driver.evaluate`; the metrics
live in `crmvae_jax.evaluation` (`coherence`, `fid`, `probes`, `image_text`).
"""

from __future__ import annotations

# First, before the imports below take their second or two (crmvae_jax/common/startup.py).
from crmvae_jax.common import startup

startup.start_program()

# pylint: disable=wrong-import-position
import os

from absl import flags

from crmvae_jax.common import atomic
from crmvae_jax.common.errors import UserError
from crmvae_jax.config import cli
from crmvae_jax.evaluation import classifier_training, driver
from crmvae_jax.reporting import summaries
from crmvae_jax.training import state

SWEEP_FILE = "sweep.md"  # WORKDIR/eval/sweep.md: every replica of a sweep, one row each


def main() -> None:
  config, workdir, replica = flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.replica
  if workdir is None and not flags.FLAGS.train_classifier:
    raise UserError("Pass --workdir=DIR, the directory of the trained run to evaluate (or "
                    "--train_classifier with --config=configs/celeba.py to train CelebA's "
                    "attribute classifier alone).")
  if flags.FLAGS.train_classifier:
    classifier_training.train_attribute_classifier(config)
    if workdir is None:
      return
  num_replicas = len(state.replica_grid(config)[0])
  if replica is not None or num_replicas == 1:
    driver.evaluate(config, workdir, replica or 0)
    return
  # A sweep: one table of every replica instead of one table each.
  results = [driver.evaluate(config, workdir, r, verbose=False) for r in range(num_replicas)]
  if any(not result.get("coherence") for result in results):  # image-text or unlabelled
    return
  markdown = summaries.replicas_markdown(results)
  path = os.path.join(workdir, "eval", SWEEP_FILE)
  atomic.write_text(path, markdown)
  print(markdown)
  print(f"Wrote {path}; each replica's own tables are in "
        f"{os.path.join(workdir, 'replica_<r>', 'eval', 'tables.md')}.")


if __name__ == "__main__":
  # Defined here, not at import: importing this module defines no flags.
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.DEFINE_integer("replica", None,
                       "Which replica of a sweep run (training.state.replica_grid); default: "
                       "every one.")
  flags.DEFINE_bool("train_classifier", False,
                    "Bimodal CelebA: train and store the attribute classifier first (with "
                    "the run's config, or --config=configs/celeba.py and no --workdir to "
                    "train it alone).")
  cli.run(main, config=cli.RUN,
          config_help="Default: the config the --workdir run was trained with (its "
          "config.json); --config.eval.FIELD=VALUE changes an evaluation setting.")
