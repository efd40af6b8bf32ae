"""PolyMNIST end to end: training and evaluation for M = 2 and M = 5 on tiny data built
from the embedded digits, FID and coherence by subset size, and Figure 2's
aggregation and drawing."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

import conftest
from crmvae_jax.reporting import summaries
from crmvae_jax.evaluation import fid
from crmvae_jax import sweeps
from crmvae_jax.reporting import tables
from crmvae_jax.data import polymnist
from crmvae_jax.data.modalities import modalities_of

SEEDS_OF = conftest.POLYMNIST_SEEDS_OF


def _abbreviations(num_modalities: int) -> list[str]:
  return [f"M{m}" for m in range(num_modalities)]


@pytest.mark.slow
@pytest.mark.xdist_group("polymnist_runs")
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
