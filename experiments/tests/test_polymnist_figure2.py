"""experiments/paper/polymnist_figure2.py: Figure 2's aggregation, table and PNG, on
hand-made results and on tiny real runs (the `polymnist_runs` fixture of conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crmvae_jax.reporting import tables
from experiments.paper import polymnist_figure2


def _abbreviations(num_modalities: int) -> list[str]:
  return [f"M{m}" for m in range(num_modalities)]


@pytest.mark.slow
@pytest.mark.xdist_group("polymnist_runs")
def test_the_figure_of_real_runs_is_drawn(polymnist_runs, tmp_path):
  _, _, runs = polymnist_runs[5]
  grouped = polymnist_figure2.per_subset_size(runs)
  assert list(grouped["coherence"]["crmvae"]) == [1, 2, 3, 4]
  assert grouped["fid"] == {}
  path = str(tmp_path / "figure2.png")
  polymnist_figure2.draw_figure(grouped, path, polymnist_figure2.fid_note(runs))
  assert Image.open(path).format == "PNG"


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
