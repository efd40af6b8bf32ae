"""Coherence classifiers: one per modality, trained on real data (SPEC.md section 6).

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
classifier but, as in the paper, by Levenshtein distance (`DigitNameJudge`); the text
classifier is still trained, for real text.

Every classifier is deterministic at evaluation (no dropout), unlike the reference
code, which never put its classifiers in evaluation mode (SPEC.md section 7.1).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from absl import flags
from flax import linen as nn

from crmvae_jax import cli
from crmvae_jax import data as data_lib
from crmvae_jax.core import metrics, networks
from crmvae_jax import runs, validation
from crmvae_jax.data import registry
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.errors import UserError
from crmvae_jax.core.modalities import Modality, modalities_of

METADATA_FILE = "classifier.json"
PARAMS_DIR = "params"


def default_directory(config: ml_collections.ConfigDict) -> str:
  """`config.eval.classifier_dir`, or `classifiers/<data.name>` (relative to the cwd)."""
  return config.eval.get("classifier_dir") or os.path.join("classifiers", config.data.name)


def train_command(config: ml_collections.ConfigDict, directory: str) -> str:
  """The command line that trains the classifiers of `config`'s data set into `directory`."""
  command = "python -m crmvae_jax.classifiers"
  config_file = registry.DATA_SETS[config.data.name].config_file
  if config_file is not None:
    command += f" --config={config_file}"
  if os.path.abspath(directory) != os.path.abspath(
      os.path.join("classifiers", config.data.name)):
    command += f" --config.eval.classifier_dir={directory}"
  return command


def network_input(modality: Modality, values: jax.Array) -> jax.Array:
  """What a classifier sees: stored uint8 images or displayed floats in [0, 1] give
  float images; token ids give one-hot text."""
  if modality.is_text or values.dtype == jnp.uint8:
    return modality.inputs(values)
  return values.astype(jnp.float32)


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


def predictions_from_logits(logits: jax.Array, multi_label: bool) -> jax.Array:
  """Class indices [B] (argmax), or 0/1 attributes [B, K] (logit > 0)."""
  if multi_label:
    return (logits > 0).astype(jnp.int32)
  return jnp.argmax(logits, axis=-1)


def penultimate_features(module, params, inputs: jax.Array) -> jax.Array:
  """The activations a classifier's last (linear) layer reads: [B, F].

  Every `networks.CLASSIFIERS` network ends in Dropout (the identity at evaluation)
  and one Dense layer; the Dropout's output is the penultimate layer (the flattened
  ReLU features of an image classifier, the max-pooled ones of a text classifier).

  Args:
    module: a `networks.CLASSIFIERS` network.
    params: its parameters.
    inputs: what it reads (`network_input`).

  Returns:
    Features [B, F], float32.
  """
  _, state = module.apply({"params": params}, inputs,
                          capture_intermediates=lambda m, _: isinstance(m, nn.Dropout),
                          mutable=["intermediates"])
  (features,) = jax.tree_util.tree_leaves(state["intermediates"])
  return features.reshape(features.shape[0], -1)


class Classifier:
  """A trained classifier of one modality; deterministic (no dropout).

  Calling it maps values [B, ...] to predicted labels ([B] classes, or [B, K] 0/1
  attributes). Values are stored uint8 images, displayed float images in [0, 1] or
  token ids [B, L]; one compiled program serves every batch of one shape.
  `features` maps them to its penultimate-layer activations, the feature space of
  the classifier-Frechet distance (`crmvae_jax.evaluate.model_classifier_fd`).

  Attributes:
    modality: what it classifies.
    module: its `crmvae_jax.core.networks.CLASSIFIERS` network.
    params: its parameters.
    multi_label: one sigmoid per class instead of one softmax.
  """

  def __init__(self, modality: Modality, module, params, multi_label: bool = False):
    self.modality = modality
    self.module = module
    self.params = params
    self.multi_label = multi_label
    self._predict = jax.jit(lambda params, values: predictions_from_logits(
        module.apply({"params": params}, network_input(modality, values)), multi_label))
    self._features = jax.jit(lambda params, values: penultimate_features(
        module, params, network_input(modality, values)))

  def __call__(self, values: np.ndarray) -> np.ndarray:
    return np.asarray(self._predict(self.params, jnp.asarray(values)))

  def features(self, values: np.ndarray) -> np.ndarray:
    """Values [B, ...] -> penultimate-layer activations [B, F] (`penultimate_features`)."""
    return np.asarray(self._features(self.params, jnp.asarray(values)))


class DigitNameJudge:
  """Reads the digit a generated text names, by least Levenshtein distance.

  Token ids are decoded to strings, spaces stripped, and the digit whose English
  name is at least edit distance is the prediction (`metrics.text_to_digit`).

  Attributes:
    decode: ids [B, L] -> B strings.
  """

  def __init__(self, decode: Callable[[np.ndarray], list[str]]):
    self.decode = decode

  def __call__(self, ids: np.ndarray) -> np.ndarray:
    """Token ids [B, L] -> predicted digits [B]."""
    return metrics.text_to_digit(self.decode(np.asarray(ids)))[0]

  def distances(self, ids: np.ndarray) -> np.ndarray:
    """Token ids [B, L] -> edit distance [B] of each text to its predicted digit's name."""
    return metrics.text_to_digit(self.decode(np.asarray(ids)))[1]


def predict_in_batches(classifier: Callable[[np.ndarray], np.ndarray], values: np.ndarray,
                       batch_size: int) -> np.ndarray:
  """`classifier` over all of `values`, in batches padded to one shape (one compile)."""
  batch_size = max(1, min(batch_size, len(values)))
  predictions = []
  for start in range(0, len(values), batch_size):
    batch = values[start:start + batch_size]
    padding = [(0, batch_size - len(batch))] + [(0, 0)] * (batch.ndim - 1)
    predictions.append(classifier(np.pad(batch, padding))[:len(batch)])
  return np.concatenate(predictions)


def train_classifier(modality: Modality, train_examples: tuple[np.ndarray, np.ndarray],
                     test_examples: tuple[np.ndarray, np.ndarray],
                     config_eval: ml_collections.ConfigDict, seed: int,
                     disable_progress_bar: bool = False) -> tuple[Classifier, dict]:
  """Trains one modality's classifier with Adam and measures its test accuracy.

  Args:
    modality: what it classifies; `modality.network` picks the network.
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
  module = networks.CLASSIFIERS[modality.network](num_classes=num_classes)
  batch_size = min(config_eval.classifier_batch_size, len(train_values))
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(seed))
  params = module.init(init_rng, network_input(modality, jnp.asarray(train_values[:1])))["params"]
  tx = optax.adam(config_eval.classifier_learning_rate)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state, values, labels, rng):
    def loss_fn(params):
      logits = module.apply({"params": params}, network_input(modality, values), train=True,
                            rngs={"dropout": rng})
      return classification_loss(logits, labels, multi_label)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  order_rng = np.random.default_rng(seed)
  steps_per_epoch = len(train_values) // batch_size
  progress = tqdm.tqdm(total=config_eval.classifier_epochs * steps_per_epoch, unit="step",
                       desc=f"classifier {modality.name}", dynamic_ncols=True,
                       disable=disable_progress_bar)
  with progress:
    for epoch in range(config_eval.classifier_epochs):
      permutation = order_rng.permutation(len(train_values))
      for index in range(steps_per_epoch):
        ids = permutation[index * batch_size:(index + 1) * batch_size]
        params, opt_state, loss = train_step(
            params, opt_state, train_values[ids], train_labels[ids],
            jax.random.fold_in(dropout_rng, epoch * steps_per_epoch + index))
        progress.update(1)
      progress.set_postfix(loss=f"{float(loss):.3f}")

  classifier = Classifier(modality, module, params, multi_label)
  test_accuracy = metrics.accuracy(
      predict_in_batches(classifier, test_values, config_eval.classifier_batch_size), test_labels)
  metadata = {"modality": modality.name, "network": modality.network, "num_classes": num_classes,
              "multi_label": multi_label, "train_examples": len(train_values),
              "epochs": config_eval.classifier_epochs, "test_accuracy": test_accuracy}
  return classifier, metadata


def save_classifier(directory: str, classifier: Classifier, metadata: dict) -> str:
  """Writes `<directory>/<modality>/{params, classifier.json}`; returns that folder."""
  folder = os.path.abspath(os.path.join(directory, classifier.modality.name))
  os.makedirs(folder, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(folder, PARAMS_DIR), classifier.params, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(folder, METADATA_FILE), "w") as f:
    json.dump(metadata, f, indent=2)
  return folder


def read_metadata(directory: str, modality_name: str) -> dict | None:
  """The stored `classifier.json` of one modality, or None if there is none."""
  path = os.path.join(directory, modality_name, METADATA_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def load_classifier(config: ml_collections.ConfigDict, modality: Modality,
                    directory: str) -> Classifier:
  """Restores the classifier of one modality from `<directory>/<modality>`.

  Raises:
    UserError: with the command that trains it, if it was never stored.
  """
  metadata = read_metadata(directory, modality.name)
  params_path = os.path.abspath(os.path.join(directory, modality.name, PARAMS_DIR))
  if metadata is None or not os.path.isdir(params_path):
    raise UserError(
        f"No {modality.name} classifier in {os.path.abspath(directory)}; train it with: "
        f"{train_command(config, directory)}")
  module = networks.CLASSIFIERS[metadata["network"]](num_classes=metadata["num_classes"])
  example = jnp.zeros((1,) + modality.shape, jnp.int32 if modality.is_text else jnp.uint8)
  abstract_params = jax.eval_shape(
      lambda: module.init(jax.random.PRNGKey(0), network_input(modality, example))["params"])
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(params_path, abstract_params)
  checkpointer.close()
  return Classifier(modality, module, params, metadata["multi_label"])


def load_classifiers(config: ml_collections.ConfigDict, modalities: Sequence[Modality],
                     directory: str | None = None) -> dict[str, Classifier]:
  """Restores the classifiers of `modalities`.

  Args:
    config: the run's config (its data set names the command in error messages).
    modalities: which classifiers to load.
    directory: where they are stored; default `default_directory(config)`.

  Returns:
    modality name -> `Classifier` (values -> predicted labels).

  Raises:
    UserError: a classifier is missing; the message names the command that trains it.
  """
  directory = default_directory(config) if directory is None else directory
  return {m.name: load_classifier(config, m, directory) for m in modalities}


def load_judges(config: ml_collections.ConfigDict, modalities: Sequence[Modality],
                text_decoders: dict[str, Callable[[np.ndarray], list[str]]],
                directory: str | None = None) -> dict[str, Classifier | DigitNameJudge]:
  """What judges each modality at evaluation.

  Digit names (the text of a data set with `digit_name_text`,
  `crmvae_jax.data.registry`) are read by Levenshtein distance, as in the paper; every
  other modality by its trained classifier.

  Args:
    config: the run's config.
    modalities: the model's modalities.
    text_decoders: text modality name -> decode(ids) -> strings
      (`crmvae_jax.data.text_decoders`).
    directory: where the classifiers are stored; default `default_directory(config)`.

  Returns:
    modality name -> judge (values -> predicted labels).

  Raises:
    UserError: a needed classifier is missing; the message names the command.
  """
  digit_names = [m for m in modalities
                 if m.is_text and config.data.name in registry.names(digit_name_text=True)]
  trained = load_classifiers(config, [m for m in modalities if m not in digit_names], directory)
  return {m.name: DigitNameJudge(text_decoders[m.name]) if m in digit_names else trained[m.name]
          for m in modalities}


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
  train_set, test_set = data_lib.load(config.data)
  modalities = modalities_of(config.data.name, train_set)
  max_examples = config.eval.get("classifier_max_train_examples")
  accuracies = {}
  for index, modality in enumerate(modalities):
    rng = np.random.default_rng([config.eval.seed, index])
    train_examples = classifier_examples(train_set, modality.name, max_examples, rng)
    test_examples = classifier_examples(test_set, modality.name, max_examples, rng)
    classifier, metadata = train_classifier(
        modality, train_examples, test_examples, config.eval, seed=config.eval.seed + index,
        disable_progress_bar=config.get("disable_progress_bar", False))
    folder = save_classifier(directory, classifier, metadata)
    tqdm.tqdm.write(f"{modality.name} classifier: test accuracy "
                    f"{metadata['test_accuracy']:.4f} on {len(test_examples[1])} examples; "
                    f"stored in {folder}")
    accuracies[modality.name] = metadata["test_accuracy"]
  return accuracies


def accuracy_table(accuracies: dict[str, float]) -> str:
  """A Markdown table of classifier test accuracies, one column per modality."""
  return ("| classifier | " + " | ".join(accuracies) + " |\n"
          + "|---" * (len(accuracies) + 1) + "|\n"
          + "| test accuracy | " + " | ".join(f"{a:.4f}" for a in accuracies.values())
          + " |\n")


def main() -> None:
  config = flags.FLAGS.config
  validation.validate_config(config)
  print(accuracy_table(train_classifiers(config)))


if __name__ == "__main__":
  cli.run(main)
