"""Translated-PolyMNIST: PolyMNIST with the digit at 70% size at a random position.

    python -m crmvae_jax.main --config=configs/translated_polymnist.py --workdir=workdirs/tpm

The paper's settings: beta 0.1, latent 512, 500 epochs, batch 256. The CPU-sized run:
--config=configs/translated_polymnist.py:small (see configs/polymnist.py).
"""

from configs import polymnist


def get_config(setting: str = "full"):
  """The paper's settings ("full") or the CPU-sized "small" ones."""
  return polymnist.get_config(setting, translated=True)
