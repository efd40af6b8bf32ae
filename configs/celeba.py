r"""Bimodal CelebA, as in the paper's section 6 (the CelebA panel of the beta sweep).

    python -m crmvae_jax.main --config=configs/celeba.py --workdir=workdirs/celeba_crmvae \
        --config.beta=1.0
    python -m crmvae_jax.evaluate --workdir=workdirs/celeba_crmvae --train_classifier

Reproduces one point (one model, one beta, one seed) of the paper's CelebA figure:
the cosine similarity between the latents inferred from the face and from its
attribute text, and the attribute accuracy of faces generated from text, against
beta. Adam 5e-4, batch 256, latent 64, 200 epochs over CelebA's 162,770 training
faces. Faces come through TFDS `celeb_a` (`--config.data.data_dir=DIR`) or, since its
download often fails, from a directory of CelebA's files
(`--config.data.image_dir=DIR/img_align_celeba`). `--train_classifier` trains the
attribute classifier once; later evaluations reuse it.

beta is swept, not fixed (here it defaults to 1). The sweep trains MVAE, MoPoE-VAE,
MVTCAE and CRMVAE at beta in 0.1, 0.5, 1, 2, 5 (our grid; the paper does not list its
values) with seeds 0, 1, 2:

    python -m experiments.paper.beta_sweep --setting=full --config=configs/celeba.py \
        --root=workdirs/celeba_sweep

The CPU-sized setting (`crmvae_jax.config.defaults.small`: 5 epochs of batch 128 on at most
5,000 training and 1,000 test faces; it still needs CelebA's files):
--config=configs/celeba.py:small.
"""

from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import celeba


def get_config(setting: str = "full"):
  """The paper's settings ("full") or the CPU-sized "small" ones."""
  return config_lib.data_set_config(celeba.get_data_config(), setting, "configs/celeba.py", {
      "num_epochs": 200, "latent_dim": 64, "beta": 1.0,
      # Attribute texts the evaluation grid generates faces from, names in the attribute
      # file's order as the training texts write them.
      "eval.generation_texts": (
          "blond hair, heavy makeup, smiling, wearing lipstick, young",
          "black hair, goatee, male, mustache",
          "eyeglasses, gray hair, male",
          "bangs, brown hair, wavy hair, young",
          "bald, big nose, chubby, double chin, male",
      ),
  })
