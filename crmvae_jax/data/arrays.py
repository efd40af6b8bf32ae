"""Your own data: one array per modality in .npz files (`configs/arrays.py`).

    python -m crmvae_jax.main --config=configs/arrays.py --config.data.path=my_data.npz \
        --workdir=workdirs/my_data

An .npz file (or a directory of them, read in name order and concatenated) holds one
array per modality, N rows each, and optionally:
- `labels`: int [N], each example's class; evaluation judges coherence against it;
- `masks`: bool [N, M], False where an example lacks a modality (columns in the order
  of the modalities); a missing entry's values are never used.

Each modality is an image, a text or a vector. `config.data.modalities` may declare any
of them, {name: {"kind", "likelihood", "vocab_size", "encoder", "decoder"}}; an
undeclared one (or an undeclared field) is read from its array:

| kind | array | networks | likelihood |
|---|---|---|---|
| image | uint8 [N, S, S, C], or floats in [0, 1]; S = 28, 32 or 64 | convolutional, by size | Laplace (or Gaussian) |
| text | integer token ids [N, L], L a multiple of 8 | 1-D convolutional | categorical over vocab_size |
| vector | floats [N, F] | MLP | Laplace (or Gaussian) |

"encoder" and "decoder" name a user's own Flax modules by import path
("mypackage.nets.Encoder"): built with `latent_dim=D`, the encoder maps the modality's
network input to (mean, logvar) [B, D] each, the decoder maps z [B, D] to the
likelihood's location. The test split is a second file (`test_path`) or a seeded
`test_fraction` of the examples; with masks, only complete test examples are kept,
since evaluation conditions on chosen subsets.
"""

from __future__ import annotations

import pathlib
import zipfile

import ml_collections
import numpy as np
from ml_collections import config_dict

from crmvae_jax.data.base import DataUnavailableError, MultimodalDataset
from crmvae_jax.errors import UserError

RESERVED = ("labels", "masks")
KINDS = ("image", "text", "vector")
LIKELIHOODS = ("laplace", "gaussian")
# Square image sizes with networks (`core.modalities.IMAGE_NETWORKS`).
IMAGE_NETWORKS = {28: "polymnist", 32: "svhn", 64: "image64"}
# The text networks halve the length three times.
TEXT_LENGTH_MULTIPLE = 8
_SPEC_FIELDS = ("kind", "likelihood", "vocab_size", "encoder", "decoder")


def get_data_config() -> ml_collections.ConfigDict:
  """Default data config (`config.data` of configs/arrays.py)."""
  return ml_collections.ConfigDict({
      "name": "arrays",
      # An .npz file, or a directory of them.
      "path": config_dict.placeholder(str),
      # The test split's own file(s); None: `test_fraction` of `path`'s examples.
      "test_path": config_dict.placeholder(str),
      "test_fraction": 0.1,
      # Keep a seeded random subset of the training and test examples (None: all).
      "max_train": config_dict.placeholder(int),
      "max_test": config_dict.placeholder(int),
      "seed": 0,
      # Each modality of each training pair is missing with this probability
      # (crmvae_jax.data.base.with_missing), besides the file's own masks.
      "missing_ratio": 0.0,
      # name -> {kind, likelihood, vocab_size, encoder, decoder}; see the module docstring.
      "modalities": ml_collections.ConfigDict(),
  })


class TokenIds:
  """The vocabulary of a text given as bare token ids: decodes ids to 'id id id'."""

  def __init__(self, size: int):
    self.size = size

  def __len__(self) -> int:
    return self.size

  def decode(self, ids: np.ndarray) -> list[str]:
    return [" ".join(str(int(i)) for i in row) for row in np.asarray(ids)]


def read_arrays(path: str, flag: str) -> dict[str, np.ndarray]:
  """Every array of the .npz file at `path` (or of the directory's files, concatenated).

  Raises:
    DataUnavailableError: nothing at `path`; UserError: a file is not a readable .npz,
      or the files hold different arrays.
  """
  if path is None:
    raise DataUnavailableError(f"No data given; pass {flag}=FILE.npz (or a directory of .npz "
                               "files) holding one array per modality.")
  location = pathlib.Path(path).expanduser()
  files = sorted(location.glob("*.npz")) if location.is_dir() else [location]
  if not files or not files[0].is_file():
    raise DataUnavailableError(f"No .npz file at {location}; pass {flag}=FILE.npz (or a "
                               "directory of .npz files).")
  parts: dict[str, list[np.ndarray]] = {}
  for file in files:
    try:
      with np.load(file, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
      raise UserError(f"{file} is not a readable .npz file ({error}); write it with "
                      "numpy.savez(FILE, name=array, ...).") from error
    if parts and set(arrays) != set(parts):
      raise UserError(f"{file} holds the arrays {sorted(arrays)}, {files[0]} holds "
                      f"{sorted(parts)}; every file of {location} needs the same arrays.")
    for name, array in arrays.items():
      parts.setdefault(name, []).append(array)
  return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def _declared(config_data: ml_collections.ConfigDict) -> dict[str, dict]:
  declared = config_data.get("modalities") or {}
  declared = {name: dict(spec) for name, spec in dict(declared).items()}
  for name, spec in declared.items():
    unknown = sorted(set(spec) - set(_SPEC_FIELDS))
    if unknown:
      raise UserError(f"config.data.modalities.{name} has unknown fields {unknown}; its fields "
                      f"are {', '.join(_SPEC_FIELDS)}.")
  return declared


def _infer_kind(name: str, array: np.ndarray) -> str:
  if array.ndim == 4:
    return "image"
  if array.ndim == 2 and np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
    return "text"
  if array.ndim == 2 and np.issubdtype(array.dtype, np.floating):
    return "vector"
  raise UserError(f"Array {name!r} of shape {array.shape} and dtype {array.dtype} is no image "
                  "[N, S, S, C], text (integers [N, L]) or vector (floats [N, F]); declare its "
                  f"kind in config.data.modalities.{name}.kind or store it as one of those.")


def _prepared(name: str, array: np.ndarray, spec: dict) -> tuple[np.ndarray, dict, int | None]:
  """The array in its stored form, its spec {network, kind, likelihood} and its vocabulary
  size (text), after checking every rule of the module docstring for it."""
  kind = spec.get("kind") or _infer_kind(name, array)
  where = f"config.data.modalities.{name}"
  if kind not in KINDS:
    raise UserError(f"Unknown kind {kind!r} of modality {name!r} ({where}.kind); known: "
                    f"{', '.join(KINDS)}.")
  likelihood = spec.get("likelihood") or "laplace"
  if likelihood not in LIKELIHOODS:
    raise UserError(f"Unknown likelihood {likelihood!r} of modality {name!r} "
                    f"({where}.likelihood); known: {', '.join(LIKELIHOODS)}.")
  if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
    raise UserError(f"Array {name!r} holds NaN or infinite values in "
                    f"{int((~np.isfinite(array)).any(axis=tuple(range(1, array.ndim))).sum())} "
                    "examples; replace them (a missing example belongs in 'masks').")
  custom = spec.get("encoder") or spec.get("decoder")
  if custom and not (spec.get("encoder") and spec.get("decoder")):
    raise UserError(f"Modality {name!r} names only one of its networks; give both "
                    f"{where}.encoder and {where}.decoder as import paths.")
  vocab_size = None
  if kind == "image":
    if array.ndim != 4 or array.shape[1] != array.shape[2]:
      raise UserError(f"Image {name!r} has shape {array.shape}; give square images "
                      "[N, S, S, C].")
    if not custom and array.shape[1] not in IMAGE_NETWORKS:
      raise UserError(f"Image {name!r} is {array.shape[1]}x{array.shape[1]}; networks exist "
                      f"for {sorted(IMAGE_NETWORKS)} pixels: resize it, or name your own "
                      f"networks in {where}.encoder and .decoder.")
    if array.dtype != np.uint8:
      if not np.issubdtype(array.dtype, np.floating) or array.min() < 0 or array.max() > 1:
        raise UserError(f"Image {name!r} is {array.dtype} in [{array.min()}, {array.max()}]; "
                        "give uint8 or floats in [0, 1].")
      array = np.round(array * 255.0).astype(np.uint8)
    network = IMAGE_NETWORKS.get(array.shape[1], "")
  elif kind == "text":
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer) or array.min() < 0:
      raise UserError(f"Text {name!r} must be non-negative integer token ids [N, L]; got "
                      f"{array.dtype} {array.shape}.")
    if not custom and array.shape[1] % TEXT_LENGTH_MULTIPLE:
      raise UserError(f"Text {name!r} has length {array.shape[1]}; pad it to a multiple of "
                      f"{TEXT_LENGTH_MULTIPLE} with a padding token.")
    vocab_size = int(spec.get("vocab_size") or array.max() + 1)
    if array.max() >= vocab_size:
      raise UserError(f"Text {name!r} holds token id {array.max()} but {where}.vocab_size is "
                      f"{vocab_size}; raise it above the largest id.")
    array = array.astype(np.int32)
    network = "sequence"
  else:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
      raise UserError(f"Vector {name!r} must be floats [N, F]; got {array.dtype} {array.shape}.")
    array = array.astype(np.float32)
    network = "vector"
  if custom:
    network = f"custom:{spec['encoder']},{spec['decoder']}"
  return array, {"network": network, "kind": kind, "likelihood": likelihood}, vocab_size


def build(arrays: dict[str, np.ndarray], config_data: ml_collections.ConfigDict,
          source: str) -> MultimodalDataset:
  """The examples of `arrays` (read from `source`) as a data set, every array checked."""
  declared = _declared(config_data)
  names = list(declared) or [name for name in arrays if name not in RESERVED]
  missing = [name for name in names if name not in arrays]
  if missing or not names:
    raise UserError(f"{source} has no arrays {missing or 'of modalities'}; it holds "
                    f"{sorted(arrays)} (config.data.modalities names {list(declared)}).")
  lengths = {name: len(arrays[name]) for name in names + [n for n in RESERVED if n in arrays]}
  if len(set(lengths.values())) != 1:
    raise UserError(f"The arrays of {source} differ in length {lengths}; give every modality, "
                    "labels and masks one row per example.")
  num_examples = lengths[names[0]]
  stored, specs, vocabularies = {}, {}, {}
  for name in names:
    stored[name], specs[name], vocab_size = _prepared(name, arrays[name], declared.get(name, {}))
    if vocab_size is not None:
      vocabularies[name] = TokenIds(vocab_size)
  labels = arrays.get("labels")
  if labels is None:
    labels = np.full(num_examples, -1, np.int64)
  elif labels.shape != (num_examples,) or not np.issubdtype(labels.dtype, np.integer):
    raise UserError(f"'labels' of {source} must be integers [N] = [{num_examples}]; got "
                    f"{labels.dtype} {labels.shape}.")
  masks = arrays.get("masks")
  if masks is not None:
    # Its columns are the file's modality arrays, in the file's order.
    in_file = [name for name in arrays if name not in RESERVED]
    if masks.shape != (num_examples, len(in_file)):
      raise UserError(f"'masks' of {source} must be [N, M] = [{num_examples}, {len(in_file)}] "
                      f"(columns {in_file}); got {masks.shape}.")
    masks = masks[:, [in_file.index(name) for name in names]].astype(bool)
    if not masks.any(axis=1).all():
      raise UserError(f"'masks' of {source} leaves {int((~masks.any(axis=1)).sum())} examples "
                      "with no modality at all; drop them.")
  return MultimodalDataset(
      modalities=tuple(names), arrays=stored,
      indices={name: np.arange(num_examples) for name in names}, labels=labels.astype(np.int64),
      vocabularies=vocabularies, masks=masks, specs=specs)


def _at_most(dataset: MultimodalDataset, size: int | None, rng: np.random.Generator
             ) -> MultimodalDataset:
  """A seeded random `size` examples of `dataset` (all of them when None or fewer)."""
  if size is None or size >= len(dataset):
    return dataset
  return dataset.subset(np.sort(rng.choice(len(dataset), size, replace=False)))


def load(config_data: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """The (train, test) data sets of `config_data.path` (module docstring).

  Raises:
    DataUnavailableError: no file at the path; UserError: any array that breaks a rule,
      in one sentence naming the array and the fix.
  """
  everything = build(read_arrays(config_data.path, "--config.data.path"), config_data,
                     config_data.path)
  if config_data.get("test_path"):
    train = everything
    test = build(read_arrays(config_data.test_path, "--config.data.test_path"), config_data,
                 config_data.test_path)
    if test.specs != train.specs or test.modalities != train.modalities:
      raise UserError(f"{config_data.test_path} holds other modalities or kinds than "
                      f"{config_data.path}; give both files the same arrays.")
  else:
    order = np.random.default_rng(config_data.seed).permutation(len(everything))
    num_test = max(1, round(config_data.test_fraction * len(everything)))
    train, test = everything.subset(order[num_test:]), everything.subset(order[:num_test])
  rng = np.random.default_rng([config_data.seed, 1])
  train = _at_most(train, config_data.get("max_train"), rng)
  test = _at_most(test, config_data.get("max_test"), rng)
  if test.masks is not None:
    complete = np.flatnonzero(test.masks.all(axis=1))
    if len(complete) == 0:
      raise UserError("No test example has every modality; evaluation needs complete test "
                      "examples (give some, or a --config.data.test_path without gaps).")
    test = test.subset(complete)
    test = MultimodalDataset(test.modalities, test.arrays, test.indices, test.labels,
                             test.vocabularies, None, test.specs)
  return train, test
