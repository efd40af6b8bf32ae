"""crmvae_jax: multimodal VAEs in JAX/Flax, centred on CRMVAE.

    import crmvae_jax
    model = crmvae_jax.fit({"image": images, "vec": vectors, "labels": labels},
                           workdir="workdirs/mine")               # train (api.py)
    crmvae_jax.train_judges("workdirs/mine")                      # its judges
    crmvae_jax.evaluate("workdirs/mine")                          # its metrics
    model = crmvae_jax.load("workdirs/quickstart_crmvae_seed0")   # a trained run
    model.generate({"mnist": images}, ["text"])                   # see model/inference.py

The package's folders are its layers, lowest first (an import only goes down):
common/ (errors, atomic writes, signals, XLA flags), model/ (distributions, networks,
objectives, the modality spec, the multimodal VAE; pure, no data), data/ (data sets,
their modalities, the input pipeline), config/ (defaults, validation, the command
line's shared code, a run directory's records), reporting/ (tables, summaries,
figures), training/, evaluation/, and at the top the programs (main, evaluate,
classifiers, sweeps) and this Python API. Importing the package imports no JAX and
changes no environment variable.
"""

from crmvae_jax.api import evaluate, fit, load, train_judges
from crmvae_jax.common.errors import UserError

__all__ = ["fit", "train_judges", "evaluate", "load", "TrainedModel", "UserError"]


def __getattr__(name: str):
  # TrainedModel on first use: importing it imports JAX and Flax.
  if name == "TrainedModel":
    from crmvae_jax.model.inference import TrainedModel  # pylint: disable=import-outside-toplevel

    return TrainedModel
  raise AttributeError(f"module 'crmvae_jax' has no attribute {name!r}")
