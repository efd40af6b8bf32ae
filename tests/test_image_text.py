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
import tensorflow_datasets as tfds
from PIL import Image

from configs import celeba as celeba_config
from configs import cub as cub_config
from crmvae_jax.evaluation import classifier_training, driver, image_text
from crmvae_jax.data import input_pipeline
from crmvae_jax import sweeps
from crmvae_jax.evaluation import metrics
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.training import checkpoints, loop
from crmvae_jax.data import celeba, cub, text, tfds_arrays
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.common.errors import UserError
from experiments import beta_sweep


@pytest.fixture(scope="module", autouse=True)
def _fast_initialiser_compilation():
  """Partitionable threefry (JAX's default) compiles every parameter initialiser of
  the 64x64 networks about five times slower on a CPU; the classic one keeps this
  file's compilation in budget. The values differ, not what the tests check."""
  with jax.threefry_partitionable(False):
    yield


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

CUB_TRAIN = ["001.Black_footed_Albatross/A_1.jpg", "017.Cardinal/C_2.jpg"]
CUB_TEST = ["017.Cardinal/C_3.jpg"]
CUB_WORDS = ("red", "black", "small", "large", "wings", "beak", "crown", "white")


def _cub_caption(image_id, k):
  words = [CUB_WORDS[(image_id + k + j) % len(CUB_WORDS)] for j in range(3)]
  return f"a bird with {' '.join(words)}"


@pytest.fixture(scope="module")
def cub_data(tmp_path_factory):
  """(TFDS data_dir, captions_dir) of three fake CUB images with ten captions each."""
  root = tmp_path_factory.mktemp("cub")
  rng = np.random.default_rng(0)
  splits = {}
  for split, relatives, first_id in (("train", CUB_TRAIN, 0), ("test", CUB_TEST, 2)):
    count = len(relatives)
    for offset, relative in enumerate(relatives):
      path = cub.caption_path(root / "text_c10", f"CUB_200_2011/images/{relative}")
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text("\n".join(_cub_caption(first_id + offset, k) for k in range(10)))
    splits[split] = {
        "image": rng.integers(0, 256, (count, 80, 70, 3), dtype=np.uint8),
        "image/filename": [f"CUB_200_2011/images/{r}" for r in relatives],
        "label": np.array([int(r[:3]) - 1 for r in relatives]),
        "label_name": [r.split("/")[0] for r in relatives],
        "bbox": [tfds.features.BBox(0.0, 0.0, 1.0, 1.0)] * count,
        "segmentation_mask": [np.zeros((8, 8, 1), np.uint8)] * count,
    }
  tfds_arrays.write_arrays(cub.TFDS_NAME, str(root / "tfds"), splits)
  return str(root / "tfds"), str(root / "text_c10")


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
  """Two steps of batch 4, everything else as small as the networks allow."""
  config = beta_sweep.small_setting(config, str(root))
  config.num_train_steps = 2
  config.batch_size = 4
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.figure_examples = 2
  config.disable_progress_bar = True
  config.eval.batch_size = 4
  config.eval.num_examples = 6
  config.eval.classifier_epochs = 1
  config.eval.classifier_batch_size = 4
  return config


# --- CUB ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cub_sweep(cub_data, tmp_path_factory):
  """The beta sweep's small setting on fake CUB: CRMVAE at two betas, one seed."""
  root = tmp_path_factory.mktemp("cub_sweep")
  config = cub_config.get_config()
  config.data.data_dir, config.data.captions_dir = cub_data
  config.data.download = False
  config.data.min_word_count = 1
  config.data.max_caption_length = 8
  config = _shrink(config, root)
  # FID asked for, but no Inception weights: evaluation must say so and go on.
  config.eval.inception_weights = str(root / "no_inception.npz")
  runs = beta_sweep.run_sweep(config, ["crmvae"], [0.5, 2.0], [0], str(root))
  return config, root, runs, beta_sweep.write_report(runs, str(root))


@pytest.mark.slow
def test_cub_sweep_trains_and_evaluates_every_beta(cub_sweep):
  config, root, runs, _ = cub_sweep
  assert [(run.results["beta"], run.results["seed"]) for run in runs] == [(0.5, 0), (2.0, 0)]
  workdir = os.path.join(root, "crmvae")
  for replica, run in enumerate(runs):
    results = run.results
    assert run.eval_dir == os.path.join(workdir, f"replica_{replica}", "eval")
    with open(os.path.join(run.eval_dir, driver.RESULTS_FILE)) as f:
      assert json.load(f) == results
    assert results["step"] == 2 and results["model"] == "crmvae"
    assert results["modalities"] == {"I": "image", "C": "caption"}
    assert results["num_test_pairs"] == 6
    assert -1.0 <= results["cosine_similarity"] <= 1.0
    assert results["fid_from_text"] is None
    assert "FID skipped" in results["fid_note"] and "no_inception.npz" in results["fid_note"]
    assert "attribute_accuracy" not in results  # CUB has no attributes
    generated = np.load(os.path.join(run.eval_dir, driver.GENERATED_FILE))
    assert generated["images"].shape == (5, 64, 64, 3)
    assert len(generated["texts"]) == len(config.eval.generation_texts)
    assert os.path.isfile(os.path.join(run.eval_dir, driver.TEXT_FIGURE_FILE))
  # One program trained both betas, into different parameters.
  sweep_config = sweeps.grid_config(config, "crmvae", [0], [0.5, 2.0])
  params = [checkpoints.load_trained(sweep_config, workdir, replica).params for replica in (0, 1)]
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, *params)))


@pytest.mark.slow
def test_cub_sweep_writes_figure_grid_and_table(cub_sweep):
  _, root, runs, markdown = cub_sweep
  for name in (beta_sweep.FIGURE_FILE, beta_sweep.GRID_FILE, beta_sweep.TABLES_FILE):
    assert os.path.getsize(os.path.join(root, name)) > 0
  assert "| CRMVAE |" in markdown and "beta=0.5" in markdown and "beta=2" in markdown
  assert f"{runs[0].results['cosine_similarity']:.3f}" in markdown
  # Collecting again finds the same results without training.
  collected = beta_sweep.run_sweep(cub_sweep[0], ["crmvae"], [0.5, 2.0], [0], str(root),
                                   collect_only=True)
  assert [run.results for run in collected] == [run.results for run in runs]


@pytest.mark.slow
def test_cub_grid_texts_go_through_the_vocabulary(cub_sweep):
  config, *_ = cub_sweep
  train_set, test_set = cub.load(config.data)
  texts, ids = driver.chosen_texts(config, test_set, "caption")
  assert ids.shape == (5, 8)
  # Only the words the fake captions hold survive; the rest are unknown.
  assert texts[0] == "<unk> bird <unk> a red crown <unk>"  # cut to 7 words and <eos>
  direct = image_text.encode_texts(train_set, "caption", ["a bird with red wings"])
  assert train_set.vocabularies["caption"].decode(direct) == ["a bird with red wings"]


# --- CelebA ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def celeba_run(celeba_dir, tmp_path_factory):
  """A CRMVAE run on fake CelebA trained for two steps: (config, workdir)."""
  root = tmp_path_factory.mktemp("celeba_run")
  config = celeba_config.get_config()
  config.data.image_dir = celeba_dir
  config.data.text_length = 64
  config = _shrink(config, root)
  config.eval.fid = False
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
  assert results["fid_from_text"] is None and "fid=False" in results["fid_note"]
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
