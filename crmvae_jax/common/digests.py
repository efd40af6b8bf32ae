"""Fingerprints of arrays: the SHA-256 of their names, dtypes, shapes and bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 (hex) over every array's name, dtype, shape and bytes, in sorted name order:
  equal for equal arrays wherever and however they were made or stored."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    array = np.ascontiguousarray(arrays[name])
    digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()
