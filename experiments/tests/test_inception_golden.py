"""The JAX FID Inception (crmvae_jax.evaluation.inception) against pytorch-fid's own features.

tests/data/inception_golden.npz was written by experiments/tools/make_inception_golden.py in a
PyTorch environment: pytorch-fid's `InceptionV3([3])` with seeded random weights (loaded
strictly, so its names and shapes are pytorch-fid's), applied to two fixed 24x40 images
(resized to 299x299 and scaled to [-1, 1] by pytorch-fid). Here the same weights are
regenerated with numpy, converted as pytorch-fid's real weights are
(crmvae_jax/convert_inception_weights.py, then `variables_from_state_dict`), and the
port must give the same 2048-d pool3 features. No torch and no network are needed.
"""

from __future__ import annotations

import importlib
import json
import pathlib

import numpy as np
import pytest

from crmvae_jax.evaluation import inception
from experiments.tools import make_inception_golden

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = _REPO_ROOT / "tests" / "data" / "inception_golden.npz"


@pytest.fixture(scope="module")
def golden():
  with np.load(GOLDEN) as stored:
    return {name: stored[name] for name in stored.files}


@pytest.fixture(scope="module")
def converter():
  """crmvae_jax/convert_inception_weights.py, the import test_metrics.py shares (the
  module defines absl flags, which may be defined once per process)."""
  return importlib.import_module("crmvae_jax.convert_inception_weights")


def test_golden_file_is_small_and_what_the_generator_writes(golden):
  assert GOLDEN.stat().st_size < 200_000
  assert golden["images"].shape == make_inception_golden.IMAGE_SHAPE
  np.testing.assert_array_equal(golden["images"],
                                make_inception_golden.fixed_images(int(golden["seed"])))
  assert golden["features"].shape == (2, inception.FEATURE_DIM)
  # Random weights still give informative features: spread out and different per image.
  assert golden["features"].std() > 1.0
  assert np.abs(golden["features"][0] - golden["features"][1]).max() > 1.0


# Slow: compiling the network at 299x299 takes about 20 s on two CPU cores.
@pytest.mark.slow
def test_features_match_pytorch_fid(golden, converter):
  manifest = json.loads(str(golden["manifest"]))
  state_dict = make_inception_golden.random_state_dict(manifest, int(golden["seed"]))
  # The weights pytorch-fid ran with, regenerated bit for bit.
  assert make_inception_golden.weights_sha256(state_dict) == str(golden["weights_sha256"])

  arrays = converter.arrays_from_state_dict(state_dict)
  extractor = inception.InceptionFeatures(inception.variables_from_state_dict(arrays))
  actual = extractor.features(golden["images"])
  expected = golden["features"]
  # float32 through 94 layers in another convolution library: about 1e-6 of the scale.
  np.testing.assert_allclose(actual, expected, rtol=1e-4,
                             atol=1e-5 * np.abs(expected).max())
