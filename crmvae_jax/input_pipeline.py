"""Batches from in-memory data sets, in an order fixed by (seed, step).

The order of training examples is a pure function of the data seed and the step:
epoch e visits the pairs in the permutation drawn from (seed, e). A run resumed at
step s therefore sees exactly the batches an uninterrupted run would, and replicas of
a sweep that share a data seed share their batches.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

import numpy as np

from crmvae_jax.data.base import MultimodalDataset


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise ValueError(
        f"The training set has {num_examples} examples, fewer than one batch of "
        f"{batch_size}; lower --config.batch_size.")
  return num_examples // batch_size  # the last partial batch is dropped


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_batch_ids(num_examples: int, batch_size: int, seed: int, start_step: int = 0
                    ) -> Iterator[np.ndarray]:
  """Example ids of batch `start_step`, `start_step + 1`, ... forever."""
  per_epoch = steps_per_epoch(num_examples, batch_size)
  epoch, position = divmod(start_step, per_epoch)
  while True:
    permutation = epoch_permutation(num_examples, seed, epoch)
    for index in range(position, per_epoch):
      yield permutation[index * batch_size:(index + 1) * batch_size]
    epoch, position = epoch + 1, 0


def eval_batch_ids(num_examples: int, batch_size: int, max_batches: int | None = None
                   ) -> Iterator[np.ndarray]:
  """Consecutive full batches of a test set (at most `max_batches`)."""
  num_batches = num_examples // batch_size
  if max_batches is not None:
    num_batches = min(num_batches, max_batches)
  for index in range(num_batches):
    yield np.arange(index * batch_size, (index + 1) * batch_size)


class Prefetcher:
  """Iterates `put(batch)` over `batches`, preparing the next `depth` in a background
  thread. `close()` stops and joins the thread (call it before the program exits)."""

  def __init__(self, batches: Iterator, put: Callable, depth: int = 2):
    self._buffer: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._produce, args=(batches, put), daemon=True)
    self._thread.start()

  def _produce(self, batches, put):
    for batch in batches:
      item = put(batch)
      while not self._stop.is_set():
        try:
          self._buffer.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if self._stop.is_set():
        return

  def __iter__(self):
    return self

  def __next__(self):
    return self._buffer.get()

  def close(self) -> None:
    self._stop.set()
    self._thread.join()


def train_batches(dataset: MultimodalDataset, batch_size: int, seed: int, start_step: int,
                  put: Callable) -> Prefetcher:
  """Device batches of `dataset` from `start_step` on, prefetched; `put` moves one to
  the devices (with its sharding)."""
  ids = train_batch_ids(len(dataset), batch_size, seed, start_step)
  return Prefetcher((dataset.batch(batch_ids) for batch_ids in ids), put)
