"""Checks that a config can train, before anything heavy runs.

`validate_config(config)` looks at the numbers and names alone (no data, no devices),
so a command line refuses a bad value in a fraction of a second, with one sentence
naming the flag to change. `check_split_sizes` needs the loaded splits' sizes and runs
right after the data is loaded, before anything is compiled.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import ml_collections
import numpy as np

from crmvae_jax.errors import UserError

MIXTURE_ESTIMATORS = ("stratified", "sampled")
# Seeds become uint32 PRNG keys.
MAX_SEED = 2**32 - 1
# Learning rates, betas and likelihood weights become float32 on the devices; a larger
# value is finite in Python but infinite there.
MAX_FLOAT32 = float(np.finfo(np.float32).max)
_ABSENT = object()


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  """The value of a dotted field, or _ABSENT (configs saved by older runs lack some)."""
  value = config
  for name in field.split("."):
    if not isinstance(value, (ml_collections.ConfigDict, dict)) or name not in value:
      return _ABSENT
    value = value[name]
  return value


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_number(config, field: str, minimum: float, *, strict: bool = False,
                  maximum: float | None = None, integer: bool = False,
                  optional: bool = False, allowed: tuple = (), float32: bool = False) -> None:
  """Raises UserError unless `field` is a finite number in range (or an allowed value).

  Args:
    config: the config.
    field: dotted field name; an absent field passes.
    minimum: the least value, excluded when `strict`.
    strict: whether `minimum` itself is refused.
    maximum: the greatest value (included), if any.
    integer: whether the value must be an int.
    optional: whether None (an unset placeholder) passes.
    allowed: special values that pass too, e.g. -1 meaning 'all'.
    float32: whether the value must also be finite as a float32 (at most `MAX_FLOAT32`).
  """
  value = _get(config, field)
  if value is _ABSENT or (optional and value is None) or (_is_number(value) and value in allowed):
    return
  kind = "an integer" if integer else "a finite number"
  bounds = f"> {minimum:g}" if strict else f">= {minimum:g}"
  if maximum is None and float32:
    maximum = MAX_FLOAT32
  if maximum == MAX_FLOAT32:
    # Named only to a value beyond it: every other refusal reads as before.
    if _is_number(value) and math.isfinite(value) and value > maximum:
      bounds += f" and <= {maximum:g} (the largest float32)"
  elif maximum is not None:
    bounds += f" and <= {maximum:g}"
  special = "".join(f" (or {special:g})" for special in allowed)
  valid = (_is_int(value) if integer else _is_number(value)) and math.isfinite(value)
  valid = valid and (value > minimum if strict else value >= minimum)
  valid = valid and (maximum is None or value <= maximum)
  if not valid:
    raise UserError(f"--config.{field} must be {kind} {bounds}{special}; got {value!r}.")


def _check_numbers(config, field: str, minimum: float, *, integer: bool = False,
                   example: str, distinct: bool = False) -> None:
  """Raises UserError unless `field` is None or a tuple of valid numbers (`_check_number`).

  Args:
    config: the config.
    field: dotted field name; an absent field passes.
    minimum: the least value.
    integer: integers up to `MAX_SEED`; else numbers finite in float32.
    example: a valid value for the message.
    distinct: whether a repeated value is refused (a sweep's seeds and betas).
  """
  values = _get(config, field)
  if values is _ABSENT or values is None:
    return
  kind = "integers" if integer else "finite numbers"
  maximum = MAX_SEED if integer else MAX_FLOAT32
  valid = isinstance(values, (tuple, list)) and all(
      (_is_int(v) if integer else _is_number(v)) and math.isfinite(v) and v >= minimum
      and v <= maximum for v in values)
  if not valid:
    raise UserError(f"--config.{field} must be a tuple of {kind} >= {minimum:g} and <= "
                    f"{maximum:g}, e.g. --config.{field}='{example}'; got {values!r}.")
  repeated = sorted({v for v in values if list(values).count(v) > 1})
  if distinct and repeated:
    raise UserError(f"--config.{field} repeats {', '.join(map(str, repeated))}, which would "
                    f"train identical replicas; list each value once, e.g. "
                    f"--config.{field}='{example}'.")


def _check_choice(config, field: str, choices, what: str) -> None:
  value = _get(config, field)
  if value is _ABSENT or value in choices:
    return
  close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
  hint = f"; did you mean --config.{field}={close[0]}?" if close else "."
  raise UserError(f"Unknown {what} {value!r} (--config.{field}); known {what}s: "
                  f"{', '.join(map(str, choices))}{hint}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, with one sentence naming the flag, on a config that cannot train.

  Checks the model and mixture estimator names, the data set name, and that every
  number is finite and in range: beta and sweep.betas >= 0, learning rates > 0,
  sizes, intervals and counts >= 1, num_train_steps -1 or >= 1 (and num_epochs >= 1
  when it is -1), seeds integers in [0, 2^32), fractions in (0, 1), the eval.*
  settings likewise.

  Args:
    config: a training config (`crmvae_jax.config.base_config` and its data config).

  Raises:
    UserError: the first field that cannot train; the message names its flag.
  """
  # Imported here: objectives pulls in JAX, and the data package NumPy; neither is
  # needed to import this module.
  from crmvae_jax.core import models, objectives
  from crmvae_jax.data import registry

  _check_choice(config, "model", tuple(objectives.OBJECTIVES), "model")
  _check_choice(config, "mixture_estimator", MIXTURE_ESTIMATORS, "mixture estimator")
  _check_choice(config, "compute_dtype", models.COMPUTE_DTYPES, "compute dtype")
  _check_choice(config, "data.name", registry.names(), "data set")
  for name, choices in objectives.READINGS.items():
    _check_choice(config, f"readings.{name}", choices, "reading")
  _check_number(config, "beta", 0.0, float32=True)
  _check_numbers(config, "sweep.betas", 0.0, example="(0.5,1.0,2.0)", distinct=True)
  _check_number(config, "seed", 0, integer=True, maximum=MAX_SEED)
  _check_numbers(config, "sweep.seeds", 0, integer=True, example="(0,1,2)", distinct=True)
  _check_number(config, "learning_rate", 0.0, strict=True, float32=True)
  _check_numbers(config, "likelihood_weights", 0.0, example="(1.0,3.0)")
  weights = _get(config, "likelihood_weights")
  if isinstance(weights, (tuple, list)) and weights and not any(weights):
    raise UserError("--config.likelihood_weights are all zero, so no modality would be "
                    "reconstructed; give at least one a positive weight, e.g. "
                    "--config.likelihood_weights='(1.0,3.0)'.")
  for field in ("latent_dim", "batch_size", "log_every_steps", "eval_every_steps",
                "checkpoint_every_steps", "checkpoints_to_keep", "eval_batches",
                "figure_examples"):
    _check_number(config, field, 1, integer=True)
  # None: chosen for the platform (crmvae_jax.training.step.steps_per_dispatch_for).
  _check_number(config, "steps_per_dispatch", 1, integer=True, optional=True)
  _check_number(config, "num_train_steps", 1, integer=True, allowed=(-1,))
  if _get(config, "num_train_steps") == -1:
    # Epochs decide the length only when no step count is given.
    _check_number(config, "num_epochs", 1, integer=True)
  _check_data(config)
  _check_eval(config)


def _check_data(config: ml_collections.ConfigDict) -> None:
  """The data fields that some data configs have (crmvae_jax/data/*.get_data_config)."""
  _check_choice(config, "data.text_redraw", (False, True), "text_redraw value")
  _check_number(config, "data.seed", 0, integer=True, maximum=MAX_SEED)
  _check_number(config, "data.test_fraction", 0.0, strict=True, maximum=1.0)
  _check_number(config, "data.missing_ratio", 0.0)
  if _is_number(_get(config, "data.missing_ratio")) and _get(config, "data.missing_ratio") >= 1:
    raise UserError("--config.data.missing_ratio must be below 1 (the probability that a "
                    f"modality of a pair is missing); got {_get(config, 'data.missing_ratio')}.")
  if _get(config, "data.test_fraction") == 1.0:
    raise UserError("--config.data.test_fraction must be below 1 (some examples must be left "
                    "to train on); got 1.0.")
  for field in ("max_train", "max_test", "max_train_pairs", "max_test_pairs"):
    _check_number(config, f"data.{field}", 1, integer=True, optional=True)
  for field in ("multiplication", "max_per_digit", "num_modalities", "text_length",
                "max_caption_length", "min_word_count", "judge_renders"):
    _check_number(config, f"data.{field}", 1, integer=True)


def _check_eval(config: ml_collections.ConfigDict) -> None:
  """The evaluation and classifier settings (`crmvae_jax.config.evaluation_config`)."""
  for field in ("classifier_epochs", "classifier_batch_size", "batch_size",
                "num_prior_samples", "probe_train_examples"):
    _check_number(config, f"eval.{field}", 1, integer=True)
  _check_number(config, "eval.classifier_learning_rate", 0.0, strict=True, float32=True)
  _check_number(config, "eval.classifier_max_train_examples", 1, integer=True, optional=True)
  _check_number(config, "eval.seed", 0, integer=True, maximum=MAX_SEED)
  _check_number(config, "eval.num_examples", 1, integer=True, allowed=(-1,))
  # A Frechet distance needs a covariance: at least two images.
  _check_number(config, "eval.fid_examples", 2, integer=True)
  _check_number(config, "eval.fid_subsets_per_size", 1, integer=True, allowed=(-1,))
  _check_number(config, "eval.log_likelihood_samples", 0, integer=True)
  _check_number(config, "eval.log_likelihood_examples", 1, integer=True)
  _check_choice(config, "eval.log_likelihood_subsets", (False, True), "log_likelihood_subsets value")


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
  data = _get(config, "data.name")
  batch_size = config.batch_size
  if batch_size > num_train:
    raise UserError(f"--config.batch_size={batch_size} is larger than the {num_train} "
                    f"training examples of {data}; pass --config.batch_size={num_train} or less.")
  if batch_size > num_test:
    raise UserError(f"--config.batch_size={batch_size} is larger than the {num_test} test "
                    f"examples of {data}, so no test batch can be formed; pass "
                    f"--config.batch_size={num_test} or less.")
