"""The finiteness check covers the updated parameters and optimiser state, so a step
whose loss is still finite but whose update overflowed is never checkpointed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from crmvae_jax.training import step as step_lib
from crmvae_jax.training.state import TrainState


def test_replicas_all_finite_is_per_replica():
  tree = {"w": jnp.array([[1.0, 2.0], [3.0, jnp.inf]]), "count": jnp.array([1, 2]),
          "b": jnp.array([0.0, 1.0])}
  np.testing.assert_array_equal(step_lib.replicas_all_finite(tree), [True, False])
  np.testing.assert_array_equal(step_lib.replicas_all_finite({"n": jnp.array([1, 2])}),
                                [True, True])


class _Data:
  def batch(self, ids):
    return {"x": ids.astype(jnp.float32)}


def test_an_overflowing_update_with_a_finite_loss_is_caught_at_its_step():
  """lr = inf (1e39 in float32): the loss of step 1 is finite, the parameters are not."""
  tx = optax.adam(jnp.inf)
  params = {"w": jnp.ones((1, 3))}
  states = TrainState(step=jnp.zeros(1, jnp.int32), params=params,
                      opt_state=jax.vmap(tx.init)(params), rng=jnp.zeros((1, 2), jnp.uint32))

  def loss_fn(params, batch, rng, beta):
    loss = jnp.sum(params["w"] ** 2) * beta + jnp.sum(batch["x"]) * 0.0
    return loss, {}

  multi_step = step_lib.make_multi_step(step_lib.make_replicated_train_step(loss_fn, tx))
  states, metrics, first_non_finite = jax.jit(
      lambda states, first: multi_step(states, _Data(), jnp.zeros((1, 4), jnp.int32),
                                       jnp.int32(1), jnp.ones(1), first)
  )(states, jnp.full(1, -1, jnp.int32))
  assert np.all(np.isfinite(metrics["loss"])) and np.all(np.isfinite(metrics["grad_norm"]))
  assert not np.all(np.isfinite(states.params["w"]))
  np.testing.assert_array_equal(first_non_finite, [1])
