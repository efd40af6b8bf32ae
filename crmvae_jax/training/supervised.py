"""Supervised training of a network on examples the host holds (the judges' classifiers):
a fresh `TrainState`, the pure `make_train_step` jitted, and epochs of shuffled batches.

What is trained (the network, its loss, the examples) is the caller's; how the loop
runs is here, with the model's own training (`state`, `step`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import numpy as np
import optax
import tqdm

from crmvae_jax.training.state import TrainState, init_train_state
from crmvae_jax.training.step import make_train_step


def shuffled_epochs(num_examples: int, batch_size: int, epochs: int,
                    rng: np.random.Generator) -> Iterator[list[np.ndarray]]:
  """The batches of every epoch: each epoch a permutation drawn from `rng`, cut into
  num_examples // batch_size batches of ids (the last partial batch is dropped)."""
  steps_per_epoch = num_examples // batch_size
  for _ in range(epochs):
    permutation = rng.permutation(num_examples)
    yield [permutation[index * batch_size:(index + 1) * batch_size]
           for index in range(steps_per_epoch)]


def fit(init_params: Callable[[jax.Array], Any], loss_fn: Callable,
        tx: optax.GradientTransformation, examples, batch_size: int, epochs: int, seed: int,
        description: str, disable_progress_bar: bool = False) -> TrainState:
  """Trains the parameters `init_params(rng)` for `epochs` epochs of shuffled batches.

  Args:
    init_params: rng -> the initial parameters.
    loss_fn: (params, batch, rng) -> (loss, terms); `batch` is `examples` at one
      batch of ids, `rng` the step's (dropout).
    tx: the optimiser.
    examples: a pytree of host arrays [N, ...], e.g. (values, labels).
    batch_size: examples per step (at most N).
    epochs: passes over the examples.
    seed: initialisation, the steps' randomness (`init_train_state`) and the order of
      examples.
    description: the progress bar's label.
    disable_progress_bar: hide the tqdm bar.

  Returns:
    The trained state.
  """
  state = init_train_state(init_params, tx, seed)
  train_step = jax.jit(make_train_step(loss_fn, tx))
  num_examples = len(jax.tree.leaves(examples)[0])
  progress = tqdm.tqdm(total=epochs * (num_examples // batch_size), unit="step",
                       desc=description, dynamic_ncols=True, disable=disable_progress_bar)
  with progress:
    for batches in shuffled_epochs(num_examples, batch_size, epochs,
                                   np.random.default_rng(seed)):
      for ids in batches:
        state, metrics = train_step(state, jax.tree.map(lambda array: array[ids], examples))
        progress.update(1)
      progress.set_postfix(loss=f"{float(metrics['loss']):.3f}")
  return state
