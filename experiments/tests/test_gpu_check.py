"""experiments/tools/gpu_check.py runs end to end before it meets a GPU: its --cpu_dry_run
runs every section's code on tiny sizes and writes the whole report."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.training_runs import REPO, subprocess_env

pytestmark = pytest.mark.slow  # compiles a dozen train steps and trains four tiny runs


def test_the_dry_run_writes_every_section_with_figures(tmp_path):
  report = tmp_path / "report" / "gpu_check.md"
  completed = subprocess.run(
      [sys.executable, "-m", "experiments.tools.gpu_check", "--cpu_dry_run", "--models=crmvae",
       f"--report={report}"], cwd=REPO, env=subprocess_env(1, str(tmp_path / "cache")),
      capture_output=True, text=True, timeout=900)
  assert completed.returncode == 0, completed.stderr[-3000:]
  text = report.read_text()
  sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
  assert [s.splitlines()[0].split(" (")[0] for s in sections] == [
      "The machine", "Objectives", "Replicas of crmvae in one program, batch 8 each",
      "The training loop's host overhead", "A real run: the quick start in both compute dtypes"]
  assert "jax " in sections[0] and "CPU:" in sections[0]
  rows = lambda section: [line for line in section.splitlines()
                          if line.startswith("| ") and not line.startswith("| ---")][1:]
  # Objectives: crmvae at batch 8 in both dtypes, each with a positive rate.
  objective_rows = [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows(sections[1])]
  assert [(r[0], r[1], r[2]) for r in objective_rows] == [
      ("crmvae", "8", "float32"), ("crmvae", "8", "bfloat16")]
  assert all(float(r[4]) > 0 for r in objective_rows)
  assert [row.split("|")[1].strip() for row in rows(sections[2])] == ["1", "2"]
  assert [row.split("|")[1].strip() for row in rows(sections[3])] == ["1", "4"]
  real = [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows(sections[4])]
  assert [r[0] for r in real] == ["float32", "bfloat16"]
  # The two dtypes train the same steps from the same seed: close, not equal, losses.
  full, half = float(real[0][4]), float(real[1][4])
  assert full != half and abs(full - half) < 0.01 * abs(full)


def test_without_a_gpu_the_full_check_refuses_in_one_sentence(tmp_path):
  completed = subprocess.run(
      [sys.executable, "-m", "experiments.tools.gpu_check", f"--report={tmp_path / 'r.md'}"],
      cwd=REPO, env=subprocess_env(1, str(tmp_path / "cache")), capture_output=True,
      text=True, timeout=300)
  assert completed.returncode == 2
  assert "--cpu_dry_run" in completed.stderr and not (tmp_path / "r.md").exists()
