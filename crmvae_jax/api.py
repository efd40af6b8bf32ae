"""The package's Python entry point for a trained run: `crmvae_jax.load`.

    import crmvae_jax
    model = crmvae_jax.load("workdirs/quickstart_crmvae_seed0")
    model.generate({"mnist": images}, ["text"])     # crmvae_jax/model/inference.py
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crmvae_jax.common import xla_setup

if TYPE_CHECKING:
  from crmvae_jax.model.inference import TrainedModel


def load(workdir: str, replica: int = 0, batch_size: int = 256) -> "TrainedModel":
  """The trained model of the run in `workdir`.

  Args:
    workdir: the run's directory (what `python -m crmvae_jax.main --workdir` wrote).
    replica: which seed of a run that trained several at once (`config.sweep.seeds`).
    batch_size: examples per compiled call of the returned model (an int >= 1).

  Returns:
    A `crmvae_jax.model.inference.TrainedModel` with encode, generate, sample,
    reconstruct and log_likelihood, and the run's `config`, `step`, `train_set` and
    `test_set`.

  Raises:
    UserError: the directory holds no run, or a run this version cannot read (one
      sentence naming what to do).
  """
  # Before JAX starts its CPU backend (a no-op once it has): the package's convolutions.
  xla_setup.prefer_eigen_convolutions()
  # Imported here, not at the top: `import crmvae_jax` stays quick and imports no JAX.
  from crmvae_jax.training.checkpoints import load_run  # pylint: disable=import-outside-toplevel

  return load_run(workdir, replica, batch_size)
