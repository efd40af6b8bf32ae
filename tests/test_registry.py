"""The data set registry: every entry points at things that exist, and it is the only list
of data sets (validation, loading and modalities all read it)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import types
import typing

import ml_collections
import numpy as np
import pytest

from crmvae_jax.config import cli, validation
from crmvae_jax.model import networks
from crmvae_jax.evaluation import classifier_networks
from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.data import registry
from crmvae_jax.data.base import Loader, MultimodalDataset
from crmvae_jax.common.errors import UserError
from crmvae_jax.data.modalities import modalities_of

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = list(registry.DATA_SETS)


def _dataset(shapes: dict[str, tuple[int, ...]]) -> MultimodalDataset:
  """Four pairs of zeros: uint8 images, int32 texts (a shape of one axis)."""
  arrays = {name: np.zeros((4, *shape), np.int32 if len(shape) == 1 else np.uint8)
            for name, shape in shapes.items()}
  return MultimodalDataset(tuple(arrays), arrays, {name: np.arange(4) for name in arrays},
                           np.zeros(4, np.int64))


def test_the_registry_holds_every_data_set():
  assert NAMES == ["quickstart", "mst", "mst_offline", "arrays", "polymnist",
                   "translated_polymnist", "cub", "celeba"]


@pytest.mark.parametrize("name", NAMES)
def test_its_loader_module_exists_and_declares_its_loader(name):
  module = registry.DATA_SETS[name].loader
  assert importlib.util.find_spec(module) is not None
  loader = importlib.import_module(module).LOADER
  assert isinstance(loader, Loader) and callable(loader.load)
  # Every hook it declares is the module's own function of that name.
  for field in dataclasses.fields(Loader):
    hook = getattr(loader, field.name)
    assert hook is None or hook is getattr(importlib.import_module(module), field.name)


@pytest.mark.parametrize("name", NAMES)
def test_its_networks_exist(name):
  data_set = registry.DATA_SETS[name]
  # Every modality is listed, or all share one network, or the data names its own: one.
  assert sum([bool(data_set.networks), data_set.shared_network is not None,
              data_set.networks_from_data]) == 1
  keys = {*data_set.networks.values(), data_set.shared_network} - {None}
  assert keys <= set(networks.NETWORKS) and keys <= set(classifier_networks.CLASSIFIERS)
  assert bool(keys) != data_set.networks_from_data


@pytest.mark.parametrize("name", NAMES)
def test_its_config_file_runs_it(name):
  config_file = registry.DATA_SETS[name].config_file
  if config_file is None:
    # The package's default config, which a command runs with no --config.
    config = cli.load_config_file(cli.QUICKSTART)
  else:
    assert not os.path.isabs(config_file)
    path = os.path.join(REPOSITORY, config_file)
    assert os.path.isfile(path)
    config = cli.load_config_file(path)
  assert config.data.name == name
  validation.validate_config(config)


def test_only_the_default_data_set_has_no_config_file():
  assert registry.names(config_file=None) == ("quickstart",)


@pytest.mark.parametrize("name", NAMES)
def test_its_evaluation_is_known(name):
  assert registry.DATA_SETS[name].evaluation in typing.get_args(registry.Evaluation)


def test_names_select_by_field_in_registry_order():
  assert registry.names() == tuple(NAMES)
  assert registry.names(evaluation="image_text") == ("cub", "celeba")
  assert registry.names(evaluation="digits") == (
      "quickstart", "mst", "mst_offline", "arrays", "polymnist", "translated_polymnist")
  assert registry.names(digit_name_text=True) == ("quickstart", "mst", "mst_offline")
  assert registry.names(attributes=True) == ("celeba",)
  assert registry.names(paper_tables=True) == ("mst", "mst_offline")
  assert registry.names(evaluation="image_text", attributes=True) == ("celeba",)
  with pytest.raises(AttributeError):
    registry.names(no_such_field=True)


def test_the_paper_figures():
  figures = {name: data_set.paper_figure for name, data_set in registry.DATA_SETS.items()
             if data_set.paper_figure}
  assert figures == {"polymnist": "Figure 2", "cub": "Figure 3", "celeba": "Figure 4"}


def test_modalities_take_their_networks_from_the_registry():
  mst = modalities_of("mst", _dataset({"mnist": (28, 28, 1), "svhn": (32, 32, 3), "text": (8,)}))
  assert [m.network for m in mst] == ["mnist", "svhn", "mst_text"]
  assert [m.abbreviation for m in mst] == ["M", "S", "T"]
  poly = modalities_of("translated_polymnist",
                       _dataset({f"m{m}": (28, 28, 3) for m in range(3)}))
  assert [m.network for m in poly] == ["polymnist"] * 3
  assert [m.abbreviation for m in poly] == ["M0", "M1", "M2"]


def test_a_new_entry_is_all_a_data_set_needs(monkeypatch):
  # The registry is the only list: one entry makes a name valid, loadable and modelled.
  loaded = (object(), object())  # (train, test)
  monkeypatch.setitem(sys.modules, "fake_loader",
                      types.SimpleNamespace(LOADER=Loader(load=lambda _: loaded)))
  monkeypatch.setitem(registry.DATA_SETS, "fake", registry.DataSet(
      loader="fake_loader", evaluation="digits", config_file="configs/fake.py",
      networks={"image": "svhn", "text": "char_text"}))
  config = config_lib.quickstart_config()
  config.data.name = "fake"
  validation.validate_config(config)
  assert data_lib.load(config.data) == loaded
  fake = modalities_of("fake", _dataset({"image": (32, 32, 3), "text": (16,)}))
  assert [m.network for m in fake] == ["svhn", "char_text"]
  # Hooks it does not declare have their defaults: the name alone, no checks of its own.
  assert data_lib.identity(config.data) == {"name": "fake"}
  data_lib.check_fields(config.data)


def test_a_loader_module_without_its_loader_is_named(monkeypatch):
  monkeypatch.setitem(sys.modules, "fake_loader", types.SimpleNamespace(load=lambda _: None))
  monkeypatch.setitem(registry.DATA_SETS, "fake", registry.DataSet(
      loader="fake_loader", evaluation="digits", config_file="configs/fake.py"))
  with pytest.raises(TypeError, match="fake_loader defines no LOADER"):
    data_lib.load(ml_collections.ConfigDict({"name": "fake", "seed": 0}))


def test_unknown_data_sets_name_the_flag_and_every_known_one():
  known = ", ".join(registry.DATA_SETS)
  with pytest.raises(UserError) as error:
    data_lib.load(ml_collections.ConfigDict({"name": "msts"}))
  assert str(error.value) == (
      f"Unknown data set 'msts' (--config.data.name); known: {known}.")
  config = config_lib.quickstart_config()
  config.data.name = "msts"
  with pytest.raises(UserError) as error:
    validation.validate_config(config)
  assert str(error.value) == (
      f"Unknown data set 'msts' (--config.data.name); known data sets: {known}; did you "
      "mean --config.data.name=mst?")
  with pytest.raises(ValueError, match=re.escape(f"Unknown data set 'msts'; known: {known}.")):
    modalities_of("msts", _dataset({"mnist": (28, 28, 1)}))


@pytest.mark.slow  # a subprocess
def test_reading_the_registry_or_a_config_imports_no_tensorflow_datasets():
  code = ("import sys\n"
          "from crmvae_jax.config import validation\n"
          "from crmvae_jax.config import defaults as config_lib\n"
          "from crmvae_jax.data import registry\n"
          "import importlib\n"
          "for data_set in registry.DATA_SETS.values():\n"
          "  importlib.import_module(data_set.loader)\n"
          "validation.validate_config(config_lib.get_config())\n"
          "assert 'tensorflow_datasets' not in sys.modules, 'tensorflow_datasets imported'\n")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPOSITORY,
                 env={**os.environ, "PYTHONPATH": REPOSITORY, "JAX_PLATFORMS": "cpu"})
