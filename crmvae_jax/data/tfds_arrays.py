"""TFDS image data sets as in-memory numpy arrays, read without TensorFlow.

Prepared TFDS data sets in the array_record format are random-access data sources
that TFDS reads without TensorFlow; preparing one (download, decode, encode PNGs)
needs TensorFlow and network access. `load_arrays` reads a prepared split into
arrays (`open_source` gives the data source itself, for data sets read record by
record), prepares it first where it can, and otherwise raises `DataUnavailableError`
quickly instead of letting TFDS retry an unreachable download for minutes.

`write_arrays` writes arrays as a prepared array_record data set without
TensorFlow: tests use it to build tiny real data sets, and a user holding the raw
arrays can use it to supply a data set on a machine without network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import importlib.util
import io
import socket
from typing import Any
import urllib.parse

from array_record.python import array_record_module
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from crmvae_jax.data.base import DataUnavailableError

_ARRAY_RECORD = tfds.core.FileFormat.ARRAY_RECORD
# Records decoded per `__getitems__` call: batched reads, bounded transient memory.
_READ_CHUNK = 8192
# Seconds to wait for a download host before calling the data set unreachable.
_CONNECT_TIMEOUT_S = 5.0


def load_arrays(name: str, split: str, data_dir: str | None, download: bool = True,
                image_key: str = "image",
                label_key: str = "label") -> tuple[np.ndarray, np.ndarray]:
  """Reads a TFDS image data set's split into memory.

  Args:
    name: TFDS name, e.g. 'mnist' or 'svhn_cropped' (optionally 'name:version').
    split: TFDS split, e.g. 'train', 'test' or 'train[:10%]'.
    data_dir: TFDS data directory; None means TFDS's default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    download: prepare the data set (download and convert) if it is not prepared.
    image_key: the feature holding fixed-shape images.
    label_key: the feature holding labels.

  Returns:
    (images, labels): uint8 [N, H, W, C] and int64 [N] (or [N, ...] for vector
    labels), in the split's record order.

  Raises:
    DataUnavailableError: if the data set is not prepared in `data_dir` and cannot
      be prepared here, or is prepared in a format without random access.
  """
  source = open_source(name, split, data_dir, download)
  image_chunks, label_chunks = [], []
  for start in range(0, len(source), _READ_CHUNK):
    records = source.__getitems__(list(range(start, min(start + _READ_CHUNK, len(source)))))
    image_chunks.append(np.stack([record[image_key] for record in records]))
    label_chunks.append(np.stack([record[label_key] for record in records]))
  return (np.concatenate(image_chunks).astype(np.uint8, copy=False),
          np.concatenate(label_chunks).astype(np.int64, copy=False))


def open_source(name: str, split: str, data_dir: str | None, download: bool = True,
                decoders: Mapping[str, Any] | None = None) -> Sequence[dict[str, Any]]:
  """A random-access TFDS data source over a split, prepared first if need be.

  Args:
    name: TFDS name (optionally 'name:version').
    split: TFDS split, e.g. 'train' or 'test[:100]'.
    data_dir: TFDS data directory; None means TFDS's default.
    download: prepare the data set (download and convert) if it is not prepared.
    decoders: optional TFDS decoders per feature, e.g. `tfds.decode.SkipDecoding()`
      for a feature that is not needed.

  Returns:
    The split's records as decoded numpy feature dicts; supports `len`,
    `source[i]` and batched `source.__getitems__(ids)`.

  Raises:
    DataUnavailableError: if the data set is not prepared in `data_dir` and cannot
      be prepared here, or is prepared in a format without random access.
  """
  builder = tfds.builder(name, data_dir=data_dir, file_format=_ARRAY_RECORD)
  if not builder.is_prepared():
    _prepare(name, builder, download)
  try:
    return builder.as_data_source(split=split, decoders=decoders)
  except NotImplementedError as error:
    raise _unavailable(
        name, f"in {builder.data_dir} is prepared as TFRecord, which has no random "
        "access") from error


def write_arrays(name: str, data_dir: str,
                 splits: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """Writes arrays as the prepared array_record TFDS data set `name`.

  Afterwards `load_arrays(name, split, data_dir)` reads them back like data TFDS
  prepared itself. Needs no TensorFlow: images are PNG-encoded with Pillow.

  Args:
    name: TFDS name whose features the arrays follow, e.g. 'mnist'.
    data_dir: TFDS data directory to write into (its `name/version` folder).
    splits: split name -> {feature name: array [N, ...]}, one array for every
      feature of the data set (uint8 [N, H, W, C] for image features).
  """
  builder = tfds.builder(name, data_dir=data_dir, file_format=_ARRAY_RECORD)
  features = builder.info.features
  builder.data_path.mkdir(parents=True, exist_ok=True)
  split_infos = []
  for split, arrays in splits.items():
    num_examples = len(next(iter(arrays.values())))
    file_template = tfds.core.ShardedFileTemplate(
        data_dir=builder.data_path, dataset_name=builder.name, split=split,
        filetype_suffix=_ARRAY_RECORD.file_suffix)
    shard_path = file_template.sharded_filepath(shard_index=0, num_shards=1)
    # group_size 1 is what TFDS writes for random access.
    writer = array_record_module.ArrayRecordWriter(str(shard_path), "group_size:1")
    for i in range(num_examples):
      example = {
          key: _png(values[i]) if isinstance(features[key], tfds.features.Image) else values[i]
          for key, values in arrays.items()
      }
      writer.write(features.serialize_example(example))
    writer.close()
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[num_examples], num_bytes=shard_path.stat().length,
        filename_template=file_template))
  builder.info.set_splits(tfds.core.SplitDict(split_infos))
  builder.info.write_to_directory(builder.data_path)


def _prepare(name: str, builder: tfds.core.DatasetBuilder, download: bool) -> None:
  """Downloads and prepares `builder`'s data set, or says why it cannot."""
  missing = f"is not prepared in {builder.data_dir}"
  if not download:
    raise _unavailable(name, f"{missing} and download is off (--config.data.download)")
  if not _tensorflow_installed():
    # TFDS encodes images with TensorFlow while preparing; without it the download
    # would run and then fail.
    raise _unavailable(name, f"{missing} and preparing it needs TensorFlow, which is "
                       "not installed")
  for host, port in _download_hosts(builder):
    try:
      socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as error:
      raise _unavailable(name, f"{missing} and its download host {host} is unreachable "
                         f"({error})") from error
  try:
    builder.download_and_prepare()
  except OSError as error:  # requests' network errors are OSErrors.
    raise _unavailable(name, f"could not be downloaded into {builder.data_dir} "
                       f"({error})") from error


def _tensorflow_installed() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _download_hosts(builder: tfds.core.DatasetBuilder) -> set[tuple[str, int]]:
  """(host, port) of every URL in the data set's registered checksums."""
  hosts = set()
  for url in builder.url_infos or {}:
    parsed = urllib.parse.urlparse(url)
    hosts.add((parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)))
  return hosts


def _unavailable(name: str, reason: str) -> DataUnavailableError:
  return DataUnavailableError(
      f"TFDS data set '{name}' {reason}: pass --config.data.data_dir=DIR naming a TFDS "
      f"data directory that holds it prepared as array_record (made with `tfds build "
      f"{name} --file_format=array_record --data_dir=DIR` on a machine with network "
      f"access and `pip install crmvae_jax[prepare]`).")


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [H, W, C] image (C = 1 or 3)."""
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()
