"""Training settings shared by every experiment config (SPEC.md section 5).

Experiment configs in `configs/` start from `base_config()` and set their data set,
epochs and beta. The quick-start config lives in the package too (`quickstart_config`),
and this file is itself a config file (`get_config`): it is the default `--config` of
`python -m crmvae_jax.main` and `crmvae_jax.classifiers`, so they run, and take
`--config.FIELD=VALUE` overrides, on a fresh install from any directory.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  """Settings of the paper's section 6: Adam, learning rate 5e-4, batch 256."""
  config = ml_collections.ConfigDict()
  config.model = "crmvae"  # a key of crmvae_jax.objectives.OBJECTIVES
  config.beta = 1.0
  config.seed = 0  # parameters and sampling; the data order has its own data.seed
  config.latent_dim = 32
  config.batch_size = 256
  config.learning_rate = 5e-4
  config.num_epochs = 100
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.mixture_estimator = "stratified"  # or "sampled" (mmvae, mopoe, mmjsd)
  config.readings = readings_config()
  config.likelihood_weights = ml_collections.config_dict.placeholder(tuple)  # None: the rule
  config.log_every_steps = 100
  # Train steps per dispatch to the devices: the host's loop costs once per chunk (chunks
  # also end at every log, eval and checkpoint step). None: 1 on CPU, 100 on GPU/TPU
  # (crmvae_jax.train.steps_per_dispatch_for says why).
  config.steps_per_dispatch = ml_collections.config_dict.placeholder(int)
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 5000
  config.checkpoints_to_keep = 2
  config.eval_batches = 20  # test batches for the held-out loss during training
  config.figure_examples = 8  # columns of the cross-generation grid
  config.disable_progress_bar = False
  # Several replicas trained at once by one program (crmvae_jax.train.replica_grid): the
  # grid seeds x betas; empty means the single config.seed / config.beta.
  config.sweep = ml_collections.ConfigDict({"seeds": (), "betas": ()})
  config.eval = evaluation_config()
  return config


def readings_config() -> ml_collections.ConfigDict:
  """The choices the paper leaves open, each at the paper's reading.

  `crmvae_jax.objectives` (module docstring) says what each one changes and which
  reference implementation reads it otherwise; e.g. --config.readings.prior_expert=False
  trains without the prior expert in the PoEs, as MultiVae does.
  """
  return ml_collections.ConfigDict({
      "prior_expert": True,  # False: MultiVae
      "crmvae_reconstruction": "pi",  # "pi/2": MultiVae's 1/(2(M+1))
      "mvtcae_rescale_factor": "2pi",  # "pi/2": appendix H's text
      "mopoe_subset_prior": "every",  # "full_only": the MoPoE authors' code
      "mmjsd_prior_in_mixture": False,  # True: the MMJSD authors' code
  })


def evaluation_config() -> ml_collections.ConfigDict:
  """Settings of `python -m crmvae_jax.evaluate` and `crmvae_jax.classifiers`."""
  config = ml_collections.ConfigDict()
  # None: classifiers/<data.name> under the current directory (crmvae_jax.classifiers).
  config.classifier_dir = ml_collections.config_dict.placeholder(str)
  config.classifier_epochs = 5
  config.classifier_batch_size = 256
  config.classifier_learning_rate = 1e-3
  # Distinct training rows per classifier (a seeded random subset); None: all of them.
  config.classifier_max_train_examples = ml_collections.config_dict.placeholder(int)
  config.seed = 0  # classifier training and evaluation sampling
  config.batch_size = 250  # generation, classification and encoding at evaluation
  config.num_examples = -1  # test examples to evaluate; -1 = all
  config.num_prior_samples = 10000  # joint coherence
  # Training pairs of the logistic-regression latent probes (Table 5): 500, the
  # reference code's setting; more points flatter weak representations.
  config.probe_train_examples = 500
  config.fid = True
  config.fid_examples = 10000  # generated and real images per FID
  config.inception_weights = ml_collections.config_dict.placeholder(str)
  config.fid_by_subset_size = False  # FID for conditioning subsets of every size (Figure 2)
  config.fid_subsets_per_size = -1  # subsets drawn per size for that FID; -1 = all
  return config


def quickstart_config() -> ml_collections.ConfigDict:
  """CRMVAE on 4,500 real MNIST digits and their names, offline, in minutes on a CPU."""
  from crmvae_jax.data import quickstart

  config = base_config()
  config.data = quickstart.get_data_config()
  config.num_epochs = 30
  config.batch_size = 128
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.eval_batches = 4
  config.eval.classifier_epochs = 10
  config.eval.num_prior_samples = 1000
  config.eval.fid = False  # no Inception weights ship with any package
  return config


def get_config() -> ml_collections.ConfigDict:
  """This file as a config file (`--config=crmvae_jax/config.py`): the quick start."""
  return quickstart_config()
