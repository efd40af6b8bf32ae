"""MNIST-SVHN-Text offline: the SVHN-like renderer, the pairs, the cache and the judge."""

import itertools
import json
import os

import ml_collections
import numpy as np
import pytest

from configs import mst_offline as mst_offline_config
from crmvae_jax import data as data_lib
from crmvae_jax.data import mst_offline, syndigits, text
from crmvae_jax.data.quickstart import embedded_mnist
from crmvae_jax.common.errors import UserError

NUM_DIGITS = 200  # embedded MNIST digits the fast tests use: 180 train, 20 test


@pytest.fixture
def config_data(tmp_path, monkeypatch):
  """The data config with a fresh cache and 200 of the embedded digits, 20 per digit."""
  images, labels = embedded_mnist()
  every = len(labels) // NUM_DIGITS  # the digits are stored class by class
  monkeypatch.setattr(mst_offline, "embedded_mnist",
                      lambda: (images[::every], labels[::every]))
  config = mst_offline_config.get_config().data
  config.cache_dir = str(tmp_path / "renders")
  config.judge_renders = 40
  return config


def test_an_image_depends_only_on_seed_pool_and_index():
  labels = np.array([3, 1, 4, 1, 5])
  images = syndigits.render_pool(labels, seed=0, pool="train")
  assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(syndigits.render_pool(labels, seed=0, pool="train"), images)
  # Image i is the same whatever is rendered after it.
  np.testing.assert_array_equal(syndigits.render_pool(labels[:2], seed=0, pool="train"),
                                images[:2])
  # Other seeds and other pools draw other images.
  for seed, pool in ((1, "train"), (0, "test"), (0, "judge"), (0, "class_means")):
    other = syndigits.render_pool(labels, seed=seed, pool=pool)
    assert np.abs(other.astype(int) - images).mean() > 10, (seed, pool)
  with pytest.raises(ValueError, match="unknown pool 'validation'"):
    syndigits.render_pool(labels, seed=0, pool="validation")


def test_training_and_test_pools_crop_disjoint_photo_regions(monkeypatch):
  # One photo: red where training crops (the left 75%), blue where the test pools crop.
  photo = np.zeros((200, 400, 3), np.uint8)
  photo[:, :300, 0] = 200
  photo[:, 300:, 2] = 200
  monkeypatch.setattr(syndigits, "photos", lambda: (photo,))
  labels = np.arange(20) % 10
  for pool, (red_wins) in (("train", True), ("judge", True), ("test", False),
                           ("class_means", False)):
    images = syndigits.render_pool(labels, seed=0, pool=pool).astype(int)
    # The background dominates every image; the digit may take any colour.
    red_minus_blue = np.median(images[..., 0] - images[..., 2], axis=(1, 2))
    assert np.all((red_minus_blue > 0) == red_wins), pool


def test_the_digit_colour_is_symmetric_about_its_background():
  rng = np.random.default_rng(0)
  low, high = syndigits.VERSIONS[1].luminance_gap
  differences = []
  for luminance in np.linspace(0, 255, 52):
    background = np.full((4, 4, 3), luminance)
    for _ in range(40):
      shifted, colour = syndigits._digit_colour(background, luminance, rng)
      assert np.all((colour >= 0) & (colour <= 255))
      assert np.all((shifted >= 0) & (shifted <= 255))
      difference = colour @ syndigits._LUMINANCE - shifted[0, 0] @ syndigits._LUMINANCE
      assert low - 1e-6 <= abs(difference) <= high + 1e-6
      differences.append(difference)
  # Both polarities, drawn alike: over many images the digit averages to its background.
  differences = np.array(differences)
  assert 0.45 < np.mean(differences > 0) < 0.55
  assert abs(differences.mean()) < 5.0


def test_the_mean_of_many_renders_of_a_digit_shows_no_digit(monkeypatch):
  # A uniform grey photo, so that whatever structure the mean has comes from the digits.
  monkeypatch.setattr(syndigits, "photos", lambda: (np.full((200, 400, 3), 128, np.uint8),))
  images = syndigits.render_pool(np.full(400, 8), seed=0, pool="train").astype(float)
  luminance = images @ syndigits._LUMINANCE
  single_image_contrast = luminance.std(axis=(1, 2)).mean()
  mean_image_contrast = luminance.mean(axis=0).std()
  assert mean_image_contrast < 0.15 * single_image_contrast


def test_every_font_draws_distinct_digits():
  from PIL import Image, ImageDraw, ImageFont
  for path in syndigits.font_paths():
    font = ImageFont.truetype(path, 40)
    glyphs = []
    for digit in range(10):
      canvas = Image.new("L", (48, 48), 0)
      ImageDraw.Draw(canvas).text((24, 24), str(digit), fill=255, font=font, anchor="mm")
      glyphs.append(np.asarray(canvas, np.float64) / 255)
    ink = [glyph.sum() for glyph in glyphs]
    assert min(ink) > 20, path  # no missing glyph
    differences = [np.abs(a - b).sum() for i, a in enumerate(glyphs) for b in glyphs[i + 1:]]
    assert min(differences) > 10, path  # no two digits drawn alike


def test_pairs_agree_on_the_digit_and_multiply(config_data):
  train, test = mst_offline.load(config_data)
  assert len(train) == 20 * 180 and len(test) == 20 * 20
  assert set(train.labels) == set(range(10)) and len(set(test.labels)) > 5
  for split in (train, test):
    assert split.modalities == ("mnist", "svhn", "text")
    assert split.arrays["svhn"].shape[1:] == (32, 32, 3)
    # Row i of the split's MNIST images and render i show the same digit.
    row_labels = np.full(len(split.arrays["mnist"]), -1)
    row_labels[split.indices["mnist"]] = split.labels
    np.testing.assert_array_equal(row_labels[split.indices["svhn"]], split.labels)
    names = [s.strip() for s in text.decode(split.arrays["text"])]
    assert names == [text.DIGIT_NAMES[d] for d in split.labels]
  # Every render is used once per multiplication.
  assert np.all(np.bincount(train.indices["svhn"]) == 20)


def test_renders_are_cached_and_read_back(config_data, monkeypatch):
  first, _ = mst_offline.load(config_data)

  def no_rendering(*args, **kwargs):
    raise AssertionError("rendered again instead of reading the cache")

  monkeypatch.setattr(syndigits, "render_pool", no_rendering)
  second, _ = mst_offline.load(config_data)
  np.testing.assert_array_equal(first.arrays["svhn"], second.arrays["svhn"])
  np.testing.assert_array_equal(first.indices["svhn"], second.indices["svhn"])
  # Another seed is another set of renders.
  config_data.seed = 1
  with pytest.raises(AssertionError, match="rendered again"):
    mst_offline.load(config_data)


def test_the_small_setting_keeps_pairs_within_its_caps(config_data):
  config_data.max_train_pairs, config_data.max_test_pairs = 500, 100
  train, test = mst_offline.load(config_data)
  assert (len(train), len(test)) == (500, 100)
  small = mst_offline_config.get_config("small")
  assert (small.data.max_train_pairs, small.data.max_test_pairs) == (5000, 1000)


def test_the_svhn_judge_has_its_own_pool_and_class_means(config_data, monkeypatch):
  monkeypatch.setattr(mst_offline, "CLASS_MEANS", {4: 2, 16: 1})
  values, labels = data_lib.judge_training_examples(config_data, "svhn")
  assert values.shape == (40, 32, 32, 3) and np.all(np.bincount(labels) == 4)
  train, _ = mst_offline.load(config_data)
  # None of the judge's renders is a training render.
  training = {image.tobytes() for image in train.arrays["svhn"]}
  assert not any(image.tobytes() in training for image in values)
  assert data_lib.judge_training_examples(config_data, "mnist") is None
  class_means = data_lib.class_mean_images(config_data, "svhn")
  assert set(class_means) == {4, 16}
  means, mean_labels = class_means[4]
  assert means.shape == (20, 32, 32, 3) and means.dtype == np.float32
  np.testing.assert_array_equal(mean_labels, np.repeat(np.arange(10), 2))
  pool = mst_offline.renders(config_data, "class_means", mst_offline._class_mean_labels())
  np.testing.assert_allclose(means[0], pool[:4].mean(axis=0) / 255.0, rtol=1e-6)
  # The means of 16 average other renders, digit by digit.
  means16, labels16 = class_means[16]
  np.testing.assert_array_equal(labels16, np.arange(10))
  np.testing.assert_allclose(means16[3], pool[80 + 48:80 + 64].mean(axis=0) / 255.0, rtol=1e-6)
  assert data_lib.class_mean_images(config_data, "text") is None
  # Data sets without such hooks have none.
  assert data_lib.judge_training_examples(ml_collections.ConfigDict({"name": "quickstart"}),
                                         "mnist") is None


@pytest.mark.slow
def test_train_judge_and_evaluate_end_to_end(config_data, tmp_path, monkeypatch):
  from crmvae_jax.evaluation import classifier_training, driver
  from crmvae_jax.training import loop

  monkeypatch.setattr(mst_offline, "CLASS_MEANS", {4: 2, 16: 1})
  config = mst_offline_config.get_config("small")
  config.data = config_data
  config.num_train_steps = 4
  config.batch_size = 32
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  config.eval_batches = 1
  config.figure_examples = 4
  config.disable_progress_bar = True
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  config.eval.classifier_epochs = 1
  config.eval.classifier_batch_size = 32
  config.eval.batch_size = 32
  config.eval.num_examples = 64
  config.eval.coherence.prior_samples = 64
  config.eval.latent.train_examples = 64
  config.eval.log_likelihood.samples = 4
  config.eval.log_likelihood.examples = 8
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)

  accuracies = classifier_training.train_classifiers(config)
  assert set(accuracies) == {"mnist", "svhn", "text"}
  with open(tmp_path / "classifiers" / "svhn" / "classifier.json") as f:
    metadata = json.load(f)
  # The S judge trained on its own pool, and was checked on class means of both sizes.
  assert metadata["train_examples"] == config_data.judge_renders
  assert set(metadata["class_mean_accuracy"]) == {"4", "16"}

  results = driver.evaluate(config, workdir)
  assert len(results["coherence"]) == 10  # R and the nine cross-coherences of Table 1
  assert list(results["coherence_exact"]) == ["R", "T<-M", "T<-S", "T<-M+S"]
  assert list(results["log_likelihood"]) == ["M+S+T", "M", "S", "T", "M+S", "M+T", "S+T"]
  assert {"S->M", "M->S"} <= set(results["classifier_fd"])
  with open(os.path.join(workdir, "eval", "tables.md")) as f:
    tables_md = f.read()
  assert "| CRMVAE (paper) | 0.15 | 0.60 | 0.97 |" in tables_md


def test_every_version_renders_apart_from_the_others_and_is_part_of_the_datas_identity():
  # Which calibration candidate each version is: experiments/tests/test_calibrate_svhn.py.
  labels = np.arange(10)
  renders = {v: syndigits.render_pool(labels, seed=0, pool="test", settings=settings)
             for v, settings in syndigits.VERSIONS.items()}
  for first, second in itertools.combinations(renders, 2):
    assert np.abs(renders[first].astype(int) - renders[second]).mean() > 10, (first, second)
  config = mst_offline_config.get_config().data
  for version in syndigits.VERSIONS:
    config.renderer_version = version
    mst_offline.check_config(config)
    assert data_lib.identity(config) == {"name": "mst_offline", "renderer_version": version}
  unknown = max(syndigits.VERSIONS) + 1
  config.renderer_version = unknown
  with pytest.raises(UserError, match=f"data.renderer_version {unknown} is not a renderer "
                     "version"):
    mst_offline.check_config(config)
