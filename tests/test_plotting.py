"""Figures people look at (`crmvae_jax.reporting.plotting`): laid out without bands of white."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from crmvae_jax.reporting import plotting


def _tallest_white_band(path) -> int:
  """Rows of pixels in the tallest band with no ink (nothing darker than light grey)."""
  ink = (plt.imread(str(path))[..., :3] < 0.8).any(axis=(1, 2))
  tallest = run = 0
  for inked in ink[np.argmax(ink):]:  # from the first ink down
    run = 0 if inked else run + 1
    tallest = max(tallest, run)
  return tallest


@pytest.mark.parametrize("captions", [["zero", "one", "two"],
                                      ["a small bird with a red crown, white belly and black "
                                       "wings with white bars on them, short beak"] * 3])
def test_a_text_grid_has_no_band_of_white_under_its_title(tmp_path, captions):
  # The header row is as tall as its captions: one word or four lines, the title, the
  # captions and the images follow each other with gaps no taller than between two rows
  # of images (~0.4 inch at 100 dpi; a fixed header left 1.9 inches under one-word ones).
  images = np.random.default_rng(0).random((3, 8, 8, 3))
  path = tmp_path / "grid.png"
  plotting.save_text_grid(captions, [(f"row {i}", images) for i in range(4)], str(path),
                          "S generated from M")
  assert _tallest_white_band(path) <= 45


def test_every_model_of_a_figure_has_its_own_curve_style():
  # The thirteen models of the offline MST learning curves once drew two of them in one
  # colour, the eleventh wrapping to the first of matplotlib's ten.
  for count in (1, 10, 11, 13, 40):
    styles = plotting.curve_styles([f"model{i}" for i in range(count)])
    assert len(set(styles.values())) == count
  assert plotting.curve_styles(["a", "b"]) == {"a": ("C0", "-"), "b": ("C1", "-")}
  with pytest.raises(ValueError, match="41 models"):
    plotting.curve_styles([f"model{i}" for i in range(41)])
