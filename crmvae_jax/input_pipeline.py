"""Batches from in-memory data sets, in an order fixed by (seed, step).

The order of training examples is a pure function of the data seed and the step:
epoch e visits the pairs in the permutation drawn from (seed, e). A run resumed at
step s therefore sees exactly the batches an uninterrupted run would, and replicas of
a sweep that share a data seed share their batches. The ids are all the host computes
during training: the data sets live on the devices (`crmvae_jax.train.DeviceData`).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from crmvae_jax.errors import UserError


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  if num_examples < batch_size:
    raise UserError(
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
