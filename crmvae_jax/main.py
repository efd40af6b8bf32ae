"""Trains a multimodal VAE.

    python -m crmvae_jax.main --config=configs/mst.py --workdir=workdirs/mst_crmvae \
        --config.model=mvtcae --config.beta=1.0 --config.seed=1

With no --config it trains CRMVAE on the offline quick-start data
(configs/quickstart.py). Any config field can be overridden with --config.FIELD=VALUE.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from crmvae_jax import config as config_lib
from crmvae_jax import train
from crmvae_jax.data import DataUnavailableError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file; default: the offline quick start.", lock_config=True)
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

  jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                             num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)


def default_workdir(config) -> str:
  return f"workdirs/{config.data.name}_{config.model}_seed{config.seed}"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  if FLAGS.multihost:
    initialize_distributed()
  config = FLAGS.config if FLAGS.config is not None else config_lib.quickstart_config()
  workdir = FLAGS.workdir or default_workdir(config)
  logging.info("workdir: %s", workdir)
  try:
    train.train_and_evaluate(config, workdir)
  except (DataUnavailableError, ValueError) as error:
    # A missing data set or a bad config is the user's to fix: one sentence, no traceback.
    sys.exit(f"error: {error}")


if __name__ == "__main__":
  app.run(main)
