"""The models added since the paper's eight, beside CRMVAE, MVTCAE and MoPoE, on the quick
start's data (real MNIST digits and their names, the text weighted 8, 10,500 steps):
Table 1's columns (the names read leniently and strictly), the classifier-Frechet
distance, the test log-likelihood, and the joint coherence R from the prior and from the
ex-post sampler (`model/samplers.py`).

    python -m experiments.paper.new_models                  # every model, seed 0
    python -m experiments.paper.new_models --models=jmvae --seeds=0,1
    python -m experiments.paper.new_models --collect_only   # the table from the results
    python -m experiments.paper.new_models --models=crmvae_private --reevaluate

Runs live under `--root` (default ~/crmvae_jax_new_models), one workdir per model and
seed; a run that is trained and evaluated is not run again, and a stopped one resumes.
The table goes to experiments/results/new_models.md, the records to new_models.json.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

import crmvae_jax
from crmvae_jax.common import atomic
from crmvae_jax.config import defaults as config_lib

# name -> the config fields that make it (the quick start's config otherwise).
MODELS = {
    "crmvae": {"model": "crmvae"},
    "mvtcae": {"model": "mvtcae"},
    "mopoe_sampled": {"model": "mopoe", "mixture_estimator": "sampled"},
    "crmvae_private": {"model": "crmvae_private", "private_dims": (8, 8)},
    "mopoe_private": {"model": "mopoe_private", "mixture_estimator": "sampled",
                      "private_dims": (8, 8)},
    "jmvae": {"model": "jmvae"},
    # MMVAE+ with one importance sample (DReG is then the gradient with the encoders'
    # densities held), and with its default 10.
    "mmvae_plus_k1": {"model": "mmvae_plus", "private_dims": (8, 8), "mmvae_plus_samples": 1},
    "mmvae_plus": {"model": "mmvae_plus", "private_dims": (8, 8)},
}
COLUMNS = ("M<-T", "T<-M", "T<-M strict", "R (prior)", "R (GMM)", "cFD T->M", "cFD M (prior)",
           "cFD M (GMM)", "log p(X)")

flags.DEFINE_list("models", list(MODELS), f"Models, of {', '.join(MODELS)}.")
flags.DEFINE_list("seeds", ["0"], "Seeds.")
flags.DEFINE_string("root", "~/crmvae_jax_new_models", "Where the runs and judges live.")
flags.DEFINE_string("results", "experiments/results", "Folder of the table and records.")
flags.DEFINE_bool("collect_only", False, "Only write the table from the records.")
flags.DEFINE_bool("reevaluate", False, "Evaluate the listed runs again (not trained again): "
                  "after an evaluation that has changed, e.g. one that computes more.")
flags.DEFINE_integer("steps", None, "Training steps (default: the quick start's 10,500); "
                     "a run of another length is recorded as such.")
FLAGS = flags.FLAGS


def config_of(name: str, seed: int):
  config = config_lib.quickstart_config()
  for field, value in MODELS[name].items():
    config[field] = value
  config.seed = seed
  if FLAGS.steps:
    config.num_train_steps = FLAGS.steps
    config.eval_every_steps = config.checkpoint_every_steps = FLAGS.steps
  config.disable_progress_bar = True
  config.eval.classifier_dir = os.path.join(os.path.expanduser(FLAGS.root), "classifiers")
  config.eval.extra_metrics = ("ex_post_sampler",)
  config.eval.coherence.prior_samples = 1000
  config.eval.log_likelihood.samples = 100
  return config


def row(results: dict) -> dict:
  coherence, sampler = results["coherence"], results.get("ex_post_sampler") or {}
  log_likelihood = (results.get("log_likelihood") or {}).get("M+T")
  return {"M<-T": coherence["M<-T"], "T<-M": coherence["T<-M"],
          "T<-M strict": (results.get("coherence_exact") or {}).get("T<-M"),
          "R (prior)": sampler.get("R (prior)"), "R (GMM)": sampler.get("R (GMM)"),
          "cFD T->M": (results.get("classifier_fd") or {}).get("T->M"),
          "cFD M (prior)": sampler.get("cFD M (prior)"),
          "cFD M (GMM)": sampler.get("cFD M (GMM)"), "log p(X)": log_likelihood}


def table(records: list[dict]) -> str:
  lines = ["# The added models on the quick start's data", "",
           "Written by experiments/paper/new_models.py: the quick start's data and config "
           "(4,500 MNIST digits and their names, the text weighted 8, batch 128, 10,500 "
           "steps), one row per model and seed; 1,000 prior samples for R, whose 'GMM' "
           "column samples z from a 10-component Gaussian mixture fitted to the training "
           "set's joint posterior means; cFD in the MNIST judge's features (T->M: digits "
           "generated from names; M (prior/GMM): digits sampled jointly); log p(X) "
           "importance-sampled with 100 samples from the joint posterior (with private "
           "latents, over z and every w_m). minutes: the wall time of the leg that finished "
           "the run (a run resumed after a stop counts its last leg only), niced beside "
           "other jobs on 2 cores, so not a speed comparison.",
           "", "| model | seed | steps | " + " | ".join(COLUMNS) + " | minutes |",
           "|---|---|---|" + "---|" * (len(COLUMNS) + 1)]
  order = {name: index for index, name in enumerate(MODELS)}
  for record in sorted(records, key=lambda r: (order.get(r["name"], 99), r["seed"])):
    values = [("-" if record["row"].get(c) is None else
               f"{record['row'][c]:.1f}" if c.startswith(("cFD", "log")) else
               f"{record['row'][c]:.2f}") for c in COLUMNS]
    lines.append(f"| {record['name']} | {record['seed']} | {record['step']} | "
                 + " | ".join(values)
                 + f" | {record['minutes']:.1f} |")
  return "\n".join(lines) + "\n"


def _records(path: str) -> list[dict]:
  return json.load(open(path)) if os.path.isfile(path) else []


def _recorded(path: str, record: dict) -> list[dict]:
  """Writes `record` into the records at `path`, read again just before, so that two
  processes that each add their own models keep each other's."""
  records = [r for r in _records(path)
             if not (r["name"] == record["name"] and r["seed"] == record["seed"])]
  atomic.write_json(path, records + [record])
  return records + [record]


def main(argv):
  del argv
  path = os.path.join(FLAGS.results, "new_models.json")
  records = _records(path)
  if not FLAGS.collect_only:
    root = os.path.expanduser(FLAGS.root)
    for name in FLAGS.models:
      for seed in map(int, FLAGS.seeds):
        done = [r for r in records if r["name"] == name and r["seed"] == seed]
        if done and not FLAGS.reevaluate:
          continue
        start = time.time()
        config = config_of(name, seed)
        workdir = os.path.join(root, f"{name}_seed{seed}")
        print(f"== {name}, seed {seed}: {workdir}", flush=True)
        if not FLAGS.reevaluate:
          crmvae_jax.fit(config=config, workdir=workdir, model=config.model, judges=True)
        results = crmvae_jax.evaluate(workdir, verbose=False)
        minutes = done[0]["minutes"] if done else (time.time() - start) / 60
        records = _recorded(path, {"name": name, "seed": seed, "step": results["step"],
                                   "row": row(results), "minutes": minutes})
  markdown = table(records)
  atomic.write_text(os.path.join(FLAGS.results, "new_models.md"), markdown)
  print(markdown)


def run(argv):
  try:
    main(argv)
  except crmvae_jax.UserError as error:  # a stop (saved: the same command resumes) or a fix
    print(f"error: {error}", file=sys.stderr)
    sys.exit(getattr(error, "exit_code", 1))


if __name__ == "__main__":
  app.run(run)
