"""The Python API: `crmvae_jax.fit`, `train_judges`, `evaluate` and `load` with your own
Flax networks, as a notebook uses them (docs/python.md, examples/own_networks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import flax.linen as nn
import numpy as np
import pytest

import crmvae_jax
from crmvae_jax.common.errors import UserError
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.data import quickstart
from crmvae_jax.model import user_networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class VectorEncoder(nn.Module):
  latent_dim: int
  hidden: int = 16

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.latent_dim)(h), nn.Dense(self.latent_dim)(h)


class VectorDecoder(nn.Module):
  latent_dim: int
  size: int
  hidden: int = 16

  @nn.compact
  def __call__(self, z):
    return nn.Dense(self.size)(nn.relu(nn.Dense(self.hidden)(z)))


def example_data(seed: int = 0, num: int = 96) -> dict[str, np.ndarray]:
  images, labels = quickstart.embedded_mnist()
  rng = np.random.default_rng(seed)
  ids = rng.choice(len(labels), num, replace=False)
  vectors = (np.eye(10)[labels[ids], :6] + 0.1 * rng.normal(size=(num, 6))).astype(np.float32)
  # Not in name order: the run keeps the dict's.
  return {"vec": vectors, "image": images[ids], "labels": labels[ids]}


def tiny_config():
  config = config_lib.resize(config_lib.arrays_config(), "tiny")
  config.batch_size = config.eval.batch_size = 8
  return config


# What needs no training.

@pytest.mark.parametrize("settings, message", [
    ({"num_train_step": 3}, "settings names 'num_train_step', which the config has not"),
    ({"eval.no_such_field": 1}, "settings names 'eval.no_such_field'"),
    ({"num_train_steps": "many"}, r"settings\['num_train_steps'\] = 'many' has the wrong type"),
])
def test_settings_that_the_config_has_not_are_refused_before_anything_is_written(
    tmp_path, settings, message):
  with pytest.raises(UserError, match=message):
    crmvae_jax.fit(example_data(), workdir=str(tmp_path / "run"), settings=settings)
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("arguments, message", [
    ({"data": [1, 2, 3]}, "data is list; give a dict of arrays"),
    ({"data": {"image": np.array([object()] * 4)}}, r"data\['image'\] holds Python objects"),
    ({"networks": {"vec": VectorEncoder}}, r"networks\['vec'\] is .*; give a pair"),
    ({"networks": {"vec": (VectorEncoder(latent_dim=1, hidden=np.arange(3)), VectorDecoder)}},
     r"VectorEncoder.hidden is array\(\[0, 1, 2\]\), which a run's config.json cannot record"),
    ({"networks": {"vec": (len, VectorDecoder)}}, "is not a Flax module class"),
    ({"data": None, "test_data": {"image": np.zeros((2, 28, 28, 1))}},
     "test_data is given without data"),
    ({"config": config_lib.quickstart_config()}, "data= and networks= are for your own arrays"),
])
def test_arguments_that_cannot_be_used_are_refused_in_one_sentence(tmp_path, arguments, message):
  arguments = {"data": example_data(), **arguments}
  with pytest.raises(UserError, match=message):
    crmvae_jax.fit(workdir=str(tmp_path / "run"), **arguments)


def test_an_instances_settings_are_its_fields_that_differ_from_their_defaults():
  assert user_networks.options_of(VectorEncoder(latent_dim=3)) == {}
  assert user_networks.options_of(VectorEncoder(latent_dim=3, hidden=7)) == {"hidden": 7}
  assert user_networks.options_of(VectorDecoder(latent_dim=3, size=4, hidden=16)) == {"size": 4}
  built = user_networks.build(VectorDecoder, 5, {"hidden": 9}, size=6, out_channels=1)
  assert (built.latent_dim, built.size, built.hidden) == (5, 6, 9)
  with pytest.raises(UserError, match=r"VectorDecoder has no fields \['width'\]"):
    user_networks.build(VectorDecoder, 5, {"width": 9}, size=6)


def test_a_class_that_cannot_be_imported_is_found_once_registered_and_named_otherwise():
  def local_class():
    class Hidden(VectorEncoder):
      pass
    return Hidden

  hidden = local_class()
  path = user_networks.path_of(hidden)
  assert "<locals>" in path
  with pytest.raises(UserError, match="cannot be imported in this process.*networks="):
    user_networks.network_classes(f"custom:{path},{path}")
  assert user_networks.register(hidden) == path
  assert user_networks.network_classes(f"custom:{path},{path}") == (hidden, hidden)
  # A nested class is found by its import path without registering it.
  paths = f"{user_networks.path_of(VectorEncoder)},{user_networks.path_of(VectorDecoder)}"
  assert "<locals>" not in paths
  assert user_networks.network_classes(f"custom:{paths}") == (VectorEncoder, VectorDecoder)


# Training.

@pytest.mark.slow
def test_fit_trains_your_networks_records_them_resumes_and_refuses_other_arrays(tmp_path):
  workdir = str(tmp_path / "run")
  data = example_data()
  own = {"vec": (VectorEncoder(latent_dim=0, hidden=12), VectorDecoder)}
  model = crmvae_jax.fit(data, workdir=workdir, networks=own, config=tiny_config())
  assert isinstance(model, crmvae_jax.TrainedModel) and model.step == 4
  # The modalities come in the data's order; the vector's networks are the given ones,
  # with the instance's setting.
  assert model.names == ("vec", "image")
  vec = model.modalities[0]
  assert vec.network == (f"custom:{user_networks.path_of(VectorEncoder)},"
                         f"{user_networks.path_of(VectorDecoder)}")
  assert dict(vec.encoder_options) == {"hidden": 12} and vec.decoder_options == ()
  assert model.params["encoders_0"]["Dense_0"]["kernel"].shape == (6, 12)
  # (Flax names the output layer Dense_0: it is built before the hidden layer it reads.)
  assert model.params["decoders_0"]["Dense_0"]["kernel"].shape == (16, 6)
  assert model.params["decoders_0"]["Dense_1"]["kernel"].shape == (32, 16)
  with open(os.path.join(workdir, "config.json")) as f:
    recorded = json.load(f)["data"]["modalities"]["vec"]
  assert recorded["encoder_options"] == {"hidden": 12}
  # The arrays were stored once; the same call again finds the run finished and the file
  # untouched, and returns the same model.
  stored = os.path.join(workdir, "data", "train.npz")
  before = os.stat(stored).st_mtime_ns
  again = crmvae_jax.fit(data, workdir=workdir, networks=own, config=tiny_config())
  assert os.stat(stored).st_mtime_ns == before and again.step == 4
  np.testing.assert_array_equal(again.params["encoders_0"]["Dense_0"]["kernel"],
                                model.params["encoders_0"]["Dense_0"]["kernel"])
  # A longer budget resumes the run.
  longer = crmvae_jax.fit(data, workdir=workdir, networks=own, config=tiny_config(),
                          settings={"num_train_steps": 8})
  assert longer.step == 8
  # Other settings of a network, in the same run, are refused naming the field.
  with pytest.raises(UserError, match=r"data.modalities.vec.encoder_options.hidden=12 "
                     r"\(asked: 13\)"):
    crmvae_jax.fit(data, workdir=workdir, config=tiny_config(),
                   networks={"vec": (VectorEncoder(latent_dim=0, hidden=13), VectorDecoder)})
  # Other arrays into the same run are refused and change nothing.
  with pytest.raises(UserError, match="holds a run trained on other train arrays"):
    crmvae_jax.fit(example_data(seed=1), workdir=workdir, networks=own, config=tiny_config())
  assert os.stat(stored).st_mtime_ns == before
  # The model generates from its own output.
  generated = longer.generate({"vec": data["vec"][:4]}, ["image"], rng=0)["image"]
  assert generated.dtype == np.float32 and 0 <= generated.min() <= generated.max() <= 1
  assert longer.generate({"image": generated}, ["vec"], rng=0)["vec"].shape == (4, 6)


@pytest.mark.slow
def test_load_in_another_process_takes_the_classes_it_cannot_import(tmp_path):
  # A notebook's classes live in __main__: a later process has other ones (or none).
  workdir = str(tmp_path / "run")
  script = f"""
import sys
sys.path.insert(0, {ROOT!r})
import crmvae_jax
from tests.test_api import VectorEncoder, VectorDecoder, example_data, tiny_config

class NotebookEncoder(VectorEncoder):
  pass

class NotebookDecoder(VectorDecoder):
  pass

crmvae_jax.fit(example_data(), workdir={workdir!r}, config=tiny_config(),
               networks={{"vec": (NotebookEncoder(latent_dim=0, hidden=10), NotebookDecoder)}})
"""
  subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
  with pytest.raises(UserError, match="'__main__.NotebookEncoder' cannot be imported"):
    crmvae_jax.load(workdir)
  model = crmvae_jax.load(workdir, networks={"vec": (VectorEncoder, VectorDecoder)})
  assert model.step == 4 and model.params["encoders_0"]["Dense_0"]["kernel"].shape == (6, 10)
  with pytest.raises(UserError, match="records no networks of its own for 'image'"):
    crmvae_jax.load(workdir, networks={"image": (VectorEncoder, VectorDecoder)})


@pytest.mark.slow
def test_judges_trained_first_then_evaluation_belongs_to_the_runs_data(tmp_path):
  workdir = str(tmp_path / "run")
  model = crmvae_jax.fit(example_data(), workdir=workdir, config=tiny_config(), judges=True)
  judges_dir = os.path.join(workdir, "classifiers")
  assert {"image", "vec"} <= set(os.listdir(judges_dir))
  # TensorBoard had coherence from the first evaluation on.
  import glob
  from tensorboard.backend.event_processing import event_accumulator
  (events,) = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  accumulator = event_accumulator.EventAccumulator(events)
  accumulator.Reload()
  assert [event.step for event in accumulator.Scalars("coherence/R")] == [4]
  results = crmvae_jax.evaluate(workdir, verbose=False)
  assert set(results["coherence"]) == {"R", "VEC<-I", "I<-VEC"}
  assert model.step == results["step"] == 4
  # A second run on other arrays has its own judges: the first run's are never reused.
  other = str(tmp_path / "other")
  crmvae_jax.fit(example_data(seed=1), workdir=other, config=tiny_config())
  with pytest.raises(UserError, match=r"No vec classifier in .*other/classifiers"):
    crmvae_jax.evaluate(other)
  accuracies = crmvae_jax.train_judges(other)
  assert set(accuracies) == {"image", "vec"}
  assert crmvae_jax.evaluate(other, verbose=False)["step"] == 4


@pytest.mark.slow
def test_the_notebook_example_runs_and_cross_generates(tmp_path):
  result = subprocess.run(
      [sys.executable, "examples/own_networks.py", str(tmp_path / "run"), "300"], cwd=ROOT,
      capture_output=True, text=True, check=True)
  lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
  accuracies = eval(lines["judges' test accuracy"])  # pylint: disable=eval-used
  assert accuracies["image"] > 0.85 and accuracies["code"] > 0.95
  coherence = eval(lines["cross-coherence"])  # pylint: disable=eval-used
  assert coherence["I<-CODE"] > 0.5  # chance is 0.1


@pytest.mark.slow
def test_judges_that_do_not_belong_never_stop_a_training(tmp_path, capsys):
  # Judges of other data, a missing judge, a damaged one: the coherence along training is
  # left out with one line, and the run trains to its end (it died at its first
  # evaluation, before its first checkpoint).
  import shutil

  first = str(tmp_path / "first")
  crmvae_jax.fit(example_data(), workdir=first, config=tiny_config(), judges=True)
  judges_dir = os.path.join(first, "classifiers")
  cases = {"other data": lambda d: None,
           "missing": lambda d: shutil.rmtree(os.path.join(d, "image")),
           "damaged": lambda d: open(os.path.join(d, "vec", "classifier.json"), "w").write("{")}
  for index, (case, damage) in enumerate(cases.items()):
    copy = str(tmp_path / f"judges_{index}")
    shutil.copytree(judges_dir, copy)
    damage(copy)
    config = tiny_config()
    config.eval.classifier_dir = copy
    capsys.readouterr()
    model = crmvae_jax.fit(example_data(seed=1), workdir=str(tmp_path / f"run_{index}"),
                           config=config)
    assert model.step == 4, case
    assert "TensorBoard shows no coherence along training" in capsys.readouterr().out, case
