"""A run's state and what makes it: the model, the optimiser, the training state of one
replica or of every replica of a sweep grid (seeds x betas) stacked on a leading axis.

The state is one pytree (`TrainState`), so Orbax checkpoints it and sweeps vmap it over
replicas without special cases.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from crmvae_jax.model import models, objectives
from crmvae_jax.common.errors import UserError
from crmvae_jax.data.modalities import modalities_of


@flax.struct.dataclass
class TrainState:
  """Everything a run carries from step to step.

  Attributes:
    step: int32 scalar, the number of updates applied.
    params: the model's parameters.
    opt_state: optax state.
    rng: raw uint32 PRNG key [2]; step t's randomness is fold_in(rng, t).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def replica_grid(config) -> tuple[list[int], list[float]]:
  """The (seed, beta) of every replica: the grid config.sweep.seeds x config.sweep.betas.

  An empty list means the single value config.seed (or config.beta), so a plain run is
  the grid of one replica.
  """
  seeds = list(config.sweep.seeds) or [config.seed]
  betas = list(config.sweep.betas) or [config.beta]
  return ([seed for seed in seeds for _ in betas], [float(beta) for _ in seeds for beta in betas])


def replica_directory(config: ml_collections.ConfigDict, workdir: str, replica: int = 0) -> str:
  """Where one replica writes summaries, figures and evaluations: `workdir` itself for a
  single run, `workdir/replica_<r>` for replica r of a sweep."""
  num_replicas = len(replica_grid(config)[0])
  return workdir if num_replicas == 1 else os.path.join(workdir, f"replica_{replica}")


def create_model(config, train_set) -> models.MultimodalVAE:
  modalities = modalities_of(config.data.name, train_set, config.get("likelihood_weights"))
  private_dims = config.get("private_dims")
  if private_dims is not None:
    if len(private_dims) != len(modalities):
      example = ",".join(["8"] * len(modalities))
      raise UserError(f"--config.private_dims has {len(private_dims)} entries for the "
                      f"{len(modalities)} modalities {[m.name for m in modalities]}; pass one "
                      f"per modality, e.g. --config.private_dims='({example})'.")
    modalities = tuple(dataclasses.replace(m, private_dim=int(dim))
                       for m, dim in zip(modalities, private_dims))
  joint_encoder = objectives.MODELS[config.model].joint_encoder
  masks = getattr(train_set, "masks", None)
  if joint_encoder and masks is not None and not masks.all():
    raise UserError(f"{config.model}'s joint encoder reads every modality, and "
                    f"{int((~masks.all(axis=1)).sum())} training examples lack one; train it "
                    "on complete examples, or use a model that trains with missing modalities.")
  return model_network(config.model, modalities, config.latent_dim,
                       config.get("compute_dtype", "float32"))


def model_network(model: str, modalities, latent_dim: int,
                  compute_dtype: str = "float32") -> models.MultimodalVAE:
  """The network the named model trains on `modalities` (private sizes already set): a
  joint encoder and auxiliary priors where the model has them."""
  entry = objectives.MODELS[model]
  return models.MultimodalVAE(modalities=modalities, latent_dim=latent_dim,
                              compute_dtype=compute_dtype, joint_encoder=entry.joint_encoder,
                              auxiliary_priors=entry.auxiliary_priors)


def create_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate)


def init_train_state(init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation,
                     seed) -> TrainState:
  """A fresh state of any network: parameters `init_params(rng)` with an rng from
  PRNGKey(seed), the step rng from it too."""
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(seed))
  params = init_params(init_rng)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), rng=step_rng)


def create_train_state(model, tx, example_batch: dict, seed: int) -> TrainState:
  """A fresh state of the model: parameters from PRNGKey(seed), the step rng from it too."""
  return init_train_state(lambda rng: models.init_params(model, rng, example_batch), tx, seed)


def create_replica_states(model, tx, example_batch: dict, seeds: list[int]) -> TrainState:
  """States of every replica stacked on a leading axis [R]; replica r is exactly the
  state `create_train_state(..., seeds[r])` of a single run."""
  # One compiled initialisation, instead of one small compile per parameter.
  initialise = jax.jit(jax.vmap(lambda seed: create_train_state(model, tx, example_batch, seed)))
  return initialise(jnp.asarray(seeds, jnp.uint32))
