"""Batches from in-memory data sets, in an order fixed by (seed, step).

The order of training examples is a pure function of the data seed and the step:
epoch e visits the pairs in the permutation drawn from (seed, e). A run resumed at
step s therefore sees exactly the batches an uninterrupted run would, and replicas of
a sweep that share a data seed share their batches. The ids are all the host computes
during training: the data sets live on the devices (`crmvae_jax.training.step.DeviceData`).

Test pairs are often stored in order (MNIST-SVHN-Text digit by digit), so whatever
looks at part of a test set (the training-time test loss, figure examples) takes a
seeded random sample of it, never its first pairs.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from crmvae_jax.common.errors import UserError


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


def eval_batch_ids(num_examples: int, batch_size: int, max_batches: int | None = None,
                   seed: int = 0) -> Iterator[np.ndarray]:
  """Full batches of a test set drawn from one seeded permutation of it.

  The permutation depends on `seed` alone, so every call (every evaluation along
  training) sees the same batches and the test loss curve is comparable over steps;
  and a test set stored in label order is still sampled across its labels.

  Args:
    num_examples: ids run 0..num_examples-1.
    batch_size: ids per batch; the pairs left over after the last full batch of the
      permutation are not used.
    max_batches: at most this many batches; None: every full batch.
    seed: the permutation's seed (training uses `config.data.seed`).

  Yields:
    ids [batch_size], distinct across batches.
  """
  num_batches = num_examples // batch_size
  if max_batches is not None:
    num_batches = min(num_batches, max_batches)
  permutation = np.random.default_rng(seed).permutation(num_examples)
  for index in range(num_batches):
    yield permutation[index * batch_size:(index + 1) * batch_size]


def sample_ids(num_examples: int, num_wanted: int,
               seed: int | np.random.Generator) -> np.ndarray:
  """A seeded random choice of min(num_wanted, num_examples) ids, sorted (-1: all).

  Args:
    num_examples: ids run 0..num_examples-1.
    num_wanted: how many to choose; -1, or at least num_examples: all of them.
    seed: the choice's seed (the same seed gives the same ids), or a generator to draw
      from (successive choices from one generator differ).

  Returns:
    Sorted distinct ids.
  """
  if num_wanted < 0 or num_wanted >= num_examples:
    return np.arange(num_examples)
  rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
  return np.sort(rng.choice(num_examples, num_wanted, replace=False))


def padded_batches(num_examples: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
  """Example ids in batches of one size (the last padded by repeating its last id).

  One shape means one compiled program; callers keep the first `num_valid` results.

  Args:
    num_examples: ids run 0..num_examples-1.
    batch_size: ids per batch (capped at num_examples).

  Yields:
    (ids [min(batch_size, num_examples)], num_valid).
  """
  batch_size = max(1, min(batch_size, num_examples))
  for start in range(0, num_examples, batch_size):
    ids = np.arange(start, min(start + batch_size, num_examples))
    yield np.pad(ids, (0, batch_size - len(ids)), mode="edge"), len(ids)
