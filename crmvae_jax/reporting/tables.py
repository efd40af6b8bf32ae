"""The paper's MNIST-SVHN-Text numbers, and Markdown tables in the paper's layouts.

Constants hold the paper's numbers (means of three runs): Table 1 cross- and joint
coherence, Table 2 FID of cross-generated images, Table 5 latent linear
classification. The renderers lay our results out the same way, one row per model
(mean ± std over seeds when a list of per-seed values is given) and, when asked, the
paper's row beneath each model the paper reports.

Column names: 'R' is joint coherence; 'M<-S+T' is modality M generated from the
subset {S, T} (`column_name`); 'S->M' is FID of M images generated from S; 'M+S' is a
latent probe on the posterior of the subset {M, S} (`subset_name`). The generators
work for any modality abbreviations, e.g. PolyMNIST's ('m0', ..., 'm4').
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import tabulate

from crmvae_jax.model import objectives

# The paper's order and names, from the model registry (`objectives.MODELS`), then the
# models added since; the paper's eight alone are `PAPER_MODEL_NAMES`.
MODEL_NAMES = tuple(objectives.MODELS)
PAPER_MODEL_NAMES = tuple(name for name, model in objectives.MODELS.items()
                          if not (model.private or model.joint_encoder))
DISPLAY_NAMES = objectives.DISPLAY_NAMES

MST_MODALITIES = ("M", "S", "T")
JOINT_COHERENCE_COLUMN = "R"
FID_COLUMNS = ("S->M", "M->S")

# Shown for a result or paper value that a table has no number for.
_MISSING = "-"

# GitHub Markdown as these tables have always been written: cells unpadded, a `|---|`
# rule under the header (tabulate's own "github" format pads every column to its width).
_MARKDOWN = tabulate.TableFormat(
    lineabove=None, linebelowheader=lambda widths, _: "|---" * len(widths) + "|",
    linebetweenrows=None, linebelow=None, headerrow=tabulate.DataRow("|", "|", "|"),
    datarow=tabulate.DataRow("|", "|", "|"), padding=1, with_header_hide=None)

Number = float | Sequence[float]
Results = Mapping[str, Mapping[str, Number]]


# The scalar results of an image-text evaluation, with their labels: the evaluation's
# table and the beta sweep's axes and tables.
SCALAR_METRICS = {
    "cosine_similarity": "cosine similarity, image vs text latents",
    "attribute_accuracy": "attribute accuracy of images from text",
    "fid_from_text": "FID of images generated from text",
}


def subset_name(subset: Sequence[str]) -> str:
  """'M+S' for the subset ('M', 'S')."""
  return "+".join(subset)


def column_name(target: str, subset: Sequence[str]) -> str:
  """Cross-coherence column of `target` generated from `subset`: 'M<-S+T'."""
  return f"{target}<-{subset_name(subset)}"


def nonempty_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
  """All non-empty subsets, ordered by size, then by position in `modalities`.

  Args:
    modalities: abbreviations, e.g. ('M', 'S', 'T').

  Returns:
    e.g. [('M',), ('S',), ('T',), ('M', 'S'), ('M', 'T'), ('S', 'T'), ('M', 'S', 'T')].
  """
  return [subset for size in range(1, len(modalities) + 1)
          for subset in itertools.combinations(modalities, size)]


def coherence_columns(modalities: Sequence[str] = MST_MODALITIES) -> list[str]:
  """Table 1's columns: 'R', then per target every subset of the other modalities.

  Args:
    modalities: abbreviations in table order.

  Returns:
    For ('M', 'S', 'T'): R, M<-S, M<-T, M<-S+T, S<-M, S<-T, S<-M+T, T<-M, T<-S, T<-M+S.
  """
  columns = [JOINT_COHERENCE_COLUMN]
  for target in modalities:
    others = [m for m in modalities if m != target]
    columns += [column_name(target, subset) for subset in nonempty_subsets(others)]
  return columns


def latent_columns(modalities: Sequence[str] = MST_MODALITIES) -> list[str]:
  """Table 5's columns: every non-empty subset ('M', ..., 'M+S+T')."""
  return [subset_name(subset) for subset in nonempty_subsets(modalities)]


def _paper_row(values: Sequence[float], columns: Sequence[str]) -> dict[str, float]:
  return dict(zip(columns, values, strict=True))


# Table 1: joint coherence R and cross-coherence, model -> column -> accuracy.
PAPER_COHERENCE = {
    model: _paper_row(values, coherence_columns(MST_MODALITIES))
    for model, values in {
        "mvae": (0.04, 0.30, 0.11, 0.30, 0.36, 0.29, 0.67, 0.13, 0.20, 0.22),
        "mmvae": (0.12, 0.81, 0.99, 0.91, 0.39, 0.44, 0.41, 0.48, 0.40, 0.44),
        "mopoe": (0.12, 0.82, 0.99, 0.94, 0.35, 0.37, 0.36, 0.49, 0.42, 0.51),
        "mmjsd": (0.09, 0.81, 0.99, 0.90, 0.39, 0.41, 0.40, 0.44, 0.37, 0.40),
        "mmjsd_poe": (0.15, 0.12, 0.78, 0.80, 0.55, 0.73, 0.86, 0.71, 0.14, 0.74),
        "mvtcae": (0.09, 0.23, 0.86, 0.90, 0.59, 0.78, 0.80, 0.76, 0.27, 0.79),
        "mvtcae_rescale": (0.14, 0.29, 0.89, 0.92, 0.70, 0.79, 0.82, 0.87, 0.34, 0.89),
        "crmvae": (0.15, 0.60, 0.97, 0.97, 0.73, 0.87, 0.87, 0.91, 0.71, 0.95),
    }.items()
}

# Table 2: FID of cross-generated images, model -> 'S->M' / 'M->S' -> FID.
PAPER_FID = {
    model: _paper_row(values, FID_COLUMNS)
    for model, values in {
        "mvae": (39.0, 36.0),
        "mmvae": (91.8, 307.9),
        "mopoe": (85.3, 312.8),
        "mmjsd": (86.7, 287.0),
        "mmjsd_poe": (70.0, 141.4),
        "mvtcae": (41.6, 31.8),
        "mvtcae_rescale": (32.9, 35.2),
        "crmvae": (24.1, 37.3),
    }.items()
}

# Table 5: latent linear-classification accuracy, model -> input subset -> accuracy.
PAPER_LATENT = {
    model: _paper_row(values, latent_columns(MST_MODALITIES))
    for model, values in {
        "crmvae": (0.95, 0.74, 0.99, 0.97, 0.99, 0.99, 0.99),
        "mvtcae": (0.91, 0.31, 0.99, 0.93, 0.99, 0.99, 0.99),
        "mopoe": (0.95, 0.81, 0.99, 0.96, 0.98, 0.93, 0.98),
    }.items()
}


def format_value(value: Number | None, decimals: int) -> str:
  """'0.60 ± 0.02' for per-seed values, '0.60' for a single one, '-' for None.

  Args:
    value: a number, or a sequence of per-seed numbers (std is numpy's population
      std, ddof = 0; a one-element sequence shows its value alone).
    decimals: digits after the decimal point.

  Returns:
    The table cell.
  """
  if value is None:
    return _MISSING
  values = np.atleast_1d(np.asarray(value, dtype=np.float64))
  if values.ndim != 1 or values.size == 0:
    raise ValueError(f"format_value: need a number or a list of numbers, got {value!r}.")
  mean = f"{values.mean():.{decimals}f}"
  if values.size == 1:
    return mean
  return f"{mean} ± {values.std():.{decimals}f}"


def in_paper_order(models: Sequence[str]) -> list[str]:
  """The paper's model order first, then any other model in the given order."""
  known = [model for model in MODEL_NAMES if model in models]
  return known + [model for model in models if model not in MODEL_NAMES]


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A Markdown table of string cells, '| a | b |' rows, ending in a newline."""
  return tabulate.tabulate(rows, headers=list(header), tablefmt=_MARKDOWN,
                           disable_numparse=True, stralign=None, numalign=None) + "\n"


def markdown_table(results: Results, columns: Sequence[str],
                   paper_values: Mapping[str, Mapping[str, float]] | None = None,
                   decimals: int = 2) -> str:
  """A Markdown table with one row per model, and the paper's row after it.

  Models come in the paper's order (`MODEL_NAMES`), then any others; a '(paper)' row
  follows each model that `paper_values` reports.

  Args:
    results: model -> column -> value or per-seed values; a column a model lacks
      shows '-'.
    columns: the table's columns, in order.
    paper_values: model -> column -> the paper's number, or None for no paper rows.
    decimals: digits after the decimal point.

  Returns:
    The table, lines joined by newlines, ending in a newline.
  """
  rows = []
  for model in in_paper_order(list(results)):
    display_name = DISPLAY_NAMES.get(model, model)
    rows.append([display_name] + [format_value(results[model].get(column), decimals)
                                  for column in columns])
    if paper_values is not None and model in paper_values:
      rows.append([f"{display_name} (paper)"] + [
          format_value(paper_values[model].get(column), decimals) for column in columns])
  return markdown(["model", *columns], rows)


def _paper_values_for(paper_table: Mapping[str, Mapping[str, float]],
                      columns: Sequence[str], table_name: str,
                      paper: bool) -> Mapping[str, Mapping[str, float]] | None:
  """The paper's numbers when asked for, refusing columns the paper has none for."""
  if not paper:
    return None
  paper_columns = set(next(iter(paper_table.values())))
  if not set(columns) <= paper_columns:
    raise ValueError(f"{table_name}: the paper reports only MNIST-SVHN-Text columns "
                     f"{sorted(paper_columns)}; got {list(columns)}.")
  return paper_table


def coherence_table(results: Results, modalities: Sequence[str] = MST_MODALITIES,
                    paper: bool = False, decimals: int = 2) -> str:
  """Table 1: joint coherence R and cross-coherence per target and subset.

  Args:
    results: model -> column (`coherence_columns(modalities)`) -> accuracy or
      per-seed accuracies.
    modalities: abbreviations; ('M', 'S', 'T') for MNIST-SVHN-Text.
    paper: add the paper's row under each model (MNIST-SVHN-Text only).
    decimals: digits after the decimal point.

  Returns:
    The Markdown table.
  """
  columns = coherence_columns(modalities)
  return markdown_table(
      results, columns, _paper_values_for(PAPER_COHERENCE, columns, "coherence_table",
                                          paper), decimals)


def fid_table(results: Results, columns: Sequence[str] = FID_COLUMNS,
              paper: bool = False, decimals: int = 1) -> str:
  """Table 2: FID of cross-generated images.

  Args:
    results: model -> column ('S->M': M images generated from S) -> FID or per-seed
      FIDs.
    columns: the generation directions shown.
    paper: add the paper's row under each model (its columns are 'S->M', 'M->S').
    decimals: digits after the decimal point.

  Returns:
    The Markdown table.
  """
  return markdown_table(
      results, columns, _paper_values_for(PAPER_FID, columns, "fid_table", paper),
      decimals)


def latent_table(results: Results, modalities: Sequence[str] = MST_MODALITIES,
                 paper: bool = False, decimals: int = 2) -> str:
  """Table 5: linear-probe accuracy of the posterior mean of every input subset.

  Args:
    results: model -> column (`latent_columns(modalities)`, e.g. 'M+S') -> accuracy
      or per-seed accuracies.
    modalities: abbreviations; ('M', 'S', 'T') for MNIST-SVHN-Text.
    paper: add the paper's row under each model it reports (CRMVAE, MVTCAE, MoPoE).
    decimals: digits after the decimal point.

  Returns:
    The Markdown table.
  """
  columns = latent_columns(modalities)
  return markdown_table(
      results, columns, _paper_values_for(PAPER_LATENT, columns, "latent_table", paper),
      decimals)


def accuracy_table(accuracies: dict[str, float]) -> str:
  """A Markdown table of classifier test accuracies, one column per modality."""
  return ("| classifier | " + " | ".join(accuracies) + " |\n"
          + "|---" * (len(accuracies) + 1) + "|\n"
          + "| test accuracy | " + " | ".join(f"{a:.4f}" for a in accuracies.values())
          + " |\n")
