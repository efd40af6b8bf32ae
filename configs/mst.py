"""MNIST-SVHN-Text, as in the paper's section 6 and Table 1.

    python -m crmvae_jax.main --config=configs/mst.py --workdir=workdirs/mst_crmvae

Reproduces one seed of one row of Table 1 (choose --config.model and --config.seed):
Adam 5e-4, batch 256, beta 1, latent 32, 100 epochs over about 1.12M pairs. MNIST and
SVHN come through tensorflow-datasets (`--config.data.data_dir=DIR` for prepared data
elsewhere). The CPU-sized setting (`crmvae_jax.config.defaults.small`: 5 epochs of batch 128 on
at most 5,000 training and 1,000 test pairs; it still reads MNIST and SVHN through TFDS):

    python -m crmvae_jax.main --config=configs/mst.py:small --workdir=workdirs/mst_small
"""

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import mst


def get_config(setting: str = "full"):
  """The paper's settings ("full") or the CPU-sized "small" ones."""
  return config_lib.data_set_config(mst.get_data_config(), setting, "configs/mst.py",
                                    {"num_epochs": 100, "latent_dim": 32, "beta": 1.0})
