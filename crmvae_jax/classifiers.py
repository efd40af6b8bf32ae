"""Coherence classifiers: one per modality, trained on real data (docs/metrics.md).

    python -m crmvae_jax.classifiers --config=configs/mst.py

trains one classifier per modality of the config's data set on the real training
examples of that modality (labels: the data set's labels, e.g. the digit), reports
its test accuracy, and stores it with Orbax. With no --config it trains the
quick-start classifiers (MNIST and text), offline, in about a minute on a CPU.

Storage: `<directory>/<modality>/params` (an Orbax checkpoint of the parameters) and
`<directory>/<modality>/classifier.json` (network, number of classes, test accuracy).
The directory is `--config.eval.classifier_dir`, or `classifiers/<data.name>`
relative to the current directory when that is unset.

Generated digit names (the text of MNIST-SVHN-Text and of the quick start: the data
sets with `digit_name_text` in `crmvae_jax.data.registry`) are not judged by the text
classifier but, as in the paper, by Levenshtein distance
(`evaluation.judges.DigitNameJudge`); the text classifier is still trained, for real text.

Every classifier is deterministic at evaluation (no dropout), unlike the reference
code, which never put its classifiers in evaluation mode.

This module is the command line of `crmvae_jax.evaluation.classifier_training`; the
judges are loaded by `crmvae_jax.evaluation.judges`.
"""

from __future__ import annotations

# First, before the imports below take their second or two (crmvae_jax/common/startup.py).
from crmvae_jax.common import startup

startup.start_program()

# pylint: disable=wrong-import-position
from absl import flags

from crmvae_jax.config import cli, validation
from crmvae_jax.evaluation import classifier_training
from crmvae_jax.reporting import tables


def main() -> None:
  config = flags.FLAGS.config
  validation.validate_config(config)
  print(tables.accuracy_table(classifier_training.train_classifiers(config)))


if __name__ == "__main__":
  cli.run(main)
