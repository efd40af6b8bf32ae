"""MNIST-SVHN-Text, as in the paper's section 6 and Table 1.

    python -m crmvae_jax.main --config=configs/mst.py --workdir=workdirs/mst_crmvae

Reproduces one seed of one row of Table 1 (choose --config.model and --config.seed):
Adam 5e-4, batch 256, beta 1, latent 32, 100 epochs over about 1.12M pairs. MNIST and
SVHN come through tensorflow-datasets (`--config.data.data_dir=DIR` for prepared data
elsewhere). For a laptop-sized run of the same config:
--config.data.max_train_pairs=20000 --config.num_epochs=2.
"""

from crmvae_jax import config as config_lib
from crmvae_jax.data import mst


def get_config():
  config = config_lib.base_config()
  config.data = mst.get_data_config()
  config.num_epochs = 100
  config.latent_dim = 32
  config.beta = 1.0
  return config
