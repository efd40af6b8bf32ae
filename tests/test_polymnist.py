"""PolyMNIST end to end: training and evaluation for M = 2 and M = 5 on tiny data built
from the embedded digits, FID and coherence by subset size, and Figure 2's
aggregation and drawing."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import polymnist as polymnist_config
from crmvae_jax.reporting import summaries
from crmvae_jax.evaluation import fid
from crmvae_jax import sweeps
from crmvae_jax.reporting import tables
from crmvae_jax.data import polymnist
from crmvae_jax.data.modalities import modalities_of
from experiments import polymnist_figure2

# The first 160 embedded training digits hold at least 5 of every digit (M = 5 tuples).
MAX_TRAIN, MAX_TEST = 160, 80
SEEDS_OF = {2: [0, 1], 5: [0]}  # M = 2 also exercises a two-replica grid


def _tiny_config(num_modalities: int, root) -> ml_collections.ConfigDict:
  """The tiny run size, smaller still where these tests' counts need it."""
  config = polymnist_config.get_config("tiny")
  config.data.num_modalities = num_modalities
  config.data.max_train = MAX_TRAIN
  config.data.max_test = MAX_TEST
  config.data.cache_dir = str(root / "cache")
  config.latent_dim = 16  # the networks' 512 only slows compilation here
  config.batch_size = 16
  config.num_train_steps = 2
  config.log_every_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval.classifier_dir = str(root / "classifiers")
  config.eval.classifier_max_train_examples = 64
  config.eval.batch_size = 16
  config.eval.num_examples = 24  # one padded batch after a full one
  config.eval.num_prior_samples = 16
  config.eval.probe_train_examples = 32
  config.eval.fid_examples = 16
  config.eval.inception_weights = str(root / "missing_inception.npz")
  return polymnist_figure2.with_fid_by_subset_size(config, fid=True, subsets_per_size=-1)


@pytest.fixture(scope="module")
def polymnist_runs(tmp_path_factory):
  """num_modalities -> (config, `sweeps.run_grid` results of CRMVAE) for M = 2 and 5."""
  runs = {}
  for num_modalities, seeds in SEEDS_OF.items():
    root = tmp_path_factory.mktemp(f"polymnist_m{num_modalities}")
    config = _tiny_config(num_modalities, root)
    runs[num_modalities] = (config, root, sweeps.run_grid(
        config, ["crmvae"], seeds, [config.beta], str(root / "runs")))
  return runs


def _abbreviations(num_modalities: int) -> list[str]:
  return [f"M{m}" for m in range(num_modalities)]


@pytest.mark.slow
@pytest.mark.parametrize("num_modalities", [2, 5])
def test_training_and_evaluation_run(polymnist_runs, num_modalities):
  config, root, runs = polymnist_runs[num_modalities]
  assert [run["seed"] for run in runs] == SEEDS_OF[num_modalities]
  abbreviations = _abbreviations(num_modalities)
  for replica, run in enumerate(runs):
    assert run["model"] == "crmvae" and run["data"] == "polymnist" and run["step"] == 2
    assert run["modalities"] == {a: f"m{m}" for m, a in enumerate(abbreviations)}
    assert run["num_test_pairs"] == 24
    # R and every (target, subset of the other modalities): 1 + M (2^(M-1) - 1) columns.
    assert list(run["coherence"]) == tables.coherence_columns(abbreviations)
    assert len(run["coherence"]) == 1 + num_modalities * (2 ** (num_modalities - 1) - 1)
    assert all(0.0 <= value <= 1.0 for value in run["coherence"].values())
    sizes = summaries.by_subset_size(run)
    assert list(sizes["coherence"]) == list(range(1, num_modalities))
    assert list(sizes["latent"]) == list(range(1, num_modalities + 1))
    assert list(run["latent"]) == tables.latent_columns(abbreviations)
    # Offline there are no Inception weights: FID is skipped with the file to provide.
    assert run["fid"] is None and "fid" not in sizes
    assert run["fid_note"].startswith("FID skipped") and "missing_inception.npz" in run["fid_note"]
    assert set(run["judge_accuracy"]) == {f"m{m}" for m in range(num_modalities)}
    seeds = SEEDS_OF[num_modalities]
    grid = sweeps.grid_config(config, "crmvae", seeds, [config.beta])
    workdir = sweeps.grid_directory(str(root / "runs"), "crmvae", seeds, [config.beta])
    assert os.path.isfile(sweeps.results_path(grid, workdir, replica))


@pytest.mark.slow
def test_the_figure_of_real_runs_is_drawn(polymnist_runs, tmp_path):
  _, _, runs = polymnist_runs[5]
  grouped = polymnist_figure2.per_subset_size(runs)
  assert list(grouped["coherence"]["crmvae"]) == [1, 2, 3, 4]
  assert grouped["fid"] == {}
  path = str(tmp_path / "figure2.png")
  polymnist_figure2.draw_figure(grouped, path, polymnist_figure2.fid_note(runs))
  assert Image.open(path).format == "PNG"


def _stand_in_dataset(num_modalities: int):
  """Built PolyMNIST of random 'digits' on constant backgrounds: 40 tuples."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
  labels = np.arange(40) % 4
  backgrounds = [np.full((30, 30, 3), 40 * m, np.uint8) for m in range(num_modalities)]
  dataset = polymnist.build(images, labels, backgrounds, num_modalities, 0, translate=False)
  return dataset, modalities_of("polymnist", dataset)


def _pooled_features(images: np.ndarray) -> np.ndarray:
  """Stand-in features: 7x7 average-pooled grey levels [B, 16]."""
  images = np.asarray(images, np.float64)
  if images.max() > 1.0:
    images = images / 255.0
  grey = images.mean(axis=-1)
  return grey.reshape(len(grey), 4, 7, 4, 7).mean(axis=(2, 4)).reshape(-1, 16)


def test_fid_subsets_by_size():
  rng = np.random.default_rng(0)
  single = fid.fid_subsets(5, False, -1, rng)
  np.testing.assert_array_equal(single, np.eye(5, dtype=bool))
  every = fid.fid_subsets(5, True, -1, rng)
  assert every.shape == (30, 5)
  np.testing.assert_array_equal(np.bincount(every.sum(axis=1)), [0, 5, 10, 10, 5])
  assert len({row.tobytes() for row in every}) == 30
  one_per_size = fid.fid_subsets(5, True, 1, rng)
  np.testing.assert_array_equal(one_per_size.sum(axis=1), [1, 2, 3, 4])
  two_per_size = fid.fid_subsets(5, True, 2, np.random.default_rng(1))
  np.testing.assert_array_equal(two_per_size.sum(axis=1), [1, 1, 2, 2, 3, 3, 4, 4])
  np.testing.assert_array_equal(  # seeded
      two_per_size, fid.fid_subsets(5, True, 2, np.random.default_rng(1)))


def test_fid_by_subset_size_of_true_inputs_and_of_noise():
  dataset, modalities = _stand_in_dataset(3)

  def true_inputs(subset, batch, rng):
    return [batch[m.name] / 255.0 for m in modalities]

  def dark_noise(subset, batch, rng):
    generator = np.random.default_rng(np.asarray(rng).tolist())
    return [0.2 * generator.uniform(size=batch[m.name].shape) for m in modalities]

  subsets = fid.fid_subsets(3, True, -1, np.random.default_rng(0))
  scores = fid.fid_scores(true_inputs, _pooled_features, dataset, modalities, 16,
                          jax.random.PRNGKey(0), subsets)
  # Per target, every subset of the other two modalities, singles first.
  assert list(scores) == ["M1->M0", "M2->M0", "M1+M2->M0", "M0->M1", "M2->M1", "M0+M2->M1",
                          "M0->M2", "M1->M2", "M0+M1->M2"]
  assert all(abs(value) < 1e-6 for value in scores.values())
  noise_scores = fid.fid_scores(dark_noise, _pooled_features, dataset, modalities, 16,
                                jax.random.PRNGKey(0), subsets)
  assert all(value > 1.0 for value in noise_scores.values())
  # Without subsets: Table 2's single sources.
  assert list(fid.fid_scores(true_inputs, _pooled_features, dataset, modalities, 16,
                             jax.random.PRNGKey(0))) == [
                                 "M1->M0", "M2->M0", "M0->M1", "M2->M1", "M0->M2",
                                 "M1->M2"]


def test_by_subset_size_of_hand_made_results():
  results = {
      "coherence": {"R": 0.05, "M0<-M1": 0.2, "M0<-M2": 0.4, "M0<-M1+M2": 0.9,
                    "M1<-M0": 0.6, "M1<-M2": 0.0, "M1<-M0+M2": 0.7},
      "fid": {"M1->M0": 10.0, "M2->M0": 30.0, "M1+M2->M0": 4.0, "M0+M2->M1": 8.0},
      "latent": {"M0": 0.5, "M1": 0.7, "M0+M1": 0.8, "M0+M1+M2": 1.0},
  }
  sizes = summaries.by_subset_size(results)
  assert sizes.keys() == {"coherence", "fid", "latent"}
  assert sizes["coherence"] == pytest.approx({1: 0.3, 2: 0.8})  # R has no subset
  assert sizes["fid"] == pytest.approx({1: 20.0, 2: 6.0})
  assert sizes["latent"] == pytest.approx({1: 0.6, 2: 0.8, 3: 1.0})
  assert list(sizes["coherence"]) == [1, 2]
  assert "fid" not in summaries.by_subset_size({**results, "fid": None})


def _hand_made_run(model: str, seed: int, with_fid: bool) -> dict:
  """A 4-modality result whose columns conditioned on k inputs all equal
  base + 0.1 k (coherence) and 100 - 10 k + seed (FID)."""
  base = {"mopoe": 0.1, "mvtcae": 0.2, "crmvae": 0.3}[model] + 0.1 * seed
  abbreviations = _abbreviations(4)
  coherence = {column: (0.9 if column == "R" else base + 0.1 * (column.count("+") + 1))
               for column in tables.coherence_columns(abbreviations)}
  run = {"model": model, "seed": seed, "data": "polymnist", "step": 10,
         "modalities": {a: f"m{m}" for m, a in enumerate(abbreviations)},
         "coherence": coherence, "latent": {"M0": 0.5}, "fid": None,
         "fid_note": "FID skipped: no Inception weights at /nowhere/inception_fid.npz."}
  if with_fid:
    run["fid"] = {"M1->M0": 90.0 + seed, "M1+M2->M0": 80.0 + seed, "M1+M2+M3->M0": 70.0 + seed}
    del run["fid_note"]
  return run


@pytest.mark.parametrize("with_fid", [True, False])
def test_figure_aggregation_table_and_png(tmp_path, with_fid):
  runs = [_hand_made_run(model, seed, with_fid)
          for model in ("crmvae", "mopoe", "mvtcae") for seed in (0, 1)]
  grouped = polymnist_figure2.per_subset_size(runs)
  assert grouped["coherence"]["crmvae"] == {
      1: pytest.approx([0.4, 0.5]), 2: pytest.approx([0.5, 0.6]),
      3: pytest.approx([0.6, 0.7])}
  note = polymnist_figure2.fid_note(runs)
  markdown = polymnist_figure2.figure_table(grouped, note)
  lines = markdown.splitlines()
  # Models in the paper's order, mean ± population std over the two seeds.
  if with_fid:
    assert note is None
    assert grouped["fid"]["mvtcae"] == {1: [90.0, 91.0], 2: [80.0, 81.0], 3: [70.0, 71.0]}
    assert lines[0] == ("| model | coherence k=1 | coherence k=2 | coherence k=3 | FID k=1 "
                        "| FID k=2 | FID k=3 |")
    assert lines[4] == ("| CRMVAE | 0.450 ± 0.050 | 0.550 ± 0.050 | 0.650 ± 0.050 | "
                        "90.500 ± 0.500 | 80.500 ± 0.500 | 70.500 ± 0.500 |")
  else:
    assert grouped["fid"] == {} and note.startswith("FID skipped")
    assert lines[0] == "| model | coherence k=1 | coherence k=2 | coherence k=3 |"
    assert lines[2] == "| MoPoE-VAE | 0.250 ± 0.050 | 0.350 ± 0.050 | 0.450 ± 0.050 |"
    assert markdown.rstrip().endswith(note)
  path = str(tmp_path / "plots" / "figure2.png")
  polymnist_figure2.draw_figure(grouped, path, note, title="test")
  with Image.open(path) as image:
    assert image.format == "PNG" and image.size == (1320, 504)
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
  # Coloured pixels (the models' lines and bands) in each panel; the FID panel without
  # FID holds only its black note.
  coloured = pixels.max(axis=-1) - pixels.min(axis=-1) > 30
  left_panel, right_panel = coloured[:, :640], coloured[:, 700:]
  assert left_panel.mean() > 0.05
  assert (right_panel.mean() > 0.01) if with_fid else not right_panel.any()
