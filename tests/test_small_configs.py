"""Every config file's `:small` setting (crmvae_jax.config.defaults.small): it loads, validates
and shrinks every data set the same way; unknown settings are one sentence; and loading
a config imports no tensorflow_datasets."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap

import pytest

from crmvae_jax.config import cli, validation

from crmvae_jax import sweeps
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.common.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(os.path.relpath(path, REPO)
                      for path in glob.glob(os.path.join(REPO, "configs", "*.py"))
                      if not path.endswith("__init__.py"))


def load(config_file: str, setting: str | None = None):
  """The config that --config=FILE[:SETTING] names, as the command lines load it."""
  return cli.load_config_file(os.path.join(REPO, config_file)
                              + (f":{setting}" if setting else ""))


def test_every_config_file_is_covered():
  assert [os.path.basename(path) for path in CONFIG_FILES] == [
      "arrays.py", "celeba.py", "cub.py", "mst.py", "mst_offline.py", "polymnist.py",
      "quickstart.py",
      "translated_polymnist.py"]


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_full_and_small_load_and_validate(config_file):
  default, full, small = load(config_file), load(config_file, "full"), load(config_file, "small")
  assert default.to_dict() == full.to_dict()
  for config in (full, small):
    validation.validate_config(config)
  assert small.data.name == full.data.name
  # The model is the same; only how long, on how much and how often changes.
  for field in ("model", "beta", "latent_dim", "seed", "learning_rate"):
    assert small[field] == full[field], field


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_small_is_smaller_than_full(config_file):
  full, small = load(config_file), load(config_file, "small")
  assert small.num_epochs == config_lib.SMALL_EPOCHS < full.num_epochs
  assert small.num_train_steps == full.num_train_steps == -1  # epochs decide the steps
  assert small.batch_size <= full.batch_size
  assert small.eval_batches <= full.eval_batches
  assert small.eval_every_steps <= full.eval_every_steps
  assert small.checkpoint_every_steps <= full.checkpoint_every_steps
  assert small.eval.classifier_epochs <= full.eval.classifier_epochs
  assert small.eval.coherence.prior_samples <= full.eval.coherence.prior_samples
  assert small.eval.fid.enabled is False
  fields = config_lib.data_size_fields(full.data)
  if "mnist_source" in full.data:  # PolyMNIST: the 4,500 + 500 embedded digits, offline
    assert (full.data.mnist_source, small.data.mnist_source) == ("tfds", "embedded")
    assert (small.data.max_train, small.data.max_test) == (None, None)
  elif fields is not None:
    train_field, test_field = fields
    assert (full.data[train_field], full.data[test_field]) == (None, None)  # whole splits
    assert small.data[train_field] == config_lib.SMALL_TRAIN_EXAMPLES
    assert small.data[test_field] == config_lib.SMALL_TEST_EXAMPLES
  else:  # the quick start: 4,500 digits already
    assert full.data.name == "quickstart" and small.data.to_dict() == full.data.to_dict()


def test_data_size_fields_of_every_naming():
  names = {os.path.basename(path): config_lib.data_size_fields(load(path).data)
           for path in CONFIG_FILES}
  assert names == {
      "arrays.py": ("max_train", "max_test"),
      "celeba.py": ("max_train", "max_test"), "cub.py": ("max_train", "max_test"),
      "mst.py": ("max_train_pairs", "max_test_pairs"),
      "mst_offline.py": ("max_train_pairs", "max_test_pairs"),
      "polymnist.py": ("max_train", "max_test"),
      "translated_polymnist.py": ("max_train", "max_test"), "quickstart.py": None}


def test_limit_data_keeps_smaller_sizes():
  config = load("configs/mst.py")
  config.data.max_train_pairs = 300
  config_lib.limit_data(config, 1000, 100)
  assert (config.data.max_train_pairs, config.data.max_test_pairs) == (300, 100)


def test_polymnist_small_keeps_its_values():
  """configs/polymnist.py:small as it was before every config had the setting."""
  small = load("configs/polymnist.py", "small")
  assert small.data.mnist_source == "embedded"
  assert (small.num_epochs, small.batch_size, small.log_every_steps, small.eval_every_steps,
          small.checkpoint_every_steps, small.eval_batches) == (5, 128, 20, 400, 400, 4)
  assert (small.eval.classifier_epochs, small.eval.coherence.prior_samples,
          small.eval.fid.enabled) == (5, 1000, False)
  assert (small.data.max_train, small.data.max_test, small.num_train_steps) == (None, None, -1)


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_unknown_setting_is_one_sentence(config_file):
  with pytest.raises(UserError) as error:
    load(config_file, "huge")
  message = str(error.value)
  assert message == (f"Unknown config setting 'huge' (--config=FILE.py:SETTING); use 'full', "
                     f"'small' or 'tiny', e.g. --config={config_file}:small.")


def test_the_package_config_file_takes_the_setting_too():
  assert config_lib.get_config("small").to_dict() == load("configs/quickstart.py",
                                                         "small").to_dict()
  with pytest.raises(UserError, match="'full', 'small' or 'tiny'"):
    config_lib.get_config("huge")


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_sweeps_small_setting_shrinks_every_data_set(config_file):
  full = load(config_file)
  small = sweeps.small_setting(full)
  assert small.num_train_steps == sweeps.SMALL_TRAIN_STEPS
  # Judged by evaluate's own classifiers, trained as `crmvae_jax.classifiers` trains them.
  for field in ("classifier_dir", "classifier_epochs", "classifier_max_train_examples"):
    assert small.eval[field] == full.eval[field], field
  assert small.eval.fid.enabled == full.eval.fid.enabled  # the sweep tables report FID when asked
  # The data of the small setting: shrunk, whatever the data set's size fields are named
  # (the quick start has none and is small already).
  assert small.data.to_dict() == config_lib.small(full).data.to_dict()
  assert (small.data.to_dict() == full.data.to_dict()) == (full.data.name == "quickstart")
  validation.validate_config(small)


@pytest.mark.slow  # a subprocess: a fresh interpreter's sys.modules
def test_loading_a_config_imports_no_tensorflow_datasets():
  program = textwrap.dedent(f"""
      import sys
      from crmvae_jax.config import cli
      for config_file in {CONFIG_FILES!r}:
        for setting in ("", ":small"):
          cli.load_config_file(config_file + setting)
          assert "tensorflow_datasets" not in sys.modules, config_file + setting
      print("ok")
  """)
  completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                             cwd=REPO, timeout=120)
  assert completed.returncode == 0, completed.stderr
  assert completed.stdout.strip() == "ok"


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_small_keeps_the_placeholder_types(config_file):
  """Unset fields keep their types, so --config.FIELD=VALUE overrides parse on `:small`."""
  full, small = load(config_file), load(config_file, "small")
  assert small.eval.get_type("classifier_dir") is str
  assert small.get_type("likelihood_weights") is tuple
  for key in full.data.keys():
    if small.data[key] is None:
      assert small.data.get_type(key) is full.data.get_type(key), key


def test_the_quick_start_trains_crmvae_10500_steps_with_the_text_weighted_8():
  """The quick start's budget and weights, chosen by experiments/paper/reproduce.py."""
  from crmvae_jax import data as data_lib
  from crmvae_jax.data import input_pipeline
  from crmvae_jax.data.modalities import modalities_of

  config = load("configs/quickstart.py")
  train_set, _ = data_lib.load(config.data)
  assert config.model == "crmvae" and config.readings.prior_expert  # the paper's reading
  assert config.num_epochs * input_pipeline.steps_per_epoch(
      len(train_set), config.batch_size) == 10500
  modalities = modalities_of(config.data.name, train_set, config.likelihood_weights)
  assert [(m.name, m.likelihood_weight) for m in modalities] == [("mnist", 1.0), ("text", 8.0)]
  assert [m.likelihood_weight for m in modalities_of(config.data.name, train_set)] == [
      1.0, 98.0]  # the size rule it replaces


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_tiny_is_the_tables_pipeline_check(config_file):
  full, tiny = load(config_file), load(config_file, "tiny")
  validation.validate_config(tiny)
  for field, value in config_lib.RUN_SIZES["tiny"].items():
    group, _, name = field.rpartition(".")
    assert (tiny[group] if group else tiny)[name] == value, field
  for field in ("model", "beta", "latent_dim", "seed", "learning_rate"):
    assert tiny[field] == full[field], field
  fields = config_lib.data_size_fields(full.data)
  if fields is not None and "mnist_source" not in full.data:
    assert tuple(tiny.data[field] for field in fields) == config_lib.DATA_CAPS["tiny"]


@pytest.mark.parametrize("size", sorted(config_lib.RUN_SIZES))
def test_every_run_size_sets_fields_that_exist_and_validates(size):
  # The one table of run sizes: a misspelt field would otherwise become a new, unread one.
  assert size in config_lib.DATA_CAPS
  for config_file in CONFIG_FILES:
    full = load(config_file)
    for field in config_lib.RUN_SIZES[size]:
      group, _, name = field.rpartition(".")
      assert name in (full[group] if group else full), (size, field)
    validation.validate_config(config_lib.resize(full, size))
  # Sweeps and experiments read their sizes from it; only full, small and tiny are
  # --config=FILE.py:SETTING choices.
  assert sweeps.small_setting(load(CONFIG_FILES[0])).to_dict() == config_lib.resize(
      load(CONFIG_FILES[0]), "sweep").to_dict()
  assert config_lib.SETTINGS == ("full", "small", "tiny")
