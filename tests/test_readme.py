"""The README's Python examples run as written, against a tiny trained run, and its
config table says what the config files give."""

from __future__ import annotations

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")


def python_block(section: str) -> str:
  """The first ```python block under the README heading `section`."""
  text = open(README).read()
  body = text[text.index(f"## {section}\n"):]
  return re.search(r"```python\n(.*?)```", body, re.S).group(1)


@pytest.mark.slow
def test_use_a_trained_model(tmp_path, capsys):
  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.training import loop

  config = config_lib.resize(config_lib.quickstart_config(), "tiny")
  workdir = str(tmp_path / "quickstart_crmvae_seed0")
  loop.train_and_evaluate(config, workdir)

  code = python_block("Use a trained model from Python")
  assert "workdirs/quickstart_crmvae_seed0" in code
  namespace = {}
  exec(code.replace("workdirs/quickstart_crmvae_seed0", workdir), namespace)
  printed = capsys.readouterr().out.splitlines()
  names, log_likelihood = printed[-2], float(printed[-1])
  assert names.startswith("[") and names.count("'") == 16  # eight strings
  assert log_likelihood < 0
  assert namespace["digits"].shape == (2, 28, 28, 1)
  assert namespace["samples"]["text"].shape == (4, 8)
  assert namespace["z"].shape == (8, 32)


@pytest.mark.slow
def test_train_from_python(tmp_path):
  # The README's block, on the notebook example's data and networks (its cells before
  # training), with a tiny budget.
  example = open(os.path.join(REPO, "examples", "own_networks.py")).read()
  setup = example[:example.index("# %% [markdown]\n# Train.")]
  import sys
  import types

  module = types.ModuleType("own_networks_example")  # classes need a module (dataclasses)
  sys.modules[module.__name__] = module
  namespace = module.__dict__
  exec(setup.replace("sys.argv", "[]"), namespace)
  code = python_block("Train from Python")
  workdir = str(tmp_path / "own_networks")
  assert '"num_train_steps": 3000' in code and "workdirs/own_networks" in code
  code = code.replace('"num_train_steps": 3000', '"num_train_steps": 4, "eval_every_steps": 4, '
                      '"checkpoint_every_steps": 4, "eval.classifier_epochs": 1, '
                      '"disable_progress_bar": True').replace("workdirs/own_networks", workdir)
  exec(code, namespace)
  assert namespace["model"].step == 4 and namespace["codes"].shape == (8, 16)
  assert set(namespace["results"]["coherence"]) == {"R", "CODE<-I", "I<-CODE"}


def bash_block(section: str) -> list[str]:
  """The command lines of the first ```bash block under the README heading `section`."""
  text = open(README).read()
  body = text[text.index(f"## {section}\n"):]
  return [line for line in re.search(r"```bash\n(.*?)```", body, re.S).group(1).splitlines()
          if line.strip()]


def bash_blocks(section: str) -> list[str]:
  """The command lines of every ```bash block of the README section `section` (up to the
  next heading of its level), in order, comments stripped."""
  text = open(README).read()
  body = text[text.index(f"## {section}\n") + len(section) + 4:]
  body = body[:body.index("\n## ")] if "\n## " in body else body
  return [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", body, re.S)
          for line in block.splitlines() if line.strip()]


# Each README command's budget, shrunk for a test (appended, so it overrides).
TINY = {
    "crmvae_jax.main": ["--config.num_train_steps=4", "--config.batch_size=32",
                        "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4",
                        "--config.eval_batches=1", "--config.disable_progress_bar=True"],
    "crmvae_jax.classifiers": ["--config.eval.classifier_epochs=1",
                               "--config.eval.classifier_max_train_examples=256",
                               "--config.disable_progress_bar=True"],
    "crmvae_jax.evaluate": ["--config.eval.num_examples=64", "--config.eval.coherence.prior_samples=64",
                            "--config.eval.latent.train_examples=64",
                            "--config.eval.log_likelihood.samples=4",
                            "--config.eval.log_likelihood.examples=8"],
}


@pytest.mark.slow
def test_your_own_data(tmp_path, monkeypatch):
  import json
  import shlex
  import subprocess
  import sys

  repository = os.path.dirname(README)
  monkeypatch.chdir(tmp_path)
  exec(python_block("Your own data"), {})
  assert os.path.isfile("my_data.npz")
  for line in bash_blocks("Your own data"):  # the example, then its weighted variant
    words = shlex.split(line.replace("configs/", os.path.join(repository, "configs", "")))
    assert words[:2] == ["python", "-m"]
    command = [sys.executable, *words[1:], *TINY[words[2]]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": repository})
    assert done.returncode == 0, (line, done.stderr[-2000:])
  with open(tmp_path / "workdirs" / "my_data" / "eval" / "results.json") as f:
    results = json.load(f)
  assert results["data"] == "arrays" and results["modalities"] == {"I": "image", "NAME": "name"}
  assert set(results["coherence"]) == {"R", "I<-NAME", "NAME<-I"}
  assert set(results["log_likelihood"]) == {"I+NAME", "I", "NAME"}
  with open(tmp_path / "workdirs" / "my_data_w8" / "config.json") as f:
    assert json.load(f)["likelihood_weights"] == [1.0, 8.0]


@pytest.mark.slow
@pytest.mark.optimized  # as a user runs them: XLA's optimising compiler (conftest.py)
def test_the_quick_start_commands_run_in_sequence_as_written(tmp_path):
  # Every command of the Quick start section, in order, in a fresh directory, each with
  # a tiny budget appended (TINY): the install and the test suite itself are skipped.
  import json
  import shlex
  import subprocess
  import sys

  commands = [line for line in bash_blocks("Quick start")
              if not line.startswith(("pip ", "pytest ", "python3 -m pytest"))]
  assert [shlex.split(line)[2] for line in commands] == [
      "crmvae_jax.classifiers", "crmvae_jax.main", "crmvae_jax.evaluate", "crmvae_jax.main"]
  for line in commands:
    words = shlex.split(line)
    done = subprocess.run([sys.executable, *words[1:], *TINY[words[2]]], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, (line, done.stderr[-2000:])
  # The judges existed before training: TensorBoard had coherence along it.
  import glob

  from tensorboard.backend.event_processing import event_accumulator
  (events,) = glob.glob(str(tmp_path / "workdirs" / "quickstart_crmvae_seed0" /
                            "events.out.tfevents.*"))
  accumulator = event_accumulator.EventAccumulator(events)
  accumulator.Reload()
  assert [event.step for event in accumulator.Scalars("coherence/mean_cross")] == [4]
  # The last line trained a run of its own, not the first one's resumed.
  assert os.path.isdir(tmp_path / "workdirs" / "try" / "checkpoints")
  with open(tmp_path / "workdirs" / "quickstart_crmvae_seed0" / "eval" / "results.json") as f:
    results = json.load(f)
  assert results["step"] == 4 and set(results["coherence"]) == {"R", "M<-T", "T<-M"}


def test_the_config_table_matches_the_configs():
  # Every row of the README's config table against what the config file gives.
  from crmvae_jax.config import cli

  readme = open(README).read()
  rows = re.findall(r"^\| `(configs/\w+\.py)` \|[^|]*\| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) \|",
                    readme, re.MULTILINE)
  assert len(rows) == len([name for name in os.listdir(os.path.join(REPO, "configs"))
                           if name.endswith(".py") and not name.startswith("_")])
  for path, beta, latent, batch, epochs in rows:
    config = cli.load_config_file(os.path.join(REPO, path))
    assert (config.beta, config.latent_dim, config.batch_size, config.num_epochs,
            config.learning_rate) == (float(beta), int(latent), int(batch), int(epochs),
                                      5e-4), path
