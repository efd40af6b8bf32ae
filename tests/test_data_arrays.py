"""Your own data from .npz arrays: kinds, networks, masks, splits and every refusal."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from numpy.lib import format as npy_format

from configs import arrays as arrays_config
from crmvae_jax import data as data_lib
from crmvae_jax.model import models, networks, user_networks
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.data import arrays, quickstart, text
from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.common.errors import UserError
from crmvae_jax.config import runs

NUM = 200


class TinyEncoder(nn.Module):
  """A user's own encoder, named by import path in a test."""

  latent_dim: int

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(8)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.latent_dim)(h), nn.Dense(self.latent_dim)(h)


class TinyDecoder(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, z):
    return nn.Dense(5)(z)


def example_arrays(seed: int = 0) -> dict[str, np.ndarray]:
  images, labels = quickstart.embedded_mnist()
  ids = np.arange(0, 5000, 5000 // NUM)[:NUM]
  rng = np.random.default_rng(seed)
  masks = np.ones((NUM, 3), bool)
  masks[:, 1] = rng.uniform(size=NUM) >= 0.3  # 30% of the names missing
  return {"image": images[ids], "name": text.digit_texts(labels[ids], rng),
          "features": (np.eye(10)[labels[ids], :5] + 0.1 * rng.normal(size=(NUM, 5))).astype(
              np.float32),
          "labels": labels[ids], "masks": masks}


@pytest.fixture
def config_data(tmp_path):
  np.savez(tmp_path / "data.npz", **example_arrays())
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "data.npz")
  return config


@pytest.mark.slow  # builds and compiles a model of every kind
def test_kinds_networks_and_likelihoods_come_from_the_arrays(config_data):
  train, test = data_lib.load(config_data)
  assert train.modalities == ("image", "name", "features")
  assert len(train) + len(test.labels) <= NUM and len(test) > 0
  assert train.masks is not None and test.masks is None  # only complete test examples
  modalities = modalities_of("arrays", train)
  assert [(m.kind, m.network, m.likelihood) for m in modalities] == [
      ("image", "mnist", "laplace"), ("text", "mst_text", "categorical"),
      ("vector", "vector", "laplace")]
  assert modalities[1].vocab_size == 70  # ids 0..69
  assert [m.classifier for m in modalities] == ["mnist", "mst_text", "vector"]
  # The model builds for every kind, and its loss on a masked batch is finite.
  model = models.MultimodalVAE(modalities, 4)
  batch = train.batch(np.arange(16))
  params = models.init_params(model, jax.random.PRNGKey(0), batch)
  loss, _ = models.make_loss_fn(model, "crmvae")(params, batch, jax.random.PRNGKey(1), 1.0)
  assert np.isfinite(loss)
  outputs = model.apply({"params": params}, models.model_inputs(modalities, batch))
  assert [o.shape for o in outputs] == [(16, 28, 28, 1), (16, 8, 70), (16, 5)]


@pytest.mark.slow
def test_declared_kinds_likelihoods_and_own_networks(config_data):
  config_data.modalities = {
      "features": {"likelihood": "gaussian", "encoder": "tests.test_data_arrays.TinyEncoder",
                   "decoder": "tests.test_data_arrays.TinyDecoder"},
      "image": {"kind": "image"}}
  train, _ = data_lib.load(config_data)
  # The declared ones in their order, then the file's others: declaring some settings
  # of one modality drops none.
  assert train.modalities == ("features", "image", "name")
  features, _, name = modalities_of("arrays", train)
  assert (name.kind, name.network, name.likelihood) == ("text", "mst_text", "categorical")
  assert features.likelihood == "gaussian" and features.classifier == "vector"
  assert features.network == ("custom:tests.test_data_arrays.TinyEncoder,"
                              "tests.test_data_arrays.TinyDecoder")
  model = models.MultimodalVAE(modalities_of("arrays", train)[:2], 3)
  batch = train.batch(np.arange(4))
  params = models.init_params(model, jax.random.PRNGKey(0), batch)
  assert params["encoders_0"]["Dense_0"]["kernel"].shape == (5, 8)  # the user's own module
  # A Gaussian of unit scale: log N(x; x, 1) per element is -log(2 pi) / 2.
  values = jax.numpy.asarray(batch["features"])
  np.testing.assert_allclose(features.log_likelihood(values, values), -2.5 * np.log(2 * np.pi),
                             rtol=1e-6)


@pytest.mark.parametrize("choice, image_network, text_network, image_sizes, text_sizes", [
    # 'fast' (the default): the MNIST MLP and the 8-character text networks.
    ("fast", "mnist", "mst_text", [{}, {}], {"vocab_size": 70, "length": 8}),
    # 'general' (runs saved before the choice existed): the convolutional networks.
    ("general", "polymnist", "sequence", [{}, {"out_channels": 1}],
     {"vocab_size": 70, "length": 8}),
])
def test_each_kind_gets_its_networks_and_sizes_without_building_a_model(
    config_data, choice, image_network, text_network, image_sizes, text_sizes):
  config_data.network_choice = choice
  train, test = data_lib.load(config_data)
  assert train.masks is not None and test.masks is None  # only complete test examples
  modalities = modalities_of("arrays", train)
  assert [(m.kind, m.network, m.likelihood) for m in modalities] == [
      ("image", image_network, "laplace"), ("text", text_network, "categorical"),
      ("vector", "vector", "laplace")]
  assert [m.classifier for m in modalities] == [image_network, text_network, "vector"]
  # The sizes each network is built with: those of the modality's that it declares.
  built = [[networks.build(cls, 3, **m.network_kwargs()) for cls in user_networks.network_classes(
      m.network)] for m in modalities]
  sizes = [[{name: getattr(module, name) for name in ("out_channels", "size", "vocab_size",
                                                       "length") if hasattr(module, name)}
            for module in pair] for pair in built]
  assert sizes == [image_sizes, [text_sizes] * 2, [{"size": 5}] * 2]


def test_a_run_saved_before_the_network_choice_reads_the_general_networks(config_data, tmp_path):
  config = arrays_config.get_config()
  config.data = config_data
  runs.save_config(str(tmp_path), config)
  path = runs.config_path(str(tmp_path))
  with open(path) as f:
    document = json.load(f)
  del document["data"]["network_choice"]  # as a run saved before the field existed
  with open(path, "w") as f:
    json.dump(document, f)
  saved = runs.load_config(str(tmp_path))
  train, _ = data_lib.load(saved.data)
  assert [m.network for m in modalities_of("arrays", train)] == ["polymnist", "sequence",
                                                                "vector"]
  # Resumed with today's config (the 'fast' networks), it is another model: refused.
  assert runs.model_defining_differences(saved, config) == ["data.network_choice"]
  assert runs.describe_differences(saved, config, ["data.network_choice"]) == (
      "--config.data.network_choice='general' (asked: 'fast')")


def test_a_second_file_is_the_test_split_and_directories_concatenate(tmp_path):
  (tmp_path / "parts").mkdir()
  for index in range(2):
    np.savez(tmp_path / "parts" / f"{index}.npz", **example_arrays(index))
  np.savez(tmp_path / "test.npz", **{**example_arrays(5), "masks": np.ones((NUM, 3), bool)})
  config = arrays_config.get_config().data
  config.path, config.test_path = str(tmp_path / "parts"), str(tmp_path / "test.npz")
  train, test = data_lib.load(config)
  assert (len(train), len(test)) == (2 * NUM, NUM)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "features": np.where(np.arange(5) == 2, np.nan, a["features"])},
     "'features' holds NaN or infinite values in 200 examples"),
    (lambda a: {**a, "image": a["image"][:, :27, :27]}, "is 27x27; networks exist for"),
    (lambda a: {**a, "name": a["name"][:, :7]}, "has length 7; pad it to a multiple of 8"),
    (lambda a: {**a, "labels": a["labels"][:10]}, "differ in length"),
    (lambda a: {**a, "masks": a["masks"][:, :2]}, "'masks' of .* must be \\[N, M\\]"),
    (lambda a: {**a, "masks": np.zeros_like(a["masks"])}, "with no modality at all"),
    (lambda a: {**a, "labels": a["labels"].astype(np.float32)}, "'labels' of .* integers"),
    (lambda a: {**a, "image": a["image"].astype(np.float32)}, "give uint8 or floats in"),
    (lambda a: {**a, "odd": np.zeros((NUM, 3, 3), np.uint8)}, "'odd' of shape .* is no image"),
])
def test_arrays_that_break_a_rule_are_refused_naming_the_array(tmp_path, change, message):
  np.savez(tmp_path / "bad.npz", **change(example_arrays()))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  with pytest.raises(UserError, match=message):
    data_lib.load(config)


def test_declaring_one_modality_keeps_the_others(tmp_path):
  # A two-modality file with one modality's likelihood declared trains both.
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "two.npz", vec=rng.normal(size=(40, 6)).astype(np.float32),
           img=rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "two.npz")
  config.modalities = {"vec": {"likelihood": "gaussian"}}
  train, test = data_lib.load(config)
  assert train.modalities == test.modalities == ("vec", "img")
  vec, img = modalities_of("arrays", train)
  assert (vec.kind, vec.likelihood, img.kind, img.likelihood) == (
      "vector", "gaussian", "image", "laplace")


def test_the_modalities_order_is_the_declared_names_then_the_files_or_the_configs_order(
    tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "three.npz", zeta=rng.normal(size=(40, 3)).astype(np.float32),
           beta=rng.normal(size=(40, 2)).astype(np.float32),
           alpha=rng.normal(size=(40, 4)).astype(np.float32),
           masks=np.tile([True, False, True], (40, 1)))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "three.npz")
  config.test_path = str(tmp_path / "test.npz")  # complete test examples
  np.savez(tmp_path / "test.npz", zeta=rng.normal(size=(8, 3)).astype(np.float32),
           beta=rng.normal(size=(8, 2)).astype(np.float32),
           alpha=rng.normal(size=(8, 4)).astype(np.float32))
  assert data_lib.load(config)[0].modalities == ("zeta", "beta", "alpha")
  config.modalities = {"zeta": {}, "beta": {}}  # declared: in name order, then the file's
  train, _ = data_lib.load(config)
  assert train.modalities == ("beta", "zeta", "alpha")
  # The masks' columns stay the file's: beta (column 1) is the one missing.
  assert train.masks[0].tolist() == [False, True, True]
  config.order = ("alpha", "zeta", "beta")
  train, _ = data_lib.load(config)
  assert train.modalities == ("alpha", "zeta", "beta")
  assert train.masks[0].tolist() == [True, True, False]
  assert [m.shape for m in modalities_of("arrays", train)] == [(4,), (3,), (2,)]
  config.order = ("alpha", "zeta")
  with pytest.raises(UserError, match=r"config.data.order is \['alpha', 'zeta'\] but the "
                     r"modalities of .* are \['alpha', 'beta', 'zeta'\]; name each"):
    data_lib.load(config)


def test_a_declared_vocabulary_writes_texts_as_tokens(tmp_path):
  # Word ids with a word list, character ids with an alphabet, and none: ids.
  rng = np.random.default_rng(0)
  words = ["", "red", "green", "blue"]
  np.savez(tmp_path / "texts.npz", words=rng.integers(0, 4, (40, 8)),
           chars=np.tile(np.array([[1, 2, 3, 0, 0, 0, 0, 0]]), (40, 1)),
           ids=np.tile(np.arange(8), (40, 1)))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "texts.npz")
  config.modalities = {"words": {"vocabulary": words}, "chars": {"vocabulary": ["", *"abc"]}}
  train, _ = data_lib.load(config)
  decoders = data_lib.text_decoders(train)
  row = train.arrays["words"][:1]
  assert decoders["words"](row) == [" ".join(words[i] for i in row[0] if i)]
  assert decoders["chars"](train.arrays["chars"][:1]) == ["abc"]
  assert decoders["ids"](train.arrays["ids"][:1]) == ["0 1 2 3 4 5 6 7"]
  assert [m.vocab_size for m in modalities_of("arrays", train)] == [4, 4, 8]


@pytest.mark.parametrize("modalities, message", [
    ({"name": {"vocabulary": ["a", "b"]}}, "holds token id .* but .*vocab_size is 2"),
    ({"name": {"vocabulary": "abc"}}, "vocabulary is 'abc'; give a list of strings"),
    ({"name": {"vocabulary": list("abcdefghijklmnopqrstuvwxyz" * 2), "vocab_size": 5}},
     "vocab_size is 5 but its vocabulary has 52 tokens"),
    ({"features": {"vocabulary": ["a"]}}, "vocabulary is for a text, and 'features' is of kind"),
    ({"image": {"kind": "picture"}}, "Unknown kind 'picture' of modality 'image'"),
    ({"image": {"likelihood": "poisson"}}, "Unknown likelihood 'poisson'"),
    ({"image": {"colour": 1}}, "unknown fields \\['colour'\\]"),
    ({"features": {"encoder": "tests.test_data_arrays.TinyEncoder"}}, "only one of its networks"),
    ({"audio": {"kind": "vector"}}, "has no arrays \\['audio'\\]"),
    ({"name": {"likelihood": "gaussian"}}, "is text, whose likelihood is a categorical"),
])
def test_declarations_that_do_not_fit_are_refused(config_data, modalities, message):
  config_data.modalities = modalities
  with pytest.raises(UserError, match=message):
    data_lib.load(config_data)


def test_missing_files_say_which_flag(tmp_path):
  config = arrays_config.get_config().data
  with pytest.raises(DataUnavailableError, match="--config.data.path=FILE.npz"):
    data_lib.load(config)
  config.path = str(tmp_path / "none.npz")
  with pytest.raises(DataUnavailableError, match="No .npz file at"):
    data_lib.load(config)
  (tmp_path / "broken.npz").write_bytes(b"not a zip")
  config.path = str(tmp_path / "broken.npz")
  with pytest.raises(UserError, match="is not a readable .npz file"):
    data_lib.load(config)


def _load_changed(tmp_path, change, fields=None, test_change=None):
  """Loads example_arrays() changed by `change` (and a test file changed by `test_change`)."""
  np.savez(tmp_path / "bad.npz", **change(example_arrays()))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  if test_change is not None:
    np.savez(tmp_path / "test.npz", **test_change(example_arrays(5)))
    config.test_path = str(tmp_path / "test.npz")
  config.update(fields or {})
  return data_lib.load(config)


def _refused_without_allocating(config, message):
  """Asserts that loading `config` raises UserError(`message`) without allocating more
  than a few MB (the refused file claims gigabytes)."""
  tracemalloc.start()
  try:
    with pytest.raises(UserError, match=message):
      data_lib.load(config)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < 64 * 2**20


def _with_member(arrays_: dict[str, np.ndarray], name: str, member: bytes) -> bytes:
  """An .npz of `arrays_` plus a zip member `name` holding the raw bytes `member`."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays_)
  with zipfile.ZipFile(buffer, "a") as archive:
    archive.writestr(name, member)
  return buffer.getvalue()


def _npy_header(shape, descr="<f8") -> bytes:
  """A hand-written .npy version 1.0 header claiming `shape` of `descr`."""
  buffer = io.BytesIO()
  npy_format.write_array_header_1_0(
      buffer, {"descr": descr, "fortran_order": False, "shape": shape})
  return buffer.getvalue()


def _without(name):
  return lambda a: {k: v for k, v in a.items() if k != name}


@pytest.mark.parametrize("change, fields, test_change, message", [
    (lambda a: {**a, "image": a["image"][:0]}, None, None,
     "Array 'image' of .*bad.npz holds 0 examples"),
    (lambda a: {**a, "labels": a["labels"][:0]}, None, None,
     "Array 'labels' of .*bad.npz holds 0 examples"),
    (lambda a: {**a, "masks": a["masks"][:0]}, None, None,
     "Array 'masks' of .*bad.npz holds 0 examples"),
    (lambda a: {k: v[:0] for k, v in a.items()}, None, None, "holds 0 examples"),
    (lambda a: {**a, "features": a["features"][:, :0]}, None, None,
     "Array 'features' of .*bad.npz has shape \\(200, 0\\), no values per example"),
    (lambda a: {**a, "labels": np.int64(3)}, None, None,
     "Array 'labels' of .*bad.npz is a single value"),
    # Splits left empty: one example, all of it test; a test file without a complete
    # example; no training example kept.
    (lambda a: {k: v[:1] for k, v in a.items()}, None, None,
     "bad.npz holds too few examples \\(1\\) to leave any for training"),
    (lambda a: a, None, lambda a: {**a, "masks": a["masks"] & (np.arange(3) != 2)},
     "No test example of .*test.npz has every modality"),
    (lambda a: a, {"max_train": 0}, None, "--config.data.max_train is 0"),
    (lambda a: a, {"test_fraction": 1.0}, None, "--config.data.test_fraction is 1.0"),
])
def test_zero_examples_are_refused_naming_the_array_or_file(tmp_path, change, fields,
                                                            test_change, message):
  with pytest.raises(UserError, match=message):
    _load_changed(tmp_path, change, fields, test_change)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "labels": a["labels"] - 1},
     "'labels' of .*bad.npz holds the class id -1 \\(\\d+ examples\\); give integer class ids"),
    (lambda a: {**a, "labels": a["labels"].astype(np.float64)},
     "'labels' of .*bad.npz must be integers.* not float64 .*integer class ids"),
    (lambda a: {**a, "labels": np.where(np.arange(NUM) == 3, np.nan, a["labels"])},
     "'labels' of .*bad.npz must be integers.* not float64"),
    (lambda a: {**a, "labels": a["labels"] > 4}, "'labels' of .*bad.npz must be integers.* bool"),
    (lambda a: {**a, "labels": np.stack([a["labels"]] * 2, axis=1)},
     "'labels' of .*bad.npz must be integers, one class id per example \\(\\[N\\] = \\[200\\]\\)"),
    (lambda a: {**a, "labels": np.where(np.arange(NUM) == 0, 10**9, a["labels"])},
     "'labels' of .*bad.npz holds the class id 1000000000 \\(1 examples\\).*at most 65,536"),
    (lambda a: {**a, "masks": a["masks"].astype(np.float32)},
     "'masks' of .*bad.npz is float32; give bool \\(or 0/1\\)"),
    (lambda a: {**a, "masks": a["masks"] * 2}, "'masks' of .*bad.npz is int64"),
])
def test_labels_and_masks_that_are_not_per_example_ids_are_refused(tmp_path, change, message):
  with pytest.raises(UserError, match=message):
    _load_changed(tmp_path, change)


@pytest.mark.parametrize("change, declared, message", [
    (lambda a: {**a, "name": np.where(np.arange(8) == 3, -1, a["name"])}, {},
     "Text 'name' holds the negative token id -1 in 200 examples; renumber the ids to 0..V-1"),
    (lambda a: {**a, "name": a["name"].astype(np.float32)}, {"kind": "text"},
     "Text 'name' must be integer token ids \\[N, L\\]; got float32"),
    (lambda a: {**a, "name": np.where(np.arange(8) == 0, 10**6, a["name"].astype(np.int64))}, {},
     "Text 'name' holds the token id 1000000, .*1,000,001 ids, over the 65,536 .*renumber"),
    (lambda a: {**a, "name": np.where(np.arange(8) == 0, 2**62, a["name"].astype(np.int64))}, {},
     "Text 'name' holds the token id 4611686018427387904"),
    (lambda a: a, {"vocab_size": 10**6}, "vocab_size is 1000000; give an integer from 1 to 65,536"),
    (lambda a: a, {"vocab_size": 0}, "vocab_size is 0"),
    (lambda a: a, {"vocab_size": 50}, "Text 'name' holds token id 69 but .*vocab_size is 50"),
])
def test_text_ids_that_are_negative_fractional_or_too_many_are_refused_at_once(
    tmp_path, change, declared, message):
  np.savez(tmp_path / "bad.npz", **change(example_arrays()))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  if declared:
    config.modalities = {"image": {}, "name": declared, "features": {}}
  _refused_without_allocating(config, message)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "image": a["image"].astype(np.int32) + 100},
     "Image 'image' is int32 in \\[100, 355\\]; give uint8 or floats in \\[0, 1\\]"),
    (lambda a: {**a, "image": a["image"].astype(np.int16) - 1}, "Image 'image' is int16 in \\[-1,"),
    (lambda a: {**a, "image": a["image"] / 200.0}, "Image 'image' is float64 in \\[0.0, 1.275\\]"),
    (lambda a: {**a, "image": a["image"] / -255.0}, "Image 'image' is float64 in \\[-1.0, "),
    (lambda a: {**a, "image": a["image"] > 0}, "Image 'image' is bool; give uint8"),
    (lambda a: {**a, "image": np.where(a["image"] > 250, np.nan, a["image"] / 255.0)},
     "Array 'image' holds NaN or infinite values in \\d+ examples"),
    (lambda a: {**a, "image": np.where(a["image"] > 250, np.inf, a["image"] / 255.0)},
     "Array 'image' holds NaN or infinite values"),
])
def test_images_outside_their_range_are_refused(tmp_path, change, message):
  with pytest.raises(UserError, match=message):
    _load_changed(tmp_path, change)


@pytest.mark.parametrize("change, declared, message", [
    (lambda a: {**a, "features": np.where(np.arange(5) == 0, np.nan, a["features"])}, {},
     "Array 'features' holds NaN or infinite values in 200 examples"),
    (lambda a: {**a, "features": np.where(np.arange(NUM)[:, None] == 7, np.inf, a["features"])},
     {}, "Array 'features' holds NaN or infinite values in 1 examples"),
    (lambda a: {**a, "features": -np.inf * a["features"]}, {}, "Array 'features' holds NaN"),
    (lambda a: {**a, "features": a["features"].astype(np.float64) * 1e300}, {},
     "Vector 'features' holds values beyond float32's range .* in \\d+ examples; rescale it"),
    (lambda a: {**a, "features": np.round(a["features"]).astype(np.int64)}, {"kind": "vector"},
     "Vector 'features' must be floats \\[N, F\\]; got int64"),
])
def test_vectors_that_are_not_finite_floats_are_refused(tmp_path, change, declared, message):
  np.savez(tmp_path / "bad.npz", **change(example_arrays()))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  if declared:
    config.modalities = {"image": {}, "name": {}, "features": declared}
  with pytest.raises(UserError, match=message):
    data_lib.load(config)


@pytest.mark.parametrize("contents, message", [
    # A header claiming 10**10 float64 (80 GB) over 16 stored bytes: refused from the header.
    (lambda a: _with_member(_without("image")(a), "image.npy",
                            _npy_header((10**10,)) + bytes(16)),
     "Array 'image' of .*bad.npz claims the shape \\(10000000000,\\) of float64 "
     "\\(80,000,000,000 bytes\\) in its .npy header but stores 16 bytes"),
    (lambda a: _with_member(_without("image")(a), "image.npy",
                            _npy_header((NUM, 28, 28, 1), "|u1") + bytes(100)),
     "Array 'image' of .*bad.npz claims the shape \\(200, 28, 28, 1\\)"),
    (lambda a: _with_member(_without("image")(a), "image.npy", _npy_header((-5,))),
     "Array 'image' of .*bad.npz claims the shape \\(-5,\\)"),
    (lambda a: _with_member(_without("image")(a), "image.npy", b"\x93NUMPY\x01\x00junk"),
     "Array 'image' of .*bad.npz has no valid .npy header"),
    (lambda a: _with_member(_without("image")(a), "image.npy",
                            b"\x93NUMPY\x09" + _npy_header((NUM,))[7:] + bytes(8 * NUM)),
     "Array 'image' of .*bad.npz has no valid .npy header \\(unknown .npy format version"),
    (lambda a: _with_member(a, "readme.txt", b"my data"),
     "bad.npz holds 'readme.txt', which is no .npy array"),
    (lambda a: _with_member(a, "extra.npy", _npy_header((NUM,), "|O") + bytes(8 * NUM)),
     "Array 'extra' of .*bad.npz holds Python objects \\(pickled data\\)"),
    (lambda a: b"image,name\n1,2\n",
     "bad.npz is not a readable .npz file: it is no zip of .npy arrays; write it with "
     "numpy.savez"),
    (lambda a: _npy_bytes(a["image"]), "bad.npz is not a readable .npz file: it is a single "
     ".npy array"),
])
def test_files_whose_headers_lie_or_hold_no_arrays_are_refused_before_loading(
    tmp_path, contents, message):
  (tmp_path / "bad.npz").write_bytes(contents(example_arrays()))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  _refused_without_allocating(config, message)


def _npy_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


def test_object_arrays_written_by_savez_are_refused(tmp_path):
  np.savez(tmp_path / "bad.npz", **example_arrays(), notes=np.array([{"a": 1}] * NUM))
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "bad.npz")
  with pytest.raises(UserError, match="Array 'notes' of .*bad.npz holds Python objects"):
    data_lib.load(config)


def test_arrays_larger_than_the_available_memory_are_refused_from_their_headers(
    tmp_path, monkeypatch, config_data):
  monkeypatch.setattr(arrays, "_available_memory", lambda: 100_000)
  _refused_without_allocating(
      config_data, "The arrays of .*data.npz need .* of memory \\(the largest, 'image' of "
      ".*data.npz, is uint8 \\(200, 28, 28, 1\\)\\) but this machine has 100,000 bytes "
      "available; store fewer or smaller examples")


def test_integer_images_compressed_files_and_integer_masks_load(tmp_path):
  original = example_arrays()
  changed = {**original, "image": original["image"].astype(np.int64),
             "labels": original["labels"].astype(np.uint8),
             "masks": original["masks"].astype(np.int8)}
  np.savez_compressed(tmp_path / "data.npz", **changed)
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "data.npz")
  train, test = data_lib.load(config)
  assert train.arrays["image"].dtype == np.uint8
  np.testing.assert_array_equal(train.arrays["image"], original["image"])
  assert train.masks.dtype == bool and len(train) + len(test) <= NUM


def test_unlabelled_data_loads_with_every_label_missing(tmp_path):
  unlabelled = {k: v for k, v in example_arrays().items() if k != "labels"}
  np.savez(tmp_path / "data.npz", **unlabelled)
  config = arrays_config.get_config().data
  config.path = str(tmp_path / "data.npz")
  train, _ = data_lib.load(config)
  assert np.all(train.labels == -1)
  assert isinstance(config, ml_collections.ConfigDict)


@pytest.mark.slow
def test_unlabelled_data_is_evaluated_by_what_needs_no_labels(tmp_path):
  # No labels: no coherence or probes, but the test log-likelihood and the
  # cross-generation figure, in one results file, and no classifier is asked for.
  import json
  import os

  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.evaluation import driver
  from crmvae_jax.training import loop

  unlabelled = {k: v for k, v in example_arrays().items() if k != "labels"}
  np.savez(tmp_path / "data.npz", **unlabelled)
  config = config_lib.resize(arrays_config.get_config(), "tiny")
  config.data.path = str(tmp_path / "data.npz")
  config.batch_size = config.eval.batch_size = 8
  config.eval.classifier_dir = str(tmp_path / "no_classifiers")
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  results = driver.evaluate(config, workdir)
  assert results["coherence"] is None and results["latent"] is None
  assert "no labels" in results["note"]
  # One estimate per proposal: the joint posterior and each nonempty subset's (2^3 - 1).
  assert len(results["log_likelihood"]) == 7
  assert all(np.isfinite(value) for value in results["log_likelihood"].values())
  with open(tmp_path / "run" / "eval" / "results.json") as f:
    assert json.load(f)["log_likelihood"] == results["log_likelihood"]
  assert os.path.getsize(tmp_path / "run" / "eval" / "cross_generation.png") > 1000
  assert not os.path.exists(tmp_path / "no_classifiers")


def test_the_datas_identity_is_its_content_not_its_path(tmp_path, config_data):
  first = data_lib.identity(config_data)
  assert first["name"] == "arrays" and set(first["files"]) == {"path"}
  moved = tmp_path / "moved.npz"
  os.replace(config_data.path, moved)
  config_data.path = str(moved)
  assert data_lib.identity(config_data) == first  # the same bytes elsewhere
  np.savez(moved, **example_arrays(seed=1))  # other data, the same shapes, the same path
  assert data_lib.identity(config_data)["files"]["path"] != first["files"]["path"]


@pytest.mark.slow
def test_a_run_refuses_to_resume_or_load_on_another_file_at_its_path(tmp_path):
  import crmvae_jax
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.training import loop

  np.savez(tmp_path / "data.npz", **example_arrays())
  config = config_lib.resize(arrays_config.get_config(), "tiny")
  config.data.path = str(tmp_path / "data.npz")
  config.batch_size = config.eval.batch_size = 8
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  checkpoints_before = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
  np.savez(tmp_path / "data.npz", **example_arrays(seed=1))  # same shapes, other values
  config.num_train_steps *= 2
  with pytest.raises(UserError, match=r"run was trained on other data \(files.path '[0-9a-f]+' "
                     r"then, '[0-9a-f]+' now\); resume it on the data it was trained on"):
    loop.train_and_evaluate(config, workdir)
  with pytest.raises(UserError, match=r"run was trained on other data .*; give it the data it "
                     r"was trained on"):
    crmvae_jax.load(workdir)
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == checkpoints_before
