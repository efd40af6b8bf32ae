"""experiments/tools/compare_losses.py's JAX side, which needs no torch: every case's
loss on its tiny networks, and the stand-ins it puts in for the random draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.model.distributions import Gaussian
from experiments.tools import compare_losses


def test_balanced_subsets_assign_components_in_turn_as_multivae_does():
  assignment = compare_losses.balanced_subsets(None, jnp.zeros((7, 3)))
  np.testing.assert_array_equal(assignment, [0, 0, 1, 1, 2, 2, 2])


def test_fixed_noise_depends_on_the_batch_and_latent_positions_only():
  noise = compare_losses.fixed_noise((4, 2, 6, 3))
  np.testing.assert_array_equal(noise[0, 0], noise[3, 1])
  assert len(np.unique(np.asarray(noise[0, 0]))) == 18


@pytest.mark.parametrize("case", list(compare_losses.CASES))
def test_every_case_has_a_finite_loss_and_gradient_on_its_networks(case, monkeypatch):
  monkeypatch.setattr(Gaussian, "sample", compare_losses.fixed_sample)
  monkeypatch.setattr(jax.random, "categorical", compare_losses.balanced_subsets)
  model, options, beta = compare_losses.CASES[case]
  arrays = compare_losses.problem(model)
  weights = {k: jnp.asarray(v) for k, v in arrays.items() if not k.startswith("data_")}
  data = {k: jnp.asarray(v) for k, v in arrays.items() if k.startswith("data_")}
  loss, grads = jax.jit(jax.value_and_grad(
      lambda w: compare_losses.our_loss(model, options, beta, w, data)))(weights)
  assert np.isfinite(float(loss))
  for name, gradient in grads.items():
    assert np.all(np.isfinite(gradient)), name
    assert np.abs(gradient).sum() > 0, name  # every weight is read
