r"""Sweeps: models x seeds x betas, each model's grid trained in one program.

    python -m crmvae_jax.sweep --config=configs/mst.py --models=crmvae,mvtcae,mopoe \
        --seeds=3 --betas=0.5,1,2 --setting=full --root=workdirs/mst_sweep

For every model, all its (seed, beta) replicas train at once (`config.sweep`; one
jitted step, vmapped over replicas and sharded over the devices) in
`<root>/<model>_s<seeds>_b<betas>`; models run one after another. Every replica is then
evaluated (`crmvae_jax.evaluate`), and one results table is printed and written to
`<root>/sweep.md`: per model and beta, mean ± std over seeds of the joint coherence,
the mean cross-coherence, the mean latent-probe accuracy and the test loss, followed by
the full coherence tables per beta. `--setting=small` shrinks every run to finish on a
CPU (`crmvae_jax.sweeps.small_setting`: 200 steps of the config's small setting; e.g.
with `--config=configs/quickstart.py`, offline); `--collect_only` tabulates
existing results. A run that was interrupted resumes from its checkpoint.
"""

from __future__ import annotations

# First, before the imports below take their second or two (crmvae_jax/common/startup.py).
from crmvae_jax.common import startup

startup.start_program()

# pylint: disable=wrong-import-position
import os

from absl import flags

from crmvae_jax import sweeps
from crmvae_jax.config import cli
from crmvae_jax.model import objectives
from crmvae_jax.reporting import summaries

_MODELS = flags.DEFINE_list("models", ["crmvae", "mvtcae"], "Models, one program each.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1 of every model.", lower_bound=1)
_BETAS = flags.DEFINE_list("betas", None, "Betas of the grid; default: the config's beta.")
_ROOT = flags.DEFINE_string("root", None, "Directory of the runs; default workdirs/<data>_sweep.")
_SETTING = flags.DEFINE_enum("setting", "small", ["small", "full"],
                             "small: shrunk to finish on a CPU; full: the config as written.")
_COLLECT_ONLY = flags.DEFINE_bool("collect_only", False,
                                  "Only tabulate the runs that already have results.")


def main() -> None:
  cli.check_names(_MODELS.value, list(objectives.OBJECTIVES), "models")
  config = flags.FLAGS.config
  root = _ROOT.value or os.path.join("workdirs", f"{config.data.name}_sweep")
  betas = cli.parse_numbers(_BETAS.value, "betas") if _BETAS.value else [config.beta]
  runs = sweeps.grid_results(config, _MODELS.value, list(range(_SEEDS.value)), betas, root,
                             _SETTING.value, _COLLECT_ONLY.value)
  summaries.write_markdown(root, "sweep.md", summaries.sweep_markdown(runs))


if __name__ == "__main__":
  cli.run(main, config=cli.QUICKSTART, config_help="The experiment config; default: the "
          "offline quick start.")
