"""The command lines, end to end: bad input ends in one line `error: ...`, a bug keeps its
traceback, and every command that a message tells the user to run parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from absl import flags

from configs import celeba as celeba_config
from crmvae_jax.evaluation import judges
from crmvae_jax.config import cli, runs
from crmvae_jax.evaluation import inception
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.common.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Short runs, as in the quick-start bad-input table (experiments/qa/bad_inputs.py).
QUICK = ("--config.num_train_steps=60", "--config.checkpoint_every_steps=20")


def quick_argv(*args: str) -> list[str]:
  """`args` with the quick run's settings: after any --config=FILE (overrides must follow
  it) and before the other flags (so that a case's own value wins)."""
  files = [arg for arg in args if arg.startswith("--config=")]
  return files + list(QUICK) + [arg for arg in args if arg not in files]


def run_module(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        cwd=REPO, timeout=timeout)


def assert_one_line_error(completed: subprocess.CompletedProcess, *fragments: str) -> str:
  """The process failed with exactly one stderr line `error: ...` holding `fragments`."""
  assert completed.returncode != 0
  assert "Traceback" not in completed.stderr
  lines = completed.stderr.strip().splitlines()
  assert len(lines) == 1, completed.stderr
  assert lines[0].startswith("error: ")
  for fragment in fragments:
    assert fragment in lines[0]
  return lines[0]


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
  """Broken config files: a syntax error, a dict, no get_config."""
  directory = tmp_path_factory.mktemp("configs")
  files = {"syntax.py": "def get_config(:\n  return None\n",
           "dict.py": "def get_config():\n  return {'model': 'crmvae'}\n",
           "nothing.py": "MODEL = 'crmvae'\n"}
  for name, source in files.items():
    (directory / name).write_text(source)
  return directory


@pytest.mark.slow
@pytest.mark.parametrize("args, fragments", [
    (("--config.foo=1",), ("--config.foo is not a field", "did you mean --config.")),
    (("--config.lerning_rate=1e-3",), ("did you mean --config.learning_rate?",)),
    (("--config.beta=nan",), ("--config.beta must be a finite number >= 0; got nan",)),
    (("--config.learning_rate=nan",), ("--config.learning_rate",)),
    (("--config.sweep.betas=(1.0,nan)",), ("--config.sweep.betas must be a tuple",)),
    (("--config.eval_every_steps=0",), ("--config.eval_every_steps",)),
    (("--config.log_every_steps=0",), ("--config.log_every_steps",)),
    (("--config.checkpoint_every_steps=0",), ("--config.checkpoint_every_steps",)),
    (("--config.num_train_steps=-1", "--config.num_epochs=0"), ("--config.num_epochs",)),
    (("--config.model=crmvea",), ("did you mean --config.model=crmvae?",)),
    (("--config.eval.fid=False",), ("--config.eval.fid is now --config.eval.fid.enabled",)),
    (("--config=configs/nope.py",), ("configs/nope.py does not exist",)),
    (("--config=configs/mst.py:huge",), ("'full', 'small' or 'tiny'", "configs/mst.py:small")),
    (("--config=configs/polymnist.py:huge",), ("'full', 'small' or 'tiny'",)),
    (("--config.batch_size=abc",), ("--config.batch_size=abc",)),
    (("--workdr=x",), ("Did you mean: workdir",)),
    (("stray",), ("Unexpected arguments stray",)),
    # No cluster around and none of the three flags: one sentence naming them.
    (("--multihost",), ("--multihost could not find its processes", "--coordinator_address",
                        "without --multihost")),
])
def test_bad_input_is_one_line(tmp_path, args, fragments):
  completed = run_module("crmvae_jax.main", *quick_argv(*args), f"--workdir={tmp_path / 'run'}")
  assert_one_line_error(completed, *fragments)
  # Refused before training: nothing was written.
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["crmvae_jax.main", "crmvae_jax.evaluate",
                                    "crmvae_jax.classifiers"])
def test_helpshort_lists_config_beside_the_commands_own_flags(module):
  completed = run_module(module, "--helpshort")  # absl exits 1 after any help
  assert "Traceback" not in completed.stderr
  listed = [line.split(":")[0].strip() for line in completed.stdout.splitlines()
            if line.startswith("  --")]
  assert "--config" in listed, completed.stdout
  assert "--workdir" in listed or module == "crmvae_jax.classifiers"


@pytest.mark.slow
@pytest.mark.parametrize("name, fragment", [
    ("syntax.py", "line 1: invalid syntax"),
    ("dict.py", "returned a dict, not an ml_collections.ConfigDict"),
    ("nothing.py", "defines no get_config()"),
    ("dict.py:small", "takes no setting"),
])
def test_broken_config_files_are_one_line(config_files, tmp_path, name, fragment):
  completed = run_module("crmvae_jax.main", f"--config={config_files / name}", *QUICK,
                         f"--workdir={tmp_path}")
  assert_one_line_error(completed, fragment)


@pytest.mark.slow
def test_workdir_that_is_a_file(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  completed = run_module("crmvae_jax.main", *QUICK, f"--workdir={a_file}")
  assert_one_line_error(completed, f"--workdir={a_file} is a file")


@pytest.mark.slow
def test_batch_larger_than_the_training_set(tmp_path):
  completed = run_module("crmvae_jax.main", *QUICK, "--config.batch_size=10000",
                         f"--workdir={tmp_path}")
  assert_one_line_error(completed, "--config.batch_size=10000 is larger than the 4500 training")


@pytest.mark.slow
def test_overrides_apply_to_the_default_config(tmp_path):
  """`python -m crmvae_jax.main --config.FIELD=VALUE` trains the quick start, overridden."""
  completed = run_module(
      "crmvae_jax.main", "--config.num_train_steps=2", "--config.batch_size=16",
      "--config.eval_batches=1", "--config.figure_examples=2", "--config.log_every_steps=1",
      "--config.disable_progress_bar=True", f"--workdir={tmp_path}")
  assert completed.returncode == 0, completed.stderr
  saved = runs.load_config(str(tmp_path))
  assert saved.data.name == "quickstart" and saved.num_epochs == 300
  assert (saved.num_train_steps, saved.batch_size) == (2, 16)


def test_overrides_parse_onto_the_quickstart_default(tmp_path):
  flag_values = flags.FlagValues()
  argv = ["main", "--config.num_train_steps=60", "--config.eval.classifier_dir=/c"]
  cli.define_config_flag(argv, cli.QUICKSTART, "help", flag_values)
  flag_values(argv)
  expected = config_lib.quickstart_config()
  expected.num_train_steps, expected.eval.classifier_dir = 60, "/c"
  assert flag_values.config.to_dict() == expected.to_dict()
  assert flag_values.config.is_locked


def test_run_default_is_the_saved_config_of_workdir(tmp_path):
  saved = config_lib.quickstart_config()
  saved.latent_dim = 16
  runs.save_config(str(tmp_path), saved)
  flag_values = flags.FlagValues()
  argv = ["evaluate", f"--workdir={tmp_path}", "--config.eval.num_examples=10"]
  cli.define_config_flag(argv, cli.RUN, "help", flag_values)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  flag_values(argv)
  assert flag_values.config.latent_dim == 16 and flag_values.config.eval.num_examples == 10


def test_load_config_file_reports_in_one_sentence(config_files):
  with pytest.raises(UserError, match="did you mean --config=configs/mst.py"):
    cli.load_config_file("configs/msd.py")
  with pytest.raises(UserError, match=r"line 1: invalid syntax"):
    cli.load_config_file(str(config_files / "syntax.py"))
  assert cli.load_config_file("configs/polymnist.py:small").data.mnist_source == "embedded"


@pytest.mark.slow
def test_a_bug_keeps_its_traceback(tmp_path):
  """Only UserError becomes one line: any other exception is a bug and shows where."""
  program = textwrap.dedent(f"""
      import sys
      from crmvae_jax.config import cli
      from crmvae_jax import main
      from crmvae_jax.training import loop

      def broken(config, workdir, eval_scalars=None, join=None):
        raise ValueError("a genuine bug")

      loop.train_and_evaluate = broken
      sys.argv = ["main", "--config.num_train_steps=60", "--workdir={tmp_path}"]
      cli.run(main.main)
  """)
  completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                             cwd=REPO, timeout=300)
  assert completed.returncode != 0
  assert "Traceback" in completed.stderr
  assert "ValueError: a genuine bug" in completed.stderr
  assert "error: a genuine bug" not in completed.stderr


@pytest.mark.slow
def test_evaluate_a_workdir_without_a_run(tmp_path):
  completed = run_module("crmvae_jax.evaluate", f"--workdir={tmp_path}")
  line = assert_one_line_error(completed, "No trained run in", "python -m crmvae_jax.main")
  assert f"--workdir={tmp_path}" in line


@pytest.mark.slow
def test_evaluate_without_a_run_or_with_a_classifier_it_cannot_train():
  completed = run_module("crmvae_jax.evaluate", "--config=configs/quickstart.py")
  assert_one_line_error(completed, "Pass --workdir=DIR", "--train_classifier")
  completed = run_module("crmvae_jax.evaluate", "--config=configs/quickstart.py",
                         "--train_classifier")
  assert_one_line_error(completed, "quickstart has no attributes to classify")


# ---- Every command a message suggests parses (absl's --only_check_args: exit 0). ----

_COMMAND = re.compile(r"python -m [\w.]+(?: --[\w.]+(?:=[^\s`;]+)?)*")


def _command(message: str) -> list[str]:
  """The `python -m ...` command in a message, as argv after `python`."""
  found = _COMMAND.search(message)
  assert found, message
  return found.group(0).rstrip(".").split()[1:]  # a sentence's full stop is not the path's


def _check_parses(argv: list[str]) -> None:
  completed = subprocess.run([sys.executable, *argv, "--only_check_args"], capture_output=True,
                             text=True, cwd=REPO, timeout=300)
  assert completed.returncode == 0, f"{' '.join(argv)}:\n{completed.stderr}"


@pytest.fixture(scope="module")
def celeba_workdir(tmp_path_factory):
  """A workdir holding a CelebA run's saved config (no checkpoint needed to parse)."""
  workdir = tmp_path_factory.mktemp("celeba_run")
  config = celeba_config.get_config()
  config.eval.classifier_dir = str(workdir / "classifiers")
  runs.save_config(str(workdir), config)
  return str(workdir), config


def suggested_commands(tmp_path, celeba_workdir) -> dict[str, list[str]]:
  """Each message that names a command, produced by the code that writes it."""
  workdir, celeba = celeba_workdir
  quickstart = config_lib.quickstart_config()
  mst = config_lib.quickstart_config()
  mst.data.name = "mst"
  messages = {
      "missing quick-start classifier": judges.train_command(quickstart, str(tmp_path)),
      "missing MST classifier": judges.train_command(mst, "classifiers/mst"),
      "missing attribute classifier": judges.attribute_classifier_command(celeba, workdir),
      "missing attribute classifier, no run": judges.attribute_classifier_command(celeba),
      "missing Inception weights": inception.CONVERT_COMMAND,
      # The config placeholder is the user's; any config file parses.
      "no trained run": runs.train_command(str(tmp_path)).replace(
          "--config=CONFIG", "--config=configs/quickstart.py"),
  }
  return {name: _command(message) for name, message in messages.items()}


@pytest.mark.slow
def test_every_suggested_command_parses(tmp_path, celeba_workdir):
  commands = suggested_commands(tmp_path, celeba_workdir)
  for argv in commands.values():
    _check_parses(argv)
  # The attribute classifier's command trains with the run's own config.
  assert commands["missing attribute classifier"][2:4] == [
      f"--workdir={celeba_workdir[0]}", "--train_classifier"]


def _modules_named_in_messages() -> set[str]:
  """Every module that a `python -m` in the package's code (not docstrings) names."""
  modules = set()
  for folder in ("crmvae_jax", "experiments"):
    for root, _, files in os.walk(os.path.join(REPO, folder)):
      for name in files:
        if name.endswith(".py"):
          with open(os.path.join(root, name)) as f:
            source = f.read()
          # Strings in code, not docstrings: quoted on one line with the command.
          for line in source.splitlines():
            if re.search(r"[\"'].*python -m", line) or re.search(r"f\"python -m", line):
              modules.update(re.findall(r"python -m ([\w.]+)", line))
  return modules


def test_every_module_a_message_names_is_covered(tmp_path, celeba_workdir):
  covered = {argv[1] for argv in suggested_commands(tmp_path, celeba_workdir).values()}
  covered.add("crmvae_jax.evaluate")  # test_evaluate_a_workdir_without_a_run
  assert _modules_named_in_messages() <= covered, _modules_named_in_messages() - covered


@pytest.mark.slow
def test_quickstart_commands_of_the_readme_parse(tmp_path):
  runs.save_config(str(tmp_path), config_lib.quickstart_config())
  for argv in (["-m", "crmvae_jax.main", "--config.num_train_steps=60"],
               ["-m", "crmvae_jax.classifiers", f"--config.eval.classifier_dir={tmp_path}"],
               ["-m", "crmvae_jax.evaluate", f"--workdir={tmp_path}",
                "--config.eval.num_examples=100"],
               ["-m", "crmvae_jax.main", "--config=configs/mst.py", "--config.model=mvtcae"],
               ["-m", "crmvae_jax.main", "--config=configs/quickstart.py"]):
    _check_parses(argv)

