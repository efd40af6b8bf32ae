"""The claim on MNIST-SVHN-Text offline as one resumable queue of `reproduce.py` legs, and
where the queue stands. `mst_offline_queue.sh` runs it niced in the background and says
how; this module holds the legs and the status.

    python -m experiments.paper.mst_queue --version=3 --phase=claim            # run it
    python -m experiments.paper.mst_queue --version=3 --phase=claim --status   # where it is

Each leg is `python -m experiments.paper.reproduce` with budgets; a (run, budget) that
has a record in the results file is not trained again, and a run resumes from its newest
checkpoint, so the queue can be stopped at any moment and started again the same way.
Stopped with SIGTERM, SIGINT or SIGHUP, the queue passes the signal to its leg, which
saves its step before it stops.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

from absl import flags
import orbax.checkpoint as ocp

from crmvae_jax.common.errors import UserError
from crmvae_jax.config import cli
from crmvae_jax.evaluation import judges as judges_lib
from crmvae_jax.reporting import tables
from experiments.paper import reproduce


@dataclasses.dataclass(frozen=True)
class Leg:
  models: tuple[str, ...]
  seeds: tuple[int, ...]
  budgets: tuple[int, ...]


MAIN = ("crmvae", "mvtcae", "mopoe_sampled")
NEW = tuple(reproduce.NEW_MODELS)
ALONG = (1000, 2000, 4000, 8000, 16000)
PHASES = {
    # Whether MoPoE's averaging still fails on the version, seen on MoPoE alone before any
    # CRMVAE or MVTCAE run: its S<-M, S<-T and S<-M+T must all be at most 0.50.
    "gate": (Leg(("mopoe_sampled",), (0,), (1000, 2000, 4000)),),
    # What decides the claim first, budget by budget; the added models beside seed 0 at
    # 8,000; then 16,000, the second seed, the other models, and the surrogate's 100
    # epochs (35,200 steps).
    "claim": (Leg(MAIN, (0,), (1000, 2000, 4000)),
              Leg(MAIN, (0,), (8000,)),
              Leg(NEW, (0,), (1000, 2000, 4000, 8000)),
              Leg(MAIN, (0,), (16000,)),
              Leg(MAIN, (1,), ALONG),
              Leg(("mvae", "mvtcae_rescale"), (0,), ALONG),
              Leg(MAIN, (0,), (35200,))),
    "new_models": (Leg(NEW, (0,), (1000, 2000, 4000, 8000)),),
}


# Beside the records (`--results`), to be committed with them: the judges, and each
# unfinished run's newest checkpoint.
JUDGES_DIR = "judges"
CARRY_DIR = "carry"


def data_name(version: int) -> str:
  name = "mst_offline" if version == 1 else f"mst_offline_v{version}"
  if name not in reproduce.RENDERER_VERSIONS:
    raise UserError(f"No renderer version {version} (--version); known: "
                    f"{', '.join(str(v) for v in sorted(reproduce.RENDERER_VERSIONS.values()))}.")
  return name


def checkpoint_step(root: str, data: str, model: str, seed: int) -> int:
  """The newest checkpoint's step of one run (seeds in turn or as replicas), 0 if none."""
  return max(reproduce.checkpoint_step(_workdir(root, data, model, seed)),
             reproduce.checkpoint_step(os.path.join(root, data, model)))


def stored_judges(directory: str) -> dict[str, str]:
  """modality -> `judges.params_digest` of each judge stored in `directory` (read without
  building its network: the digest depends only on the parameters' names and bits)."""
  digests = {}
  for name in _judge_folders(directory):
    with open(os.path.join(directory, name, "classifier.json")) as f:
      params = json.load(f)["params"]
    checkpointer = ocp.StandardCheckpointer()
    try:
      digests[name] = judges_lib.params_digest(
          checkpointer.restore(os.path.abspath(os.path.join(directory, name, params))))
    finally:
      checkpointer.close()
  return digests


def judged_by(record: dict, judges: dict[str, str] | None) -> bool:
  """Whether `judges` (modality -> digest) judged `record`; a record made before digests
  were recorded, or no judges named, counts."""
  digests = (record.get("results") or {}).get("classifier_digest")
  return not judges or not digests or all(judges.get(k) == v for k, v in digests.items())


def _recorded(records: list[dict], data: str, model: str, seed: int,
              judges: dict[str, str] | None) -> dict[int, dict]:
  """step -> the record of one run at that step, judged by `judges`."""
  return {r["step"]: r for r in records if r["data"] == data and r["model"] == model
          and r["seed"] == seed and judged_by(r, judges)}


def status(phase: str, data: str, root: str, records: list[dict],
           results: str | None = None, judges: dict[str, str] | None = None) -> str:
  """One row per leg and (model, seed): the budgets with records (judged by `judges`, when
  named: others are evaluated again), the newest checkpoint (saved at each budget, every
  1,000 steps and at a stop; in the root or carried beside the `results`), what is left
  (and the budgets the run passed without a record, which are no longer evaluated),
  and the mean cross-coherence at the last record; then the training steps done of the
  phase's whole: each run counted once, to its last budget if every budget of it has a
  record, else to its checkpoint (a run whose checkpoint was lost trains again)."""
  rows, goal, checkpoint, mine = [], goals(phase), {}, {}
  for number, leg in enumerate(PHASES[phase], 1):
    for model in leg.models:
      for seed in leg.seeds:
        run = (model, seed)
        mine[run] = _recorded(records, data, model, seed, judges)
        recorded = [b for b in leg.budgets if b in mine[run]]
        checkpoint[run] = max([checkpoint_step(root, data, model, seed),
                               *([checkpoint_step(os.path.join(results, CARRY_DIR), data, model,
                                                  seed)] if results else [])])
        last = mine[run][recorded[-1]]["cross_coherence"] if recorded else None
        # A budget the run has trained past without a record (lost, or made by other
        # judges) is not evaluated any more (`reproduce.train_along`): not left to do.
        left = [b for b in leg.budgets if b not in mine[run] and b >= checkpoint[run]]
        passed = [b for b in leg.budgets if b not in mine[run] and b < checkpoint[run]]
        rows.append([str(number), model, str(seed), ", ".join(map(str, recorded)) or "-",
                     str(checkpoint[run]),
                     (", ".join(map(str, left)) or "done")
                     + (f" (passed without a record: {', '.join(map(str, passed))})"
                        if passed else ""),
                     "-" if last is None else f"{last:.3f}"])
  total = sum(goal.values())
  complete = recorded_runs(phase, data, records, judges)
  done = sum(goal[run] if run in complete else min(checkpoint[run], goal[run]) for run in goal)
  table = tables.markdown(["leg", "model", "seed", "recorded at", "checkpoint", "left",
                           "mean cross (last record)"], rows)
  return (f"{data}, phase {phase}: {done:,} of {total:,} training steps "
          f"({done / total:.0%})\n\n" + table)


def _judge_folders(directory: str) -> list[str]:
  """The stored judges in `directory`: modality folders whose metadata was written (last,
  once their parameters were)."""
  return sorted(name for name in os.listdir(directory)
                if os.path.isfile(os.path.join(directory, name, "classifier.json"))
                ) if os.path.isdir(directory) else []


def _copy_judges(source: str, target: str) -> list[str]:
  """Copies the judges of `source` that `target` lacks (not the lock file); their names."""
  copied = [name for name in _judge_folders(source) if name not in _judge_folders(target)]
  for name in copied:
    shutil.copytree(os.path.join(source, name), os.path.join(target, name),
                    dirs_exist_ok=True)
  return copied


def restore_judges(data: str, root: str, results: str) -> None:
  """Puts the judges kept beside the results (`<results>/judges/<data>`) where the legs
  read them, so that every machine judges with the same ones: judges trained again on
  another machine come out different (their digests differ, and with them the numbers)."""
  copied = _copy_judges(os.path.join(results, JUDGES_DIR, data),
                        os.path.join(root, "classifiers", data))
  if copied:
    print(f"Judges of {data} restored from {os.path.join(results, JUDGES_DIR, data)}: "
          f"{', '.join(copied)}.", flush=True)


def keep_judges(data: str, root: str, results: str) -> None:
  """Copies judges that a leg trained to `<results>/judges/<data>`, to be kept (committed,
  in a checkout's experiments/results) with the records they judged."""
  copied = _copy_judges(os.path.join(root, "classifiers", data),
                        os.path.join(results, JUDGES_DIR, data))
  if copied:
    print(f"Judges of {data} kept in {os.path.join(results, JUDGES_DIR, data)}: "
          f"{', '.join(copied)}; commit them with the records.", flush=True)


def goals(phase: str) -> dict[tuple[str, int], int]:
  """(model, seed) -> the last budget the phase trains it to."""
  goal: dict[tuple[str, int], int] = {}
  for leg in PHASES[phase]:
    for model in leg.models:
      for seed in leg.seeds:
        goal[(model, seed)] = max(goal.get((model, seed), 0), leg.budgets[-1])
  return goal


def recorded_runs(phase: str, data: str, records: list[dict],
                  judges: dict[str, str] | None = None) -> set[tuple[str, int]]:
  """The (model, seed) runs of the phase with a record, judged by `judges` (when named),
  at every budget of every leg they are in: nothing is left to train for them, whatever
  their checkpoint (a run trained again only to judge its early budgets again stops short
  of its last one)."""
  budgets: dict[tuple[str, int], set[int]] = {}
  for leg in PHASES[phase]:
    for model in leg.models:
      for seed in leg.seeds:
        budgets.setdefault((model, seed), set()).update(leg.budgets)
  return {(model, seed) for (model, seed), wanted in budgets.items()
          if wanted <= set(_recorded(records, data, model, seed, judges))}


def _workdir(root: str, data: str, model: str, seed: int) -> str:
  return os.path.join(root, data, model, f"seed_{seed}")


def _copy_run(source: str, target: str, step: int, into_run: bool) -> None:
  """The files a run resumes from: its config and data records (not locks or event logs)
  and the checkpoint of `step`, copied whole before they are put in place. A `target`
  that is a run already gets the checkpoint and the records it lacks, and keeps the rest
  (its other checkpoints, its logs) with `into_run`; otherwise `target` is replaced."""
  staging = target + ".incoming"
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  for name in os.listdir(source):
    if name.endswith(".json") and os.path.isfile(os.path.join(source, name)):
      shutil.copy2(os.path.join(source, name), staging)
  shutil.copytree(os.path.join(source, "checkpoints", str(step)),
                  os.path.join(staging, "checkpoints", str(step)))
  if into_run and os.path.isdir(target):
    os.makedirs(os.path.join(target, "checkpoints"), exist_ok=True)
    os.replace(os.path.join(staging, "checkpoints", str(step)),
               os.path.join(target, "checkpoints", str(step)))
    for name in os.listdir(staging):
      if name.endswith(".json") and not os.path.exists(os.path.join(target, name)):
        os.replace(os.path.join(staging, name), os.path.join(target, name))
    shutil.rmtree(staging)
  else:
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def carry_out(phase: str, data: str, root: str, results: str) -> list[str]:
  """Keeps, beside the results, the newest checkpoint of every run of the phase that is
  short of its last budget (`<results>/carry/<data>/<model>/seed_<s>`, replacing an
  older one), so that a new machine goes on from it instead of from step 0; a run that
  reached its last budget, or has a record (by the judges kept beside the results) at
  every budget, leaves none. Returns what changed, one line each."""
  @functools.cache
  def complete() -> set[tuple[str, int]]:  # read only where a carry depends on it
    path = os.path.join(results, reproduce.CURVES_FILE)
    kept_judges = os.path.join(results, JUDGES_DIR, data)
    return recorded_runs(
        phase, data, reproduce.Curves(path).records if os.path.isfile(path) else [],
        stored_judges(kept_judges) if os.path.isdir(kept_judges) else None)

  def changes() -> list[tuple[str, int, int, str, str, str]]:
    found = []
    for (model, seed), goal in goals(phase).items():
      workdir, carried = (_workdir(root, data, model, seed),
                          _workdir(os.path.join(results, CARRY_DIR), data, model, seed))
      step, kept = reproduce.checkpoint_step(workdir), reproduce.checkpoint_step(carried)
      # Why nothing is left to train ("" while something is).
      if step >= goal:
        finished = "at its last budget"
      elif os.path.isdir(carried) or kept < step:
        finished = "every budget recorded" if (model, seed) in complete() else ""
      else:
        continue
      if (finished and os.path.isdir(carried)) or (not finished and kept < step):
        found.append((model, seed, step, finished, workdir, carried))
    return found

  if not changes():
    return []
  changed = []
  with open(os.path.join(results, "carry.lock"), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # queues side by side carry one at a time
    for model, seed, step, finished, workdir, carried in changes():  # again, under the lock
      if finished:
        shutil.rmtree(carried)
        if not os.listdir(os.path.dirname(carried)):  # the model's last carried seed
          os.rmdir(os.path.dirname(carried))
        changed.append(f"{model}, seed {seed}: {finished}, carry removed")
      else:
        try:
          _copy_run(workdir, carried, step, into_run=False)
        except FileNotFoundError:  # rotated away by a queue still training it
          shutil.rmtree(carried + ".incoming", ignore_errors=True)
          changed.append(f"{model}, seed {seed}: not carried (its step {step:,} was replaced "
                         "while copied; the queue training it carries it when it stops)")
          continue
        changed.append(f"{model}, seed {seed}: step {step:,} carried")
  return changed


def carry_in(data: str, root: str, results: str) -> list[str]:
  """Puts back each carried run whose workdir has no newer checkpoint (a new machine has
  none). Returns what it put back, one line each."""
  restored = []
  carry = os.path.join(results, CARRY_DIR, data)
  for model in sorted(os.listdir(carry)) if os.path.isdir(carry) else []:
    for name in sorted(os.listdir(os.path.join(carry, model))):
      carried, workdir = os.path.join(carry, model, name), os.path.join(root, data, model, name)
      step = reproduce.checkpoint_step(carried)
      if step > reproduce.checkpoint_step(workdir):
        os.makedirs(os.path.dirname(workdir), exist_ok=True)
        _copy_run(carried, workdir, step, into_run=True)
        restored.append(f"{model}, {name.replace('_', ' ')}: from step {step:,}")
  return restored


def run(phase: str, data: str, root: str, results: str,
        legs: Sequence[int] | None = None) -> None:
  """Runs the phase's legs (`legs`: their numbers, from 1; default all) with the judges
  and the runs' checkpoints kept beside the results restored first, and kept again when
  the legs end or are stopped."""
  restore_judges(data, root, results)
  for line in carry_in(data, root, results):
    print(f"Restored from {os.path.join(results, CARRY_DIR)}: {line}.", flush=True)
  try:
    _run_legs(phase, data, root, results, legs)
  finally:
    keep_judges(data, root, results)
    for line in carry_out(phase, data, root, results):
      print(f"Carry ({os.path.join(results, CARRY_DIR)}): {line}; commit it.", flush=True)


def _run_legs(phase: str, data: str, root: str, results: str,
              legs: Sequence[int] | None) -> None:
  chosen = [PHASES[phase][n - 1] for n in legs] if legs else PHASES[phase]
  for leg in chosen:
    print(f"== {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {data} leg: "
          f"--models={','.join(leg.models)} --seeds={','.join(map(str, leg.seeds))} "
          f"--budgets={','.join(map(str, leg.budgets))}", flush=True)
    child = subprocess.Popen([
        sys.executable, "-m", "experiments.paper.reproduce", f"--data={data}", "--noablation",
        f"--root={root}", f"--results={results}", f"--models={','.join(leg.models)}",
        f"--seeds={','.join(map(str, leg.seeds))}",
        f"--budgets={','.join(map(str, leg.budgets))}"])
    try:
      code = child.wait()
    except BaseException:  # the queue was stopped: the leg saves its step and stops too
      child.send_signal(signal.SIGTERM)
      child.wait()
      raise
    if code:
      raise UserError(f"The leg stopped (exit {code}); the same command goes on from where "
                      "it stopped.")
  print(f"== {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {data} {phase} "
        "finished", flush=True)


def define_flags() -> None:
  """The command line's flags: defined when run, not on import, so that a module that
  imports this one (tests do) may define its own --root and --results."""
  flags.DEFINE_integer("version", None, "Renderer version: 1 is data set mst_offline, "
                       "N > 1 mst_offline_vN.")
  flags.DEFINE_enum("phase", None, list(PHASES), "Which legs.")
  flags.DEFINE_string("root", os.path.expanduser("~/crmvae_jax_queue"),
                      "Runs and judges (outside the repository).")
  flags.DEFINE_string("results", None, "Folder of the results file (default ROOT/results); a "
                      "checkout's experiments/results keeps each record in the checkout.")
  flags.DEFINE_bool("status", False, "Only say where the queue stands.")
  flags.DEFINE_list("legs", None, "Only these legs of the phase (numbers from 1, as --status "
                    "lists them), e.g. to run two queues side by side on different legs.")


def main() -> None:
  options = flags.FLAGS
  if options.version is None or options.phase is None:
    raise UserError("Name the renderer version and the phase: --version=3 --phase=claim "
                    f"(phases: {', '.join(PHASES)}).")
  data = data_name(options.version)
  root = os.path.expanduser(options.root)
  results = os.path.expanduser(options.results or os.path.join(root, "results"))
  path = os.path.join(results, reproduce.CURVES_FILE)
  if options.status:
    print(status(options.phase, data, root, reproduce.Curves(path).records, results,
                 stored_judges(os.path.join(results, JUDGES_DIR, data))))
    return
  os.makedirs(results, exist_ok=True)
  if not os.path.isfile(path):  # start from the repository's records
    shutil.copy(os.path.join("experiments", "results", reproduce.CURVES_FILE), path)
  legs = options.legs and [int(n) if n.isdigit() else 0 for n in options.legs]
  if legs and not all(1 <= n <= len(PHASES[options.phase]) for n in legs):
    raise UserError(f"Phase {options.phase} has legs 1 to {len(PHASES[options.phase])} "
                    f"(--legs={','.join(options.legs)}); --status lists them.")
  run(options.phase, data, root, results, legs)


if __name__ == "__main__":
  define_flags()
  cli.run(main, config=False)
