"""crmvae_jax: multimodal VAEs in JAX/Flax, centred on CRMVAE."""
