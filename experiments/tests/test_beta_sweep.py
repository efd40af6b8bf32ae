"""experiments/paper/beta_sweep.py (Figures 3 and 4): its small setting on fake CUB,
CRMVAE at two betas trained by one program, evaluated, tabulated and drawn; and what
the package's image-text evaluation writes for each replica."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import conftest

from configs import cub as cub_config
from crmvae_jax import sweeps
from crmvae_jax.data import cub, tfds_arrays
from crmvae_jax.evaluation import driver, image_text
from crmvae_jax.training import checkpoints
from experiments.paper import beta_sweep


# The 64x64 networks' initialisers compile fast with classic threefry (conftest.py).
pytestmark = pytest.mark.usefixtures("classic_threefry")


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


def _shrink(config, root):
  """Two steps of batch 4, everything else as small as the networks allow."""
  return conftest.two_image_text_steps(beta_sweep.small_setting(config, str(root)))


# --- CUB ----------------------------------------------------------------------------


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
  config.eval.fid.inception_weights = str(root / "no_inception.npz")
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
