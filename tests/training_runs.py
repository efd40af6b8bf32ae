"""What the tests that run `python -m crmvae_jax.main` as subprocesses share: their
environment and reading the checkpoints they write, with Orbax alone."""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(num_devices: int, cache_dir: str) -> dict[str, str]:
  """This environment, with `num_devices` CPU devices and the compilation cache."""
  env = dict(os.environ)
  flags = [flag for flag in env.get("XLA_FLAGS", "").split()
           if not flag.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={num_devices}"])
  env.pop("JAX_NUM_CPU_DEVICES", None)
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
  env.setdefault("JAX_COMPILATION_CACHE_DIR", cache_dir)
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  return env


def checkpoint_steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def read_checkpoint(workdir: str, step: int) -> dict:
  """The state saved at `step` as numpy arrays, read with Orbax alone (any number of
  devices; no model code), as {leaf path: array}."""
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(path)
  metadata = getattr(metadata, "item_metadata", None) or metadata
  tree = getattr(metadata, "tree", metadata)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(state)}
