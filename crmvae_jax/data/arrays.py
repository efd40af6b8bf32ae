"""Your own data: one array per modality in .npz files (`configs/arrays.py`).

    python -m crmvae_jax.main --config=configs/arrays.py --config.data.path=my_data.npz \
        --workdir=workdirs/my_data

An .npz file (numpy.savez; or a directory of them, read in name order and concatenated)
holds one array per modality, N >= 1 rows each, and optionally:
- `labels`: integers [N], each example's class id, 0..K-1 with K at most 65,536;
  evaluation judges coherence against it;
- `masks`: bool (or 0/1) [N, M], False where an example lacks a modality (one column per
  modality array, in the file's order); a missing entry's values are never used.

The modalities come in the order `config.data.order` names, or else: those
`config.data.modalities` declares, in name order (a config keeps its keys sorted), then
the file's other arrays in the file's order.

Each modality is an image, a text or a vector. `config.data.modalities` may declare any
of them, {name: {"kind", "likelihood", "vocab_size", "vocabulary", "encoder", "decoder",
"encoder_options", "decoder_options"}}; an
undeclared one (or an undeclared field) is read from its array:

| kind | array | networks | likelihood |
|---|---|---|---|
| image | uint8 [N, S, S, C] (or integers in 0..255), or floats in [0, 1]; S = 28, 32 or 64 | convolutional, by size | Laplace (or Gaussian) |
| text | integer token ids 0..V-1 [N, L], L a multiple of 8, V at most 65,536 | 1-D convolutional | categorical over vocab_size |
| vector | finite floats [N, F] (within float32's range) | MLP | Laplace (or Gaussian) |

A text's `vocabulary` (a list of V strings, token i's at place i) sets V and is how
figures and generated texts are written: the tokens joined, directly where every token is
one character, else with spaces, empty tokens (padding) left out; without it, texts are
shown as their ids.

Why V <= 65,536 (`MAX_VOCAB_SIZE`): text networks take one-hot inputs [B, L, V] float32
and return logits [B, L, V]; at V = 65,536, B = 128 and L = 32 each is already 1 GiB, and
one id of 10**6 would ask for 16 GiB per tensor. Renumber sparse ids to 0..V-1.

Every array is checked before anything big is allocated: each member's .npy header is
read first and refused if it holds Python objects (pickled data), claims more bytes than
the member stores, or, with the other arrays, more than the machine's available memory.
Any file or array that breaks a rule here raises a `UserError` of one sentence naming the
file or array and the fix.

"encoder" and "decoder" name a user's own Flax modules by import path
("mypackage.nets.Encoder"): built with `latent_dim=D` (and the modality's
`out_channels`, `size`, `vocab_size` or `length` where the module declares such a
field, and "encoder_options" / "decoder_options", dicts of further fields), the encoder
maps the modality's
network input to (mean, logvar) [B, D] each, the decoder maps z [B, D] to the
likelihood's location. The test split is a second file (`test_path`) or a seeded
`test_fraction` (in (0, 1)) of the examples; with masks, only complete test examples are
kept, since evaluation conditions on chosen subsets; neither split may end up empty.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import pathlib
import zipfile

import ml_collections
import numpy as np
from ml_collections import config_dict
from numpy.lib import format as npy_format

from crmvae_jax.data.base import DataUnavailableError, Loader, MultimodalDataset, base_data_config
from crmvae_jax.common import field_checks
from crmvae_jax.common.errors import UserError

RESERVED = ("labels", "masks")
KINDS = ("image", "text", "vector")
LIKELIHOODS = ("laplace", "gaussian")
# The network of a user's square images, by their size (`crmvae_jax.data.modalities` also
# picks their judge with it).
IMAGE_NETWORKS = {28: "polymnist", 32: "svhn", 64: "image64"}
# How networks are chosen for arrays without networks of their own
# (`config.data.network_choice`): 'fast' gives one-channel 28-pixel images the MNIST
# networks (an MLP) and texts of 8 tokens the 8-character text networks, each an order of
# magnitude faster on a CPU than the convolutional ones; 'general' gives every image the
# convolutional network of its size (`IMAGE_NETWORKS`) and every text the 1-D
# convolutional `sequence` networks. Runs saved before the field existed used 'general'.
NETWORK_CHOICES = ("fast", "general")
NETWORK_CHOICE_OF_OLDER_RUNS = "general"
# The text networks halve the length three times.
TEXT_LENGTH_MULTIPLE = 8
_SPEC_FIELDS = ("kind", "likelihood", "vocab_size", "vocabulary", "encoder", "decoder",
                "encoder_options", "decoder_options")
# The largest text vocabulary (module docstring): the one-hot inputs [B, L, V] and logits
# [B, L, V] float32 of a batch of 128 texts of length 32 are 1 GiB each at this size.
MAX_VOCAB_SIZE = 65_536
# The most classes `labels` may have: the judges output one logit per class, and class
# ids past this are almost surely raw codes to renumber, not 0..K-1.
MAX_CLASSES = 65_536
_SAVEZ = "write it with numpy.savez(FILE, name=array, ...)"


def get_data_config() -> ml_collections.ConfigDict:
  """Default data config (`config.data` of configs/arrays.py)."""
  return base_data_config("arrays", {
      # An .npz file, or a directory of them.
      "path": config_dict.placeholder(str),
      # The test split's own file(s); None: `test_fraction` of `path`'s examples.
      "test_path": config_dict.placeholder(str),
      "test_fraction": 0.1,
      # Keep a seeded random subset of the training and test examples (None: all).
      "max_train": config_dict.placeholder(int),
      "max_test": config_dict.placeholder(int),
      # name -> {kind, likelihood, vocab_size, vocabulary, encoder, decoder, ...}; see the
      # module docstring.
      "modalities": ml_collections.ConfigDict(),
      # The modalities' order (names), where it is not the default: the declared ones in
      # name order (a config keeps its keys sorted), then the file's others in its order.
      "order": config_dict.placeholder(tuple),
      # The networks of modalities without their own: 'fast' or 'general' (NETWORK_CHOICES).
      "network_choice": "fast",
  })


def check_config(config_data: ml_collections.ConfigDict) -> None:
  """Refuses a network choice that is not one of NETWORK_CHOICES (`data.check_fields`)."""
  field_checks.check_choice({"data": config_data}, "data.network_choice", NETWORK_CHOICES,
                            "network choice")


class TokenIds:
  """The vocabulary of a text given as bare token ids: decodes ids to 'id id id'."""

  def __init__(self, size: int):
    self.size = size

  def __len__(self) -> int:
    return self.size

  def decode(self, ids: np.ndarray) -> list[str]:
    return [" ".join(str(int(i)) for i in row) for row in np.asarray(ids)]


class Tokens:
  """A declared vocabulary (`config.data.modalities.NAME.vocabulary`): token i is
  `tokens[i]`. Decoding joins the tokens, directly where every token is one character
  (a character-level text), else with spaces; tokens that are empty strings (padding)
  are left out."""

  def __init__(self, tokens):
    self.tokens = [str(token) for token in tokens]
    self.separator = "" if all(len(token) <= 1 for token in self.tokens) else " "

  def __len__(self) -> int:
    return len(self.tokens)

  def decode(self, ids: np.ndarray) -> list[str]:
    return [self.separator.join(self.tokens[int(i)] for i in row if self.tokens[int(i)])
            for row in np.asarray(ids)]


def _available_memory() -> int | None:
  """The host memory still available in bytes: /proc/meminfo's MemAvailable (free memory
  plus reclaimable cache), else os.sysconf's free pages; None where neither can be read."""
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


def _bytes(size: int) -> str:
  """`size` bytes for a person: '1.5 GiB', '12.0 MiB' or '800 bytes'."""
  if size >= 2**30:
    return f"{size / 2**30:.1f} GiB"
  return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


def _headers(file: pathlib.Path) -> dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], np.dtype]]:
  """Array name -> (zip member, shape, dtype) of the .npz `file`, from each member's .npy
  header alone: nothing the header claims is allocated.

  Raises:
    UserError: `file` is no zip of .npy arrays, or a member holds something else, Python
      objects (pickled data), or fewer bytes than its header claims.
  """
  try:
    archive = zipfile.ZipFile(file)
  except zipfile.BadZipFile:
    with open(file, "rb") as f:
      is_npy = f.read(6) == b"\x93NUMPY"
    what = "it is a single .npy array" if is_npy else "it is no zip of .npy arrays"
    raise UserError(f"{file} is not a readable .npz file: {what}; {_SAVEZ}.") from None
  except OSError as error:
    raise UserError(f"{file} is not a readable .npz file ({error}); {_SAVEZ}.") from error
  headers = {}
  with archive:
    for member in archive.infolist():
      if member.is_dir():
        continue
      if not member.filename.endswith(".npy"):
        raise UserError(f"{file} holds {member.filename!r}, which is no .npy array; an .npz "
                        f"holds only arrays: {_SAVEZ}.")
      name = member.filename[:-len(".npy")]
      try:
        with archive.open(member) as stream:
          version = npy_format.read_magic(stream)
          if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown .npy format version {version}")
          # Version 3.0 differs from 2.0 only in its header's text encoding (UTF-8 field
          # names), which changes no shape or item size.
          read = (npy_format.read_array_header_1_0 if version == (1, 0)
                  else npy_format.read_array_header_2_0)
          shape, _, dtype = read(stream)
          header_size = stream.tell()
      except (ValueError, TypeError, SyntaxError, EOFError, OSError, RuntimeError,
              NotImplementedError, zipfile.BadZipFile) as error:
        raise UserError(f"Array {name!r} of {file} has no valid .npy header ({error}); "
                        f"{_SAVEZ}.") from error
      if dtype.hasobject:
        raise UserError(f"Array {name!r} of {file} holds Python objects (pickled data), which "
                        "are never loaded; store it as numbers, e.g. numpy.asarray(x, "
                        "dtype=numpy.float32).")
      if any(size < 0 for size in shape):
        raise UserError(f"Array {name!r} of {file} claims the shape {shape} in its .npy "
                        f"header; the file is damaged or forged: {_SAVEZ}.")
      claimed = math.prod(shape) * dtype.itemsize
      stored = member.file_size - header_size
      if claimed > stored:
        raise UserError(f"Array {name!r} of {file} claims the shape {shape} of {dtype} "
                        f"({claimed:,} bytes) in its .npy header but stores {stored:,} bytes; "
                        f"the file is damaged or forged: {_SAVEZ}.")
      headers[name] = (member, shape, dtype)
  return headers


def _read(file: pathlib.Path, headers: dict) -> dict[str, np.ndarray]:
  """The arrays of `file` whose `_headers` were checked."""
  arrays = {}
  try:
    with zipfile.ZipFile(file) as archive:
      for name, (member, _, _) in headers.items():
        with archive.open(member) as stream:
          arrays[name] = npy_format.read_array(stream, allow_pickle=False)
  except (ValueError, EOFError, OSError, RuntimeError, zipfile.BadZipFile) as error:
    raise UserError(f"{file} is damaged: reading its arrays failed ({error}); "
                    f"{_SAVEZ}.") from error
  return arrays


def read_arrays(path: str, flag: str) -> dict[str, np.ndarray]:
  """Every array of the .npz file at `path` (or of the directory's files, concatenated).

  Each member's .npy header is checked before its array is read, so a file that claims
  more than it holds or than this machine's available memory allocates nothing.

  Raises:
    DataUnavailableError: nothing at `path`; UserError: a file is not a readable .npz
      (not a zip of .npy arrays, a forged header, pickled objects), the arrays need more
      memory than is available, or the files hold different arrays.
  """
  if path is None:
    raise DataUnavailableError(f"No data given; pass {flag}=FILE.npz (or a directory of .npz "
                               "files) holding one array per modality.")
  location = pathlib.Path(path).expanduser()
  files = sorted(location.glob("*.npz")) if location.is_dir() else [location]
  if not files or not files[0].is_file():
    raise DataUnavailableError(f"No .npz file at {location}; pass {flag}=FILE.npz (or a "
                               "directory of .npz files).")
  headers = {}
  for file in files:
    headers[file] = _headers(file)
    first = headers[files[0]]
    if set(headers[file]) != set(first):
      raise UserError(f"{file} holds the arrays {sorted(headers[file])}, {files[0]} holds "
                      f"{sorted(first)}; every file of {location} needs the same arrays.")
    for name, (_, shape, _) in headers[file].items():
      if file != files[0] and (not shape or shape[1:] != first[name][1][1:]):
        raise UserError(f"Array {name!r} is {shape} in {file} but {first[name][1]} in "
                        f"{files[0]}; give it one row per example, of one shape, in every "
                        f"file of {location}.")
  sizes = [(math.prod(shape) * dtype.itemsize, name, shape, dtype, file)
           for file, members in headers.items()
           for name, (_, shape, dtype) in members.items()]
  # Several files are concatenated: their parts and the result are in memory at once.
  needed = sum(size[0] for size in sizes) * (1 if len(files) == 1 else 2)
  available = _available_memory()
  if sizes and available is not None and needed > available:
    _, name, shape, dtype, file = max(sizes, key=lambda size: size[0])
    raise UserError(f"The arrays of {location} need {_bytes(needed)} of memory (the largest, "
                    f"{name!r} of {file}, is {dtype} {shape}) but this machine has "
                    f"{_bytes(available)} available; store fewer or smaller examples.")
  parts: dict[str, list[np.ndarray]] = {}
  for file in files:
    for name, array in _read(file, headers[file]).items():
      parts.setdefault(name, []).append(array)
  return {name: arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
          for name, arrays in parts.items()}


def identity(config_data: ml_collections.ConfigDict) -> dict:
  """The files' content decides the data (`crmvae_jax.data.identity`): the SHA-256 of the
  file at `data.path` (of every .npz of a directory, in order) and of `data.test_path`.
  Another file at the same path is other data; the same file moved is the same data."""
  return {"files": {field: _digest(config_data[field]) for field in ("path", "test_path")
                    if config_data.get(field)}}


@functools.lru_cache(maxsize=16)
def _digest_of(files: tuple[tuple[str, int, int], ...]) -> str:
  digest = hashlib.sha256()
  for name, _, _ in files:
    with open(name, "rb") as f:
      for block in iter(lambda: f.read(1 << 22), b""):
        digest.update(block)
  return digest.hexdigest()[:16]


def _digest(path: str) -> str | None:
  """The SHA-256 (16 hex digits) of the .npz file(s) at `path`; None where nothing is
  there (loading then says so). Computed once per file state (name, size, time) in a
  process."""
  location = pathlib.Path(path).expanduser()
  files = sorted(location.glob("*.npz")) if location.is_dir() else [location]
  files = [file for file in files if file.is_file()]
  if not files:
    return None
  return _digest_of(tuple((str(file), file.stat().st_size, file.stat().st_mtime_ns)
                          for file in files))


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


def _image_bytes(name: str, array: np.ndarray) -> np.ndarray:
  """Image `array` as uint8: uint8 as it is, integers in 0..255, floats in [0, 1] scaled."""
  if array.dtype == np.uint8:
    return array
  integer = np.issubdtype(array.dtype, np.integer)
  if integer or np.issubdtype(array.dtype, np.floating):
    low, high = array.min(), array.max()
    if integer and 0 <= low and high <= 255:
      return array.astype(np.uint8)
    if not integer and 0 <= low and high <= 1:
      return np.round(array * 255.0).astype(np.uint8)
    values = f"{array.dtype} in [{low}, {high}]"
  else:
    values = str(array.dtype)
  raise UserError(f"Image {name!r} is {values}; give uint8 or floats in [0, 1] (integer "
                  "pixels must lie in 0..255).")


def _vocab_size(name: str, array: np.ndarray, declared: int | None, where: str,
                custom: str | None) -> int:
  """The vocabulary size of text `array`: `declared`, or its largest id + 1; at most
  `MAX_VOCAB_SIZE`, checked before any one-hot array of that size exists."""
  if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
    raise UserError(f"Text {name!r} must be integer token ids [N, L]; got {array.dtype} "
                    f"{array.shape}: store the ids as integers 0..V-1.")
  if not custom and array.shape[1] % TEXT_LENGTH_MULTIPLE:
    raise UserError(f"Text {name!r} has length {array.shape[1]}; pad it to a multiple of "
                    f"{TEXT_LENGTH_MULTIPLE} with a padding token.")
  low, high = int(array.min()), int(array.max())
  if low < 0:
    raise UserError(f"Text {name!r} holds the negative token id {low} in "
                    f"{int((array < 0).any(axis=1).sum())} examples; renumber the ids to "
                    "0..V-1.")
  if declared is not None and (isinstance(declared, bool)
                               or not isinstance(declared, (int, np.integer))
                               or not 1 <= declared <= MAX_VOCAB_SIZE):
    raise UserError(f"{where}.vocab_size is {declared!r}; give an integer from 1 to "
                    f"{MAX_VOCAB_SIZE:,} above the largest token id (one-hot inputs and "
                    "logits are [batch, L, vocab_size]).")
  if high >= MAX_VOCAB_SIZE:
    raise UserError(f"Text {name!r} holds the token id {high}, which would make a vocabulary of "
                    f"{high + 1:,} ids, over the {MAX_VOCAB_SIZE:,} that one-hot inputs and "
                    "logits [batch, L, vocabulary] can hold; renumber the ids to 0..V-1.")
  vocab_size = int(declared or high + 1)
  if high >= vocab_size:
    raise UserError(f"Text {name!r} holds token id {high} but {where}.vocab_size is "
                    f"{vocab_size}; raise it above the largest id.")
  return vocab_size


def _prepared(name: str, array: np.ndarray, spec: dict, network_choice: str = "fast"
              ) -> tuple[np.ndarray, dict, int | None]:
  """The array in its stored form, its spec {network, kind, likelihood} and its vocabulary
  size (text), after checking every rule of the module docstring for it; networks as
  `network_choice` picks them (NETWORK_CHOICES)."""
  kind = spec.get("kind") or _infer_kind(name, array)
  where = f"config.data.modalities.{name}"
  if kind not in KINDS:
    raise UserError(f"Unknown kind {kind!r} of modality {name!r} ({where}.kind); known: "
                    f"{', '.join(KINDS)}.")
  if kind == "text" and spec.get("likelihood"):
    raise UserError(f"Modality {name!r} is text, whose likelihood is a categorical over its "
                    f"vocabulary; drop {where}.likelihood.")
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
    array = _image_bytes(name, array)
    fast = network_choice == "fast" and array.shape[1:] == (28, 28, 1)
    network = "mnist" if fast else IMAGE_NETWORKS.get(array.shape[1], "")
  elif kind == "text":
    vocabulary = spec.get("vocabulary")
    if vocabulary is not None:
      if isinstance(vocabulary, str) or not all(isinstance(t, str) for t in vocabulary):
        raise UserError(f"{where}.vocabulary is {vocabulary!r}; give a list of strings, token "
                        "i's text at place i.")
      if spec.get("vocab_size") not in (None, len(vocabulary)):
        raise UserError(f"{where}.vocab_size is {spec['vocab_size']} but its vocabulary has "
                        f"{len(vocabulary)} tokens; drop vocab_size.")
    declared_size = spec.get("vocab_size")
    if declared_size is None and vocabulary is not None:
      declared_size = len(vocabulary)
    vocab_size = _vocab_size(name, array, declared_size, where, custom)
    array = array.astype(np.int32)
    network = "mst_text" if network_choice == "fast" and array.shape[1] == 8 else "sequence"
  else:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
      raise UserError(f"Vector {name!r} must be floats [N, F]; got {array.dtype} {array.shape}.")
    with np.errstate(over="ignore"):
      array = array.astype(np.float32)
    beyond = ~np.isfinite(array).all(axis=1)
    if beyond.any():
      raise UserError(f"Vector {name!r} holds values beyond float32's range (about 3.4e38) in "
                      f"{int(beyond.sum())} examples; rescale it.")
    network = "vector"
  options = {}
  for field in ("encoder_options", "decoder_options"):
    value = spec.get(field) or {}
    if not custom and value:
      raise UserError(f"{where}.{field} sets options of the built-in networks, which take "
                      f"none; drop it, or name your own networks in {where}.encoder and "
                      ".decoder.")
    if not isinstance(value, (dict, ml_collections.ConfigDict)):
      raise UserError(f"{where}.{field} is {value!r}; give a dict of the module's fields, "
                      'e.g. {"hidden": 64}.')
    options[field] = dict(value)
  if kind != "text" and spec.get("vocabulary") is not None:
    raise UserError(f"{where}.vocabulary is for a text, and {name!r} is of kind {kind!r}; drop "
                    "it.")
  if custom:
    network = f"custom:{spec['encoder']},{spec['decoder']}"
  return array, {"network": network, "kind": kind, "likelihood": likelihood, **options}, \
      vocab_size


def _check_rows(name: str, array: np.ndarray, source: str, is_modality: bool) -> None:
  """Refuses an array with no rows, or a modality with no values per example."""
  if array.ndim == 0:
    raise UserError(f"Array {name!r} of {source} is a single value; store one row per "
                    "example, [N, ...].")
  if len(array) == 0:
    raise UserError(f"Array {name!r} of {source} holds 0 examples (shape {array.shape}); "
                    "store at least one row per example in every array.")
  if is_modality and array.size == 0:
    raise UserError(f"Array {name!r} of {source} has shape {array.shape}, no values per "
                    "example; give each example at least one value.")


def _check_labels(labels: np.ndarray, source: str, num_examples: int) -> None:
  """Refuses labels that are not one class id 0..MAX_CLASSES-1 per example."""
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise UserError(f"'labels' of {source} must be integers, one class id per example "
                    f"([N] = [{num_examples}]), not {labels.dtype} {labels.shape}; store "
                    "integer class ids 0..K-1.")
  low, high = int(labels.min()), int(labels.max())
  if low < 0 or high >= MAX_CLASSES:
    bad = low if low < 0 else high
    count = int(((labels < 0) if low < 0 else (labels >= MAX_CLASSES)).sum())
    raise UserError(f"'labels' of {source} holds the class id {bad} ({count} examples); give "
                    f"integer class ids 0..K-1, K at most {MAX_CLASSES:,} (renumber them), or "
                    "drop 'labels' to train without them.")


def build(arrays: dict[str, np.ndarray], config_data: ml_collections.ConfigDict,
          source: str) -> MultimodalDataset:
  """The examples of `arrays` (read from `source`) as a data set, every array checked."""
  declared = _declared(config_data)
  # The declared modalities (in name order: a config sorts its keys), then every other
  # array of the file in its order; or the order the config names.
  names = list(declared) + [name for name in arrays
                            if name not in RESERVED and name not in declared]
  order = config_data.get("order")
  if order is not None:
    if sorted(order) != sorted(names) or len(set(order)) != len(order):
      raise UserError(f"config.data.order is {list(order)} but the modalities of {source} are "
                      f"{sorted(names)}; name each of them once.")
    names = list(order)
  missing = [name for name in declared if name not in arrays]
  if missing or not names:
    raise UserError(f"{source} has no arrays {missing or 'of modalities'}; it holds "
                    f"{sorted(arrays)} (config.data.modalities names {list(declared)}).")
  present = names + [name for name in RESERVED if name in arrays]
  for name in present:
    _check_rows(name, arrays[name], source, name in names)
  lengths = {name: len(arrays[name]) for name in present}
  if len(set(lengths.values())) != 1:
    raise UserError(f"The arrays of {source} differ in length {lengths}; give every modality, "
                    "labels and masks one row per example.")
  num_examples = lengths[names[0]]
  stored, specs, vocabularies = {}, {}, {}
  for name in names:
    stored[name], specs[name], vocab_size = _prepared(
        name, arrays[name], declared.get(name, {}),
        config_data.get("network_choice", NETWORK_CHOICE_OF_OLDER_RUNS))
    if vocab_size is not None:
      tokens = declared.get(name, {}).get("vocabulary")
      vocabularies[name] = Tokens(tokens) if tokens is not None else TokenIds(vocab_size)
  labels = arrays.get("labels")
  if labels is None:
    labels = np.full(num_examples, -1, np.int64)
  else:
    _check_labels(labels, source, num_examples)
  masks = arrays.get("masks")
  if masks is not None:
    # Its columns are the file's modality arrays, in the file's order.
    in_file = [name for name in arrays if name not in RESERVED]
    if masks.shape != (num_examples, len(in_file)):
      raise UserError(f"'masks' of {source} must be [N, M] = [{num_examples}, {len(in_file)}] "
                      f"(columns {in_file}); got {masks.shape}.")
    if masks.dtype != bool and not (np.issubdtype(masks.dtype, np.integer)
                                    and ((masks == 0) | (masks == 1)).all()):
      raise UserError(f"'masks' of {source} is {masks.dtype}; give bool (or 0/1) values, True "
                      "where an example has the modality.")
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


def _check_split_fields(config_data: ml_collections.ConfigDict) -> None:
  """Refuses split fields that would leave a split empty whatever the file holds."""
  for field in ("max_train", "max_test"):
    value = config_data.get(field)
    if value is not None and value < 1:
      raise UserError(f"--config.data.{field} is {value}; give a positive number of examples, "
                      "or leave it unset to keep them all.")
  fraction = config_data.get("test_fraction")
  if not config_data.get("test_path") and not (fraction is not None and 0 < fraction < 1):
    raise UserError(f"--config.data.test_fraction is {fraction}; give a fraction between 0 and "
                    "1 (exclusive), or the test examples' own file as --config.data.test_path.")


def load(config_data: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """The (train, test) data sets of `config_data.path` (module docstring).

  Raises:
    DataUnavailableError: no file at the path; UserError: any file or array that breaks a
      rule, or a split left with no examples, in one sentence naming the file or array and
      the fix.
  """
  _check_split_fields(config_data)
  everything = build(read_arrays(config_data.path, "--config.data.path"), config_data,
                     config_data.path)
  test_source = config_data.get("test_path") or config_data.path
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
    if len(train) == 0:
      raise UserError(f"{config_data.path} holds too few examples ({len(everything)}) to leave "
                      "any for training after the test split; store more examples, lower "
                      "--config.data.test_fraction or give --config.data.test_path.")
  rng = np.random.default_rng([config_data.seed, 1])
  train = _at_most(train, config_data.get("max_train"), rng)
  test = _at_most(test, config_data.get("max_test"), rng)
  if test.masks is not None:
    complete = np.flatnonzero(test.masks.all(axis=1))
    if len(complete) == 0:
      raise UserError(f"No test example of {test_source} has every modality; evaluation needs "
                      "complete test examples (give some, or a --config.data.test_path "
                      "without gaps).")
    test = test.subset(complete)
    test = MultimodalDataset(test.modalities, test.arrays, test.indices, test.labels,
                             test.vocabularies, None, test.specs)
  return train, test

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load, check_config=check_config, identity=identity)
