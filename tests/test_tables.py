"""Tests for crmvae_jax.reporting.tables: the paper's numbers and the Markdown layouts."""

from __future__ import annotations

import pytest

from crmvae_jax.reporting import tables

TABLE_1_HEADER = ("| model | R | M<-S | M<-T | M<-S+T | S<-M | S<-T | S<-M+T | T<-M | "
                  "T<-S | T<-M+S |")
TABLE_2_HEADER = "| model | S->M | M->S |"
TABLE_5_HEADER = "| model | M | S | T | M+S | M+T | S+T | M+S+T |"


def _lines(table: str) -> list[str]:
  return table.rstrip("\n").split("\n")


def test_column_names():
  assert tables.column_name("M", ("S", "T")) == "M<-S+T"
  assert tables.column_name("T", ["M"]) == "T<-M"
  assert tables.subset_name(("M", "S", "T")) == "M+S+T"


def test_coherence_columns_generalise_to_more_modalities():
  columns = tables.coherence_columns(("m0", "m1", "m2", "m3"))
  # R, then per target the 2^3 - 1 = 7 subsets of the other three.
  assert len(columns) == 1 + 4 * 7
  assert columns[:8] == ["R", "m0<-m1", "m0<-m2", "m0<-m3", "m0<-m1+m2", "m0<-m1+m3",
                         "m0<-m2+m3", "m0<-m1+m2+m3"]
  assert columns[-1] == "m3<-m0+m1+m2"
  assert tables.latent_columns(("a", "b")) == ["a", "b", "a+b"]


def test_paper_numbers_cover_every_model_of_the_paper():
  assert set(tables.PAPER_COHERENCE) == set(tables.PAPER_MODEL_NAMES)
  assert set(tables.PAPER_FID) == set(tables.PAPER_MODEL_NAMES)
  assert set(tables.PAPER_LATENT) == {"crmvae", "mvtcae", "mopoe"}
  assert tables.PAPER_COHERENCE["crmvae"]["T<-S"] == 0.71
  assert tables.PAPER_COHERENCE["mvae"]["S<-M+T"] == 0.67
  assert tables.PAPER_FID["mmvae"]["M->S"] == 307.9
  assert tables.PAPER_LATENT["mvtcae"]["S"] == 0.31
  assert list(tables.DISPLAY_NAMES) == list(tables.MODEL_NAMES)


def test_format_value():
  assert tables.format_value([0.58, 0.60, 0.62], 2) == "0.60 ± 0.02"
  assert tables.format_value(0.6049, 2) == "0.60"
  assert tables.format_value([24.13], 1) == "24.1"
  assert tables.format_value(None, 2) == "-"
  with pytest.raises(ValueError):
    tables.format_value([], 2)


def test_coherence_table_layout_and_paper_rows():
  results = {
      "crmvae": {"R": [0.14, 0.16], "M<-S": 0.6, "T<-M+S": [0.9, 1.0]},
      "mmvae": {column: 0.5 for column in tables.coherence_columns()},
  }
  lines = _lines(tables.coherence_table(results, paper=True))
  assert lines[0] == TABLE_1_HEADER
  assert lines[1] == "|---" * 11 + "|"
  # Paper order: MMVAE before CRMVAE, each followed by its paper row.
  assert lines[2] == "| MMVAE | " + " | ".join(["0.50"] * 10) + " |"
  assert lines[3].startswith("| MMVAE (paper) | 0.12 | 0.81 | 0.99 |")
  assert lines[4] == ("| CRMVAE | 0.15 ± 0.01 | 0.60 | - | - | - | - | - | - | - | "
                      "0.95 ± 0.05 |")
  assert lines[5] == ("| CRMVAE (paper) | 0.15 | 0.60 | 0.97 | 0.97 | 0.73 | 0.87 | "
                      "0.87 | 0.91 | 0.71 | 0.95 |")
  assert len(lines) == 6


def test_coherence_table_without_paper_rows_and_other_modalities():
  lines = _lines(tables.coherence_table({"my_model": {"R": 0.3}}, modalities=("a", "b")))
  assert lines[0] == "| model | R | a<-b | b<-a |"
  assert lines[2] == "| my_model | 0.30 | - | - |"
  with pytest.raises(ValueError, match="MNIST-SVHN-Text"):
    tables.coherence_table({"crmvae": {}}, modalities=("a", "b"), paper=True)


def test_fid_table():
  results = {"crmvae": {"S->M": [24.0, 26.0], "M->S": 37.26},
             "mvae": {"S->M": 40.0, "M->S": 35.0}}
  lines = _lines(tables.fid_table(results, paper=True))
  assert lines[0] == TABLE_2_HEADER
  assert lines[2:] == [
      "| MVAE | 40.0 | 35.0 |",
      "| MVAE (paper) | 39.0 | 36.0 |",
      "| CRMVAE | 25.0 ± 1.0 | 37.3 |",
      "| CRMVAE (paper) | 24.1 | 37.3 |",
  ]


def test_latent_table_adds_paper_rows_only_where_reported():
  results = {"mvtcae_rescale": {"M": 0.9}, "mopoe": {"M+S+T": [0.97, 0.99]}}
  lines = _lines(tables.latent_table(results, paper=True))
  assert lines[0] == TABLE_5_HEADER
  assert lines[2:] == [
      "| MoPoE-VAE | - | - | - | - | - | - | 0.98 ± 0.01 |",
      "| MoPoE-VAE (paper) | 0.95 | 0.81 | 0.99 | 0.96 | 0.98 | 0.93 | 0.98 |",
      "| MVTCAE (rescale) | 0.90 | - | - | - | - | - | - |",
  ]


def test_a_sweep_evaluation_is_one_table_with_a_row_per_seed_and_beta():
  from crmvae_jax.reporting import summaries

  def run(seed, beta, r, cross, probe):
    return {"model": "crmvae", "data": "quickstart", "seed": seed, "beta": beta, "step": 60,
            "coherence": {tables.JOINT_COHERENCE_COLUMN: r, "M<-T": cross, "T<-M": cross},
            "latent": {"M": probe, "T": probe}}

  runs = [run(1, 2.0, 0.30, 0.7, 0.9), run(0, 0.5, 0.10, 0.5, 0.8),
          run(0, 2.0, 0.20, 0.6, 0.7), run(1, 0.5, 0.40, 0.3, 0.6)]
  markdown = summaries.replicas_markdown(runs)
  lines = [line for line in markdown.splitlines() if line.startswith("| seed")]
  assert lines == ["| seed 0, beta 0.5 | 0.10 | 0.50 | 0.80 |",
                   "| seed 1, beta 0.5 | 0.40 | 0.30 | 0.60 |",
                   "| seed 0, beta 2 | 0.20 | 0.60 | 0.70 |",
                   "| seed 1, beta 2 | 0.30 | 0.70 | 0.90 |"]
  # Mean ± std (population) over the two seeds of each beta.
  assert "| CRMVAE, beta 0.5, 2 seed(s) | 0.25 ± 0.15 | 0.40 ± 0.10 | 0.70 ± 0.10 |" in markdown
  assert "| CRMVAE, beta 2, 2 seed(s) | 0.25 ± 0.05 | 0.65 ± 0.05 | 0.80 ± 0.10 |" in markdown
  assert markdown.startswith("# CRMVAE on quickstart, 4 replicas, step 60")
