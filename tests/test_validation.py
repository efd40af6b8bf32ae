"""Config validation: every value that cannot train is refused, naming its flag."""

from __future__ import annotations

import math

import pytest

from configs import celeba, cub, mst, mst_offline, polymnist, translated_polymnist
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.config import validation
from crmvae_jax.common.errors import UserError

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("config", [
    config_lib.quickstart_config(), mst.get_config(), polymnist.get_config(),
    polymnist.get_config("small"), translated_polymnist.get_config(), cub.get_config(),
    celeba.get_config()], ids=["quickstart", "mst", "polymnist", "polymnist_small",
                               "translated_polymnist", "cub", "celeba"])
def test_every_shipped_config_is_valid(config):
  validation.validate_config(config)


@pytest.mark.parametrize("field, value, flag", [
    ("beta", NAN, "--config.beta"),
    ("beta", INF, "--config.beta"),
    ("beta", -0.5, "--config.beta"),
    ("sweep.betas", (1.0, NAN), "--config.sweep.betas"),
    ("sweep.betas", ("(1.0,nan)",), "--config.sweep.betas"),  # what the flag parser leaves
    ("sweep.betas", (-1.0,), "--config.sweep.betas"),
    ("sweep.seeds", (0, 1.5), "--config.sweep.seeds"),
    ("sweep.seeds", ("0,1",), "--config.sweep.seeds"),
    ("sweep.seeds", (-1,), "--config.sweep.seeds"),
    ("seed", -1, "--config.seed"),
    ("seed", 2**32, "--config.seed"),
    ("learning_rate", NAN, "--config.learning_rate"),
    ("learning_rate", 0.0, "--config.learning_rate"),
    ("learning_rate", -1e-3, "--config.learning_rate"),
    ("likelihood_weights", (1.0, NAN), "--config.likelihood_weights"),
    # Finite in Python, infinite as the float32 the devices compute in.
    ("learning_rate", 1e39, "--config.learning_rate"),
    ("beta", 1e39, "--config.beta"),
    ("sweep.betas", (1.0, 1e39), "--config.sweep.betas"),
    ("likelihood_weights", (1e39, 1.0), "--config.likelihood_weights"),
    ("eval.classifier_learning_rate", 1e39, "--config.eval.classifier_learning_rate"),
    ("likelihood_weights", (0.0, 0.0), "--config.likelihood_weights"),
    ("sweep.seeds", (0, 1, 0), "--config.sweep.seeds"),
    ("sweep.betas", (1.0, 1.0), "--config.sweep.betas"),
    ("latent_dim", -16, "--config.latent_dim"),
    ("latent_dim", 0, "--config.latent_dim"),
    ("batch_size", 0, "--config.batch_size"),
    ("log_every_steps", 0, "--config.log_every_steps"),
    ("eval_every_steps", 0, "--config.eval_every_steps"),
    ("checkpoint_every_steps", 0, "--config.checkpoint_every_steps"),
    ("checkpoints_to_keep", 0, "--config.checkpoints_to_keep"),
    ("eval_batches", 0, "--config.eval_batches"),
    ("figure_examples", 0, "--config.figure_examples"),
    ("steps_per_dispatch", 0, "--config.steps_per_dispatch"),
    ("num_epochs", 0, "--config.num_epochs"),
    ("num_train_steps", 0, "--config.num_train_steps"),
    ("num_train_steps", -5, "--config.num_train_steps"),
    ("model", "crmvea", "--config.model=crmvae"),  # names the closest model
    ("mixture_estimator", "exact", "--config.mixture_estimator"),
    ("compute_dtype", "float16", "--config.compute_dtype"),
    ("data.name", "msts", "--config.data.name"),
    ("data.test_fraction", 0.0, "--config.data.test_fraction"),
    ("data.test_fraction", 1.0, "--config.data.test_fraction"),
    ("data.test_fraction", NAN, "--config.data.test_fraction"),
    ("data.seed", -3, "--config.data.seed"),
    ("eval.batch_size", 0, "--config.eval.batch_size"),
    ("eval.classifier_learning_rate", 0.0, "--config.eval.classifier_learning_rate"),
    ("eval.classifier_epochs", 0, "--config.eval.classifier_epochs"),
    ("eval.num_examples", 0, "--config.eval.num_examples"),
    ("eval.coherence.prior_samples", 0, "--config.eval.coherence.prior_samples"),
    ("eval.fid.examples", 1, "--config.eval.fid.examples"),
    ("eval.fid.subsets_per_size", 0, "--config.eval.fid.subsets_per_size"),
])
def test_a_bad_value_is_refused_naming_its_flag(field, value, flag):
  config = config_lib.quickstart_config()
  *parents, name = field.split(".")
  group = config
  for parent in parents:
    group = group[parent]
  group[name] = value
  with pytest.raises(UserError) as error:
    validation.validate_config(config)
  message = str(error.value)
  assert flag in message
  assert "\n" not in message


def test_data_fields_of_other_data_sets_are_checked():
  config = mst.get_config()
  config.data.max_train_pairs = 0
  with pytest.raises(UserError, match="--config.data.max_train_pairs"):
    validation.validate_config(config)
  config = cub.get_config()
  config.data.max_caption_length = 0
  with pytest.raises(UserError, match="--config.data.max_caption_length"):
    validation.validate_config(config)


@pytest.mark.parametrize("config_module, field, value", [
    (mst, "multiplication", 0), (mst, "max_per_digit", 0),
    (mst_offline, "multiplication", 0), (mst_offline, "judge_renders", 0),
    (cub, "min_word_count", 0), (celeba, "text_length", 0),
    (polymnist, "num_modalities", 1), (polymnist, "num_modalities", 6),
    (polymnist, "mnist_source", "mnist.org"), (translated_polymnist, "max_test", 0),
])
def test_a_data_sets_own_fields_are_checked_by_its_loader(config_module, field, value):
  """Fields only one data set has are checked by its loader's `check_config`, which
  validation calls: refused before any data is read, naming the flag."""
  config = config_module.get_config()
  validation.validate_config(config)
  config.data[field] = value
  with pytest.raises(UserError, match=rf"--config\.data\.{field}\b") as error:
    validation.validate_config(config)
  assert "\n" not in str(error.value)


def test_epochs_do_not_matter_when_steps_are_given():
  config = config_lib.quickstart_config()
  config.num_epochs = 0
  config.num_train_steps = 60
  validation.validate_config(config)
  config.eval.num_examples = -1  # -1: every test example
  config.sweep.seeds, config.sweep.betas = (0, 1), (0.0, 2.0)
  validation.validate_config(config)


def test_split_sizes():
  config = config_lib.quickstart_config()  # batch 128
  validation.check_split_sizes(config, 4500, 500)
  validation.check_split_sizes(config, 128, 128)
  with pytest.raises(UserError, match=r"--config.batch_size=128 is larger than the 100 "
                                      r"training.*--config.batch_size=100 or less"):
    validation.check_split_sizes(config, 100, 500)
  with pytest.raises(UserError, match=r"the 50 test examples.*--config.batch_size=50 or less"):
    validation.check_split_sizes(config, 4500, 50)


def test_float32_limits_and_repeats_say_why():
  config = config_lib.quickstart_config()
  config.learning_rate = 1e39
  with pytest.raises(UserError, match=r"--config.learning_rate must be a finite number > 0 and "
                     r"<= 3.40282e\+38 \(the largest float32\); got 1e\+39"):
    validation.validate_config(config)
  config = config_lib.quickstart_config()
  config.learning_rate = 3e38  # finite in float32: allowed
  validation.validate_config(config)
  config.sweep.seeds = (0, 1, 0)
  with pytest.raises(UserError, match=r"--config.sweep.seeds repeats 0, which would train "
                     "identical replicas"):
    validation.validate_config(config)


def test_likelihood_weights_of_the_wrong_length_name_the_flag():
  from crmvae_jax import data as data_lib
  from crmvae_jax.data.modalities import modalities_of

  config = config_lib.quickstart_config()
  _, test_set = data_lib.load(config.data)
  with pytest.raises(UserError, match=r"--config.likelihood_weights has 3 entries for the 2 "
                     r"modalities .*--config.likelihood_weights='\(1.0,1.0\)'"):
    modalities_of(config.data.name, test_set, (1.0, 2.0, 3.0))
