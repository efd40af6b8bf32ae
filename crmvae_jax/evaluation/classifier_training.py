"""Training of the judges: one classifier per modality on the real training examples of
that modality (labels: the data set's labels, e.g. the digit; CelebA's 40 attributes),
its test accuracy, and its storage where `judges` loads it from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from crmvae_jax import data as data_lib
from crmvae_jax.common import atomic, startup
from crmvae_jax.config import runs
from crmvae_jax.evaluation import classifier_networks, metrics
from crmvae_jax.model.modality import Modality
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.data import registry
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation.image_text import image_and_text_indices
from crmvae_jax.evaluation.judges import (METADATA_FILE, PARAMS_DIR, Classifier,
                                          default_directory, network_input, predict_in_batches)
from crmvae_jax.training import supervised
from crmvae_jax.training.guards import WorkdirLock

# Held by every program that writes a judges' directory (`judges_lock`).
LOCK_FILE = "classifiers.lock"


def classifier_examples(dataset: MultimodalDataset, name: str, max_examples: int | None = None,
                        rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The distinct real examples of one modality that a split uses, with their labels.

  Pairing repeats base rows (MST's data multiplication), so a classifier trains on
  each distinct row once; and only rows the split indexes count, so a test row that
  shares a base array with the training split never leaks into training.

  Args:
    dataset: a split.
    name: the modality.
    max_examples: keep at most this many rows (a seeded random choice); None keeps all.
    rng: the generator for that choice (needed when it applies).

  Returns:
    (stored [N, ...] uint8 images or int tokens, labels [N] or [N, K]).
  """
  rows, first_pair = np.unique(dataset.indices[name], return_index=True)
  if max_examples is not None and len(rows) > max_examples:
    keep = np.sort(rng.choice(len(rows), max_examples, replace=False))
    rows, first_pair = rows[keep], first_pair[keep]
  return dataset.arrays[name][rows], dataset.labels[first_pair]


def _labels_kind(labels: np.ndarray) -> tuple[int, bool]:
  """(number of classes, multi_label) of an int label array [N] or 0/1 array [N, K]."""
  if labels.ndim == 2:
    return labels.shape[1], True
  return int(labels.max()) + 1, False


def classification_loss(logits: jax.Array, labels: jax.Array, multi_label: bool) -> jax.Array:
  """Mean softmax cross-entropy (one class each) or sigmoid cross-entropy (attributes)."""
  if multi_label:
    return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)).mean()
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_classifier(modality: Modality, train_examples: tuple[np.ndarray, np.ndarray],
                     test_examples: tuple[np.ndarray, np.ndarray],
                     config_eval: ml_collections.ConfigDict, seed: int,
                     disable_progress_bar: bool = False) -> tuple[Classifier, dict]:
  """Trains one modality's classifier with Adam and measures its test accuracy.

  Args:
    modality: what it classifies; `modality.classifier` picks the network.
    train_examples: (stored values [N, ...], labels [N] or [N, K]).
    test_examples: the same for the test split.
    config_eval: `config.eval` (classifier_epochs, classifier_batch_size,
      classifier_learning_rate).
    seed: initialisation, dropout and the order of examples.
    disable_progress_bar: hide the tqdm bar.

  Returns:
    (classifier, metadata): metadata holds network, num_classes, multi_label,
    train_examples, epochs and test_accuracy.
  """
  train_values, train_labels = train_examples
  test_values, test_labels = test_examples
  num_classes, multi_label = _labels_kind(np.concatenate([train_labels, test_labels]))
  module = classifier_networks.CLASSIFIERS[modality.classifier](num_classes=num_classes)

  def init_params(rng):
    return module.init(rng, network_input(modality, jnp.asarray(train_values[:1])))["params"]

  def loss_fn(params, batch, rng):
    values, labels = batch
    logits = module.apply({"params": params}, network_input(modality, values), train=True,
                          rngs={"dropout": rng})
    return classification_loss(logits, labels, multi_label), {}

  state = supervised.fit(
      init_params, loss_fn, optax.adam(config_eval.classifier_learning_rate),
      (train_values, train_labels), min(config_eval.classifier_batch_size, len(train_values)),
      config_eval.classifier_epochs, seed, f"classifier {modality.name}", disable_progress_bar)

  classifier = Classifier(modality, module, state.params, multi_label)
  test_accuracy = metrics.accuracy(
      predict_in_batches(classifier, test_values, config_eval.classifier_batch_size), test_labels)
  metadata = {"modality": modality.name, "network": modality.classifier,
              "num_classes": num_classes,
              "multi_label": multi_label, "train_examples": len(train_values),
              "epochs": config_eval.classifier_epochs, "test_accuracy": test_accuracy}
  return classifier, metadata


def class_mean_accuracy(classifier: Classifier,
                        class_means: dict[int, tuple[np.ndarray, np.ndarray]],
                        batch_size: int) -> dict[str, float]:
  """The judge's accuracy on class-mean images, printed as the surrogate's go/no-go.

  A mean over many images of one class is what a mixture-based model decodes when the
  condition cannot predict a modality's own variation. On real SVHN no classifier should
  read the digit in such a mean; a surrogate whose means its judge reads cannot show
  the difference between the models that the paper is about. The verdict is on the
  mean of the most images (the closest to the population's).

  Args:
    classifier: the judge.
    class_means: images averaged per mean -> (mean images, labels).
    batch_size: images per call.

  Returns:
    str(images averaged per mean) -> accuracy.
  """
  accuracies = {}
  for renders_per_mean, (means, labels) in sorted(class_means.items()):
    accuracies[str(renders_per_mean)] = metrics.accuracy(
        predict_in_batches(classifier, means, batch_size), labels)
    tqdm.tqdm.write(f"{classifier.modality.name} classifier on {len(labels)} class means of "
                    f"{renders_per_mean} images each: accuracy "
                    f"{accuracies[str(renders_per_mean)]:.4f} (chance 0.10)")
  largest = str(max(class_means))
  verdict = (f"go: means of {largest} images are not readable digits (below 0.5)"
             if accuracies[largest] < 0.5 else
             f"NO-GO: the judge reads means of {largest} images; add variation to the data")
  tqdm.tqdm.write(f"{classifier.modality.name} surrogate check: {verdict}.")
  return accuracies


@contextlib.contextmanager
def _stop_signals_deferred():
  """SIGINT, SIGTERM and SIGHUP held back while a judge is written and committed (about
  a second), then delivered: the program stops with its judges whole, and Orbax's
  writer threads are never interrupted half-way.

  The Python handlers are replaced by ones that only record the signal: whichever thread
  the kernel hands a process signal to (XLA's and Orbax's threads do not block it),
  Python runs its handler in the main thread, inside the write, so blocking the signal
  in the main thread alone would not hold it back. Only the main thread can set them."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received: list[int] = []
  previous = {number: signal.signal(number, lambda number, frame: received.append(number))
              for number in startup.STOP_SIGNALS}
  try:
    yield
  finally:
    for number, handler in previous.items():
      signal.signal(number, handler)
    if received:
      signal.raise_signal(received[0])  # now, to the program's own handler


def _check_room(folder: str, classifier: Classifier) -> None:
  """Refuses to start writing a judge where it cannot fit: Orbax's writer threads report
  a full disk in tracebacks of their own before the error reaches the program.

  Raises:
    UserError: the disk has less free space than the parameters need (plus 1 MiB of
      metadata), or the folder is not writable.
  """
  atomic.check_writable(folder, "pass another --config.eval.classifier_dir",
                        what=f"the {classifier.modality.name} judge")
  needed = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(classifier.params)) + 2**20
  free = shutil.disk_usage(folder).free
  if free < needed:
    raise UserError(f"Cannot store the {classifier.modality.name} judge in {folder}: the disk is "
                    f"full ({needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free); free "
                    "space and run the same command again (the judges there are kept).")


def save_classifier(directory: str, classifier: Classifier, metadata: dict) -> str:
  """Stores one judge in `<directory>/<modality>`, replacing any judge there only whole.

  The parameters go to a new folder beside the old ones (`params-<id>`); the judge is
  then committed by replacing `classifier.json`, which names its parameters' folder, in
  one atomic rename; only then are the old parameters removed. A program stopped at any
  moment (even by SIGKILL) leaves the old judge or the new one, never a description
  without parameters. Folders of a write that never committed are removed at the next
  save.

  Returns:
    The judge's folder.
  """
  folder = os.path.abspath(os.path.join(directory, classifier.modality.name))
  os.makedirs(folder, exist_ok=True)
  _check_room(folder, classifier)
  params_dir = f"{PARAMS_DIR}-{time.time_ns():x}-{os.getpid()}"
  with _stop_signals_deferred():  # a stop inside Orbax's threads ends in their tracebacks
    checkpointer = ocp.StandardCheckpointer()
    try:
      checkpointer.save(os.path.join(folder, params_dir), classifier.params)
      checkpointer.wait_until_finished()
    finally:
      checkpointer.close()
    atomic.write_json(os.path.join(folder, METADATA_FILE), {**metadata, "params": params_dir})
    for name in os.listdir(folder):
      stale = name == PARAMS_DIR or name.startswith(f"{PARAMS_DIR}-")
      if stale and name != params_dir and os.path.isdir(os.path.join(folder, name)):
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
  return folder


def train_classifiers(config: ml_collections.ConfigDict, directory: str | None = None
                      ) -> dict[str, float]:
  """Trains, evaluates and stores one classifier per modality of `config.data`.

  Args:
    config: a training config; `config.data` picks the data set, `config.eval` the
      classifier settings (classifier_epochs, classifier_batch_size,
      classifier_learning_rate, classifier_max_train_examples, seed).
    directory: where to store them; default `default_directory(config)`.

  Returns:
    modality name -> test accuracy.

  Raises:
    UserError: `directory` cannot be written (e.g. it is a file), or the data set is
      unavailable.
  """
  directory = default_directory(config) if directory is None else directory
  runs.check_workdir(directory, "--config.eval.classifier_dir")
  os.makedirs(directory, exist_ok=True)
  with judges_lock(directory):
    return _train_classifiers(config, directory)


def judges_lock(directory: str) -> WorkdirLock:
  """The lock every writer of a judges' directory holds: two trainings of judges into
  one directory would silently keep only the last one's."""
  return WorkdirLock(directory, LOCK_FILE, "classifier training",
                     "--config.eval.classifier_dir")


def _train_classifiers(config: ml_collections.ConfigDict, directory: str) -> dict[str, float]:
  train_set, test_set = data_lib.load(config.data)
  modalities = modalities_of(config.data.name, train_set)
  max_examples = config.eval.get("classifier_max_train_examples")
  identity = data_lib.identity(config.data)
  accuracies = {}
  for index, modality in enumerate(modalities):
    rng = np.random.default_rng([config.eval.seed, index])
    train_examples = (data_lib.judge_training_examples(config.data, modality.name)
                      or classifier_examples(train_set, modality.name, max_examples, rng))
    test_examples = classifier_examples(test_set, modality.name, max_examples, rng)
    classifier, metadata = train_classifier(
        modality, train_examples, test_examples, config.eval, seed=config.eval.seed + index,
        disable_progress_bar=config.get("disable_progress_bar", False))
    tqdm.tqdm.write(f"{modality.name} classifier: test accuracy "
                    f"{metadata['test_accuracy']:.4f} on {len(test_examples[1])} examples "
                    f"(trained on {metadata['train_examples']})")
    metadata["data"] = identity
    class_means = data_lib.class_mean_images(config.data, modality.name)
    if class_means is not None:
      metadata["class_mean_accuracy"] = class_mean_accuracy(classifier, class_means,
                                                            config.eval.classifier_batch_size)
    folder = save_classifier(directory, classifier, metadata)
    tqdm.tqdm.write(f"{modality.name} classifier stored in {folder}")
    accuracies[modality.name] = metadata["test_accuracy"]
  return accuracies


def train_attribute_classifier(config: ml_collections.ConfigDict) -> dict:
  """Trains, evaluates and stores the attribute classifier of the image modality.

  It is the image classifier `python -m crmvae_jax.classifiers` would train (same
  network, examples and seed): `classifier_networks.CLASSIFIERS['image64']` with one sigmoid per
  attribute, trained with Adam on binary cross-entropy (`config.eval.classifier_*`).

  Args:
    config: a CelebA config.

  Returns:
    Its metadata: network, num_classes, multi_label, train_examples, epochs and
    test_accuracy (over all attribute entries of the test images).
  """
  attribute_data = registry.names(attributes=True)
  if config.data.name not in attribute_data:
    raise UserError(f"{config.data.name} has no attributes to classify; --train_classifier "
                    f"trains the attribute classifier of {', '.join(attribute_data)} (e.g. "
                    "with --config=configs/celeba.py).")
  train_set, test_set = data_lib.load(config.data)
  data_modalities = modalities_of(config.data.name, train_set)
  image_index, _ = image_and_text_indices(data_modalities)
  image = data_modalities[image_index]
  # The same example choice and seed as train_classifiers.
  rng = np.random.default_rng([config.eval.seed, image_index])
  max_examples = config.eval.get("classifier_max_train_examples")
  classifier, metadata = train_classifier(
      image, classifier_examples(train_set, image.name, max_examples, rng),
      classifier_examples(test_set, image.name, max_examples, rng), config.eval,
      seed=config.eval.seed + image_index,
      disable_progress_bar=config.get("disable_progress_bar", False))
  metadata["data"] = data_lib.identity(config.data)
  directory = default_directory(config)
  os.makedirs(directory, exist_ok=True)
  with judges_lock(directory):
    folder = save_classifier(directory, classifier, metadata)
  tqdm.tqdm.write(f"{image.name} attribute classifier: test accuracy "
                  f"{metadata['test_accuracy']:.4f}; stored in {folder}")
  return metadata
