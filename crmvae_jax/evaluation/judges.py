"""The judges of evaluation: the trained classifiers of each modality, and Levenshtein
distance for generated digit names.

Storage: `<directory>/<modality>/params` (an Orbax checkpoint of the parameters) and
`<directory>/<modality>/classifier.json` (network, number of classes, test accuracy).
The directory is `--config.eval.classifier_dir`, or `classifiers/<data.name>`
relative to the current directory when that is unset (`classifier_training` writes it).
Evaluation looks for a relative directory from the current directory first, then from
each directory above the run (`find_directory`).

Generated digit names (the text of MNIST-SVHN-Text and of the quick start: the data
sets with `digit_name_text` in `crmvae_jax.data.registry`) are not judged by the text
classifier but, as in the paper, by Levenshtein distance (`DigitNameJudge`).

Every classifier is deterministic at evaluation (no dropout), unlike the reference
code, which never put its classifiers in evaluation mode.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn

from crmvae_jax.evaluation import classifier_networks, metrics
from crmvae_jax.model.modality import Modality
from crmvae_jax import data as data_lib
from crmvae_jax.data import registry
from crmvae_jax.common.errors import UserError

METADATA_FILE = "classifier.json"
PARAMS_DIR = "params"


def default_directory(config: ml_collections.ConfigDict) -> str:
  """`config.eval.classifier_dir`, or `classifiers/<data.name>` (relative to the cwd)."""
  return config.eval.get("classifier_dir") or os.path.join("classifiers", config.data.name)


def find_directory(config: ml_collections.ConfigDict, workdir: str | None = None) -> str:
  """Where the judges of the run in `workdir` are: `default_directory(config)` where it
  exists from the current directory; else, for a relative path, the first directory
  above the run that holds it (a run evaluated from elsewhere,
  `--workdir=/path/to/repo/workdirs/run`, finds `/path/to/repo/classifiers/<data>`);
  else `default_directory(config)` itself, which the error names."""
  directory = default_directory(config)
  if os.path.isdir(directory) or os.path.isabs(directory) or workdir is None:
    return directory
  parent = os.path.abspath(workdir)
  while True:
    candidate = os.path.join(parent, directory)
    if os.path.isdir(candidate):
      return candidate
    parent, previous = os.path.dirname(parent), parent
    if parent == previous:
      return directory


def train_command(config: ml_collections.ConfigDict, directory: str) -> str:
  """The command line that trains the classifiers of `config`'s data set into `directory`."""
  command = "python -m crmvae_jax.classifiers"
  config_file = registry.DATA_SETS[config.data.name].config_file
  if config_file is not None:
    command += f" --config={config_file}"
  # What picks the data beyond the config file: a user's own files, a renderer version.
  fields = ["path", "test_path", *data_lib.identity(config.data)]
  for field in dict.fromkeys(fields):
    if field != "name" and config.data.get(field) is not None:
      command += f" --config.data.{field}={config.data[field]}"
  if os.path.abspath(directory) != os.path.abspath(
      os.path.join("classifiers", config.data.name)):
    command += f" --config.eval.classifier_dir={directory}"
  return command


def attribute_classifier_command(config: ml_collections.ConfigDict,
                                 workdir: str | None = None) -> str:
  """The command line that trains the attribute classifier `config` looks for: with the
  config of the run in `workdir` (then evaluates it), or else its data set's config file."""
  source = (f"--workdir={workdir}" if workdir
            else f"--config={registry.DATA_SETS[config.data.name].config_file}")
  command = f"python -m crmvae_jax.evaluate {source} --train_classifier"
  if config.eval.get("classifier_dir"):
    command += f" --config.eval.classifier_dir={config.eval.classifier_dir}"
  return command


def network_input(modality: Modality, values: jax.Array) -> jax.Array:
  """What a classifier sees: stored uint8 images or displayed floats in [0, 1] give
  float images; token ids give one-hot text."""
  if modality.is_text or values.dtype == jnp.uint8:
    return modality.inputs(values)
  return values.astype(jnp.float32)


def predictions_from_logits(logits: jax.Array, multi_label: bool) -> jax.Array:
  """Class indices [B] (argmax), or 0/1 attributes [B, K] (logit > 0)."""
  if multi_label:
    return (logits > 0).astype(jnp.int32)
  return jnp.argmax(logits, axis=-1)


def penultimate_features(module, params, inputs: jax.Array) -> jax.Array:
  """The activations a classifier's last (linear) layer reads: [B, F].

  Every `classifier_networks.CLASSIFIERS` network ends in Dropout (the identity at evaluation)
  and one Dense layer; the Dropout's output is the penultimate layer (the flattened
  ReLU features of an image classifier, the max-pooled ones of a text classifier).

  Args:
    module: a `classifier_networks.CLASSIFIERS` network.
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
  the classifier-Frechet distance (`crmvae_jax.evaluation.fid.model_classifier_fd`).

  Attributes:
    modality: what it classifies.
    module: its `crmvae_jax.evaluation.classifier_networks.CLASSIFIERS` network.
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

  def exact(self, ids: np.ndarray) -> np.ndarray:
    """Token ids [B, L] -> the digit each text names exactly (spaces stripped), or -1."""
    return metrics.exact_digit(self.decode(np.asarray(ids)))

  def scores(self, ids: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-text scores, averaged per column by the coherence metrics.

    Args:
      ids: token ids [B, L].
      labels: the true digits [B], or None (prior samples have none).

    Returns:
      With labels: 'exact', 1.0 where the text is exactly the true name (spaces
      stripped), else 0.0; 'levenshtein', the edit distance to the true name. Without:
      'levenshtein', the edit distance to the nearest name.
    """
    distances = metrics.digit_name_distances(self.decode(np.asarray(ids)))
    if labels is None:
      return {"levenshtein": distances.min(axis=1).astype(np.float64)}
    labels = np.asarray(labels)
    to_true_name = distances[np.arange(len(labels)), labels]
    return {"exact": (to_true_name == 0).astype(np.float64),
            "levenshtein": to_true_name.astype(np.float64)}


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


def read_metadata(directory: str, modality_name: str) -> dict | None:
  """The stored `classifier.json` of one modality, or None if there is none.

  Raises:
    UserError: the file is not readable JSON; the message names it and the fix.
  """
  path = os.path.join(directory, modality_name, METADATA_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      metadata = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise _damaged_classifier(directory, modality_name, error) from None
  if not isinstance(metadata, dict):
    raise _damaged_classifier(directory, modality_name, "not a JSON object")
  return metadata


def _damaged_classifier(directory: str, modality_name: str, why) -> UserError:
  folder = os.path.abspath(os.path.join(directory, modality_name))
  return UserError(f"The {modality_name} classifier in {folder} is damaged ({why}); delete "
                   "that folder and train it again with python -m crmvae_jax.classifiers "
                   f"--config.eval.classifier_dir={os.path.abspath(directory)}.")


def _check_judges_data(config: ml_collections.ConfigDict, modality_name: str, directory: str,
                       metadata: dict) -> None:
  """Refuses a judge trained on other data than the run's (`crmvae_jax.data.identity`).

  Raises:
    UserError: the judge records other data, or none (it was stored before judges
      recorded their data); the message names the command that trains the right one.
  """
  expected = json.loads(json.dumps(data_lib.identity(config.data)))
  recorded = metadata.get("data")
  if recorded == expected:
    return
  folder = os.path.abspath(os.path.join(directory, modality_name))
  what = ("does not record the data it was trained on" if recorded is None else
          f"was trained on other data ({_difference(recorded, expected)})")
  raise UserError(f"The {modality_name} classifier in {folder} {what}; train judges for this "
                  f"run's data with: {train_command(config, directory)}")


def _difference(recorded, expected) -> str:
  """The first fields where two data identities differ, as 'field: judge's vs run's'."""
  if not isinstance(recorded, dict):
    return f"{recorded!r}"
  fields = sorted(set(recorded) | set(expected), key=lambda f: (f != "name", f))
  return "; ".join(f"{field}: {recorded.get(field)!r} for the judge, {expected.get(field)!r} "
                   "for the run" for field in fields if recorded.get(field) != expected.get(field))


def stored_for_data(config: ml_collections.ConfigDict, names: Sequence[str],
                    directory: str | None = None) -> bool:
  """Whether a judge of every modality in `names` is stored in `directory` (default
  `default_directory(config)`) and was trained on `config.data` itself."""
  directory = default_directory(config) if directory is None else directory
  expected = json.loads(json.dumps(data_lib.identity(config.data)))
  for name in names:
    metadata = read_metadata(directory, name)
    if metadata is None or metadata.get("data") != expected or not os.path.isdir(
        os.path.join(directory, name, str(metadata.get("params", PARAMS_DIR)))):
      return False
  return True


def params_digest(params) -> str:
  """A short fingerprint of a classifier's parameters: the SHA-256 of every leaf's dtype,
  shape and bytes in tree order, 16 hex digits. Two judges with one digest judge alike; a
  judge trained again (on another machine, say) that came out different in any bit has
  another, so numbers judged by it are not silently mixed with the first one's."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    value = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}:{value.dtype}:{value.shape};".encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.hexdigest()[:16]


def load_classifier(config: ml_collections.ConfigDict, modality: Modality,
                    directory: str) -> Classifier:
  """Restores the classifier of one modality from `<directory>/<modality>`.

  Raises:
    UserError: with the command that trains it, if it was never stored.
  """
  metadata = read_metadata(directory, modality.name)
  # Judges stored since their writes became atomic name their parameters' folder.
  params_dir = metadata.get("params", PARAMS_DIR) if metadata else PARAMS_DIR
  params_path = os.path.abspath(os.path.join(directory, modality.name, str(params_dir)))
  if metadata is None or not os.path.isdir(params_path):
    raise UserError(
        f"No {modality.name} classifier in {os.path.abspath(directory)}; train it with: "
        f"{train_command(config, directory)}")
  _check_judges_data(config, modality.name, directory, metadata)
  try:
    module = classifier_networks.CLASSIFIERS[metadata["network"]](
        num_classes=metadata["num_classes"])
    multi_label = metadata["multi_label"]
  except (KeyError, TypeError) as error:
    raise _damaged_classifier(directory, modality.name, f"no valid {error}") from None
  example = jnp.zeros((1,) + modality.shape, jnp.int32 if modality.is_text else jnp.uint8)
  abstract_params = jax.eval_shape(
      lambda: module.init(jax.random.PRNGKey(0), network_input(modality, example))["params"])
  checkpointer = ocp.StandardCheckpointer()
  try:
    params = checkpointer.restore(params_path, abstract_params)
  except Exception as error:  # pylint: disable=broad-except  # Orbax raises many types
    raise _damaged_classifier(directory, modality.name,
                              f"its parameters are unreadable: {type(error).__name__}") from None
  finally:
    checkpointer.close()
  return Classifier(modality, module, params, multi_label)


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
  classified = classified_modalities(config, modalities)
  trained = load_classifiers(config, classified, directory)
  return {m.name: trained[m.name] if m in classified else DigitNameJudge(text_decoders[m.name])
          for m in modalities}


def classified_modalities(config: ml_collections.ConfigDict, modalities: Sequence[Modality]
                          ) -> list[Modality]:
  """The modalities that a trained classifier judges: all but digit names, which are read."""
  return [m for m in modalities
          if not (m.is_text and config.data.name in registry.names(digit_name_text=True))]


def stored_digests(config: ml_collections.ConfigDict, modalities: Sequence[Modality],
                   directory: str | None = None) -> dict[str, str]:
  """modality name -> `params_digest` of the stored classifier that judges it: what an
  evaluation with these judges records as `classifier_digest`, known before one runs."""
  return {name: params_digest(classifier.params) for name, classifier in load_classifiers(
      config, classified_modalities(config, modalities), directory).items()}


def load_attribute_classifier(config: ml_collections.ConfigDict, image: Modality,
                              workdir: str) -> tuple[Classifier, dict]:
  """The stored attribute classifier and its metadata, or the command that makes it
  (with the config of the run in `workdir`)."""
  directory = find_directory(config, workdir)
  metadata = read_metadata(directory, image.name)
  if metadata is None:
    raise UserError(
        f"No {image.name} attribute classifier in {os.path.abspath(directory)}; train it "
        f"with: {attribute_classifier_command(config, workdir)}")
  return load_classifier(config, image, directory), metadata
