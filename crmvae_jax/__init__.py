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

from crmvae_jax.common.errors import UserError

__all__ = ["fit", "train_judges", "evaluate", "load", "TrainedModel", "UserError"]

# The API's functions on first use (PEP 562): `python -m crmvae_jax.main` imports this file
# before the program's first line installs its stop-signal handlers
# (crmvae_jax/common/startup.py), so this file imports nothing that takes time (NumPy
# alone took 0.15 s, long enough for a SIGINT to land inside it).
_API = ("fit", "train_judges", "evaluate", "load")


def __getattr__(name: str):
  if name in _API:
    from crmvae_jax import api  # pylint: disable=import-outside-toplevel

    return getattr(api, name)
  # TrainedModel: importing it imports JAX and Flax.
  if name == "TrainedModel":
    from crmvae_jax.model.inference import TrainedModel  # pylint: disable=import-outside-toplevel

    return TrainedModel
  raise AttributeError(f"module 'crmvae_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_API) + ["TrainedModel"])
