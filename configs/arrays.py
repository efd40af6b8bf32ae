"""Your own data: one array per modality in an .npz file (crmvae_jax/data/arrays.py).

    python -m crmvae_jax.main --config=configs/arrays.py --config.data.path=my_data.npz \
        --workdir=workdirs/my_data
    python -m crmvae_jax.classifiers --config=configs/arrays.py --config.data.path=my_data.npz
    python -m crmvae_jax.evaluate --workdir=workdirs/my_data

Images (uint8 or [0, 1] floats, 28, 32 or 64 pixels square), texts (integer token ids)
and vectors (floats) are told apart by their arrays; declare a modality's kind,
likelihood or your own networks in `config.data.modalities` (a copy of this file, or
e.g. `config.data.modalities = {"audio": {"kind": "vector", "likelihood": "gaussian"}}`).
CRMVAE, Adam 5e-4, batch 128, latent 32, beta 1, the size rule's likelihood weights
(each modality weighted by the largest one's size over its own), 100 epochs. Masks
[N, M] in the file, or --config.data.missing_ratio=p, train with missing modalities.
"""

from crmvae_jax.config import defaults as config_lib


def get_config(setting: str = "full"):
  """Training on your own arrays ("full"), or the CPU-sized "small" setting."""
  return config_lib.arrays_config(setting)
