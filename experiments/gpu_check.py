"""The GPU check, where the GPU machines' checklist names it.

    python -m experiments.gpu_check --report=gpu_check.md

runs experiments/tools/gpu_check.py (see its docstring) with the same flags.
"""

from absl import app

from experiments.tools import gpu_check

if __name__ == "__main__":
  app.run(gpu_check.main)
