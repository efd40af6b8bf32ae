"""CUB and Bimodal CelebA end to end: training, image-text evaluation, the beta sweep.

Everything runs on data the tests write: a tiny prepared TFDS `caltech_birds2011`
with caption files, and a directory of CelebA jpgs with their attribute and
partition files. The 64x64 networks compile slowly on a CPU, so each data set is
trained once per module (two steps, batch 4) and shared by the tests.
"""

from __future__ import annotations

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import conftest

from configs import celeba as celeba_config
from crmvae_jax.evaluation import classifier_training, driver, image_text
from crmvae_jax.data import input_pipeline
from crmvae_jax.evaluation import metrics
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.training import checkpoints, loop
from crmvae_jax.data import celeba, text
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.common.errors import UserError
from crmvae_jax.config import defaults as config_lib


# The 64x64 networks' initialisers compile fast with classic threefry (conftest.py).
pytestmark = pytest.mark.usefixtures("classic_threefry")


# --- Latent extraction on hand-made posteriors ----------------------------------------


@pytest.mark.parametrize("kind", ["poe", "moe"])
def test_identical_unimodal_means_give_cosine_one(kind):
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(5, 3)).astype(np.float32)
  # Different but per-example constant variances: PoE with the prior rescales each
  # mean by a positive factor, which keeps its direction.
  logvar = np.stack([np.full((5, 3), -1.0), np.full((5, 3), 0.5)]).astype(np.float32)
  posteriors = Gaussian(jnp.asarray(np.stack([mean, mean])), jnp.asarray(logvar))
  means = np.asarray(image_text.unimodal_posterior_means(posteriors, kind))
  assert means.shape == (2, 5, 3)
  precision = np.exp(-logvar)
  expected = mean * precision / (1.0 + precision) if kind == "poe" else np.stack([mean, mean])
  np.testing.assert_allclose(means, expected, rtol=1e-5)
  assert image_text.latent_cosine_similarity(means, 0, 1) == pytest.approx(1.0, abs=1e-6)


def test_opposite_and_orthogonal_unimodal_means():
  image_means = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  for text_means, cosine in (([[-3.0, 0.0], [0.0, -1.0]], -1.0), ([[0.0, 1.0], [5.0, 0.0]], 0.0)):
    posteriors = Gaussian(jnp.asarray(np.stack([image_means, np.float32(text_means)])),
                          jnp.zeros((2, 2, 2)))
    means = image_text.unimodal_posterior_means(posteriors, "poe")
    assert image_text.latent_cosine_similarity(np.asarray(means), 0, 1) == pytest.approx(
        cosine, abs=1e-6)


def test_padded_batches_cover_every_example_once():
  batches = list(input_pipeline.padded_batches(7, 3))
  assert [valid for _, valid in batches] == [3, 3, 1]
  np.testing.assert_array_equal(batches[-1][0], [6, 6, 6])
  np.testing.assert_array_equal(np.concatenate([ids[:n] for ids, n in batches]), np.arange(7))


# --- Fake data ------------------------------------------------------------------------

CELEBA_PARTITIONS = [0] * 8 + [2] * 4


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory):
  """A directory of twelve fake CelebA faces: eight train, four test."""
  root = tmp_path_factory.mktemp("celeba")
  image_dir = root / "img_align_celeba"
  image_dir.mkdir()
  rng = np.random.default_rng(1)
  names = [f"{i + 1:06d}.jpg" for i in range(len(CELEBA_PARTITIONS))]
  attributes = rng.random((len(names), 40)) < 0.2
  for name in names:
    Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(image_dir / name)
  rows = [f"{name} " + " ".join("1" if a else "-1" for a in row)
          for name, row in zip(names, attributes)]
  (root / celeba.ATTRIBUTE_FILE).write_text(
      "\n".join([str(len(names)), " ".join(celeba.ATTRIBUTE_NAMES), *rows]) + "\n")
  (image_dir / celeba.PARTITION_FILE).write_text(
      "".join(f"{name} {p}\n" for name, p in zip(names, CELEBA_PARTITIONS)))
  return str(image_dir)


def _shrink(config, root):
  """Two steps of batch 4 on the `tiny` run size, everything else as small as the
  networks allow; the judges under `root`."""
  config = config_lib.resize(config, "tiny")
  config_lib.limit_data(config, 500, 100)
  config.eval.classifier_dir = os.path.join(root, "classifiers")
  config.eval.classifier_max_train_examples = 500
  config.eval.fid.examples = 200
  return conftest.two_image_text_steps(config)


# --- CelebA ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celeba_run(celeba_dir, tmp_path_factory):
  """A CRMVAE run on fake CelebA trained for two steps: (config, workdir)."""
  root = tmp_path_factory.mktemp("celeba_run")
  config = celeba_config.get_config()
  config.data.image_dir = celeba_dir
  config.data.text_length = 64
  config = _shrink(config, root)
  config.eval.fid.enabled = False
  workdir = str(root / "crmvae")
  loop.train_and_evaluate(config, workdir)
  return config, workdir


@pytest.mark.slow
def test_celeba_evaluation_needs_then_uses_the_attribute_classifier(celeba_run):
  config, workdir = celeba_run
  with pytest.raises(UserError, match=re.escape(f"--workdir={workdir} --train_classifier")):
    driver.evaluate(config, workdir)
  metadata = classifier_training.train_attribute_classifier(config)
  assert (metadata["network"], metadata["num_classes"], metadata["multi_label"]) == (
      "image64", 40, True)
  results = driver.evaluate(config, workdir)
  with open(os.path.join(workdir, "eval", driver.RESULTS_FILE)) as f:
    assert json.load(f) == results
  assert results["step"] == 2 and results["modalities"] == {"I": "image", "T": "text"}
  assert results["num_test_pairs"] == 4  # all four test faces (num_examples is 6)
  assert -1.0 <= results["cosine_similarity"] <= 1.0
  for name in ("attribute_accuracy", "attribute_accuracy_real"):
    # A fraction of the 4 x 40 attribute entries.
    assert 0.0 <= results[name] <= 1.0
    assert results[name] * 160 == pytest.approx(round(results[name] * 160))
  assert results["classifier_test_accuracy"] == metadata["test_accuracy"]
  assert results["fid_from_text"] is None and "fid.enabled=False" in results["fid_note"]
  assert os.path.isfile(os.path.join(workdir, "eval", driver.TEXT_FIGURE_FILE))
  # The tables show what the metrics returned.
  with open(os.path.join(workdir, "eval", driver.TABLES_FILE)) as f:
    markdown = f.read()
  assert f"| CRMVAE | {results['cosine_similarity']:.3f} | {results['attribute_accuracy']:.3f} |" \
      in markdown
  assert f"{results['attribute_accuracy_real']:.3f} of the real test images" in markdown


@pytest.mark.slow
def test_celeba_grid_texts_and_generation(celeba_run):
  config, workdir = celeba_run
  model, params, _, test_set, _ = checkpoints.load_trained(config, workdir)
  texts, ids = driver.chosen_texts(config, test_set, "text")
  assert texts == [t[:64].strip() for t in config.eval.generation_texts]
  assert ids.shape == (5, 64) and text.decode(ids)[2].startswith("eyeglasses, gray hair, male ")
  generate = image_text.make_image_generator(TrainedModel(model, params, "poe"))
  means = generate(ids, None)
  assert means.shape == (5, 64, 64, 3) and 0.0 <= means.min() and means.max() <= 1.0
  np.testing.assert_array_equal(generate(ids, None), means)  # the mean is deterministic
  sampled = generate(ids, jax.random.PRNGKey(3))
  assert not np.allclose(sampled, means)
  # Image and text latents of the test pairs, as the cosine metric sees them.
  latents = image_text.encode_unimodal_means(TrainedModel(model, params, "poe"), test_set,
                                             batch_size=3)
  assert latents.shape == (2, 4, 64)
  assert image_text.latent_cosine_similarity(latents, 0, 1) == pytest.approx(
      metrics.cosine_similarity(latents[0], latents[1]))
