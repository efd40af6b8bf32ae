r"""CUB image-caption, as in the paper's section 6 (the CUB panel of the beta sweep).

    python -m crmvae_jax.main --config=configs/cub.py --workdir=workdirs/cub_crmvae \
        --config.data.captions_dir=DIR/text_c10 --config.beta=1.0
    python -m crmvae_jax.evaluate --workdir=workdirs/cub_crmvae

Reproduces one point (one model, one beta, one seed) of the paper's CUB figure: the
cosine similarity between the latents inferred from the image and from the caption,
against beta. Adam 5e-4, batch 256, latent 64, 150 epochs over the (image, caption)
pairs (5,994 training images, ten captions each). Images come through TFDS
`caltech_birds2011` (`--config.data.data_dir=DIR` for data prepared elsewhere); the
captions are Reed et al.'s `text_c10` directory, which TFDS does not carry.

beta is swept, not fixed (here it defaults to 1). The sweep trains MVAE, MoPoE-VAE,
MVTCAE and CRMVAE at beta in 0.1, 0.5, 1, 2, 5 (our grid; the paper does not list its
values) with seeds 0, 1, 2:

    python -m experiments.paper.beta_sweep --setting=full --config=configs/cub.py \
        --config.data.captions_dir=DIR/text_c10 --root=workdirs/cub_sweep

The CPU-sized setting (`crmvae_jax.config.defaults.small`: 5 epochs of batch 128 on at most
5,000 training and 1,000 test images; it still needs the TFDS images and the captions):
--config=configs/cub.py:small.
"""

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import cub


def get_config(setting: str = "full"):
  """The paper's settings ("full") or the CPU-sized "small" ones."""
  return config_lib.data_set_config(cub.get_data_config(), setting, "configs/cub.py", {
      "num_epochs": 150, "latent_dim": 64, "beta": 1.0,
      # Captions the evaluation grid generates bird images from.
      "eval.generation_texts": (
          "this bird has a red crown and a short black beak",
          "a small yellow bird with black wings and a white belly",
          "this bird is mostly blue with a long pointed beak",
          "a large white bird with a long orange bill",
          "this bird has a brown back and a speckled white breast",
      ),
  })
