"""Checks that a config can train, before anything heavy runs.

`validate_config(config)` looks at the numbers and names alone (no data, no devices),
so a command line refuses a bad value in a fraction of a second, with one sentence
naming the flag to change. `check_split_sizes` needs the loaded splits' sizes and runs
right after the data is loaded, before anything is compiled.
"""

from __future__ import annotations

import os

import ml_collections

from crmvae_jax.common import field_checks

from crmvae_jax.config import runs
from crmvae_jax.common.errors import UserError

MIXTURE_ESTIMATORS = ("stratified", "sampled")
MAX_SEED = field_checks.MAX_SEED


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, with one sentence naming the flag, on a config that cannot train.

  Checks the model and mixture estimator names, the data set name, and that every
  number is finite and in range: beta and sweep.betas >= 0, learning rates > 0,
  sizes, intervals and counts >= 1, num_train_steps -1 or >= 1 (and num_epochs >= 1
  when it is -1), seeds integers in [0, 2^32), fractions in (0, 1), the eval.*
  settings likewise.

  Args:
    config: a training config (`crmvae_jax.config.defaults.base_config` and its data config).

  Raises:
    UserError: the first field that cannot train; the message names its flag.
  """
  # Imported here: objectives pulls in JAX, and the data package NumPy; neither is
  # needed to import this module.
  from crmvae_jax.model import models, objectives
  from crmvae_jax.data import registry

  field_checks.check_choice(config, "model", tuple(objectives.OBJECTIVES), "model")
  field_checks.check_choice(config, "mixture_estimator", MIXTURE_ESTIMATORS, "mixture estimator")
  field_checks.check_choice(config, "compute_dtype", models.COMPUTE_DTYPES, "compute dtype")
  field_checks.check_choice(config, "mmvae_plus_estimator", objectives.MMVAE_PLUS_ESTIMATORS,
                            "MMVAE+ gradient estimator")
  field_checks.check_choice(config, "data.name", registry.names(), "data set")
  for name, choices in objectives.READINGS.items():
    field_checks.check_choice(config, f"readings.{name}", choices, "reading")
  field_checks.check_number(config, "beta", 0.0, float32=True)
  field_checks.check_numbers(config, "sweep.betas", 0.0, example="(0.5,1.0,2.0)", distinct=True)
  field_checks.check_number(config, "seed", 0, integer=True, maximum=MAX_SEED)
  field_checks.check_numbers(config, "sweep.seeds", 0, integer=True, example="(0,1,2)", distinct=True)
  field_checks.check_number(config, "learning_rate", 0.0, strict=True, float32=True)
  field_checks.check_numbers(config, "likelihood_weights", 0.0, example="(1.0,3.0)")
  weights = field_checks.get(config, "likelihood_weights")
  if isinstance(weights, (tuple, list)) and weights and not any(weights):
    raise UserError("--config.likelihood_weights are all zero, so no modality would be "
                    "reconstructed; give at least one a positive weight, e.g. "
                    "--config.likelihood_weights='(1.0,3.0)'.")
  field_checks.check_number(config, "jmvae_alpha", 0.0, float32=True)
  missing_ratio = field_checks.get(config, "data.missing_ratio")
  if (field_checks.get(config, "model") == "jmvae" and field_checks.is_number(missing_ratio)
      and missing_ratio > 0):
    raise UserError("--config.model=jmvae's joint encoder reads every modality, so it cannot "
                    "train with --config.data.missing_ratio; set it to 0 or use another model.")
  field_checks.check_numbers(config, "private_dims", 0, integer=True, example="(8,8)")
  private_dims = field_checks.get(config, "private_dims")
  model = field_checks.get(config, "model")
  if (isinstance(private_dims, (tuple, list)) and any(private_dims)
      and not objectives.MODELS[model].private):
    with_private = [name for name, entry in objectives.MODELS.items() if entry.private]
    raise UserError(f"--config.model={model} has no private latents, but "
                    f"--config.private_dims={tuple(private_dims)} asks for them; use one of "
                    f"{', '.join(with_private)}, or leave --config.private_dims out.")
  if (model == "mmvae_plus"
      and not (isinstance(private_dims, (tuple, list)) and any(private_dims))):
    raise UserError("--config.model=mmvae_plus has private latents by definition; give "
                    "each modality its size, e.g. --config.private_dims='(8,8)'.")
  for field in ("latent_dim", "batch_size", "mmvae_plus_samples", "log_every_steps",
                "eval_every_steps", "checkpoint_every_steps", "checkpoints_to_keep", "eval_batches",
                "figure_examples"):
    field_checks.check_number(config, field, 1, integer=True)
  # None: chosen for the platform (crmvae_jax.training.step.steps_per_dispatch_for).
  field_checks.check_number(config, "steps_per_dispatch", 1, integer=True, optional=True)
  field_checks.check_number(config, "num_train_steps", 1, integer=True, allowed=(-1,))
  if field_checks.get(config, "num_train_steps") == -1:
    # Epochs decide the length only when no step count is given.
    field_checks.check_number(config, "num_epochs", 1, integer=True)
  _check_data(config)
  _check_eval(config)


def _check_data(config: ml_collections.ConfigDict) -> None:
  """The data fields several data configs share, then the loader's own checks of the
  fields only its data set has (`crmvae_jax.data.check_fields`)."""
  from crmvae_jax import data as data_lib

  field_checks.check_choice(config, "data.text_redraw", (False, True), "text_redraw value")
  field_checks.check_number(config, "data.seed", 0, integer=True, maximum=MAX_SEED)
  field_checks.check_number(config, "data.test_fraction", 0.0, strict=True, maximum=1.0)
  field_checks.check_number(config, "data.missing_ratio", 0.0)
  missing_ratio = field_checks.get(config, "data.missing_ratio")
  if field_checks.is_number(missing_ratio) and missing_ratio >= 1:
    raise UserError("--config.data.missing_ratio must be below 1 (the probability that a "
                    f"modality of a pair is missing); got {missing_ratio}.")
  if field_checks.get(config, "data.test_fraction") == 1.0:
    raise UserError("--config.data.test_fraction must be below 1 (some examples must be left "
                    "to train on); got 1.0.")
  for field in ("max_train", "max_test", "max_train_pairs", "max_test_pairs"):
    field_checks.check_number(config, f"data.{field}", 1, integer=True, optional=True)
  data_lib.check_fields(config.data)


def _check_eval(config: ml_collections.ConfigDict) -> None:
  """The evaluation and classifier settings (`crmvae_jax.config.defaults.evaluation_config`)."""
  for field in ("classifier_epochs", "classifier_batch_size", "batch_size",
                "coherence.prior_samples", "latent.train_examples",
                "ex_post_sampler.components", "ex_post_sampler.examples"):
    field_checks.check_number(config, f"eval.{field}", 1, integer=True)
  field_checks.check_number(config, "eval.classifier_learning_rate", 0.0, strict=True, float32=True)
  field_checks.check_number(config, "eval.classifier_max_train_examples", 1, integer=True, optional=True)
  field_checks.check_number(config, "eval.seed", 0, integer=True, maximum=MAX_SEED)
  field_checks.check_number(config, "eval.num_examples", 1, integer=True, allowed=(-1,))
  # A Frechet distance needs a covariance: at least two images.
  field_checks.check_number(config, "eval.fid.examples", 2, integer=True)
  field_checks.check_number(config, "eval.fid.subsets_per_size", 1, integer=True, allowed=(-1,))
  field_checks.check_number(config, "eval.log_likelihood.samples", 0, integer=True)
  field_checks.check_number(config, "eval.log_likelihood.examples", 1, integer=True)
  field_checks.check_choice(config, "eval.log_likelihood.subsets", (False, True),
                            "log_likelihood.subsets value")


def check_split_sizes(config: ml_collections.ConfigDict, num_train: int, num_test: int) -> None:
  """Refuses a batch that the loaded splits cannot fill, before anything compiles.

  A training batch larger than the training split would never be formed (the input
  pipeline drops the last incomplete batch of an epoch), and the held-out loss is
  computed on full test batches of the same size.

  Args:
    config: the training config.
    num_train: examples in the training split.
    num_test: examples in the test split.

  Raises:
    UserError: naming --config.batch_size and the largest size that works.
  """
  data = field_checks.get(config, "data.name")
  batch_size = config.batch_size
  if batch_size > num_train:
    raise UserError(f"--config.batch_size={batch_size} is larger than the {num_train} "
                    f"training examples of {data}; pass --config.batch_size={num_train} or less.")
  if batch_size > num_test:
    raise UserError(f"--config.batch_size={batch_size} is larger than the {num_test} test "
                    f"examples of {data}, so no test batch can be formed; pass "
                    f"--config.batch_size={num_test} or less.")


def check_saved_config(workdir: str) -> None:
  """Refuses a run whose saved config.json holds a value training would refuse (edited
  by hand or damaged), naming the file to correct: the --config.FIELD that
  `validate_config` names cannot mend a run's own file.

  A workdir without a saved config passes (a new run).

  Raises:
    UserError: the saved config is unreadable or holds a value out of range or of the
      wrong type.
  """
  path = runs.config_path(workdir)
  if not os.path.isfile(path):
    return
  try:
    validate_config(runs.read_config(path))
  except UserError as error:
    problem = str(error).rstrip(".")
    raise UserError(f"{path}, the run's saved config, holds a value that cannot be used "
                    f"({problem}); correct it in that file, or train the run again in another "
                    "--workdir.") from None
