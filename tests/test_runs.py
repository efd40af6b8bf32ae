"""A run's saved config: round trip, atomic writes, and which differences make another run."""

from __future__ import annotations

import json
import os

import ml_collections
import pytest

from configs import cub, polymnist
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.config import runs
from crmvae_jax.common.errors import UserError


def _types(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, type]:
  """Dotted field -> declared type, nested groups included (placeholders keep theirs)."""
  types = {}
  for key in config.keys():
    if isinstance(config[key], ml_collections.ConfigDict):
      types.update(_types(config[key], f"{prefix}{key}."))
    else:
      types[f"{prefix}{key}"] = config.get_type(key)
  return types


@pytest.mark.parametrize("config", [
    config_lib.quickstart_config(), polymnist.get_config("small"), cub.get_config()],
    ids=["quickstart", "polymnist_small", "cub"])
def test_saved_config_round_trips(tmp_path, config):
  config.sweep.seeds, config.sweep.betas = (0, 1), (0.5, 2.0)
  config.likelihood_weights = (1.0, 3.5)
  runs.save_config(str(tmp_path), config)
  loaded = runs.load_config(str(tmp_path))
  assert loaded == config
  assert loaded.sweep.betas == (0.5, 2.0) and isinstance(loaded.sweep.seeds, tuple)
  # None placeholders keep their type, so --config.FIELD=VALUE overrides still parse.
  assert _types(loaded) == _types(config)
  assert loaded.eval.classifier_dir is None
  assert loaded.eval.get_type("classifier_dir") is str
  # The file stays plain JSON that other tools read.
  with open(os.path.join(tmp_path, runs.CONFIG_FILE)) as f:
    assert json.load(f)["model"] == config.model


def test_unset_placeholders_and_nested_tuples_round_trip(tmp_path):
  config = ml_collections.ConfigDict({
      "model": "crmvae", "empty": (), "nested": ((1, 2), (3,)),
      "weights": ml_collections.config_dict.placeholder(tuple),
      "group": {"path": ml_collections.config_dict.placeholder(str), "count": 3,
                "inner": {"ratio": 0.25, "names": ("a", "b")}}})
  runs.save_config(str(tmp_path), config)
  loaded = runs.load_config(str(tmp_path))
  assert loaded == config
  assert loaded.nested == ((1, 2), (3,)) and loaded.empty == ()
  assert loaded.get_type("weights") is tuple and loaded.group.get_type("path") is str
  loaded.group.path = "/data"  # a typed placeholder takes a value of its type


def test_save_replaces_the_file_atomically(tmp_path):
  config = config_lib.quickstart_config()
  runs.save_config(str(tmp_path), config)
  config.num_epochs = 7
  runs.save_config(str(tmp_path), config)
  assert runs.load_config(str(tmp_path)).num_epochs == 7
  assert os.listdir(tmp_path) == [runs.CONFIG_FILE]  # no temporary file left behind


def test_older_runs_without_types_load(tmp_path):
  config = config_lib.quickstart_config()
  config.sweep.betas = (1.0, 2.0)
  with open(os.path.join(tmp_path, runs.CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2))  # what training wrote before
  loaded = runs.load_config(str(tmp_path))
  assert loaded.sweep.betas == (1.0, 2.0) and loaded.model == "crmvae"
  assert runs.model_defining_differences(loaded, config) == []


def test_evaluation_settings_added_since_a_run_was_saved_take_their_defaults(tmp_path):
  config = config_lib.quickstart_config()
  runs.save_config(str(tmp_path), config)
  path = runs.config_path(str(tmp_path))
  with open(path) as f:
    document = json.load(f)
  del document["eval"]["metrics"], document["eval"]["extra_metrics"]
  with open(path, "w") as f:
    json.dump(document, f)
  loaded = runs.load_config(str(tmp_path))
  assert loaded.eval.metrics is None and loaded.eval.extra_metrics == ()
  loaded.eval.metrics = ("coherence",)  # as --config.eval.metrics sets it
  assert loaded.eval.metrics == ("coherence",)
  assert loaded.eval.to_dict() == config.eval.to_dict() | {"metrics": ("coherence",)}


def test_missing_or_broken_config_names_the_training_command(tmp_path):
  with pytest.raises(UserError, match=r"No trained run in .*python -m crmvae_jax.main "
                                      r"--config=CONFIG --workdir="):
    runs.load_config(str(tmp_path / "nothing"))
  with open(os.path.join(tmp_path, runs.CONFIG_FILE), "w") as f:
    f.write('{"model": ')
  with pytest.raises(UserError, match="not a readable saved config"):
    runs.load_config(str(tmp_path))


def test_model_defining_differences():
  saved = config_lib.quickstart_config()
  harmless = saved.copy_and_resolve_references()
  harmless.num_train_steps, harmless.num_epochs = 60, 3
  harmless.log_every_steps = harmless.eval_every_steps = harmless.checkpoint_every_steps = 7
  harmless.disable_progress_bar = True
  harmless.learning_rate = 1e-4
  harmless.eval.num_examples, harmless.eval.classifier_dir = 10, "/tmp/classifiers"
  assert runs.model_defining_differences(saved, harmless) == []

  changed = saved.copy_and_resolve_references()
  changed.model, changed.latent_dim, changed.batch_size, changed.seed = "mvae", 16, 64, 3
  changed.data.test_fraction = 0.2
  changed.likelihood_weights = (1.0, 2.0)
  changed.sweep.seeds, changed.sweep.betas = (0, 1), (1.0,)
  changed.mixture_estimator = "sampled"
  assert runs.model_defining_differences(saved, changed) == [
      "batch_size", "data.test_fraction", "latent_dim", "likelihood_weights",
      "mixture_estimator", "model", "seed", "sweep.betas", "sweep.seeds"]
  assert runs.describe_differences(saved, changed, ["model"]) == (
      "--config.model='crmvae' (asked: 'mvae')")


@pytest.mark.parametrize("field", list(runs.ADDED_FIELDS))
def test_a_run_saved_before_a_model_defining_field_existed_is_that_field_at_its_old_value(
    field, tmp_path):
  # As the run's config.json was written by a release without the field (the arrays
  # config has every added data field).
  runs.save_config(str(tmp_path), config_lib.arrays_config())
  path = tmp_path / runs.CONFIG_FILE
  document = json.loads(path.read_text())
  group = document
  *parents, name = field.split(".")
  for parent in parents:
    group = group[parent]
  del group[name]
  document.get(runs.TYPES_KEY, {}).pop(field, None)
  path.write_text(json.dumps(document))
  saved = runs.load_config(str(tmp_path))
  fresh = config_lib.arrays_config()
  config_lib.set_field(fresh, field, runs.ADDED_FIELDS[field])
  assert runs.model_defining_differences(saved, fresh) == []
  runs.check_same_run(fresh, str(tmp_path))  # resumes and evaluates
  if runs.ADDED_FIELDS[field] == config_lib.arrays_config().get(field):
    assert runs.model_defining_differences(saved, config_lib.arrays_config()) == []


def test_evaluation_settings_saved_under_their_old_names_are_read_under_the_new_ones(tmp_path):
  # As a run saved before each metric had its own group wrote them: flat, with
  # eval.fid a flag; every value is different from today's default.
  config = config_lib.quickstart_config()
  runs.save_config(str(tmp_path), config)
  path = tmp_path / runs.CONFIG_FILE
  document = json.loads(path.read_text())
  old_values = {"num_prior_samples": 123, "coherence_from_means": True,
                "log_likelihood_samples": 7, "log_likelihood_examples": 9,
                "log_likelihood_subsets": False, "fid": False, "fid_examples": 11,
                "inception_weights": "/w.npz", "fid_by_subset_size": True,
                "fid_subsets_per_size": 3, "probe_train_examples": 13,
                "sampler_components": 4, "sampler_examples": 15}
  assert {f"eval.{name}" for name in old_values} == set(config_lib.RENAMED_FIELDS)
  for group in ("coherence", "log_likelihood", "fid", "latent", "ex_post_sampler"):
    del document["eval"][group]
  document["eval"].update(old_values)
  document[runs.TYPES_KEY] = {k: v for k, v in document.get(runs.TYPES_KEY, {}).items()
                              if not k.startswith("eval.")}
  path.write_text(json.dumps(document))
  saved = runs.load_config(str(tmp_path))
  for old, value in old_values.items():
    group, leaf = config_lib.RENAMED_FIELDS[f"eval.{old}"].split(".")[1:]
    assert saved.eval[group][leaf] == value, old
    assert old not in saved.eval or isinstance(saved.eval[old], ml_collections.ConfigDict)


def test_evaluation_settings_added_since_a_run_was_saved_fill_their_groups(tmp_path):
  runs.save_config(str(tmp_path), config_lib.quickstart_config())
  path = tmp_path / runs.CONFIG_FILE
  document = json.loads(path.read_text())
  del document["eval"]["ex_post_sampler"]  # a whole group
  del document["eval"]["log_likelihood"]["subsets"]  # one field of a group
  path.write_text(json.dumps(document))
  saved = runs.load_config(str(tmp_path))
  assert saved.eval.ex_post_sampler.components == 10
  assert saved.eval.log_likelihood.subsets is True


def test_an_old_evaluation_name_in_settings_names_the_new_one(tmp_path):
  from crmvae_jax import api

  with pytest.raises(UserError, match="'eval.fid', which is now 'eval.fid.enabled'"):
    api._apply_settings(config_lib.quickstart_config(), {"eval.fid": False})


def test_data_location_is_not_the_data():
  saved = cub.get_config()
  moved = saved.copy_and_resolve_references()
  moved.data.data_dir, moved.data.captions_dir = "/elsewhere/tfds", "/elsewhere/text_c10"
  assert runs.model_defining_differences(saved, moved) == []
  moved.data.max_caption_length = 16
  assert runs.model_defining_differences(saved, moved) == ["data.max_caption_length"]


def test_check_same_run(tmp_path):
  config = config_lib.quickstart_config()
  runs.save_config(str(tmp_path), config)
  assert runs.check_same_run(config, str(tmp_path)) == config
  other = config.copy_and_resolve_references()
  other.latent_dim = 16
  with pytest.raises(UserError, match=r"--config.latent_dim=32 \(asked: 16\); leave out "
                                      r"--config"):
    runs.check_same_run(other, str(tmp_path))


def test_check_workdir(tmp_path):
  runs.check_workdir(str(tmp_path / "new" / "run"))
  runs.check_workdir(str(tmp_path))
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  with pytest.raises(UserError, match=r"--workdir=.*a_file is a file; pass a directory"):
    runs.check_workdir(str(a_file))
  with pytest.raises(UserError, match=r"is inside .*a_file, which is a file"):
    runs.check_workdir(str(a_file / "run"))
