r"""The paper's claim, tested at CPU scale: learning curves, tables and an ablation.

Trains CRMVAE, MVTCAE, MoPoE (sampled and stratified mixture estimates) and MVAE, three
seeds each (replicas of one program on an accelerator, one run after another on a CPU),
on data that needs no download:

- `mnist_text`: the quick start's 4,500 MNIST digits and their names (configs/quickstart.py);
- `polymnist3`, `polymnist5`: PolyMNIST with 3 or 5 modalities built from the same
  embedded digits (configs/polymnist.py:small), the paper's Figure 2 setting;
- `mst_offline`, `mst_offline_v2`, `mst_offline_v3`: MNIST-SVHN-Text offline
  (configs/mst_offline.py) with the SVHN-like renderer's versions 1 to 3
  (experiments/paper/calibrate_svhn.py), in the paper's layout; the later versions' tables
  show version 1's rows beside their own.

Every model is evaluated with `crmvae_jax.evaluation.driver.evaluate` at each budget of
its data set's schedule (the run resumes exactly from one budget to the next), so coherence is
measured along training. An ablation trains CRMVAE and MVTCAE on `mnist_text` with one
reading or factor changed at a time (`ABLATIONS`), one seed, at the quick start's
budget; it runs first. Everything is resumable: a (run, budget) with results is not
redone.

On a CPU each model's seeds train one after another (--seeds_in_turn): vmapped
replicas of the PolyMNIST networks run 2x slower there than single runs. On 2 cores
one PolyMNIST run (3 modalities, latent 512, batch 128) trains at about 300
examples/s, so polymnist3's 600-step schedule takes about 5 minutes per seed.

    python -m experiments.paper.reproduce                      # mnist_text to 10,500 steps
    python -m experiments.paper.reproduce --models=crmvae,mvtcae,mopoe_sampled --noablation \
        --budgets=21000                                  # carry three models on to 21,000
    python -m experiments.paper.reproduce --ablation_models=crmvae --ablation_budget=10500 \
        --models=crmvae                                  # the ablation at 10x its budget
    python -m experiments.paper.reproduce --data=polymnist3 --noablation   # ~1 h on 2 cores
    python -m experiments.paper.reproduce --budget_scale=10    # 10x the budgets (a GPU)
    python -m experiments.paper.reproduce --collect_only       # tables and figure from results

Writes to --results (default experiments/results/): `reproduce.md` (the tables:
cross-coherence, joint coherence, classifier-Frechet distance and latent probes at the
last budget, mean +- std over seeds; the ablation), `learning_curves.png`, and
`reproduce_curves.json` (every evaluation's headline numbers). Cross-coherence is also
measured decoding the conditional posterior's mean instead of a sample ('from means'),
which shows how much a model's incoherence comes from the width of its posteriors. Runs
and classifiers live under --root (default workdirs/reproduce/).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence

import jax
import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from absl import flags

from crmvae_jax.evaluation import driver
from crmvae_jax.common import atomic
from crmvae_jax.config import cli
from crmvae_jax.data import input_pipeline
from crmvae_jax import sweeps
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.data import mst_offline
from crmvae_jax.data import text as text_lib
from crmvae_jax.training import checkpoints, loop, state
from crmvae_jax.reporting import plotting, summaries, tables
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.common.errors import UserError

from configs import mst_offline as mst_offline_config
from configs import polymnist as polymnist_config

SEEDS = (0, 1, 2)
# name -> config overrides (dotted fields).
MODELS = {
    "crmvae": {"model": "crmvae"},
    "mvtcae": {"model": "mvtcae"},
    "mopoe": {"model": "mopoe", "mixture_estimator": "stratified"},
    "mopoe_sampled": {"model": "mopoe", "mixture_estimator": "sampled"},
    "mvae": {"model": "mvae"},
    # CRMVAE with MultiVae's reading: no prior expert in q(z|X) or the q~_m.
    "crmvae_no_prior": {"model": "crmvae", "readings.prior_expert": False},
    "mvtcae_rescale": {"model": "mvtcae_rescale"},
    "mmjsd_poe": {"model": "mmjsd_poe"},
    # The mixture-based models decode one sampled component per example, as MoPoE does
    # here: a CPU cannot afford decoding every component at every step.
    "mmvae": {"model": "mmvae", "mixture_estimator": "sampled"},
    "mmjsd": {"model": "mmjsd", "mixture_estimator": "sampled"},
}
PAPER_MODELS = tuple(MODELS)
# The models added since the paper's, on MNIST-SVHN-Text (three modalities: a private
# latent of 8 each, our choice); MMVAE+ with one importance sample, which a CPU affords
# (its default is 10).
NEW_MODELS = {
    "crmvae_private": {"model": "crmvae_private", "private_dims": (8, 8, 8)},
    "mopoe_private": {"model": "mopoe_private", "mixture_estimator": "sampled",
                      "private_dims": (8, 8, 8)},
    "mmvae_plus": {"model": "mmvae_plus", "private_dims": (8, 8, 8), "mmvae_plus_samples": 1},
}
MODELS.update(NEW_MODELS)
# Per data set: the budgets (steps) where every model is evaluated along training, and
# the models. PolyMNIST costs about 3x more per step on a CPU, so it runs the paper's
# Figure 2 models only, for fewer steps.
SCHEDULES = {
    "mnist_text": ((525, 1050, 2100, 5250, 10500), PAPER_MODELS),
    # The same pairs with the text weighted 8 instead of the size rule's 98 (784 / 8): the
    # factor that moved CRMVAE most in the ablation at 10,500 steps.
    "mnist_text8": ((1050, 5250, 10500), ("crmvae", "mvtcae", "mopoe_sampled")),
    "polymnist3": ((300, 600), ("crmvae", "mvtcae", "mopoe_sampled")),
    "polymnist5": ((300, 600), ("crmvae", "mvtcae", "mopoe_sampled")),
    # MNIST-SVHN-Text offline (configs/mst_offline.py) at the paper's batch 256: 1,000
    # steps are 2.8 epochs of its 90,000 pairs. The other five models of Table 1 run
    # with one seed (--models=mmvae,mmjsd,mmjsd_poe,mvtcae_rescale,mvae --seeds=0).
    "mst_offline": ((1000, 2000, 4000, 8000), ("crmvae", "mopoe_sampled", "mvtcae")),
    # The same with the renderer's version 2 (experiments/paper/calibrate_svhn.py), whose S a
    # plain VAE learns as on real SVHN; 16,000 steps for two seeds, then seed 0 to the
    # surrogate's 100 epochs (35,200 steps). MVAE and MVTCAE-rescale run one seed
    # (--models=mvae,mvtcae_rescale --seeds=0). experiments/paper/mst_offline_queue.sh runs
    # every leg in order.
    "mst_offline_v2": ((1000, 2000, 4000, 8000, 16000), ("crmvae", "mvtcae", "mopoe_sampled")),
    # Version 3 (calibrate_svhn's second round, after version 2 failed MoPoE's gate): the
    # same schedule, its gate first (experiments/paper/mst_offline_queue.sh 3 gate).
    "mst_offline_v3": ((1000, 2000, 4000, 8000, 16000), ("crmvae", "mvtcae", "mopoe_sampled")),
}
# The renderer version of each MNIST-SVHN-Text offline data set of this script.
RENDERER_VERSIONS = {"mst_offline": 1, "mst_offline_v2": 2, "mst_offline_v3": 3}
# Data sets evaluated in the paper's layout: every record keeps evaluate's whole results,
# and reproduce.md shows Tables 1, 2 and 5 and the log-likelihoods at every budget.
PAPER_LAYOUT = ("mst_offline", "mst_offline_v2", "mst_offline_v3")
# A data set whose tables also show, at each budget, the rows of an earlier version
# (version 1's: the one whose claim-run exists).
EARLIER_VERSION = {"mst_offline_v2": "mst_offline", "mst_offline_v3": "mst_offline"}
# The models whose S generated from M and from T are shown side by side.
GENERATION_FIGURE_MODELS = ("crmvae", "mvtcae", "mopoe_sampled")
RENDERS_FIGURE = "{data}_renders.png"
GENERATION_FIGURE = "{data}_svhn_generation.png"
NEW_MODELS_FIGURE = "{data}_svhn_generation_new_models.png"
# One change at a time from the paper's reading, on mnist_text, seed 0, at the quick
# start's budget.
ABLATIONS = {
    "paper's reading": {},
    "no prior expert (MultiVae)": {"readings.prior_expert": False},
    "text redrawn every step": {"data.text_redraw": True},
    "text weight 8 (not 98)": {"likelihood_weights": (1.0, 8.0)},
}
ABLATION_MODELS = {  # model -> its own further changes
    "crmvae": {"reconstruction pi/2 (MultiVae)": {"readings.crmvae_reconstruction": "pi/2"},
               "beta 0.25": {"beta": 0.25},
               "half the training pairs": {"data.test_fraction": 0.55}},
    "mvtcae": {},
}
ABLATION_BUDGET = 1050
CURVES_FILE = "reproduce_curves.json"
TABLES_FILE = "reproduce.md"
FIGURE_FILE = "learning_curves.png"



def data_config(name: str) -> ml_collections.ConfigDict:
  """The CPU-sized config of data set `name` (evaluation sized for many evaluations)."""
  if name in ("mnist_text", "mnist_text8"):
    config = config_lib.quickstart_config()
    config.readings = config_lib.readings_config()  # the paper's, whatever the quick start's
    config.likelihood_weights = (1.0, 8.0) if name == "mnist_text8" else None  # None: 1, 98
  elif name in ("polymnist3", "polymnist5"):
    config = polymnist_config.get_config("small")
    config.data.num_modalities = int(name[-1])
  elif name in RENDERER_VERSIONS:
    config = mst_offline_config.get_config()  # batch 256, latent 32, beta 1, size rule
    config.data.renderer_version = RENDERER_VERSIONS[name]
    config.log_every_steps = 100
    config.eval.log_likelihood.samples = 100
    config.eval.log_likelihood.examples = 100
    # R and cFD also with the ex-post sampler (a mixture fitted to the training set's
    # joint posterior means), beside the prior.
    config.eval.extra_metrics = ("ex_post_sampler",)
  else:
    raise UserError(f"Unknown data set {name!r} (--data); known: {', '.join(SCHEDULES)}.")
  config.log_every_steps = 25
  config.disable_progress_bar = True
  config.eval.num_examples = 1000
  config.eval.coherence.prior_samples = 1000
  config.eval.latent.train_examples = 500
  # No Inception weights offline: the classifier-Frechet distance stands in for FID.
  config.eval.fid.enabled = False
  config.eval.coherence.from_means = True  # how much the posteriors' width costs
  if name not in RENDERER_VERSIONS:
    config.eval.log_likelihood.samples = 0  # not asked of the earlier experiments
  return config


def with_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, object]
                   ) -> ml_collections.ConfigDict:
  config = config.copy_and_resolve_references()
  for field, value in overrides.items():
    *parents, name = field.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


def headline(results: dict) -> dict:
  """The numbers a curve or table needs from one `evaluate` result."""
  cross = [v for c, v in results["coherence"].items() if c != tables.JOINT_COHERENCE_COLUMN]
  from_means = results.get("coherence_from_means")
  fd = results.get("classifier_fd") or {}
  return {
      "step": results["step"], "seed": results["seed"],
      "cross_coherence": float(np.mean(cross)),
      "cross_coherence_from_means": (float(np.mean(list(from_means.values())))
                                     if from_means else None),
      "joint_coherence": results["coherence"][tables.JOINT_COHERENCE_COLUMN],
      "coherence": results["coherence"],
      "classifier_fd": float(np.mean(list(fd.values()))) if fd else None,
      "classifier_fd_columns": fd,
      "latent_probe": float(np.mean(list(results["latent"].values()))),
      "results": results,
  }


class Curves:
  """Every evaluation so far, keyed by run name and step; saved after each one."""

  def __init__(self, path: str):
    self.path = path
    self.records: list[dict] = []
    if os.path.isfile(path):
      with open(path) as f:
        self.records = json.load(f)

  def has(self, run: str, step: int, seed: int, judges: str | None = None) -> bool:
    """Whether (run, step, seed) was evaluated; given the current judges (`judges_key`),
    only by them or before digests were recorded: a budget judged by judges trained
    again since is evaluated again when its run passes it."""
    return any(r["run"] == run and r["step"] == step and r["seed"] == seed
               and (judges is None or _judges_key(r) in (None, judges)) for r in self.records)

  def add(self, run: str, data: str, model: str, variant: str, record: dict) -> None:
    record = {"run": run, "data": data, "model": model, "variant": variant, **record}
    earlier = judge_sets(self.records, data)
    digest = _judges_key(record)
    if digest and earlier and digest not in earlier:
      print(f"WARNING: {run}, seed {record['seed']}, step {record['step']} was judged by "
            f"other judges ({digest}) than the earlier records of {data} "
            f"({'; '.join(earlier)}): the judges were trained again, e.g. on another "
            "machine; reproduce.md lists which records each set judged.", file=sys.stderr)
    # Read again under a lock: legs running side by side (two queues) keep each other's
    # records, and a stop never loses the curves (atomic).
    self.records = atomic.update_json(self.path, lambda records: [*records, record], [],
                                      indent=1)


def judges_key(digests: dict[str, str] | None) -> str | None:
  """Judges' digests (modality -> `judges.params_digest`) as one string; None for none."""
  return ", ".join(f"{name} {value}" for name, value in sorted(digests.items())) if digests else None


def _judges_key(record: dict) -> str | None:
  """The digests of the classifiers that judged `record`, as one string (`judges_key`);
  None for a record made before digests were recorded."""
  return judges_key((record.get("results") or {}).get("classifier_digest"))


def newest_records(records: list[dict]) -> list[dict]:
  """One record per (run, seed, step), the newest: a budget evaluated again (by judges
  trained again, say) replaces its earlier evaluation in the tables and figures; the
  results file keeps both, and `judge_sets` lists which judged what."""
  newest: dict[tuple, dict] = {}
  for record in records:
    key = (record["run"], record["seed"], record["step"])
    newest.pop(key, None)  # in the order of the newest evaluations
    newest[key] = record
  return list(newest.values())


def judge_sets(records: list[dict], data: str) -> dict[str, list[str]]:
  """Judges' digests -> the records of `data` they judged ('run, seed s, step n').

  More than one key means the judges were trained again between evaluations (a new
  machine has none of the old one's files): their numbers are not judged alike."""
  sets: dict[str, list[str]] = {}
  for record in records:
    key = _judges_key(record) if record["data"] == data else None
    if key:
      sets.setdefault(key, []).append(
          f"{record['run']}, seed {record['seed']}, step {record['step']}")
  return sets


CHECKPOINT_EVERY_STEPS = 1000


def train_along(config: ml_collections.ConfigDict, workdir: str, budgets: Sequence[int],
                curves: Curves, run: str, data: str, model: str, variant: str,
                judges: str | None = None) -> None:
  """Trains `config`'s replicas to each budget in turn and evaluates every replica there
  (a budget already evaluated by other judges than `judges`, a `judges_key`, again)."""
  seeds, _ = state.replica_grid(config)
  for budget in budgets:
    if all(curves.has(run, budget, seed, judges) for seed in seeds):
      continue
    if checkpoint_step(workdir) > budget:  # evaluating now would judge a later step
      print(f"== {run}: not evaluated again at step {budget} by the current judges: the "
            f"run is at step {checkpoint_step(workdir)}; its earlier record stands.")
      continue
    leg = config.copy_and_resolve_references()
    leg.num_train_steps = budget
    leg.eval_every_steps = budget
    # Also between budgets, so that a kill without warning (a machine taken back) loses
    # at most this many steps of a long leg.
    leg.checkpoint_every_steps = min(budget, CHECKPOINT_EVERY_STEPS)
    print(f"== {run}: training to step {budget}")
    trained_from, start = checkpoint_step(workdir), time.perf_counter()
    loop.train_and_evaluate(leg, workdir)
    train_seconds = time.perf_counter() - start
    for replica, seed in enumerate(seeds):
      if not curves.has(run, budget, seed, judges):
        start = time.perf_counter()
        record = headline(driver.evaluate(leg, workdir, replica))
        # What this budget cost; a leg resumed after a stop counts from its checkpoint.
        record["seconds"] = {"train": train_seconds, "trained_from": trained_from,
                             "evaluate": time.perf_counter() - start}
        curves.add(run, data, model, variant, record)


def checkpoint_step(workdir: str) -> int:
  """The step of the newest checkpoint in `workdir`, 0 if it has none."""
  return max(checkpoints.saved_steps(workdir), default=0)


def run_all(data_names, model_names, seeds, scale, ablation, root, curves,
            seeds_in_turn=False, budgets=None, ablation_budget=ABLATION_BUDGET,
            ablation_models=tuple(ABLATION_MODELS)) -> None:
  for data in data_names:
    base = data_config(data)
    base.eval.classifier_dir = os.path.join(root, "classifiers", data)
    judges = judges_key(sweeps.ensure_classifiers(base))
    if ablation and data == "mnist_text":  # first: it also picks the quick start's defaults
      budget = max(1, round(ablation_budget * scale))
      for model in ablation_models:
        variants = {**ABLATIONS, **ABLATION_MODELS[model]}
        for variant, overrides in variants.items():
          config = with_overrides(base, {**MODELS[model], **overrides})
          run = f"ablation/{model}/{variant}"
          train_along(config, os.path.join(root, "ablation", model, _slug(variant)),
                      [budget], curves, run, data, model, variant, judges)
    schedule, default_models = SCHEDULES[data]
    budgets_here = [max(1, round(b * scale)) for b in budgets or schedule]
    for model in model_names or default_models:
      config = with_overrides(base, MODELS[model])
      run = f"{data}/{model}"
      if seeds_in_turn:
        for seed in seeds:
          config.sweep.seeds = (seed,)
          train_along(config, os.path.join(root, run, f"seed_{seed}"), budgets_here, curves,
                      run, data, model, "", judges)
      else:
        config.sweep.seeds = tuple(seeds)
        train_along(config, os.path.join(root, run), budgets_here, curves, run, data, model,
                    "", judges)


def _slug(text: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def _mean_std(values: Sequence[float | None]) -> str:
  """Mean ± std of the values that are there (`tables.format_value`), '-' for none."""
  return tables.format_value([v for v in values if v is not None] or None, 3)


def main_records(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
  """(data, model) -> its records, the newest of each budget (`newest_records`)."""
  groups: dict[tuple[str, str], list[dict]] = {}
  for record in newest_records(records):
    if not record["run"].startswith("ablation/"):
      groups.setdefault((record["data"], record["model"]), []).append(record)
  return groups


def _full_steps(group: list[dict]) -> set[int]:
  """The steps at which every seed of one model's records was evaluated."""
  seeds = {r["seed"] for r in group}
  return {s for s in {r["step"] for r in group}
          if {r["seed"] for r in group if r["step"] == s} == seeds}


def _results_table(groups, data: str, step_of) -> str:
  """One row per model of `data` at the step `step_of(records)` of its records: every
  coherence column, then mean cross-coherence, joint coherence, cFD and probe, mean ±
  std over the seeds."""
  columns, rows = None, []
  for (d, model), group in groups.items():
    if d != data:
      continue
    step = step_of(group)
    final = [r for r in group if r["step"] == step]
    columns = columns or [c for c in final[0]["coherence"] if c != tables.JOINT_COHERENCE_COLUMN]
    rows.append([model, str(len(final)), str(step)]
                + [_mean_std([r["coherence"][c] for r in final]) for c in columns]
                + [_mean_std([r["cross_coherence"] for r in final]),
                   _mean_std([r.get("cross_coherence_from_means") for r in final]),
                   _mean_std([r["joint_coherence"] for r in final]),
                   _mean_std([r["classifier_fd"] for r in final]),
                   _mean_std([r["latent_probe"] for r in final])])
  return tables.markdown(["model", "seeds", "step", *columns, "mean cross", "from means",
                          "joint", "cFD", "probe (mean of subsets)"], rows)


def wall_time_section(records: list[dict], data: str) -> list[str]:
  """Minutes of training and of evaluation per run of `data` (records that timed
  themselves), with the steps whose training was not timed: a leg resumed after a stop
  counts only from its checkpoint."""
  runs: dict[tuple[str, int], list[dict]] = {}
  for record in records:
    if record["data"] == data and "seconds" in record:
      runs.setdefault((record["model"], record["seed"]), []).append(record)
  if not runs:
    return []
  rows, totals = [], [0.0, 0.0, 0]
  for (model, seed), timed in runs.items():
    timed.sort(key=lambda r: r["step"])
    earlier = {r["step"] for r in records if r["data"] == data and r["model"] == model
               and r["seed"] == seed}
    untimed = 0
    for record in timed:
      previous = max([s for s in earlier if s < record["step"]], default=0)
      untimed += max(0, record["seconds"]["trained_from"] - previous)
    train = sum(r["seconds"]["train"] for r in timed) / 60
    evaluate = sum(r["seconds"]["evaluate"] for r in timed) / 60
    totals[0] += train
    totals[1] += evaluate
    totals[2] += untimed
    rows.append([model, str(seed), ", ".join(str(r["step"]) for r in timed), f"{train:.1f}",
                 f"{evaluate:.1f}", f"{untimed:,}"])
  rows.append(["all", "", "", f"{totals[0]:.1f}", f"{totals[1]:.1f}", f"{totals[2]:,}"])
  return [f"Wall time ({data}; each leg's training, then each evaluation):\n",
          tables.markdown(["model", "seed", "budgets timed", "train minutes",
                           "evaluate minutes", "steps trained before a stop (not timed)"],
                          rows)]


def tables_markdown(records: list[dict]) -> str:
  """The tables of `reproduce.md`. Per data set: every model at the last budget that all
  of them reached with all their seeds; where some went on further (fewer models or a
  later leg), every model again at its own last such budget; the mean cross-coherence
  along training; then the ablation."""
  groups = main_records(records)
  sections = ["# CPU-scale reproduction (experiments/paper/reproduce.py)\n",
              "Mean ± std over seeds; coherence is the accuracy "
              "of the data set's own classifier on generated samples (chance 0.1), each "
              "decoded from a sample of the conditional posterior ('from means': decoded from "
              "its mean instead, a diagnostic of the posteriors' width); the "
              "classifier-Frechet distance (cFD) compares generated and real test images in "
              "the penultimate features of the target's classifier (lower is better); the "
              "latent probe is a logistic regression on 500 training encodings, here the mean "
              "over every input subset's posterior (Table 5 has each subset's, S's alone "
              "among them).\n"]
  for data in dict.fromkeys(d for d, _ in groups):
    sets = judge_sets(records, data)
    if len(sets) > 1:
      sections += [f"**{data} was judged by {len(sets)} sets of judges** (their parameters' "
                   "digests differ: they were trained again, e.g. on another machine), so "
                   "numbers judged by different sets are not judged alike; a budget judged "
                   "by more than one set appears in the tables with its newest evaluation:\n",
                   tables.markdown(["judges", "records"],
                                   [[key, "; ".join(judged)] for key, judged in sets.items()])]
    full_steps = {model: _full_steps(group) for (d, model), group in groups.items() if d == data}
    common = set.intersection(*full_steps.values())
    last_common = max(common) if common else None
    if last_common is not None:
      sections += [f"## {data}, step {last_common}\n",
                   _results_table(groups, data, lambda group: last_common)]
    if any(max(steps) != last_common for steps in full_steps.values()):
      sections += [f"## {data}, each model at its last budget\n",
                   _results_table(groups, data, lambda group: max(_full_steps(group)))]
    steps = sorted({r["step"] for (d, _), rs in groups.items() if d == data for r in rs})
    curve_rows = [[model] + [_mean_std([r["cross_coherence"] for r in group if r["step"] == s])
                             for s in steps]
                  for (d, model), group in groups.items() if d == data]
    sections += [f"Mean cross-coherence along training ({data}):\n",
                 tables.markdown(["model", *[f"step {s}" for s in steps]], curve_rows)]
    sections += wall_time_section(records, data)
  for data in dict.fromkeys(d for d, _ in groups):
    if data in PAPER_LAYOUT:
      sections += paper_layout_sections(records, data)
  ablation = [r for r in newest_records(records) if r["run"].startswith("ablation/")]
  if ablation:
    rows = [[r["model"], r["variant"], str(r["step"])]
            + [f"{r['coherence'][c]:.3f}" for c in r["coherence"]
               if c != tables.JOINT_COHERENCE_COLUMN]
            + [f"{r['joint_coherence']:.3f}",
               "-" if r["classifier_fd"] is None else f"{r['classifier_fd']:.2f}"]
            for r in ablation]
    columns = [c for c in ablation[0]["coherence"] if c != tables.JOINT_COHERENCE_COLUMN]
    sections += ["## Ablation on mnist_text (seed 0): one change at a time\n",
                 tables.markdown(["model", "change", "step", *columns, "joint", "cFD"], rows)]
  return "\n".join(sections)


def _demoted(markdown: str, levels: int = 2) -> str:
  """`markdown` with every heading `levels` deeper, to sit under a section of ours."""
  return "\n".join("#" * levels + line if line.startswith("#") else line
                   for line in markdown.splitlines()) + "\n"


def _per_seed_table(records: list[dict]) -> str:
  """One row per (model, seed) of `records` (one step): the columns the paper's claim
  is about, S and T as targets, generation quality and log p(X)."""
  rows = []
  for record in sorted(records, key=lambda r: (r["model"], r["seed"])):
    results = record["results"]
    coherence, exact = results["coherence"], results.get("coherence_exact") or {}
    fd, log_likelihood = results.get("classifier_fd") or {}, results.get("log_likelihood") or {}
    sampler = results.get("ex_post_sampler")
    rows.append([record["model"], str(record["seed"]), f"{record['cross_coherence']:.3f}"]
                + [f"{coherence[c]:.3f}" for c in ("S<-M", "S<-T", "S<-M+T", "T<-M", "T<-S")]
                + [f"{exact.get(c, float('nan')):.3f}" for c in ("T<-M", "T<-S")]
                + [f"{fd.get(c, float('nan')):.1f}" for c in ("S->M", "M->S")]
                + [f"{log_likelihood.get('M+S+T', float('nan')):.1f}",
                   f"{results['latent'].get('S', float('nan')):.3f}",
                   "-" if sampler is None else f"{sampler['R (GMM)']:.3f}"])
  return tables.markdown(["model", "seed", "mean cross", "S<-M", "S<-T", "S<-M+T", "T<-M",
                          "T<-S", "T<-M exact", "T<-S exact", "cFD S->M", "cFD M->S",
                          "log p(X)", "S probe", "R (GMM)"], rows)


def paper_layout_sections(records: list[dict], data: str) -> list[str]:
  """Per budget: the paper's Tables 1, 2 and 5 and the log-likelihoods (mean ± std over
  seeds, the paper's row under each model), then every seed on its own."""
  data_records = [r for r in main_records(records).items() if r[0][0] == data]
  steps = sorted({r["step"] for _, group in data_records for r in group if "results" in r})
  sections = []
  earlier = [r for r in main_records(records).items() if r[0][0] == EARLIER_VERSION.get(data)]
  for step in steps:
    at_step = [r for _, group in data_records for r in group
               if r["step"] == step and "results" in r]
    # The earlier version's rows at the same budget, named apart (no paper row of their own).
    for _, group in earlier:
      for r in group:
        if r["step"] == step and "results" in r:
          name = f"{r['model']} (version {RENDERER_VERSIONS[EARLIER_VERSION[data]]})"
          at_step.append({**r, "model": name, "results": {**r["results"], "model": name}})
    sections += [f"## {data} at step {step}: the paper's layout\n",
                 _demoted(summaries.tables_markdown([r["results"] for r in at_step])),
                 f"### {data} at step {step}, every seed\n", _per_seed_table(at_step)]
  return sections


def renders_figure(path: str, data: str = "mst_offline") -> None:
  """40 SVHN-like test renders (4 per digit, one digit a column) and, below, class
  means (of 16 and of 256 renders): what the S judge must and must not read."""
  config_data = data_config(data).data
  _, (_, test_labels) = mst_offline.mnist_split(config_data)
  images = mst_offline.renders(config_data, "test", test_labels)
  columns = [images[np.flatnonzero(test_labels == digit)[:4]] for digit in range(10)]
  rows = [(f"render {i + 1}", np.stack([c[i] for c in columns]) / 255.0) for i in range(4)]
  for renders_per_mean, (means, mean_labels) in sorted(
      mst_offline.class_mean_images(config_data, "svhn").items()):
    rows.append((f"mean of {renders_per_mean}",
                 np.stack([means[np.flatnonzero(mean_labels == d)[0]] for d in range(10)])))
  version = config_data.renderer_version
  plotting.save_text_grid([str(d) for d in range(10)], rows, path,
                          f"SVHN-like renders, version {version} (crmvae_jax.data.syndigits), "
                          "and class means")


def generation_figure(root: str, path: str, data: str = "mst_offline",
                      num_examples: int = 8,
                      models: tuple[str, ...] = GENERATION_FIGURE_MODELS) -> bool:
  """S generated from M and from T by each of `models` (seed 0, its last checkpoint), for
  the same test pairs, one pair a column. False (and no figure) if a run is missing or
  has no checkpoint yet (started, stopped before its first save)."""
  base = data_config(data)
  rows, texts = [], None
  for name in models:
    config = with_overrides(base, MODELS[name])
    config.sweep.seeds = (0,)
    workdir = os.path.join(root, data, name, "seed_0")
    if not checkpoint_step(workdir):
      return False
    model, params, _, test_set, step = checkpoints.load_trained(config, workdir)
    ids = input_pipeline.sample_ids(len(test_set), num_examples, config.eval.seed)
    batch = test_set.batch(ids)
    if texts is None:
      texts = [s.strip() for s in text_lib.decode(batch["text"])]
      rows += [("M input", np.repeat(batch["mnist"], 3, axis=-1) / 255.0),
               ("S (real pair)", batch["svhn"] / 255.0)]
    trained = TrainedModel.from_config(model, params, config)
    for source in ("mnist", "text"):
      svhn = trained.generate({source: batch[source]}, ["svhn"], jax.random.PRNGKey(0))["svhn"]
      rows.append((f"{name}, step {step}:\nS<-{'M' if source == 'mnist' else 'T'}", svhn))
  plotting.save_text_grid(texts, rows, path, f"{data}: S generated from M and from T (seed 0, "
                          "each model's last checkpoint; z sampled); column headers: the T input")
  return True


def learning_curves_figure(records: list[dict], path: str) -> None:
  """Mean cross-coherence and joint coherence against steps, a band of one std."""
  groups = main_records(records)
  data_names = list(dict.fromkeys(d for d, _ in groups))
  metrics = (("cross_coherence", "mean cross-coherence"), ("joint_coherence", "joint coherence"),
             ("classifier_fd", "classifier-Frechet distance"))
  styles = plotting.curve_styles(list(dict.fromkeys(m for _, m in groups)))
  figure, axes = plt.subplots(len(data_names), len(metrics), squeeze=False,
                              figsize=(4.2 * len(metrics) + 1.4, 3.2 * len(data_names)))
  for row, data in enumerate(data_names):
    budgets = sorted({r["step"] for (d, _), group in groups.items() if d == data
                      for r in group})
    for column, (key, label) in enumerate(metrics):
      ax = axes[row, column]
      for (d, model), group in groups.items():
        if d != data or all(r[key] is None for r in group):
          continue
        steps = sorted({r["step"] for r in group})
        values = [[r[key] for r in group if r["step"] == s and r[key] is not None] for s in steps]
        mean = np.array([np.mean(v) for v in values])
        std = np.array([np.std(v) for v in values])
        colour, line = styles[model]
        ax.plot(steps, mean, marker="o", label=model, color=colour, linestyle=line)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2, color=colour)
      ax.set_title(f"{data}: {label}", fontsize=9)
      ax.set_xscale("log")  # budgets grow geometrically; ticks at the budgets themselves
      ax.set_xticks(budgets, [f"{b:,}" for b in budgets], fontsize=7)
      ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
      ax.set_xlabel("training step")
      if key != "classifier_fd":
        ax.axhline(0.1, color="grey", linestyle=":", linewidth=1)
      if column == len(metrics) - 1:  # beside the row, clear of the curves
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def define_flags() -> None:
  """The command line's flags; defined only when run, so importing this module next to
  other experiments (tests do) defines no clashing --models or --seeds."""
  flags.DEFINE_list("data", ["mnist_text"], f"Data sets, of {', '.join(SCHEDULES)}.")
  flags.DEFINE_list("models", None, f"Models, of {', '.join(MODELS)}; default: each data set's "
                    "own (SCHEDULES).")
  flags.DEFINE_list("seeds", [str(s) for s in SEEDS], "Seeds (replicas of each model).")
  flags.DEFINE_list("budgets", None, "Steps to evaluate at, in place of each data set's "
                    "schedule (SCHEDULES), e.g. 21000 to carry runs on from their last budget.")
  flags.DEFINE_float("budget_scale", 1.0, "Multiplies every budget (10 on a GPU).")
  flags.DEFINE_bool("ablation", True, "Run the ablation on mnist_text.")
  flags.DEFINE_integer("ablation_budget", ABLATION_BUDGET, "Steps of each ablation run.")
  flags.DEFINE_list("ablation_models", list(ABLATION_MODELS),
                    f"Models of the ablation, of {', '.join(ABLATION_MODELS)}.")
  flags.DEFINE_bool("seeds_in_turn", None, "Train each model's seeds one after another instead "
                    "of as replicas of one program; default: in turn on a CPU, where vmapped "
                    "replicas of the PolyMNIST networks are 2x slower than runs in turn.")
  flags.DEFINE_string("root", "workdirs/reproduce", "Runs and classifiers.")
  flags.DEFINE_string("results", "experiments/results", "Tables, figure, curves.")
  flags.DEFINE_bool("collect_only", False, "Only tabulate and draw.")


def main() -> None:
  options = flags.FLAGS
  unknown = sorted(set(options.models or ()) - set(MODELS))
  if unknown:
    raise UserError(f"Unknown models {unknown} (--models); known: {', '.join(MODELS)}.")
  unknown = sorted(set(options.ablation_models) - set(ABLATION_MODELS))
  if unknown:
    raise UserError(f"Unknown models {unknown} (--ablation_models); known: "
                    f"{', '.join(ABLATION_MODELS)}.")
  curves = Curves(os.path.join(options.results, CURVES_FILE))
  if not options.collect_only:
    seeds_in_turn = options.seeds_in_turn
    if seeds_in_turn is None:
      seeds_in_turn = jax.default_backend() == "cpu"
    run_all(options.data, options.models, [int(s) for s in options.seeds], options.budget_scale,
            options.ablation, options.root, curves, seeds_in_turn,
            [int(b) for b in options.budgets] if options.budgets else None,
            options.ablation_budget, options.ablation_models)
  if not curves.records:
    raise UserError(f"No results in {curves.path}; run without --collect_only first.")
  markdown = tables_markdown(curves.records)
  with open(os.path.join(options.results, TABLES_FILE), "w") as f:
    f.write(markdown)
  learning_curves_figure(curves.records, os.path.join(options.results, FIGURE_FILE))
  for data in RENDERER_VERSIONS:
    if data in options.data:
      renders_figure(os.path.join(options.results, RENDERS_FIGURE.format(data=data)), data)
      generation_figure(options.root,
                        os.path.join(options.results, GENERATION_FIGURE.format(data=data)), data)
      generation_figure(options.root,
                        os.path.join(options.results, NEW_MODELS_FIGURE.format(data=data)), data,
                        models=tuple(NEW_MODELS))
  print(markdown)
  print(f"Wrote {options.results}/{{{TABLES_FILE}, {FIGURE_FILE}, {CURVES_FILE}}}.")


if __name__ == "__main__":
  define_flags()
  cli.run(main, config=False)
