"""crmvae_jax: multimodal VAEs in JAX/Flax, centred on CRMVAE.

    import crmvae_jax
    model = crmvae_jax.load("workdirs/quickstart_crmvae_seed0")   # a trained run
    model.generate({"mnist": images}, ["text"])                   # see core/inference.py
"""

from crmvae_jax import xla_setup as _xla_setup

_xla_setup.prefer_eigen_convolutions()


def load(workdir: str, replica: int = 0, batch_size: int = 256):
  """The trained model of the run in `workdir`: a `crmvae_jax.core.inference.TrainedModel`
  with encode, generate, sample, reconstruct and log_likelihood
  (`crmvae_jax.training.checkpoints.load_run`)."""
  from crmvae_jax.training.checkpoints import load_run  # JAX and Orbax load on first use

  return load_run(workdir, replica, batch_size)
