"""The experiments: programs run as modules from the repository root, each named in
its own docstring.

Like the package's own programs, they set XLA's CPU convolutions before JAX starts
(`crmvae_jax.common.xla_setup`); importing `crmvae_jax` itself changes no environment.
"""

from crmvae_jax.common import xla_setup

xla_setup.prefer_eigen_convolutions()
