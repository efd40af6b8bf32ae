"""A user's own networks: found by import path (or registered in this process), built
with their recorded settings.

A modality whose network is 'custom:package.module.Encoder,package.module.Decoder'
(`networks.CUSTOM_PREFIX`) is built from those classes, with `latent_dim=D`, the
modality's sizes where the class declares them as fields, and the settings recorded
with the run (`Modality.encoder_options`, `decoder_options`). `crmvae_jax.fit` records a
class or an instance this way; a class that this process cannot import by its path (one
defined inside a function, or in another notebook) is found once `register`ed.
"""

from __future__ import annotations

import dataclasses
import importlib

from flax import linen as nn

from crmvae_jax.common.errors import UserError
from crmvae_jax.model import networks

# Classes by the path they are recorded by, for those that cannot be imported by it.
_REGISTERED: dict[str, type[nn.Module]] = {}
# The fields of a module instance that are not its settings.
_NOT_OPTIONS = ("parent", "name", "latent_dim")


def path_of(network_class: type[nn.Module]) -> str:
  """The name a user's own network class is recorded by: 'module.QualifiedName'."""
  return f"{network_class.__module__}.{network_class.__qualname__}"


def register(network_class: type[nn.Module], path: str | None = None) -> str:
  """Makes `network_class` findable by `path` (default `path_of(network_class)`) in this
  process, even where that path cannot be imported; returns the path."""
  if not (isinstance(network_class, type) and issubclass(network_class, nn.Module)):
    raise UserError(f"{network_class!r} is not a Flax module class; give a subclass of "
                    "flax.linen.Module (or an instance of one).")
  path = path or path_of(network_class)
  _REGISTERED[path] = network_class
  return path


def _import(path: str) -> type[nn.Module]:
  """The class at import path 'package.module.Class' (or 'module.Outer.Inner')."""
  if path in _REGISTERED:
    return _REGISTERED[path]
  parts = path.split(".")
  for split in range(len(parts) - 1, 0, -1):
    try:
      found = importlib.import_module(".".join(parts[:split]))
    except ImportError:
      continue
    try:
      for name in parts[split:]:
        found = getattr(found, name)
    except AttributeError:
      break
    return found
  raise UserError(f"The network class {path!r} cannot be imported in this process; define it "
                  "in an importable module, or pass the class again (crmvae_jax.load(..., "
                  "networks={modality: (Encoder, Decoder)})).")


def network_classes(name: str) -> tuple[type[nn.Module], type[nn.Module]]:
  """The (Encoder, Decoder) classes of network `name`: a `networks.NETWORKS` key, or a
  user's own modules named by import path after `networks.CUSTOM_PREFIX`."""
  if not name.startswith(networks.CUSTOM_PREFIX):
    return networks.NETWORKS[name].encoder, networks.NETWORKS[name].decoder
  return tuple(_import(path.strip()) for path in name[len(networks.CUSTOM_PREFIX):].split(","))


def options_of(module: nn.Module) -> dict:
  """The fields of a user's module instance that differ from its class's defaults (the
  settings `build` gives back), refused unless they are plain values that a run's
  config.json can hold (numbers, strings, booleans, None, lists and dicts of them)."""
  options = {}
  for field in dataclasses.fields(module):
    if field.name in _NOT_OPTIONS or not field.init:
      continue
    value = getattr(module, field.name)
    if not _plain(value):
      raise UserError(f"{type(module).__name__}.{field.name} is {value!r}, which a run's "
                      "config.json cannot record; give the module plain settings (numbers, "
                      "strings, tuples) or give its class and set the value as its default.")
    if field.default is dataclasses.MISSING or value != field.default:
      options[field.name] = value
  return options


def _plain(value) -> bool:
  if value is None or isinstance(value, (bool, int, float, str)):
    return True
  if isinstance(value, (list, tuple)):
    return all(_plain(v) for v in value)
  if isinstance(value, dict):
    return all(isinstance(k, str) and _plain(v) for k, v in value.items())
  return False


def build(network_class: type[nn.Module], latent_dim: int, options: dict | None = None,
          **sizes: int) -> nn.Module:
  """`networks.build`, refusing settings the class has no field for in one sentence."""
  fields = {field.name for field in dataclasses.fields(network_class)}
  unknown = sorted(set(options or {}) - fields)
  if unknown:
    raise UserError(f"{network_class.__name__} has no fields {unknown}; its fields are "
                    f"{sorted(fields - set(_NOT_OPTIONS))}.")
  return networks.build(network_class, latent_dim, options, **sizes)
