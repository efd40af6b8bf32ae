"""The model: probability distributions (`distributions`), Flax layers and networks
(`layers`, `networks`, `text_networks`), the eight objectives and the model registry
(`objectives`), what a modality is (`modality`), the multimodal VAE over modalities
(`models`) and a trained model's Python API (`inference`). Pure JAX and Flax: no data
set, flag, file or training loop."""
