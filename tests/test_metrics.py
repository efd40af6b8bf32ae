"""Tests for crmvae_jax.evaluation.metrics and crmvae_jax.evaluation.inception (the FID
network and its weights)."""

from __future__ import annotations

import importlib.util
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.evaluation import inception, metrics
from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.common.errors import UserError


@pytest.fixture(scope="module")
def converter():
  """crmvae_jax/convert_inception_weights.py, imported as a package module: it defines
  absl flags, so every test file must share one import of it (test_inception_golden.py
  uses it too; loading the file again would define its flags twice)."""
  return importlib.import_module("crmvae_jax.convert_inception_weights")


# ---------------------------------------------------------------------------------
# Text, accuracy and coherence.


@pytest.mark.parametrize("text, digit, distance", [
    ("  seven ", 7, 0),
    ("sevn", 7, 1),
    ("fiue", 5, 1),
    ("ei ght\n", 8, 0),
    ("zer", 0, 1),
    # One edit from both 'five' and 'nine': the lower digit wins.
    ("fine", 5, 1),
    # Three edits from 'one', 'two' and 'six' alike: the lowest, 1.
    ("", 1, 3),
    # Eight edits from every name: the lowest digit, 0.
    ("qqqqqqqq", 0, 8),
])
def test_text_to_digit_least_levenshtein_distance(text, digit, distance):
  predicted, distances = metrics.text_to_digit([text])
  assert predicted.tolist() == [digit]
  assert distances.tolist() == [distance]


def test_text_to_digit_batch_shapes():
  predicted, distances = metrics.text_to_digit(["one", "two  ", " three"])
  assert predicted.tolist() == [1, 2, 3]
  assert distances.tolist() == [0, 0, 0]
  predicted, distances = metrics.text_to_digit([])
  assert predicted.shape == distances.shape == (0,)


def test_accuracy():
  assert metrics.accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
  with pytest.raises(ValueError, match="shape"):
    metrics.accuracy(np.zeros(3), np.zeros(4))


def test_joint_coherence_counts_unanimous_samples():
  predictions = np.array([[1, 2, 3, 4, 5],
                          [1, 2, 0, 4, 5],
                          [1, 7, 3, 4, 6]])
  # Samples 0 and 3 agree across all three modalities.
  assert metrics.joint_coherence(predictions) == pytest.approx(2 / 5)
  assert metrics.joint_coherence(predictions[:1]) == 1.0


# ---------------------------------------------------------------------------------
# Frechet distance.


def test_frechet_distance_of_identical_gaussians_is_zero():
  rng = np.random.default_rng(0)
  factor = rng.normal(size=(6, 6))
  sigma = factor @ factor.T + np.eye(6)
  mu = rng.normal(size=6)
  assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_diagonal_closed_form():
  rng = np.random.default_rng(1)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  variances1, variances2 = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
  expected = (np.sum((mu1 - mu2)**2) +
              np.sum(variances1 + variances2 - 2 * np.sqrt(variances1 * variances2)))
  actual = metrics.frechet_distance(mu1, np.diag(variances1), mu2, np.diag(variances2))
  assert actual == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_commuting_covariances():
  # Same eigenvectors, different eigenvalues: sqrt(sigma1 sigma2) = Q sqrt(l1 l2) Q^T.
  rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(4, 4)))
  eigenvalues1 = np.array([0.5, 1.0, 2.0, 4.0])
  eigenvalues2 = np.array([3.0, 0.2, 1.0, 1.5])
  sigma1 = rotation @ np.diag(eigenvalues1) @ rotation.T
  sigma2 = rotation @ np.diag(eigenvalues2) @ rotation.T
  mu = np.zeros(4)
  expected = np.sum(eigenvalues1 + eigenvalues2 -
                    2 * np.sqrt(eigenvalues1 * eigenvalues2))
  actual = metrics.frechet_distance(mu, sigma1, mu, sigma2)
  assert actual == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_non_commuting_2x2():
  sigma1 = np.array([[2.0, 0.7], [0.7, 1.0]])
  sigma2 = np.array([[1.0, -0.4], [-0.4, 3.0]])
  assert not np.allclose(sigma1 @ sigma2, sigma2 @ sigma1)
  mu1, mu2 = np.array([0.5, -1.0]), np.array([1.5, 2.0])
  # A 2x2 matrix with non-negative eigenvalues l1, l2 has
  # tr sqrt(A) = sqrt(l1) + sqrt(l2) = sqrt(tr A + 2 sqrt(det A)).
  product = sigma1 @ sigma2
  trace_root = math.sqrt(np.trace(product) + 2 * math.sqrt(np.linalg.det(product)))
  expected = (np.sum((mu1 - mu2)**2) + np.trace(sigma1) + np.trace(sigma2) -
              2 * trace_root)
  assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
      expected, rel=1e-10)


def test_frechet_distance_of_rank_deficient_statistics_is_finite():
  # 3 samples in 8 dimensions: singular covariances, as with too few images.
  features = np.random.default_rng(3).normal(size=(3, 8))
  mu, sigma = metrics.gaussian_statistics(features)
  distance = metrics.frechet_distance(mu, sigma, mu, sigma)
  assert np.isfinite(distance)
  assert distance == pytest.approx(0.0, abs=1e-3)


def test_frechet_distance_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="shapes"):
    metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_gaussian_statistics():
  features = np.random.default_rng(4).normal(size=(50, 3))
  mu, sigma = metrics.gaussian_statistics(features)
  np.testing.assert_allclose(mu, features.mean(axis=0))
  centred = features - features.mean(axis=0)
  np.testing.assert_allclose(sigma, centred.T @ centred / 49)


# ---------------------------------------------------------------------------------
# Latent probes.


def test_linear_probe_on_separable_latents():
  rng = np.random.default_rng(5)
  centres = rng.normal(scale=10.0, size=(10, 16))
  train_labels = np.repeat(np.arange(10), 30)
  test_labels = np.repeat(np.arange(10), 10)
  train_latents = centres[train_labels] + rng.normal(size=(300, 16))
  test_latents = centres[test_labels] + rng.normal(size=(100, 16))
  assert metrics.linear_probe(train_latents, train_labels, test_latents,
                              test_labels) >= 0.99


def test_linear_probe_on_random_latents_is_near_chance():
  rng = np.random.default_rng(6)
  probe_accuracy = metrics.linear_probe(
      rng.normal(size=(300, 16)), rng.integers(0, 10, 300),
      rng.normal(size=(500, 16)), rng.integers(0, 10, 500))
  assert probe_accuracy < 0.3


def test_cosine_similarity_hand_made():
  a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, 4.0]])
  b = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0], [4.0, 3.0]])
  # Row similarities 1, -1, 0 and 24/25.
  assert metrics.cosine_similarity(a, b) == pytest.approx((1 - 1 + 0 + 24 / 25) / 4)
  assert metrics.cosine_similarity(np.zeros((1, 2)), np.ones((1, 2))) == 0.0


# ---------------------------------------------------------------------------------
# The FID Inception network.

# PyTorch names of the Flax leaves (the inverse of what the loader maps).
_TORCH_SUFFIXES = {"kernel": "conv.weight", "scale": "bn.weight", "bias": "bn.bias",
                   "mean": "bn.running_mean", "var": "bn.running_var"}


def _random_variables(seed: int) -> dict:
  """Random weights with He-scaled kernels, so activations stay O(1) at every depth."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(inception.FIDInceptionV3().init, jax.random.key(0),
                          jnp.zeros((1, 75, 75, 3)))

  def draw(path, shape):
    leaf = path[-1].key
    if leaf == "kernel":
      fan_in = np.prod(shape.shape[:-1])
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape.shape)
    elif leaf in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, shape.shape)
    else:
      value = rng.normal(0.0, 0.1, shape.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _torch_state_dict(variables: dict) -> dict[str, np.ndarray]:
  """pytorch-fid's names and [out, in, kh, kw] layout for Flax variables."""
  state_dict = {}
  for tree in variables.values():
    for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
      keys = [key.key for key in path]
      value = np.asarray(value)
      if keys[-1] == "kernel":
        value = value.transpose(3, 2, 0, 1)
      state_dict[".".join(keys[:-2] + [_TORCH_SUFFIXES[keys[-1]]])] = value
  return state_dict


@pytest.fixture(scope="module")
def random_variables():
  return _random_variables(seed=0)


@pytest.fixture(scope="module")
def variable_shapes():
  """The Inception's variable tree with ShapeDtypeStruct leaves, as
  `inception._variable_shapes` gives it (traced once per process)."""
  return inception._variable_shapes()


@pytest.fixture(scope="module")
def zero_variables(variable_shapes):
  """The Inception's variables as zeros: for checks of names and shapes only (drawing
  the 21.8M random numbers takes seconds)."""
  return jax.tree.map(lambda shape: np.zeros(shape.shape, np.float32), variable_shapes)


@pytest.mark.xdist_group("inception_shapes")  # one trace of the network's shapes
def test_inception_has_pytorch_fids_layers(zero_variables):
  state_dict = _torch_state_dict(zero_variables)
  # 94 BasicConv2d layers (conv weight + 4 BatchNorm arrays each), 21.8M numbers.
  assert len(state_dict) == 94 * 5
  assert state_dict["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
  assert state_dict["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
  assert state_dict["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
  assert sum(value.size for value in state_dict.values()) == 21_820_000


def test_preprocess_resizes_and_scales():
  images = jnp.stack([jnp.zeros((28, 28, 1)), jnp.ones((28, 28, 1))])
  # Jitted: op by op, every primitive of the resize compiles apart.
  preprocess = jax.jit(inception.preprocess, static_argnames="size")
  processed = preprocess(images)
  assert processed.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(processed[0], -1.0, atol=1e-6)
  np.testing.assert_allclose(processed[1], 1.0, atol=1e-6)
  gradient = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 32)[None, :, None], (32, 32, 3))
  resized = preprocess(gradient[None], size=64)[0]
  # Bilinear upsampling of a horizontal ramp stays a monotone ramp, constant in rows.
  assert np.all(np.diff(np.asarray(resized[0, :, 0])) >= 0)
  np.testing.assert_allclose(resized[0], resized[-1])


@pytest.mark.slow
def test_inception_features_batches_and_grayscale(random_variables):
  extractor = inception.InceptionFeatures(random_variables)
  gray_images = np.random.default_rng(7).uniform(size=(3, 28, 28, 1)).astype(np.float32)
  features = extractor.features(gray_images, batch_size=2)
  assert features.shape == (3, inception.FEATURE_DIM)
  assert np.all(np.isfinite(features)) and np.std(features) > 0

  color_images = np.repeat(gray_images, 3, axis=-1)
  direct = jax.jit(inception.FIDInceptionV3().apply)(
      random_variables, inception.preprocess(jnp.asarray(color_images)))
  # Padding the last batch of one to two images changes nothing.
  np.testing.assert_allclose(features, direct, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_weights_file_round_trip(random_variables, converter, tmp_path):
  state_dict = _torch_state_dict(random_variables)
  state_dict["fc.weight"] = np.zeros((1008, 2048), np.float32)
  state_dict["fc.bias"] = np.zeros((1008,), np.float32)
  state_dict["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
  arrays = converter.arrays_from_state_dict(state_dict)
  assert "fc.weight" not in arrays and len(arrays) == 94 * 5
  path = tmp_path / "inception_fid.npz"
  np.savez(path, **arrays)

  loaded = inception.InceptionFeatures.load(str(path))
  chex.assert_trees_all_equal(loaded.variables, random_variables)
  images = jnp.asarray(np.random.default_rng(8).uniform(-1, 1, (2, 75, 75, 3)),
                       jnp.float32)
  apply = jax.jit(inception.FIDInceptionV3().apply)
  np.testing.assert_array_equal(apply(loaded.variables, images),
                                apply(random_variables, images))


@pytest.mark.xdist_group("inception_shapes")
def test_state_dict_is_checked(zero_variables):
  """A missing name, a wrong shape and an unexpected name are each refused, naming it."""
  state_dict = _torch_state_dict(zero_variables)
  missing = dict(state_dict)
  del missing["Mixed_5b.branch1x1.bn.running_var"]
  with pytest.raises(UserError, match="Mixed_5b.branch1x1.bn.running_var"):
    inception.variables_from_state_dict(missing)
  wrong_shape = dict(state_dict)
  wrong_shape["Conv2d_1a_3x3.conv.weight"] = np.zeros((32, 3, 5, 5))
  with pytest.raises(UserError, match="shape"):
    inception.variables_from_state_dict(wrong_shape)
  with pytest.raises(UserError, match="unexpected"):
    inception.variables_from_state_dict(
        {**state_dict, "AuxLogits.fc.weight": np.zeros(1)})


def test_missing_weights_message(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(tmp_path / "elsewhere.npz"))
  with pytest.raises(DataUnavailableError) as searched:
    inception.InceptionFeatures.load()
  message = str(searched.value)
  assert str(tmp_path / "elsewhere.npz") in message
  assert str(tmp_path / ".cache" / "crmvae_jax" / "inception_fid.npz") in message
  assert "python -m crmvae_jax.convert_inception_weights" in message
  assert "--config.eval.fid.inception_weights=PATH" in message
  assert message.count(". ") == 0 and message.endswith(".")

  with pytest.raises(DataUnavailableError, match="explicit.npz"):
    inception.find_weights(str(tmp_path / "explicit.npz"))


def test_weights_search_order(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  cached = tmp_path / ".cache" / "crmvae_jax" / "inception_fid.npz"
  cached.parent.mkdir(parents=True)
  cached.touch()
  from_environment = tmp_path / "from_environment.npz"
  explicit = tmp_path / "explicit.npz"
  monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
  assert inception.find_weights() == str(cached)
  from_environment.touch()
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(from_environment))
  assert inception.find_weights() == str(from_environment)
  explicit.touch()
  assert inception.find_weights(str(explicit)) == str(explicit)


# Skipped before its fixtures are set up where pytorch-fid is missing: the random weights
# take seconds to draw.
@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None
        for name in ("torch", "torchvision", "pytorch_fid")),
    reason="needs torch, torchvision and pytorch-fid")
def test_matches_pytorch_fid(random_variables, converter, tmp_path, monkeypatch):
  """Runs only where torch, torchvision and pytorch-fid are installed."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
  state_dict = _torch_state_dict(random_variables)
  state_dict["fc.weight"] = np.zeros((1008, 2048), np.float32)
  state_dict["fc.bias"] = np.zeros((1008,), np.float32)
  # pytorch-fid loads its weights strictly into its own module: a name or shape of
  # ours that differs from pytorch-fid's fails here.
  monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url",
                      lambda *args, **kwargs: {name: torch.tensor(value)
                                               for name, value in state_dict.items()})
  reference = pytorch_fid_inception.InceptionV3([3]).eval()

  images = np.random.default_rng(9).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2)))[0]
  expected = expected.numpy()[:, :, 0, 0]

  path = tmp_path / "inception_fid.npz"
  np.savez(path, **converter.arrays_from_state_dict(state_dict))
  actual = inception.InceptionFeatures.load(str(path)).features(images)
  np.testing.assert_allclose(actual, expected, rtol=1e-3,
                             atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("sizes", [(16, 24, 64), (7, 3, 64), (24, 24, 25), (80, 40, 32),
                                   (5, 200, 32)])
def test_frechet_distance_of_features_equals_that_of_their_statistics(sizes):
  # Fewer examples than features takes the N1 x N2 singular-value path; otherwise the
  # statistics' own. Rank-deficient covariances are the low-rank path's every case.
  n1, n2, num_features = sizes
  rng = np.random.default_rng(n1 * 1000 + n2)
  features1 = rng.normal(size=(n1, num_features)) @ rng.normal(size=(num_features,) * 2)
  features2 = rng.normal(0.3, 2.0, size=(n2, num_features))
  expected = metrics.frechet_distance(*metrics.gaussian_statistics(features1),
                                      *metrics.gaussian_statistics(features2))
  actual = metrics.frechet_distance_of_features(features1, features2)
  # The statistics' path takes square roots of rank-deficient eigenvalues' round-off
  # (7e-9 relative at (7, 3, 64) against a 40-digit computation, where the features'
  # path was exact to 1e-15).
  assert actual == pytest.approx(expected, rel=1e-7)
  assert metrics.frechet_distance_of_features(features1, features1) == pytest.approx(
      0.0, abs=1e-8 * expected)


@pytest.mark.parametrize("num_examples", [6, 200])
def test_frechet_distance_of_scaled_features_is_its_closed_form(num_examples):
  # Features2 = c * features1 + shift: sigma2 = c^2 sigma1, so Tr (sigma1 sigma2)^(1/2) =
  # c Tr sigma1 and d^2 = ||mu1 - mu2||^2 + (1 - c)^2 Tr sigma1, singular or not.
  rng = np.random.default_rng(num_examples)
  features1 = rng.normal(size=(num_examples, 48))
  shift, scale = rng.normal(size=48), 2.5
  features2 = scale * features1 + shift
  mean_difference = features1.mean(axis=0) - features2.mean(axis=0)
  expected = mean_difference @ mean_difference + (1.0 - scale) ** 2 * np.trace(
      np.cov(features1, rowvar=False))
  assert metrics.frechet_distance_of_features(features1, features2) == pytest.approx(
      expected, rel=1e-12 if num_examples < 48 else 1e-7)


def test_frechet_distance_of_features_refuses_what_has_no_covariance():
  with pytest.raises(ValueError, match="need features"):
    metrics.frechet_distance_of_features(np.zeros((1, 4)), np.zeros((3, 4)))
  with pytest.raises(ValueError, match="need features"):
    metrics.frechet_distance_of_features(np.zeros((3, 4)), np.zeros((3, 5)))
