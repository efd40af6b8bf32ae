"""experiments/tools/programs.py builds, for every model the package has, the network its
objective trains (the benchmark and the GPU check time each objective): JMVAE once
failed there for want of its joint encoder, and the models with private latents would
have too."""

from __future__ import annotations

import jax
import optax
import pytest

from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.model import models, objectives
from crmvae_jax.training import state as state_lib
from experiments.tools import programs


@pytest.mark.parametrize("objective", list(objectives.MODELS))
def test_every_objective_gets_a_network_its_loss_accepts(objective):
  data_name, dataset = programs.random_data("mst")
  batch = dataset.batch(jax.numpy.arange(4))
  model = programs.model_of(objective, modalities_of(data_name, dataset), latent_dim=4)
  entry = objectives.MODELS[objective]
  assert model.joint_encoder == entry.joint_encoder
  assert model.auxiliary_priors == entry.auxiliary_priors
  assert [m.private_dim for m in model.modalities] == (
      [programs.PRIVATE_DIM] * 3 if entry.private else [0] * 3)
  # Traced, not compiled: shapes only.
  state = jax.eval_shape(
      lambda: state_lib.create_train_state(model, optax.adam(1e-3), batch, 0))
  loss, _ = jax.eval_shape(models.make_loss_fn(model, objective), state.params, batch,
                           jax.random.PRNGKey(0), 1.0)
  assert loss.shape == ()
