"""Evaluation results summarised: one run's or one data set's tables in Markdown (Tables
1, 2 and 5 of the paper, with its rows on MNIST-SVHN-Text), a sweep's summary, results
averaged per conditioning-subset size (Figure 2), and writing Markdown next to the runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from crmvae_jax.common import atomic
from crmvae_jax.data import registry
from crmvae_jax.reporting import tables


def _by_model(runs: Sequence[dict], section: str) -> dict[str, dict[str, list[float]]]:
  """model -> column -> per-run values of one results section."""
  grouped: dict[str, dict[str, list[float]]] = {}
  for run in runs:
    for column, value in (run.get(section) or {}).items():
      grouped.setdefault(run["model"], {}).setdefault(column, []).append(value)
  return grouped


def tables_markdown(runs: Sequence[dict]) -> str:
  """Tables 1, 2 and 5 (and the text edit distances and the classifier-Frechet
  distances) of evaluation results, in Markdown.

  Runs of one model (e.g. three seeds) are shown as mean ± std. On MNIST-SVHN-Text
  the paper's row follows each model it reports.

  Args:
    runs: `evaluate` results of one data set.

  Returns:
    The Markdown document.
  """
  first = runs[0]
  title = (f"# Evaluation: {first['data']}, "
           f"{len({run['model'] for run in runs})} model(s), {len(runs)} run(s)\n")
  if first.get("coherence") is None:
    return _image_text_markdown(runs, title)
  abbreviations = list(first["modalities"])
  paper = first["data"] in registry.names(paper_tables=True)
  sections = [title,
              "## Table 1: joint coherence (R) and cross-coherence (target <- conditioning "
              "subset)\n",
              tables.coherence_table(_by_model(runs, "coherence"), abbreviations, paper=paper)]
  for section, heading, decimals in (
      ("coherence_exact", "## Generated names read strictly (Table 1's text columns): the "
       "name, spaces stripped, is exactly the true name (R: all judges agree, the text "
       "exactly)\n", 2),
      ("coherence_from_means", "## Cross-coherence decoded from the posteriors' means "
       "instead of samples (config.eval.coherence.from_means: how much the posteriors' width "
       "costs)\n", 2),
      ("text_levenshtein", "## Generated text: mean Levenshtein distance to the true name "
       "(T<-prior: to the nearest name)\n", 2),
      ("ex_post_sampler", "## Joint generation from the prior and from an ex-post sampler "
       "(a Gaussian mixture fitted to the training set's joint posterior means): joint "
       "coherence R and each image modality's classifier-Frechet distance to real images\n",
       2),
      ("log_likelihood", "## Test log-likelihood log p(X) in nats (higher is better), "
       f"importance sampled with {first.get('log_likelihood_samples')} samples from the "
       f"posterior of each subset, {first.get('num_log_likelihood_pairs')} test pairs\n", 1)):
    values = _by_model(runs, section)
    if values:
      sections += [heading, tables.markdown_table(values, list(next(iter(values.values()))),
                                                  decimals=decimals)]
  # Each section below is there when its metric ran (`DataSet.metrics`).
  if "fid" in first:
    fid = _by_model(runs, "fid")
    sections.append("## Table 2: FID of cross-generated images (source -> generated)\n")
    if fid:
      columns = list(tables.FID_COLUMNS) if paper else list(next(iter(fid.values())))
      sections.append(tables.fid_table(fid, columns, paper=paper))
    else:
      sections.append(first.get("fid_note", "No FID.") + "\n")
  if first.get("log_likelihood_note"):
    sections += ["## Test log-likelihood\n", first["log_likelihood_note"] + "\n"]
  classifier_fd = _by_model(runs, "classifier_fd")
  if classifier_fd:
    columns = list(next(iter(classifier_fd.values())))
    sections += ["## Classifier-Frechet distance (lower is better), features of the "
                 "target's own classifier\n",
                 tables.fid_table(classifier_fd, columns, decimals=2)]
  if "latent" in first:
    sections += ["## Table 5: linear classification of posterior means per input subset\n",
                 tables.latent_table(_by_model(runs, "latent"), abbreviations, paper=paper)]
  if "judge_accuracy" in first:
    judge_lines = [f"{name}: {first['judges'][name]}, accuracy on real test data "
                   f"{accuracy:.4f}" for name, accuracy in first["judge_accuracy"].items()]
    sections += ["## Judges\n", "\n".join(judge_lines) + "\n"]
  others = _other_results(runs)
  if others:
    sections += ["## Other results\n",
                 tables.markdown_table(others, list(next(iter(others.values()))), decimals=3)]
  return "\n".join(sections)


# The results the sections above render, or that only describe the run.
_RENDERED = frozenset({
    "model", "data", "seed", "beta", "step", "modalities", "note", "num_test_pairs",
    "num_prior_samples", "num_probe_train_pairs", "num_fid_pairs", "coherence",
    "coherence_from_means", "coherence_exact", "text_levenshtein", "log_likelihood",
    "log_likelihood_samples", "num_log_likelihood_pairs", "log_likelihood_note", "fid",
    "fid_note",
    "classifier_fd", "latent", "judges", "judge_accuracy", "classifier_test_accuracy",
    "ex_post_sampler"})


def _other_results(runs: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
  """model -> column -> per-run values of the numbers no section above renders (a new
  metric's): a number is its own column, a mapping of numbers one column per key."""
  others: dict[str, dict[str, list[float]]] = {}
  for run in runs:
    for name, value in run.items():
      if name in _RENDERED:
        continue
      items = value.items() if isinstance(value, Mapping) else [("", value)]
      for column, number in items:
        if isinstance(number, (int, float)) and not isinstance(number, bool):
          others.setdefault(run["model"], {}).setdefault(
              f"{name} {column}".strip(), []).append(number)
  return others


def _image_text_markdown(runs: Sequence[dict], title: str) -> str:
  """The scalar metrics of image-text evaluations (`tables.SCALAR_METRICS`), a row per
  model, with the attribute classifier's own accuracies and any FID note."""
  first = runs[0]
  metrics = [metric for metric in tables.SCALAR_METRICS
             if any(run.get(metric) is not None for run in runs)]
  values = {}
  for run in runs:
    for metric in metrics:
      if run.get(metric) is not None:
        values.setdefault(run["model"], {}).setdefault(
            tables.SCALAR_METRICS[metric], []).append(run[metric])
  sections = [title, f"## Image and text, {first['num_test_pairs']} test pairs\n",
              tables.markdown_table(values, [tables.SCALAR_METRICS[m] for m in metrics],
                                    decimals=3)]
  notes = []
  if first.get("attribute_accuracy_real") is not None:
    notes.append(f"The attribute classifier reads {first['attribute_accuracy_real']:.3f} of "
                 f"the real test images' attributes right (its ceiling here) and "
                 f"{first['classifier_test_accuracy']:.3f} of its own test split's.")
  notes += sorted({run["fid_note"] for run in runs if run.get("fid_note")})
  if notes:
    sections += ["## Notes\n", "\n".join(notes) + "\n"]
  return "\n".join(sections)


def _cross_coherence(run: dict) -> float:
  return float(np.mean([value for column, value in run["coherence"].items()
                        if column != tables.JOINT_COHERENCE_COLUMN]))


HEADLINE_COLUMNS = ("R", "mean cross-coherence", "mean latent probe")


def _headline(group: Sequence[dict]) -> dict[str, list[float]]:
  """The headline numbers of each run of `group`, as per-seed lists."""
  return {"R": [run["coherence"][tables.JOINT_COHERENCE_COLUMN] for run in group],
          "mean cross-coherence": [_cross_coherence(run) for run in group],
          "mean latent probe": [float(np.mean(list(run["latent"].values()))) for run in group]}


def summary_table(runs: list[dict]) -> str:
  """One row per (model, beta): mean ± std over seeds of the headline numbers."""
  groups: dict[tuple[str, float], list[dict]] = {}
  for run in runs:
    groups.setdefault((run["model"], run["beta"]), []).append(run)
  order = {name: i for i, name in enumerate(tables.MODEL_NAMES)}
  results = {}
  for (model, beta), group in sorted(groups.items(), key=lambda item: (order[item[0][0]],
                                                                       item[0][1])):
    results[f"{tables.DISPLAY_NAMES[model]}, beta {beta:g}, {len(group)} seed(s)"] = (
        _headline(group))
  return tables.markdown_table(results, HEADLINE_COLUMNS)


def replicas_markdown(runs: list[dict]) -> str:
  """The replicas of one sweep run side by side: a row per (seed, beta) with its
  headline numbers, then mean ± std over seeds for each beta (`summary_table`). Each
  replica's full tables are in its own eval/tables.md."""
  rows = {f"seed {run['seed']}, beta {run['beta']:g}": _headline([run])
          for run in sorted(runs, key=lambda run: (run["beta"], run["seed"]))}
  return "\n".join([
      f"# {tables.DISPLAY_NAMES.get(runs[0]['model'], runs[0]['model'])} on {runs[0]['data']}, "
      f"{len(runs)} replicas, step {runs[0]['step']}\n",
      tables.markdown_table(rows, HEADLINE_COLUMNS), "## Mean ± std over seeds\n",
      summary_table(runs)])


def sweep_markdown(runs: list[dict]) -> str:
  sections = [f"# Sweep: {runs[0]['data']}, {len(runs)} replica(s)\n", summary_table(runs)]
  for beta in sorted({run["beta"] for run in runs}):
    sections += [f"\n# beta = {beta:g}\n",
                 tables_markdown([run for run in runs if run["beta"] == beta])]
  return "\n".join(sections)


def write_markdown(root: str, filename: str, markdown: str) -> None:
  """Writes `markdown` to root/filename (atomically: `atomic.write_with`) and prints it
  with the path.

  Raises:
    UserError: the file cannot be written; an older one is kept.
  """
  path = atomic.write_text(os.path.join(root, filename), markdown)
  print(markdown)
  print(f"Wrote {path}.")


def _column_subset_size(metric: str, column: str) -> int | None:
  """The number of modalities a results column conditions on (None: 'R')."""
  if metric == "coherence":
    if column == tables.JOINT_COHERENCE_COLUMN:
      return None
    subset = column.split("<-", 1)[1]
  elif metric in ("fid", "classifier_fd"):
    subset = column.split("->", 1)[0]
  else:
    subset = column
  return subset.count("+") + 1


def by_subset_size(results: Mapping) -> dict[str, dict[int, float]]:
  """Coherence, FID, classifier-FD and latent probes of one evaluation averaged per
  subset size.

  Args:
    results: an `evaluation.driver.evaluate` result (or any dict with 'coherence', 'fid',
      'classifier_fd' and 'latent' sections keyed by their columns: 'M0<-M1+M2',
      'M1+M2->M0', 'M0+M1').

  Returns:
    metric ('coherence', 'fid', 'classifier_fd', 'latent'; those present and not
    None) -> {k: mean
    over the columns whose conditioning subset has k modalities}, k ascending. Joint
    coherence R has no subset and is left out.
  """
  averages = {}
  for metric in ("coherence", "fid", "classifier_fd", "latent"):
    columns = results.get(metric)
    if not columns:
      continue
    values_by_size: dict[int, list[float]] = {}
    for column, value in columns.items():
      size = _column_subset_size(metric, column)
      if size is not None:
        values_by_size.setdefault(size, []).append(value)
    averages[metric] = {size: float(np.mean(values_by_size[size]))
                        for size in sorted(values_by_size)}
  return averages
