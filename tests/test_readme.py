"""The README's Python examples run as written, against a tiny trained run."""

from __future__ import annotations

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_block(section: str) -> str:
  """The first ```python block under the README heading `section`."""
  text = open(README).read()
  body = text[text.index(f"## {section}\n"):]
  return re.search(r"```python\n(.*?)```", body, re.S).group(1)


@pytest.mark.slow
def test_use_a_trained_model(tmp_path, capsys):
  from crmvae_jax import config as config_lib
  from crmvae_jax.training import loop

  config = config_lib.quickstart_config()
  config.num_train_steps = 4
  config.batch_size = 32
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  config.eval_batches = 1
  config.figure_examples = 2
  config.disable_progress_bar = True
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
