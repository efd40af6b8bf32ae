"""crmvae_jax: multimodal VAEs in JAX/Flax, centred on CRMVAE."""

from crmvae_jax import xla_setup as _xla_setup

_xla_setup.prefer_eigen_convolutions()
