"""The trained-model API checks its arguments (`model.inference.TrainedModel`,
`Modality.check_values`): every class of bad argument raises a TypeError or ValueError
naming the argument, in every method that takes it; keys and int seeds are one
convention; float images are read as they are (the API's own outputs fed back)."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest

from crmvae_jax.model import models
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.model.modality import Modality

# The quick-start model (MNIST 28x28x1, text of length 8) with initial parameters comes
# from conftest.py (`quickstart_vae`); untrained is enough for checks of arguments.
pytestmark = pytest.mark.xdist_group("quickstart_vae")

B = 3  # examples per call; one batch size throughout, so each program compiles once
LATENT_DIM = 4  # conftest.QUICKSTART_LATENT_DIM
TEXT_LENGTH = 8


@pytest.fixture(scope="module")
def trained(quickstart_vae):
  model, params = quickstart_vae
  return TrainedModel(model, params, "poe", batch_size=B)


@pytest.fixture(scope="module")
def inputs(trained):
  rng = np.random.default_rng(0)
  vocab_size = trained.modalities[1].vocab_size
  return {"mnist": rng.integers(0, 256, (B, 28, 28, 1), dtype=np.uint8),
          "text": rng.integers(0, vocab_size, (B, TEXT_LENGTH)).astype(np.int32)}


# Every method that takes `inputs`, as (trained, inputs) -> call.
INPUT_METHODS = {
    "encode": lambda t, x: t.encode(x),
    "latents": lambda t, x: t.latents(x),
    "subset_means": lambda t, x: t.subset_means(x, np.ones((1, len(t.names)), bool)),
    "generate": lambda t, x: t.generate(x),
    "reconstruct": lambda t, x: t.reconstruct(x),
    "log_likelihood": lambda t, x: t.log_likelihood(x, 2),
}

# Every method that takes `rng`, as (trained, inputs, rng) -> call.
RNG_METHODS = {
    "encode": lambda t, x, rng: t.encode(x, rng),
    "latents": lambda t, x, rng: t.latents(x, rng),
    "generate": lambda t, x, rng: t.generate(x, ["text"], rng),
    "sample": lambda t, x, rng: t.sample(B, rng),
    "log_likelihood": lambda t, x, rng: t.log_likelihood(x, 2, rng),
}


def _config():
  return ml_collections.ConfigDict({"model": "crmvae"})


# Counts.

BAD_COUNTS = [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError),
              ("3", TypeError), (None, TypeError)]
COUNT_CALLS = {
    "sample": ("num_samples", lambda t, x, n: t.sample(n)),
    "log_likelihood": ("num_samples", lambda t, x, n: t.log_likelihood(x, n)),
    "TrainedModel": ("batch_size", lambda t, x, n: TrainedModel(t.model, t.params, "poe", n)),
    "from_config": ("batch_size",
                    lambda t, x, n: TrainedModel.from_config(t.model, t.params, _config(), n)),
    "set batch_size": ("batch_size", lambda t, x, n: setattr(
        TrainedModel(t.model, t.params, "poe"), "batch_size", n)),
}


@pytest.mark.parametrize("value, error", BAD_COUNTS)
@pytest.mark.parametrize("call", COUNT_CALLS)
def test_counts_must_be_ints_of_at_least_one(trained, inputs, call, value, error):
  argument, function = COUNT_CALLS[call]
  with pytest.raises(error, match=f"^{argument} is .*; pass an int >= 1"):
    function(trained, inputs, value)


def test_numpy_integer_counts_are_accepted(trained):
  assert TrainedModel(trained.model, trained.params, "poe", np.int32(2)).batch_size == 2
  assert TrainedModel.from_config(trained.model, trained.params, _config(),
                                  np.int64(5)).batch_size == 5
  np.testing.assert_array_equal(trained.sample(np.int64(B))["text"], trained.sample(B)["text"])


# Empty batches.

@pytest.mark.parametrize("method", INPUT_METHODS)
def test_an_empty_batch_is_refused(trained, method):
  empty = {"mnist": np.zeros((0, 28, 28, 1), np.uint8)}
  with pytest.raises(ValueError, match=r"inputs\['mnist'\] holds no examples"):
    INPUT_METHODS[method](trained, empty)


# Randomness.

BAD_RNGS = {
    "float": 2.5,
    "string": "0",
    "bool": True,
    "float array": np.zeros(2, np.float32),
    "int32 array": np.zeros(2, np.int32),
    "three words": np.zeros(3, np.uint32),
    "split keys": jax.random.split(jax.random.PRNGKey(0), 2),
    "typed keys": jax.random.split(jax.random.key(0), 2),
    "seed beyond int64": 2**70,
    "list": [0, 1],
}


@pytest.mark.parametrize("rng", BAD_RNGS)
@pytest.mark.parametrize("method", RNG_METHODS)
def test_bad_randomness_is_refused(trained, inputs, method, rng):
  error = ValueError if rng == "seed beyond int64" else TypeError
  with pytest.raises(error, match="^rng is .*; pass a JAX PRNG key .* or an int seed"):
    RNG_METHODS[method](trained, inputs, BAD_RNGS[rng])


def test_sample_with_none_is_refused(trained):
  with pytest.raises(TypeError, match="^rng is None; pass a JAX PRNG key"):
    trained.sample(B, None)


@pytest.mark.parametrize("method", RNG_METHODS)
def test_a_seed_a_raw_key_and_a_typed_key_draw_the_same(trained, inputs, method):
  call = RNG_METHODS[method]
  from_key = call(trained, inputs, jax.random.PRNGKey(3))
  for rng in (3, np.int64(3), np.asarray(jax.random.PRNGKey(3)), jax.random.key(3)):
    jax.tree.map(np.testing.assert_array_equal, call(trained, inputs, rng), from_key)


def test_the_defaults_of_rng(trained, inputs):
  np.testing.assert_array_equal(trained.log_likelihood(inputs, 2),
                                trained.log_likelihood(inputs, 2, 0))
  np.testing.assert_array_equal(trained.sample(B)["text"], trained.sample(B, 0)["text"])
  mean = trained.encode(inputs)
  np.testing.assert_array_equal(trained.latents(inputs), mean)
  assert not np.array_equal(trained.encode(inputs, 0), mean)  # a sample, not the mean


# Inputs, per kind.

def _image(dtype, low, high):
  return np.linspace(low, high, B * 28 * 28).reshape(B, 28, 28, 1).astype(dtype)


BAD_IMAGES = {
    "NaN": (ValueError, "NaN or infinite", np.full((B, 28, 28, 1), np.nan, np.float32)),
    "inf": (ValueError, "NaN or infinite", np.full((B, 28, 28, 1), np.inf, np.float64)),
    "floats above 1": (ValueError, r"floats in \[0, 255\]", _image(np.float32, 0, 255)),
    "negative floats": (ValueError, r"floats in \[-0.5, 0.5\]", _image(np.float32, -0.5, 0.5)),
    "int32 above 255": (ValueError, r"int32 values in \[0, 300\]", _image(np.int32, 0, 300)),
    "negative int16": (ValueError, r"int16 values in \[-1, 1\]", _image(np.int16, -1, 1)),
    "bool": (TypeError, "dtype bool", np.ones((B, 28, 28, 1), bool)),
    "strings": (TypeError, "dtype <U1", np.full((B, 28, 28, 1), "a")),
    "no channel axis": (ValueError, r"shape \(28, 28\); the model reads \(28, 28, 1\)",
                        np.zeros((B, 28, 28), np.uint8)),
}


@pytest.mark.parametrize("bad", BAD_IMAGES)
@pytest.mark.parametrize("method", INPUT_METHODS)
def test_bad_images_are_refused(trained, inputs, method, bad):
  error, message, values = BAD_IMAGES[bad]
  with pytest.raises(error, match=rf"^inputs\['mnist'\] .*{message}"):
    INPUT_METHODS[method](trained, {"mnist": values, "text": inputs["text"]})
  if error is ValueError and "shape" not in message:
    with pytest.raises(error, match="pass uint8 images 0..255 or floats in \\[0, 1\\]"):
      INPUT_METHODS[method](trained, {"mnist": values})


def _bad_texts(vocab_size):
  ids = np.zeros((B, TEXT_LENGTH), np.int64)
  return {
      "negative id": (ValueError, r"token ids in \[-1, 0\]",
                      ids - np.eye(B, TEXT_LENGTH, dtype=np.int64)),
      "id of the vocabulary size": (ValueError, rf"token ids in \[0, {vocab_size}\]",
                                    ids + np.arange(B)[:, None] * vocab_size // (B - 1)),
      "integral floats": (TypeError, "dtype float32; pass integer token ids",
                          ids.astype(np.float32)),
      "bool": (TypeError, "dtype bool; pass integer token ids", ids.astype(bool)),
      "one text without a batch axis": (ValueError, r"shape \(\); the model reads \(8,\): "
                                        r"pass token ids \[B, L\] with L = 8", ids[0]),
  }


@pytest.mark.parametrize("bad", ["negative id", "id of the vocabulary size", "integral floats",
                                 "bool", "one text without a batch axis"])
@pytest.mark.parametrize("method", INPUT_METHODS)
def test_bad_token_ids_are_refused(trained, inputs, method, bad):
  vocab_size = trained.modalities[1].vocab_size
  error, message, values = _bad_texts(vocab_size)[bad]
  with pytest.raises(error, match=rf"^inputs\['text'\] .*{message}"):
    INPUT_METHODS[method](trained, {"text": values})
  if error is ValueError and "shape" not in message:
    with pytest.raises(error, match=rf"pass integer token ids in \[0, {vocab_size}\)"):
      INPUT_METHODS[method](trained, {"text": values, "mnist": inputs["mnist"]})


@pytest.fixture(scope="module")
def vector_model():
  """A model of one vector modality, never initialised: inputs are checked before any
  network runs."""
  vector = Modality("v", "vector", (5,), None, 1.0, kind="vector")
  return TrainedModel(models.MultimodalVAE((vector,), LATENT_DIM), None, "poe")


@pytest.mark.parametrize("bad, error, message, values", [
    ("NaN", ValueError, "NaN or infinite", np.full((B, 5), np.nan)),
    ("beyond float32", ValueError, "NaN or infinite", np.full((B, 5), 1e300)),
    ("integers", TypeError, r"dtype int64; pass float vectors \[B, 5\]",
     np.zeros((B, 5), np.int64)),
    ("wrong length", ValueError, r"shape \(4,\); the model reads \(5,\)", np.zeros((B, 4))),
])
@pytest.mark.parametrize("method", INPUT_METHODS)
def test_bad_vectors_are_refused(vector_model, method, bad, error, message, values):
  del bad
  with pytest.raises(error, match=rf"^inputs\['v'\] .*{message}"):
    INPUT_METHODS[method](vector_model, {"v": values})


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_inputs_must_be_a_dict_of_the_models_modalities(trained, inputs, method):
  with pytest.raises(TypeError, match="^inputs is a ndarray; pass a dict"):
    INPUT_METHODS[method](trained, inputs["mnist"])
  with pytest.raises(ValueError, match=r"^inputs has the keys \[\]"):
    INPUT_METHODS[method](trained, {})


def test_integer_images_within_a_byte_read_as_uint8(trained, inputs):
  np.testing.assert_array_equal(trained.encode({"mnist": inputs["mnist"].astype(np.int64)}),
                                trained.encode({"mnist": inputs["mnist"]}))


def test_float_images_are_read_as_they_are(trained, inputs):
  """Floats in [0, 1] are the images they show: x = u / 255 encodes (and scores) as u."""
  stored = inputs["mnist"]
  floats = stored.astype(np.float32) / 255
  np.testing.assert_allclose(trained.encode({"mnist": floats}),
                             trained.encode({"mnist": stored}), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(trained.log_likelihood({"mnist": floats}, 2),
                             trained.log_likelihood({"mnist": stored}, 2), rtol=1e-6)
  # A generation fed back: the image it shows, not that image divided by 255.
  generated = trained.generate({"text": inputs["text"]}, ["mnist"])["mnist"]
  assert generated.dtype == np.float32 and 0 <= generated.min() <= generated.max() <= 1
  quantised = (generated * 255).round().astype(np.uint8)
  np.testing.assert_allclose(trained.encode({"mnist": quantised.astype(np.float32) / 255}),
                             trained.encode({"mnist": quantised}), rtol=1e-6, atol=1e-6)
  fed_back = trained.encode({"mnist": generated})
  as_bytes = trained.encode({"mnist": quantised})
  read_as_bytes = trained.encode({"mnist": (generated / 255).astype(np.float32)})
  assert np.abs(fed_back - as_bytes).max() < 0.1 * np.abs(read_as_bytes - as_bytes).max()


# Latents and names.

BAD_LATENTS = {
    "NaN": (ValueError, "NaN or infinite", np.full((B, LATENT_DIM), np.nan, np.float32)),
    "inf": (ValueError, "NaN or infinite", np.full((B, LATENT_DIM), -np.inf)),
    "integers": (TypeError, "dtype int64", np.zeros((B, LATENT_DIM), np.int64)),
    "strings": (TypeError, "dtype <U1", np.full((B, LATENT_DIM), "a")),
    "wrong latent_dim": (ValueError, r"shape \(3, 3\)", np.zeros((B, LATENT_DIM - 1))),
    "one latent without a batch axis": (ValueError, r"shape \(4,\)", np.zeros(LATENT_DIM)),
    "no latents": (ValueError, r"shape \(0, 4\)", np.zeros((0, LATENT_DIM))),
}


@pytest.mark.parametrize("bad", BAD_LATENTS)
def test_bad_latents_are_refused(trained, bad):
  error, message, z = BAD_LATENTS[bad]
  with pytest.raises(error, match=rf"^z .*{message}.*; pass finite float latents \[B, 4\]"):
    trained.decode(z)


@pytest.mark.parametrize("call, argument", [
    (lambda t, x, names: t.decode(np.zeros((B, LATENT_DIM)), names), "targets"),
    (lambda t, x, names: t.generate(x, names), "targets"),
    (lambda t, x, names: t.sample(B, 0, names), "targets"),
    (lambda t, x, names: t.log_likelihood(x, 2, proposal=names), "proposal"),
])
def test_names_must_be_a_list_of_the_models_modalities(trained, inputs, call, argument):
  with pytest.raises(ValueError, match=rf"^Unknown {argument} \['svhn'\]"):
    call(trained, inputs, ["mnist", "svhn"])
  with pytest.raises(TypeError, match=f"^{argument} is 'mnist'; pass a list"):
    call(trained, inputs, "mnist")
