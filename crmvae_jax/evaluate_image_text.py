r"""Evaluation of image-text runs: CUB image-caption and Bimodal CelebA (docs/metrics.md).

    python -m crmvae_jax.evaluate_image_text --workdir=workdirs/celeba_crmvae --train_classifier

evaluates the latest checkpoint of a run, with the config it was trained with
(`DIR/config.json`; `--config.eval.FIELD=VALUE` changes an evaluation setting), on
`config.eval.num_examples` test pairs (a seeded random choice; -1: all) and writes
`DIR/eval/results.json`, `DIR/eval/tables.md`, `DIR/eval/generated_from_text.png` and
`DIR/eval/generated_from_text.npz` (replica r of a sweep: `DIR/replica_r/eval/...`).
`python -m crmvae_jax.evaluate --workdir=DIR` evaluates such a run the same way; this
command adds `--train_classifier`. It measures:

- cosine similarity (both data sets): the mean cosine between the latents inferred
  from the image alone and from the text alone, each the mean of the model's own
  posterior of that one modality (`model.objectives.SUBSET_POSTERIOR`: PoE({m}) = p q_m, or
  q_m for mixture models). Coordination-based objectives pull the two together.
- attribute accuracy (CelebA): images generated from the text (z sampled from the text's
  posterior) are classified by a project-trained 40-attribute classifier
  (`evaluation.classifier_networks.CLASSIFIERS['image64']`, one sigmoid per attribute),
  and the predicted attributes are compared with the pair's attributes, averaged over
  attributes and pairs. The same classifier's accuracy on the real test images is its
  ceiling.
- FID of images generated from text against the real images of the same pairs
  (`config.eval.fid_examples` of them, a seeded random choice), when
  `config.eval.fid` is set and the Inception weights are found (else skipped with a
  one-sentence note of which file to provide).

The grid shows images generated from chosen texts: `config.eval.generation_texts`
(seeded random test texts when unset), one column per text, decoded from the
posterior mean and from `evaluation.driver.GRID_SAMPLES` samples. `--train_classifier`
first trains the CelebA attribute classifier on the real training images and stores it
with Orbax in `--config.eval.classifier_dir` (default `classifiers/celeba`), the same place
`python -m crmvae_jax.classifiers` stores it; with --config=configs/celeba.py and no
--workdir it only trains the classifier.

This module is a command line of `crmvae_jax.evaluation.driver.evaluate`; the metrics
are the entries `cosine_similarity` and `images_from_text` of
`crmvae_jax.evaluation.entries`, computed by `crmvae_jax.evaluation.image_text`.
"""

from __future__ import annotations

# First, before the imports below take their second or two (crmvae_jax/common/startup.py).
from crmvae_jax.common import startup

startup.start_program()

# pylint: disable=wrong-import-position
from absl import flags

from crmvae_jax.config import cli
from crmvae_jax.training import state
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation import classifier_training, driver


def main() -> None:
  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  if workdir is None and not flags.FLAGS.train_classifier:
    raise UserError("Pass --workdir=DIR of a trained CUB or CelebA run, or --train_classifier "
                    "with --config=configs/celeba.py.")
  if flags.FLAGS.train_classifier:
    classifier_training.train_attribute_classifier(config)
  if workdir is not None:
    for replica in range(len(state.replica_grid(config)[0])):
      driver.evaluate(config, workdir, replica)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "The training run's directory.")
  flags.DEFINE_bool("train_classifier", False,
                    "Train and store the CelebA attribute classifier first.")
  cli.run(main, config=cli.RUN,
          config_help="Default: the config the --workdir run was trained with (its "
          "config.json); configs/celeba.py for --train_classifier alone.")
