"""The model's core: distributions, networks, objectives, metrics, the multimodal VAE
and the FID Inception network, as JAX functions and Flax modules. No flags, no
training loop, no command line."""
