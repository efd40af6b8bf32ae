"""XLA options this package sets before JAX opens its CPU backend.

XLA's CPU backend hands convolutions to YNNPACK by default (the repeated option
`--xla_cpu_experimental_ynn_fusion_type` includes `individual_convolution`). On this
package's networks YNNPACK's convolutions, above all the kernel gradients, are slower
than XLA's own (Eigen) convolutions: on a 2-core AVX2 CPU, batch 256, the SVHN
encoder's forward+backward went from 158 to 91 ms, the decoder's from 180 to 121 ms,
and a whole CRMVAE train step from 455 to 383 ms (`python -m experiments.tools.benchmark`
and `python -m experiments.tools.layer_timings`, each run with and without the option).
Matrix products stay on YNNPACK, where they are fast.

`prefer_eigen_convolutions` appends `--xla_cpu_experimental_ynn_fusion_type=
-individual_convolution` to `XLA_FLAGS` when importing `crmvae_jax`, unless
- `XLA_FLAGS` already sets that option (a user's own choice wins), or
- CRMVAE_JAX_KEEP_XLA_FLAGS is set (to compare against XLA's defaults), or
- jaxlib is outside the versions known to have the option (XLA aborts the process on
  an unknown flag, so a newer jaxlib is left at its defaults rather than risked).
The option only concerns the CPU backend; GPU programs are unchanged. XLA reads
`XLA_FLAGS` once, when the first backend starts, so the package must be imported before
the first JAX computation, as every command line here does.
"""

from __future__ import annotations

import os

OPTION = "--xla_cpu_experimental_ynn_fusion_type"
SETTING = f"{OPTION}=-individual_convolution"
# jaxlib versions with the option, (major, minor) from .. up to, not including.
KNOWN_VERSIONS = ((0, 8), (0, 12))
OPT_OUT = "CRMVAE_JAX_KEEP_XLA_FLAGS"


def installed_jaxlib_version() -> tuple[int, int] | None:
  """(major, minor) of the installed jaxlib, or None where it cannot be read."""
  try:
    from jaxlib import version  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  try:
    major, minor = version.__version__.split(".")[:2]
    return int(major), int(minor)
  except ValueError:
    return None


def option_known(version: tuple[int, int] | None) -> bool:
  """Whether jaxlib `version` is one of those known to have the option."""
  return version is not None and KNOWN_VERSIONS[0] <= version < KNOWN_VERSIONS[1]


def prefer_eigen_convolutions(environ: dict | None = None,
                              jaxlib_version: tuple[int, int] | None = None) -> bool:
  """Moves CPU convolutions off YNNPACK via XLA_FLAGS; returns whether it did.

  Args:
    environ: the environment to edit (default: os.environ).
    jaxlib_version: (major, minor) of jaxlib (default: the installed one).
  """
  environ = os.environ if environ is None else environ
  flags = environ.get("XLA_FLAGS", "")
  if OPTION in flags or environ.get(OPT_OUT):
    return False
  if not option_known(jaxlib_version or installed_jaxlib_version()):
    return False
  environ["XLA_FLAGS"] = f"{flags} {SETTING}".strip()
  return True
