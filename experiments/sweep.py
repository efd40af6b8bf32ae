r"""Sweeps: models x seeds x betas, each model's grid trained in one program.

    python -m experiments.sweep --config=configs/mst.py --models=crmvae,mvtcae,mopoe \
        --seeds=3 --betas=0.5,1,2 --setting=full --root=workdirs/mst_sweep

For every model, all its (seed, beta) replicas train at once (`config.sweep`; one
jitted step, vmapped over replicas and sharded over the devices) in
`<root>/<model>_s<seeds>_b<betas>`; models run one after another. Every replica is then
evaluated (`crmvae_jax.evaluate`), and one results table is printed and written to
`<root>/sweep.md`: per model and beta, mean ± std over seeds of the joint coherence,
the mean cross-coherence, the mean latent-probe accuracy and the test loss, followed by
the full coherence tables per beta. `--setting=small` shrinks every run to finish on a
CPU (e.g. with `--config=configs/quickstart.py`, offline); `--collect_only` tabulates
existing results. A run that was interrupted resumes from its checkpoint.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from crmvae_jax import objectives, sweeps
from crmvae_jax.data.base import DataUnavailableError

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/quickstart.py", "The experiment config.", lock_config=True)
_MODELS = flags.DEFINE_list("models", ["crmvae", "mvtcae"], "Models, one program each.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1 of every model.")
_BETAS = flags.DEFINE_list("betas", None, "Betas of the grid; default: the config's beta.")
_ROOT = flags.DEFINE_string("root", None, "Directory of the runs; default workdirs/<data>_sweep.")
_SETTING = flags.DEFINE_enum("setting", "small", ["small", "full"],
                             "small: shrunk to finish on a CPU; full: the config as written.")
_COLLECT_ONLY = flags.DEFINE_bool("collect_only", False,
                                  "Only tabulate the runs that already have results.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  unknown = sorted(set(_MODELS.value) - set(objectives.OBJECTIVES))
  if unknown:
    raise app.UsageError(f"Unknown models {unknown}; known: {', '.join(objectives.OBJECTIVES)}.")
  config = _CONFIG.value
  root = _ROOT.value or os.path.join("workdirs", f"{config.data.name}_sweep")
  if _SETTING.value == "small":
    config = sweeps.small_setting(config, root)
  betas = [float(beta) for beta in _BETAS.value] if _BETAS.value else [config.beta]
  try:
    runs = sweeps.run_grid(config, _MODELS.value, list(range(_SEEDS.value)), betas, root,
                           _COLLECT_ONLY.value)
  except (DataUnavailableError, FileNotFoundError, ValueError) as error:
    sys.exit(f"error: {error}")
  if not runs:
    sys.exit(f"error: no run under {root} has results; run without --collect_only.")
  sweeps.write_markdown(root, "sweep.md", sweeps.sweep_markdown(runs))


if __name__ == "__main__":
  app.run(main)
