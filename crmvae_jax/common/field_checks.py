"""Checks of config fields by dotted name, each refusal one sentence naming the flag.

The helpers of `crmvae_jax.config.validation` and of the data loaders' own `check_config`
(a loader checks the fields only its data set has: `crmvae_jax.data.check_fields`).
They read a config (or a dict, e.g. `{"data": config_data}`) by dotted name; an
absent field passes, since configs saved by older runs lack some.
"""

from __future__ import annotations

import collections
import difflib
import math
from typing import Any

import ml_collections
import numpy as np

from crmvae_jax.common.errors import UserError

# Seeds become uint32 PRNG keys.
MAX_SEED = 2**32 - 1
# Learning rates, betas and likelihood weights become float32 on the devices; a larger
# value is finite in Python but infinite there.
MAX_FLOAT32 = float(np.finfo(np.float32).max)
ABSENT = object()  # what `get` returns for a field the config lacks


def get(config: ml_collections.ConfigDict, field: str) -> Any:
  """The value of a dotted field, or ABSENT (configs saved by older runs lack some)."""
  value = config
  for name in field.split("."):
    if not isinstance(value, (ml_collections.ConfigDict, dict)) or name not in value:
      return ABSENT
    value = value[name]
  return value


def is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_number(config, field: str, minimum: float, *, strict: bool = False,
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
  value = get(config, field)
  if value is ABSENT or (optional and value is None) or (is_number(value) and value in allowed):
    return
  kind = "an integer" if integer else "a finite number"
  bounds = f"> {minimum:g}" if strict else f">= {minimum:g}"
  if maximum is None and float32:
    maximum = MAX_FLOAT32
  if maximum == MAX_FLOAT32:
    # Named only to a value beyond it: every other refusal reads as before.
    if is_number(value) and math.isfinite(value) and value > maximum:
      bounds += f" and <= {maximum:g} (the largest float32)"
  elif maximum is not None:
    bounds += f" and <= {maximum:g}"
  special = "".join(f" (or {special:g})" for special in allowed)
  valid = (is_int(value) if integer else is_number(value)) and math.isfinite(value)
  valid = valid and (value > minimum if strict else value >= minimum)
  valid = valid and (maximum is None or value <= maximum)
  if not valid:
    raise UserError(f"--config.{field} must be {kind} {bounds}{special}; got {value!r}.")


def check_numbers(config, field: str, minimum: float, *, integer: bool = False,
                   example: str, distinct: bool = False) -> None:
  """Raises UserError unless `field` is None or a tuple of valid numbers (`check_number`).

  Args:
    config: the config.
    field: dotted field name; an absent field passes.
    minimum: the least value.
    integer: integers up to `MAX_SEED`; else numbers finite in float32.
    example: a valid value for the message.
    distinct: whether a repeated value is refused (a sweep's seeds and betas).
  """
  values = get(config, field)
  if values is ABSENT or values is None:
    return
  kind = "integers" if integer else "finite numbers"
  maximum = MAX_SEED if integer else MAX_FLOAT32
  valid = isinstance(values, (tuple, list)) and all(
      (is_int(v) if integer else is_number(v)) and math.isfinite(v) and v >= minimum
      and v <= maximum for v in values)
  if not valid:
    raise UserError(f"--config.{field} must be a tuple of {kind} >= {minimum:g} and <= "
                    f"{maximum:g}, e.g. --config.{field}='{example}'; got {values!r}.")
  if not distinct:
    return
  # Counted in one pass: a sweep of a million seeds is checked in a second.
  repeated = sorted(value for value, count in collections.Counter(values).items() if count > 1)
  if repeated:
    shown = ", ".join(map(str, repeated[:5])) + (
        f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
    raise UserError(f"--config.{field} repeats {shown}, which would "
                    f"train identical replicas; list each value once, e.g. "
                    f"--config.{field}='{example}'.")


def check_choice(config, field: str, choices, what: str) -> None:
  value = get(config, field)
  if value is ABSENT or value in choices:
    return
  close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
  hint = f"; did you mean --config.{field}={close[0]}?" if close else "."
  raise UserError(f"Unknown {what} {value!r} (--config.{field}); known {what}s: "
                  f"{', '.join(map(str, choices))}{hint}")
