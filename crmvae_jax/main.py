r"""Trains a multimodal VAE.

    python -m crmvae_jax.main --config=configs/mst.py --workdir=workdirs/mst_crmvae \
        --config.model=mvtcae --config.beta=1.0 --config.seed=1

With no --config it trains CRMVAE on the offline quick-start data
(configs/quickstart.py). Any config field can be overridden with --config.FIELD=VALUE,
with or without --config, e.g. `python -m crmvae_jax.main --config.num_train_steps=60`.
A config, workdir or data set the user can fix is refused in one line (`crmvae_jax.config.cli`).
"""

from __future__ import annotations

# First, before the imports below take their second or two (crmvae_jax/common/startup.py).
from crmvae_jax.common import startup

startup.start_program()

# pylint: disable=wrong-import-position
from absl import flags, logging

from crmvae_jax.config import cli
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation import coherence
from crmvae_jax.training import loop

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None,
                    "Directory for checkpoints, summaries and figures; default "
                    "workdirs/<data>_<model>_seed<seed>.")
flags.DEFINE_bool("multihost", False,
                  "Join a multi-process run with jax.distributed.initialize() (SLURM, Open MPI "
                  "and Kubernetes jobs are detected; elsewhere give the three flags below).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --multihost).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --multihost).")
flags.DEFINE_integer("process_id", None, "This process's index (with --multihost).")


def initialize_distributed() -> None:
  """Connects the processes of a multi-host run; every device of every host joins the mesh."""
  import jax

  try:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  except ValueError as error:  # no cluster detected and the flags missing
    raise UserError(
        f"--multihost could not find its processes ({error}); outside a SLURM, Open MPI or "
        "Kubernetes job pass --coordinator_address=HOST:PORT, --num_processes=N and "
        "--process_id=I, or train on one host without --multihost.") from None


def default_workdir(config) -> str:
  return f"workdirs/{config.data.name}_{config.model}_seed{config.seed}"


def main() -> None:
  config = FLAGS.config
  workdir = FLAGS.workdir or default_workdir(config)
  logging.info("workdir: %s", workdir)
  loop.train_and_evaluate(config, workdir, coherence.training_scalars(config),
                          join=initialize_distributed if FLAGS.multihost else None)


if __name__ == "__main__":
  cli.run(main)
