r"""Bad inputs and faults on the quick start, each run as a user would, in one table.

    python -m experiments.qa.bad_inputs                # every case, a few minutes on a CPU
    python -m experiments.qa.bad_inputs --only=nan,lock

Every case runs `python -m ...` as a subprocess in a temporary directory, by default
`python -m crmvae_jax.main` with `--config.num_train_steps=60
--config.checkpoint_every_steps=20` and a fresh `--workdir`, and the script prints a
Markdown table: the input, the exit code, the last line the user reads on stderr
(progress bars aside), or 'Traceback: ...' when a traceback appears, and for a fault
whether nothing was lost (the run's checkpoints and earlier results still there). A bad
input should end with a non-zero exit and one line `error: ...` that names the fix; a
fault (a signal, a truncated checkpoint, a full disk) should end as the case says.
Filesystem faults use a read-only bind mount or a small tmpfs, which need root; without
them those cases say 'skipped' and why.

Some cases build on earlier ones (a trained run, classifiers), so they run in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence

from absl import flags

from crmvae_jax.config import cli, runs
from crmvae_jax.training.checkpoints import saved_steps

QUICK = ("--config.num_train_steps=60", "--config.checkpoint_every_steps=20")
# Evaluation shrunk to a CPU minute; its classifiers are the ones a case trains.
SMALL_EVAL = ("--config.eval.classifier_dir={tmp}/classifiers", "--config.eval.num_examples=200",
              "--config.eval.coherence.prior_samples=200", "--config.eval.latent.train_examples=500")
TIMEOUT_S = 600
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROGRESS = re.compile(r"\d+%\|")

_ONLY = flags.DEFINE_list("only", None, "Run only the cases whose input holds one of these.")


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input or fault.

  Attributes:
    shown: the input as the table shows it.
    args: the command line after `python`, with {tmp} (the shared temporary
      directory) and {workdir} (this case's own fresh directory) filled in.
    quick: add QUICK (after any --config=FILE) and --workdir={workdir}.
    run: a custom runner (args, workdir -> (exit code, stderr) or (exit code, stderr,
      nothing lost: 'yes' or 'no')) for faults that need timing or a prepared directory.
  """

  shown: str
  args: tuple[str, ...]
  quick: bool = True
  run: Callable[[list[str], str], tuple] | None = None


def main_args(*args: str) -> tuple[str, ...]:
  return ("-m", "crmvae_jax.main", *args)


def _popen(argv: Sequence[str]) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(process: subprocess.Popen, workdir: str, timeout_s: float = 300) -> None:
  """Waits until the run in `workdir` has written a checkpoint (or has ended)."""
  deadline = time.monotonic() + timeout_s
  checkpoints = os.path.join(workdir, "checkpoints")
  while time.monotonic() < deadline and process.poll() is None:
    if os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints)):
      return
    time.sleep(0.5)


def run_concurrently(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """A second training on the workdir of one still running; the first is then stopped.
  Nothing lost: the first run's newest checkpoint when the second started is kept (or
  a newer one replaced it), and the first run stopped with its own status 143."""
  first = _popen(argv)
  try:
    _wait_for_checkpoint(first, workdir)
    checkpoints = os.path.join(workdir, "checkpoints")
    steps_before = saved_steps(workdir)
    newest = _snapshot(os.path.join(checkpoints, str(steps_before[-1])))
    code, stderr = _run(argv)
  finally:
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=TIMEOUT_S)
  kept = _newest_kept(checkpoints, steps_before, newest)
  kept = kept if first.returncode == 128 + signal.SIGTERM else "no"
  return code, stderr, kept


def run_with_truncated_checkpoint(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Resumes a copy of the trained run {tmp}/run whose latest checkpoint is cut in half.
  Nothing lost: the damaged checkpoint's files are all in `unreadable_checkpoints/`, as
  they were, and the run resumed from the one before."""
  argv = _copy_run(argv, workdir)
  checkpoints = os.path.join(workdir, "checkpoints")
  latest = saved_steps(workdir)[-1]
  damaged = os.path.join(checkpoints, str(latest))
  for root, _, files in os.walk(damaged):
    for name in files:
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 2)
  damaged_files = _snapshot(damaged)
  code, stderr = _run(argv)
  quarantine = os.path.join(workdir, "unreadable_checkpoints")
  moved = [os.path.join(quarantine, name) for name in os.listdir(quarantine)
           if name.startswith(f"{latest}_")] if os.path.isdir(quarantine) else []
  kept = "yes" if any(_snapshot(path) == damaged_files for path in moved) else "no"
  return code, stderr, kept


def _snapshot(directory: str) -> dict[str, bytes]:
  """Relative path -> content of every file under `directory` (what must not be lost)."""
  files = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, directory)] = f.read()
  return files


def _kept(before: dict[str, bytes], directory: str) -> str:
  after = _snapshot(directory)
  return "yes" if all(after.get(path) == content for path, content in before.items()) else "no"


def _copy_run(argv: list[str], workdir: str) -> list[str]:
  """Copies the run named by `--copy_of SOURCE` to `workdir`; returns argv without it."""
  source = argv[argv.index("--copy_of") + 1]
  shutil.rmtree(workdir, ignore_errors=True)
  shutil.copytree(source, workdir)
  return argv[:argv.index("--copy_of")]


def _run(argv: list[str]) -> tuple[int, str]:
  completed = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True,
                             timeout=TIMEOUT_S)
  return completed.returncode, completed.stderr


def run_on_copy(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Runs on a copy of a trained run; nothing lost: its checkpoints are unchanged."""
  argv = _copy_run(argv, workdir)
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  code, stderr = _run(argv)
  return code, stderr, _kept(before, os.path.join(workdir, "checkpoints"))


def run_without_config_json(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Resumes a copy of a trained run whose config.json was deleted."""
  argv = _copy_run(argv, workdir)
  os.remove(runs.config_path(workdir))
  before = _snapshot(os.path.join(workdir, "checkpoints"))
  code, stderr = _run(argv)
  return code, stderr, _kept(before, os.path.join(workdir, "checkpoints"))


def run_with_checkpoints_file(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Trains into a workdir whose `checkpoints` is a file; nothing lost: the file is as
  it was."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "checkpoints"), "w") as f:
    f.write("a file\n")
  before = _snapshot(workdir)
  code, stderr = _run(argv)
  return code, stderr, _kept(before, workdir)


def run_with_lock_directory(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Trains into a workdir whose `train.lock` is a directory (holding a file); nothing
  lost: the directory and its file are as they were."""
  os.makedirs(os.path.join(workdir, "train.lock"))
  with open(os.path.join(workdir, "train.lock", "notes.txt"), "w") as f:
    f.write("the user's\n")
  before = _snapshot(workdir)
  code, stderr = _run(argv)
  return code, stderr, _kept(before, workdir)


def _mount(*args: str) -> bool:
  return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def run_read_only(argv: list[str], workdir: str) -> tuple:
  """Runs with `workdir/checkpoints` (training) or a copy of a run (evaluate) mounted
  read-only: file modes do not stop root, a read-only mount does."""
  if "--copy_of" in argv:
    argv = _copy_run(argv, workdir)
    target = workdir
  else:
    target = os.path.join(workdir, "checkpoints")
    os.makedirs(target)
  if not _mount("--bind", "-o", "ro", target, target):
    return "skipped", "needs root to bind-mount a directory read-only"
  try:
    before = _snapshot(target)
    code, stderr = _run(argv)
    return code, stderr, _kept(before, target)
  finally:
    subprocess.run(["umount", target], check=False)


def run_on_full_disk(argv: list[str], workdir: str) -> tuple:
  """Evaluates a copy of a run on a small tmpfs filled up, over an earlier results.json."""
  os.makedirs(workdir)
  if not _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", workdir):
    return "skipped", "needs root to mount a small tmpfs"
  try:
    argv = _copy_run(argv, os.path.join(workdir, "run"))
    argv = [arg.replace(workdir, os.path.join(workdir, "run")) for arg in argv]
    eval_dir = os.path.join(workdir, "run", "eval")
    os.makedirs(eval_dir, exist_ok=True)
    with open(os.path.join(eval_dir, "results.json"), "w") as f:
      f.write('{"earlier": "results"}\n')
    before = _snapshot(os.path.join(workdir, "run"))
    _fill(workdir)
    code, stderr = _run(argv)
    return code, stderr, _kept(before, os.path.join(workdir, "run"))
  finally:
    subprocess.run(["umount", workdir], check=False)


def run_with_damaged_classifier(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Evaluates with a copy of the classifiers whose mnist classifier.json is cut short;
  nothing lost: the classifiers, the damaged one included, are as they were."""
  source = argv[argv.index("--classifiers_of") + 1]
  argv = argv[:argv.index("--classifiers_of")]
  shutil.copytree(source, os.path.join(workdir, "classifiers"))
  path = os.path.join(workdir, "classifiers", "mnist", "classifier.json")
  os.truncate(path, os.path.getsize(path) // 2)
  before = _snapshot(os.path.join(workdir, "classifiers"))
  code, stderr = _run(argv)
  return code, stderr, _kept(before, os.path.join(workdir, "classifiers"))


def run_with_unreadable_photo(argv: list[str], workdir: str) -> tuple[int, str]:
  """Trains PolyMNIST on a backgrounds directory of five good photos and one file
  named .jpg that is no image."""
  from PIL import Image

  os.makedirs(os.path.join(workdir, "photos"))
  for index in range(5):
    Image.new("RGB", (64, 64), (40 * index, 90, 160)).save(
        os.path.join(workdir, "photos", f"good_{index}.png"))
  with open(os.path.join(workdir, "photos", "photo.jpg"), "wb") as f:
    f.write(b"not a jpeg")
  return _run(argv)


def with_env(**env: str) -> Callable[[list[str], str], tuple[int, str]]:
  """A runner that runs the case with these environment variables set."""

  def run(argv: list[str], workdir: str) -> tuple[int, str]:
    del workdir
    completed = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True,
                               text=True, timeout=TIMEOUT_S, env={**os.environ, **env})
    return completed.returncode, completed.stderr

  return run


def _judges_copy(argv: list[str], workdir: str) -> tuple[list[str], str]:
  """Copies the judges named by `--classifiers_of SOURCE` to `workdir/classifiers`;
  returns argv without the option, and the copy."""
  source = argv[argv.index("--classifiers_of") + 1]
  argv = argv[:argv.index("--classifiers_of")]
  directory = os.path.join(workdir, "classifiers")
  shutil.copytree(source, directory)
  return argv, directory


def _judges_committed(directory: str) -> dict[str, bytes]:
  """Every committed judge's description and the parameters it names."""
  files = {}
  for modality in sorted(os.listdir(directory)):
    description = os.path.join(directory, modality, "classifier.json")
    if not os.path.isfile(description):
      continue
    with open(description, "rb") as f:
      files[f"{modality}/classifier.json"] = f.read()
    params = json.loads(files[f"{modality}/classifier.json"]).get("params", "params")
    for path, content in _snapshot(os.path.join(directory, modality, params)).items():
      files[f"{modality}/{params}/{path}"] = content
  return files


def _judges_load(directory: str) -> bool:
  """Whether every quick-start judge in `directory` loads (in a fresh process)."""
  program = ("from crmvae_jax.config import defaults; from crmvae_jax.data.modalities import "
             "modalities_of; from crmvae_jax.data import quickstart; from crmvae_jax.evaluation "
             "import judges; c = defaults.quickstart_config(); t, _ = quickstart.load(c.data); "
             f"judges.load_classifiers(c, modalities_of('quickstart', t), {directory!r})")
  return subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True,
                        timeout=TIMEOUT_S).returncode == 0


def run_classifiers_killed_while_saving(signal_number: int) -> Callable[[list[str], str], tuple]:
  """Retrains a copy of the judges and sends `signal_number` the moment the first new
  parameters start being written (SIGKILL: no chance to clean up). Nothing lost: every
  judge described before is still there with the parameters its description names,
  byte for byte, or was replaced whole by a new one."""

  def run(argv: list[str], workdir: str) -> tuple:
    argv, directory = _judges_copy(argv, workdir)
    before = _judges_committed(directory)
    process = _popen(argv)
    deadline = time.monotonic() + TIMEOUT_S
    mnist = os.path.join(directory, "mnist")
    old = set(os.listdir(mnist))
    while time.monotonic() < deadline and process.poll() is None:
      if set(os.listdir(mnist)) - old:  # a new parameters folder: the save has begun
        break
      time.sleep(0.01)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    after = _judges_committed(directory)
    whole = all(after.get(path) == content for path, content in before.items()
                if path.startswith("mnist/")) or (
                    after.keys() != before.keys() and "mnist/classifier.json" in after)
    others = all(after.get(path) == content for path, content in before.items()
                 if not path.startswith("mnist/"))
    kept = whole and others and _judges_load(directory)
    return process.returncode, stderr, "yes" if kept else "no"

  return run


def run_two_classifier_trainings(argv: list[str], workdir: str) -> tuple:
  """A second `classifiers` into the directory of one still training; the first is then
  stopped. Nothing lost: the judges there before are as they were or replaced whole."""
  argv, directory = _judges_copy(argv, workdir)
  first = _popen(argv)
  lock = os.path.join(directory, "classifiers.lock")
  deadline = time.monotonic() + TIMEOUT_S
  while time.monotonic() < deadline and first.poll() is None:  # until the first holds it
    with contextlib.suppress(OSError), open(lock) as f:
      if f"pid {first.pid} " in f.read():
        break
    time.sleep(0.1)
  try:
    code, stderr = _run(argv)
  finally:
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=TIMEOUT_S)
  return code, stderr, "yes" if _judges_load(directory) else "no"


def run_training_on_full_disk(argv: list[str], workdir: str) -> tuple:
  """Resumes a copy of a run on a small tmpfs filled up, so the next checkpoint cannot be
  written. Nothing lost: the run's checkpoints are as they were."""
  os.makedirs(workdir)
  if not _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", workdir):
    return "skipped", "needs root to mount a small tmpfs"
  try:
    run = os.path.join(workdir, "run")
    argv = [arg.replace(workdir, run) for arg in _copy_run(argv, run)]
    before = _snapshot(os.path.join(run, "checkpoints"))
    _fill(workdir)
    code, stderr = _run(argv)
    return code, stderr, _kept(before, os.path.join(run, "checkpoints"))
  finally:
    subprocess.run(["umount", workdir], check=False)


def run_classifiers_on_full_disk(argv: list[str], workdir: str) -> tuple:
  """Retrains a copy of the judges on a small tmpfs filled up. Nothing lost: the judges
  there before are as they were."""
  os.makedirs(workdir)
  if not _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", workdir):
    return "skipped", "needs root to mount a small tmpfs"
  try:
    argv, directory = _judges_copy(argv, workdir)
    before = _judges_committed(directory)
    _fill(workdir)
    code, stderr = _run(argv)
    after = _judges_committed(directory)
    return code, stderr, "yes" if after == before else "no"
  finally:
    subprocess.run(["umount", workdir], check=False)


def _fill(directory: str) -> None:
  """Fills the file system of `directory`."""
  with open(os.path.join(directory, "filler"), "wb") as f:
    with contextlib.suppress(OSError):
      while True:
        f.write(b"\0" * (1 << 20))
        f.flush()


def run_beside_rotating_training(argv: list[str], workdir: str) -> tuple:
  """Loads the run (`crmvae_jax.load`) 5 times while it trains and rotates a checkpoint
  every 5 steps; the line reports how many loads succeeded. Nothing lost: the run
  stopped with its own status 143 after saving."""
  training = _popen(argv)
  try:
    _wait_for_checkpoint(training, workdir)
    loaded, last = 0, ""
    for _ in range(5):
      completed = subprocess.run(
          [sys.executable, "-c", f"import crmvae_jax; print(crmvae_jax.load({workdir!r}).step)"],
          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
      loaded += completed.returncode == 0
      last = completed.stderr.strip().splitlines()[-1] if completed.returncode else ""
  finally:
    training.send_signal(signal.SIGTERM)
    training.communicate(timeout=TIMEOUT_S)
  return (0 if loaded == 5 else 1), f"{loaded} of 5 loads read a checkpoint {last}".strip(), (
      "yes" if training.returncode == 128 + signal.SIGTERM else "no")


def run_with_edited_config(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Evaluates a copy of a run whose config.json was edited to a wrongly typed value;
  nothing lost: the run's files are as they were."""
  argv = _copy_run(argv, workdir)
  path = runs.config_path(workdir)
  with open(path) as f:
    document = json.load(f)
  document["latent_dim"] = "abc"
  with open(path, "w") as f:
    json.dump(document, f)
  before = _snapshot(workdir)
  code, stderr = _run(argv)
  return code, stderr, _kept(before, workdir)


def run_with_dangling_link(argv: list[str], workdir: str) -> tuple[int, str, str]:
  """Trains into a workdir whose `checkpoints` is a link to nothing; nothing lost: the
  link is as it was."""
  os.makedirs(workdir)
  os.symlink(os.path.join(workdir, "gone"), os.path.join(workdir, "checkpoints"))
  code, stderr = _run(argv)
  link = os.path.join(workdir, "checkpoints")
  kept = os.path.islink(link) and os.readlink(link) == os.path.join(workdir, "gone")
  return code, stderr, "yes" if kept else "no"


def run_with_judges_of_other_data(argv: list[str], workdir: str) -> tuple[int, str]:
  """Trains a tiny PolyMNIST run, copies the quick start's MNIST judge in as if it were
  PolyMNIST's m0 judge, and evaluates."""
  tmp = os.path.dirname(workdir)
  run, judges_dir = os.path.join(tmp, "polymnist_run"), os.path.join(tmp, "other_judges")
  if not os.path.isdir(run):
    _run(main_args("--config=configs/polymnist.py:tiny", f"--workdir={run}"))
  shutil.rmtree(judges_dir, ignore_errors=True)
  shutil.copytree(os.path.join(tmp, "classifiers", "mnist"), os.path.join(judges_dir, "m0"))
  return _run(argv)


def _signal_when(signal_number: int, text: str) -> Callable[[list[str], str], tuple]:
  """A runner that sends `signal_number` once the program prints `text` on stdout (a
  moment inside its work, whatever the machine's speed). Nothing lost: the run's files
  are as they were, or replaced whole."""

  def run(argv: list[str], workdir: str) -> tuple:
    if "--copy_of" in argv:
      argv = _copy_run(argv, workdir)
    before = _snapshot(os.path.join(workdir, "checkpoints"))
    with tempfile.TemporaryFile("w+") as errors:
      process = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=errors, text=True)
      for line in process.stdout:
        if text in line:
          process.send_signal(signal_number)
          break
      process.stdout.read()
      process.wait(timeout=TIMEOUT_S)
      errors.seek(0)
      stderr = errors.read()
    return process.returncode, stderr, _kept(before, os.path.join(workdir, "checkpoints"))

  return run


def _signal_after(signal_number: int, seconds: float, wait_for_checkpoint: bool = False
                  ) -> Callable[[list[str], str], tuple]:
  """A runner that sends `signal_number` `seconds` after the start (or after the first
  checkpoint). Nothing lost: the newest checkpoint present when the signal was sent is
  still there unchanged, or a newer one replaced it (checkpoints rotate, and training
  saves the step it stopped at; a checkpoint still being written when the signal came
  is not yet one to keep)."""

  def run(argv: list[str], workdir: str) -> tuple:
    if "--copy_of" in argv:
      argv = _copy_run(argv, workdir)
    process = _popen(argv)
    if wait_for_checkpoint:
      _wait_for_checkpoint(process, workdir)
    time.sleep(seconds)
    checkpoints = os.path.join(workdir, "checkpoints")
    steps_before = saved_steps(workdir)
    newest = (_snapshot(os.path.join(checkpoints, str(steps_before[-1])))
              if steps_before else {})
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    return process.returncode, stderr, _newest_kept(checkpoints, steps_before, newest)

  return run


def _newest_kept(checkpoints: str, steps_before: list[int], newest: dict[str, bytes]) -> str:
  """'yes' if the newest checkpoint of `steps_before` (its files `newest`) is still there
  unchanged, or a newer one replaced it (checkpoints rotate)."""
  steps_after = saved_steps(os.path.dirname(checkpoints))
  if not steps_before or (steps_after and steps_after[-1] > steps_before[-1]):
    return "yes"
  return _kept(newest, os.path.join(checkpoints, str(steps_before[-1])))


def cases() -> list[Case]:
  """The bad inputs and faults, in the order they run (later ones reuse earlier runs)."""
  return [
      # Numbers that cannot train.
      Case("`--config.beta=nan`", main_args("--config.beta=nan")),
      Case("`--config.learning_rate=nan`", main_args("--config.learning_rate=nan")),
      Case("`--config.learning_rate=0`", main_args("--config.learning_rate=0")),
      Case("`--config.latent_dim=-16`", main_args("--config.latent_dim=-16")),
      Case("`--config.batch_size=0`", main_args("--config.batch_size=0")),
      Case("`--config.eval_every_steps=0`", main_args("--config.eval_every_steps=0")),
      Case("`--config.log_every_steps=0`", main_args("--config.log_every_steps=0")),
      Case("`--config.checkpoint_every_steps=0`", main_args("--config.checkpoint_every_steps=0")),
      Case("`--config.num_epochs=0` (no step count)",
           main_args("--config.num_epochs=0", "--workdir={workdir}"), quick=False),
      Case("`--config.num_train_steps=0`", main_args("--config.num_train_steps=0")),
      Case("`--config.sweep.betas='(1.0,nan)'`", main_args("--config.sweep.betas=(1.0,nan)")),
      Case("`--config.sweep.seeds='(0,1.5)'`", main_args("--config.sweep.seeds=(0,1.5)")),
      Case("`--config.data.test_fraction=1.5`", main_args("--config.data.test_fraction=1.5")),
      Case("`--config.batch_size=10000` (more than the 4,500 pairs)",
           main_args("--config.batch_size=10000")),
      Case("`--config.batch_size=600` (more than the 500 test pairs)",
           main_args("--config.batch_size=600")),
      # Names and flags.
      Case("`--config.foo=1` (unknown field)", main_args("--config.foo=1")),
      Case("`--config.lerning_rate=1e-3` (misspelt field)",
           main_args("--config.lerning_rate=1e-3")),
      Case("`--config.model=crmvea` (typo)", main_args("--config.model=crmvea")),
      Case("`--config.mixture_estimator=exact`", main_args("--config.mixture_estimator=exact")),
      Case("`--config.beta=abc`", main_args("--config.beta=abc")),
      Case("`--workdr=x` (unknown flag)", main_args("--workdr=x")),
      Case("a stray argument `extra`", main_args("extra")),
      # Config files and directories.
      Case("`--config=configs/msts.py` (missing file)", main_args("--config=configs/msts.py")),
      Case("a config file with a syntax error", main_args("--config={tmp}/syntax.py")),
      Case("a config file whose get_config returns a dict", main_args("--config={tmp}/dict.py")),
      Case("`--config=configs/polymnist.py:huge` (no such setting)",
           main_args("--config=configs/polymnist.py:huge")),
      Case("MST data not prepared, no download",
           main_args("--config=configs/mst.py", "--config.data.data_dir={tmp}/no_tfds",
                     "--config.data.download=False")),
      Case("`--workdir` that is an existing file",
           main_args(*QUICK, "--workdir={tmp}/a_file"), quick=False),
      # Runs that work, and tools on them.
      Case("`python -m crmvae_jax.main --config.num_train_steps=60` (default config)",
           main_args(*QUICK, "--workdir={tmp}/run"), quick=False),
      Case("`--config.latent_dim=16` (trained, for evaluate)",
           main_args(*QUICK, "--config.latent_dim=16", "--workdir={tmp}/run16"), quick=False),
      Case("`--config.sweep.seeds='(0,1)'` (trained, for evaluate)",
           main_args(*QUICK, "--config.sweep.seeds=(0,1)", "--workdir={tmp}/sweep"), quick=False),
      Case("`evaluate` before the classifiers exist",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/run16", *SMALL_EVAL), quick=False),
      Case("`python -m crmvae_jax.classifiers --config.eval.classifier_dir=DIR`",
           ("-m", "crmvae_jax.classifiers", "--config.eval.classifier_dir={tmp}/classifiers",
            "--config.eval.classifier_epochs=1"), quick=False),
      Case("`classifiers --config.eval.classifier_dir=` an existing file",
           ("-m", "crmvae_jax.classifiers", "--config.eval.classifier_dir={tmp}/a_file"),
           quick=False),
      Case("`evaluate --workdir=W` on the `latent_dim=16` run",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/run16", *SMALL_EVAL), quick=False),
      Case("`evaluate --workdir=W` on the sweep (both replicas)",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/sweep", *SMALL_EVAL), quick=False),
      Case("`evaluate --workdir=W --config.model=mvae` (another model)",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/run16", "--config.model=mvae"),
           quick=False),
      Case("`evaluate --replica=5` on a single run",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/run16", "--replica=5"), quick=False),
      Case("`evaluate` on an empty workdir",
           ("-m", "crmvae_jax.evaluate", "--workdir={workdir}"), quick=False),
      Case("`evaluate` on a workdir with a config but no checkpoint",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/config_only"), quick=False),
      Case("`evaluate` without `--workdir`", ("-m", "crmvae_jax.evaluate"), quick=False),
      # Faults during training (crmvae_jax/training/loop.py).
      Case("resume the 60-step run to step 80 with `--config.learning_rate=1e8` (diverges)",
           main_args("--config.num_train_steps=80", "--config.learning_rate=1e8",
                     "--workdir={workdir}", "--copy_of", "{tmp}/run"),
           quick=False, run=run_on_copy),
      Case("resume the crmvae run with `--config.model=mvae`",
           main_args(*QUICK, "--config.model=mvae", "--workdir={tmp}/run"), quick=False),
      Case("two trainings on one workdir at once",
           main_args("--config.num_train_steps=5000", "--config.checkpoint_every_steps=20",
                     "--workdir={workdir}"), quick=False, run=run_concurrently),
      Case("truncated latest checkpoint, resumed to step 80",
           main_args("--config.num_train_steps=80", "--config.checkpoint_every_steps=20",
                     "--workdir={workdir}", "--copy_of", "{tmp}/run"),
           quick=False, run=run_with_truncated_checkpoint),
      Case("SIGTERM during training",
           main_args("--config.num_train_steps=5000", "--config.checkpoint_every_steps=20",
                     "--workdir={workdir}"), quick=False,
           run=_signal_after(signal.SIGTERM, 2, wait_for_checkpoint=True)),
      # Numbers finite in Python but not on the devices, repeats, sizes.
      Case("`--config.learning_rate=1e39` (infinite in float32)",
           main_args("--config.learning_rate=1e39")),
      Case("`--config.sweep.seeds='(0,0)'` (a repeated seed)",
           main_args("--config.sweep.seeds=(0,0)")),
      Case("`--config.likelihood_weights='(0.0,0.0)'`",
           main_args("--config.likelihood_weights=(0.0,0.0)")),
      Case("`--config.likelihood_weights='(1.0,2.0,3.0)'` (3 weights, 2 modalities)",
           main_args("--config.likelihood_weights=(1.0,2.0,3.0)")),
      Case("`--config.sweep.seeds` of 20,000 replicas (more than the memory)",
           main_args("--config.sweep.seeds=(" + ",".join(map(str, range(20000))) + ")")),
      # Faults of the run's directory and files.
      Case("resume the 60-step run with `--config.num_train_steps=40`",
           main_args("--config.num_train_steps=40", "--workdir={workdir}", "--copy_of",
                     "{tmp}/run"), quick=False, run=run_on_copy),
      Case("resume the run without its config.json, with `--config.latent_dim=16`",
           main_args(*QUICK, "--config.latent_dim=16", "--workdir={workdir}", "--copy_of",
                     "{tmp}/run"), quick=False, run=run_without_config_json),
      Case("`WORKDIR/checkpoints` is a file",
           main_args(*QUICK, "--workdir={workdir}"), quick=False, run=run_with_checkpoints_file),
      Case("`WORKDIR/checkpoints` is read-only (a read-only bind mount)",
           main_args(*QUICK, "--workdir={workdir}"), quick=False, run=run_read_only),
      Case("`WORKDIR/train.lock` is a directory",
           main_args(*QUICK, "--workdir={workdir}"), quick=False, run=run_with_lock_directory),
      Case("`evaluate` on a read-only run (a read-only bind mount)",
           ("-m", "crmvae_jax.evaluate", "--workdir={workdir}", *SMALL_EVAL, "--copy_of",
            "{tmp}/run16"), quick=False, run=run_read_only),
      Case("`evaluate` on a full disk (a filled 64 MB tmpfs)",
           ("-m", "crmvae_jax.evaluate", "--workdir={workdir}", *SMALL_EVAL, "--copy_of",
            "{tmp}/run16"), quick=False, run=run_on_full_disk),
      Case("`evaluate` with a damaged classifier.json",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/run16", *SMALL_EVAL[1:],
            "--config.eval.classifier_dir={workdir}/classifiers", "--classifiers_of",
            "{tmp}/classifiers"), quick=False, run=run_with_damaged_classifier),
      Case("PolyMNIST with a background 'photo' that is no image (beside five good ones)",
           main_args("--config=configs/polymnist.py", "--config.data.backgrounds={workdir}/photos"),
           run=run_with_unreadable_photo),
      # Signals at every moment.
      Case("SIGHUP during training",
           main_args("--config.num_train_steps=5000", "--config.checkpoint_every_steps=20",
                     "--workdir={workdir}"), quick=False,
           run=_signal_after(signal.SIGHUP, 2, wait_for_checkpoint=True)),
      Case("SIGTERM during start-up",
           main_args(*QUICK, "--workdir={workdir}"), quick=False,
           run=_signal_after(signal.SIGTERM, 1)),
      Case("SIGTERM during `evaluate` (when it prints 'Evaluating')",
           ("-m", "crmvae_jax.evaluate", "--workdir={workdir}", *SMALL_EVAL, "--copy_of",
            "{tmp}/run16"), quick=False, run=_signal_when(signal.SIGTERM, "Evaluating")),
      # Round 3: judges never lost.
      Case("SIGKILL while `classifiers` saves over existing judges",
           ("-m", "crmvae_jax.classifiers", "--config.eval.classifier_dir={workdir}/classifiers",
            "--config.eval.classifier_epochs=1", "--classifiers_of", "{tmp}/classifiers"),
           quick=False, run=run_classifiers_killed_while_saving(signal.SIGKILL)),
      Case("SIGTERM while `classifiers` saves over existing judges",
           ("-m", "crmvae_jax.classifiers", "--config.eval.classifier_dir={workdir}/classifiers",
            "--config.eval.classifier_epochs=1", "--classifiers_of", "{tmp}/classifiers"),
           quick=False, run=run_classifiers_killed_while_saving(signal.SIGTERM)),
      Case("two `classifiers` into one directory at once",
           ("-m", "crmvae_jax.classifiers", "--config.eval.classifier_dir={workdir}/classifiers",
            "--config.eval.classifier_epochs=3", "--classifiers_of", "{tmp}/classifiers"),
           quick=False, run=run_two_classifier_trainings),
      Case("`classifiers` on a full disk (a filled 64 MB tmpfs)",
           ("-m", "crmvae_jax.classifiers", "--config.eval.classifier_dir={workdir}/classifiers",
            "--config.eval.classifier_epochs=1", "--classifiers_of", "{tmp}/classifiers"),
           quick=False, run=run_classifiers_on_full_disk),
      Case("judges of other data (`evaluate` with the MNIST judges on the PolyMNIST run)",
           ("-m", "crmvae_jax.evaluate", "--workdir={tmp}/polymnist_run",
            "--config.eval.classifier_dir={tmp}/other_judges"), quick=False,
           run=run_with_judges_of_other_data),
      # Round 3: stops honoured, no hang.
      Case("SIGINT (Ctrl-C) during start-up",
           main_args(*QUICK, "--workdir={workdir}"), quick=False,
           run=_signal_after(signal.SIGINT, 1)),
      Case("SIGINT (Ctrl-C) during training",
           main_args("--config.num_train_steps=5000", "--config.checkpoint_every_steps=20",
                     "--workdir={workdir}"), quick=False,
           run=_signal_after(signal.SIGINT, 2, wait_for_checkpoint=True)),
      Case("SIGINT (Ctrl-C) during `evaluate` (when it prints 'Evaluating')",
           ("-m", "crmvae_jax.evaluate", "--workdir={workdir}", *SMALL_EVAL, "--copy_of",
            "{tmp}/run16"), quick=False, run=_signal_when(signal.SIGINT, "Evaluating")),
      Case("a sweep of 1,000,000 seeds (a config file)",
           main_args("--config={tmp}/million_seeds.py")),
      # Round 3: library faults in one sentence.
      Case("training on a full disk (resume to step 80 on a filled 64 MB tmpfs)",
           main_args("--config.num_train_steps=80", "--config.checkpoint_every_steps=20",
                     "--workdir={workdir}", "--copy_of", "{tmp}/run"),
           quick=False, run=run_training_on_full_disk),
      Case("`JAX_PLATFORMS=bogus`", main_args(), run=with_env(JAX_PLATFORMS="bogus")),
      Case("`JAX_PLATFORMS=cuda` on a machine without a GPU", main_args(),
           run=with_env(JAX_PLATFORMS="cuda")),
      Case("`JAX_PLATFORMS=gpu` on a machine without a GPU", main_args(),
           run=with_env(JAX_PLATFORMS="gpu")),
      Case("`XLA_FLAGS=garbage`", main_args(), run=with_env(XLA_FLAGS="garbage")),
      Case("a config file that imports a missing module", main_args("--config={tmp}/imports.py")),
      Case("a config file whose get_config raises", main_args("--config={tmp}/raises.py")),
      Case("`--config=configs` (a directory)", main_args("--config=configs")),
      Case("`--workdir=` (empty)", main_args(*QUICK, "--workdir="), quick=False),
      Case("`evaluate --workdir=` (empty)", ("-m", "crmvae_jax.evaluate", "--workdir="),
           quick=False),
      Case("`WORKDIR/checkpoints` is a dangling link",
           main_args(*QUICK, "--workdir={workdir}"), quick=False, run=run_with_dangling_link),
      Case("`--config.learning_rate=1e8` from scratch (diverges at step 1)",
           main_args("--config.learning_rate=1e8")),
      Case("`--config.likelihood_weights='(1.0,1e30)'` (diverges)",
           main_args("--config.likelihood_weights=(1.0,1e30)")),
      Case("`crmvae_jax.load` 5 times while the run rotates a checkpoint every 5 steps",
           main_args("--config.num_train_steps=100000", "--config.checkpoint_every_steps=5",
                     "--workdir={workdir}"), quick=False, run=run_beside_rotating_training),
      Case("`evaluate` a run whose config.json says `\"latent_dim\": \"abc\"`",
           ("-m", "crmvae_jax.evaluate", "--workdir={workdir}", "--copy_of", "{tmp}/run16"),
           quick=False, run=run_with_edited_config),
      *api_cases(),
  ]


# The Python API on the trained quick-start run {tmp}/run: each call a case.
API_CALLS = (
    "m.sample(0)", "m.sample(-1)", "m.sample(2.5)", "m.sample(4, None)", "m.sample(4, 'a')",
    "m.log_likelihood({'mnist': x}, num_samples=0)",
    "m.encode({'mnist': x[:0]})", "crmvae_jax.load(W, batch_size=0)",
    "m.generate({'text': np.full((2, 8), 500)})", "m.generate({'text': -np.ones((2, 8), int)})",
    "m.generate({'text': np.zeros((2, 8)) + 0.5})", "m.encode({'mnist': x * np.nan})",
    "m.encode({'mnist': x.astype(np.float32)})",
)


def api_cases() -> list[Case]:
  """Each call in a program that prints the exception it raises as a user reads it in a
  notebook (its type and message), and exits 1."""
  program = ("import sys, numpy as np, crmvae_jax\nW = '{tmp}/run'\nm = crmvae_jax.load(W)\n"
             "x = m.test_set.batch(np.arange(4))['mnist']\ntry:\n  CALL\n"
             "except (TypeError, ValueError) as error:\n"
             "  sys.exit(f'{{type(error).__name__}}: {{error}}')\n")
  # The call's own braces doubled: every argument is filled in with str.format.
  return [Case(f"Python API: `{call}`",
               ("-c", program.replace("CALL", call.replace("{", "{{").replace("}", "}}"))),
               quick=False)
          for call in API_CALLS]


def prepare(tmp: str) -> None:
  """The files some cases point at: broken configs, a plain file, a config-only run."""
  with open(os.path.join(tmp, "syntax.py"), "w") as f:
    f.write("def get_config(:\n  return None\n")
  with open(os.path.join(tmp, "dict.py"), "w") as f:
    f.write("def get_config():\n  return {'model': 'crmvae'}\n")
  with open(os.path.join(tmp, "a_file"), "w") as f:
    f.write("not a directory\n")
  os.makedirs(os.path.join(tmp, "no_tfds"))
  with open(os.path.join(tmp, "imports.py"), "w") as f:
    f.write("import not_a_module\n\ndef get_config():\n  return None\n")
  with open(os.path.join(tmp, "raises.py"), "w") as f:
    f.write("def get_config():\n  settings = {}\n  return settings['model']\n")
  with open(os.path.join(tmp, "million_seeds.py"), "w") as f:
    f.write("from crmvae_jax.config import defaults as config\n\ndef get_config():\n"
            "  c = config.quickstart_config()\n  c.sweep.seeds = tuple(range(1_000_000))\n"
            "  return c\n")
  from crmvae_jax.config import defaults as config_lib

  runs.save_config(os.path.join(tmp, "config_only"), config_lib.quickstart_config())


def user_line(stderr: str) -> str:
  """The last line the user reads on stderr (progress bars aside), or the traceback's."""
  lines = [line.strip() for line in re.split(r"[\r\n]", stderr)]
  lines = [line for line in lines if line and not _PROGRESS.search(line)]
  last = lines[-1] if lines else ""
  return f"Traceback: {last}" if "Traceback" in stderr else last


def run_case(case: Case, tmp: str, index: int) -> tuple[int | str, str]:
  workdir = os.path.join(tmp, f"case_{index:02d}")
  module, args = list(case.args[:2]), list(case.args[2:])  # "-m", the module
  if case.quick:
    # QUICK after any --config=FILE (overrides must follow it), before the case's own
    # flags (so that its value wins).
    files = [arg for arg in args if arg.startswith("--config=")]
    args = files + list(QUICK) + [arg for arg in args if arg not in files]
    args.append("--workdir={workdir}")
  args = module + args
  args = [arg.format(tmp=tmp, workdir=workdir) for arg in args]
  kept = ""
  try:
    if case.run is not None:
      code, stderr, *rest = case.run(args, workdir)
      kept = rest[0] if rest else ""
    else:
      code, stderr = _run(args)
  except subprocess.TimeoutExpired:
    return "timeout", f"no end after {TIMEOUT_S} s", "?"
  return code, (stderr if code == "skipped" else user_line(stderr)), kept


def markdown(rows: list[tuple[str, int | str, str, str]]) -> str:
  escape = lambda text: str(text).replace("|", "\\|")
  lines = ["| input | exit code | last line on stderr | nothing lost |", "|---|---|---|---|"]
  lines += [f"| {escape(shown)} | {code} | {escape(line)} | {kept} |"
            for shown, code, line, kept in rows]
  return "\n".join(lines)


def main() -> None:
  selected = [case for case in cases()
              if not _ONLY.value or any(word in case.shown for word in _ONLY.value)]
  rows = []
  try:
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as tmp:
      prepare(tmp)
      for index, case in enumerate(selected):
        started = time.perf_counter()
        code, line, kept = run_case(case, tmp, index)
        print(f"[{index + 1}/{len(selected)}] {case.shown}: exit {code} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        rows.append((case.shown, code, line, kept))
  finally:
    print(markdown(rows))  # the rows so far, whatever stopped the script


if __name__ == "__main__":
  cli.run(main, config=False)
