"""Imports flow one way: from the command lines down to the pure core, never back up.

Every module of the package sits in one layer; a module may import modules of its own
layer or of layers below it. A new module must be given a layer here.
"""

from __future__ import annotations

import ast
import os

import pytest

PACKAGE = "crmvae_jax"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)

# Lowest first.
LAYERS = (
    # Plain helpers: no model, data set or flag knowledge.
    ("foundation", {"errors", "atomic", "field_checks", "startup", "xla_setup", "input_pipeline", "runs",
                    "data.text", "data.vocabulary"}),
    # The pure core: distributions, layers, networks, the objectives and the model
    # registry (`core.objectives.MODELS`).
    ("core", {"core", "core.distributions", "core.layers", "core.networks",
              "core.text_networks", "core.objectives"}),
    # The data set registry (`data.registry.DATA_SETS`) and the loaders it names.
    ("data", {"data", "data.registry", "data.base", "data.tfds_arrays", "data.mst",
              "data.quickstart", "data.polymnist", "data.cub", "data.celeba",
              "data.syndigits", "data.mst_offline", "data.arrays"}),
    # The core's model: modalities as the data registry describes them, the multimodal
    # VAE over them and the trained model's inference API.
    ("core model", {"core.modalities", "core.models", "core.inference"}),
    ("configuration", {"config", "validation", "cli"}),
    # Tables, Markdown summaries and figures of what the layers below compute.
    ("reporting", {"reporting", "reporting.tables", "reporting.summaries",
                   "reporting.plotting"}),
    # The run's state, the sharded steps, checkpoints and the loop; the supervised loop
    # that trains the judges' classifiers on the same state and step.
    ("training", {"training", "training.state", "training.step", "training.checkpoints",
                  "training.guards", "training.loop", "training.supervised"}),
    # The metrics on arrays, the FID Inception network (whose weights file is data), one
    # module per evaluation, the judges, and the drivers that evaluate a trained run.
    ("evaluation", {"evaluation", "evaluation.metrics", "evaluation.inception",
                    "evaluation.classifier_networks",
                    "evaluation.generation", "evaluation.coherence",
                    "evaluation.fid", "evaluation.probes", "evaluation.image_text", "evaluation.likelihood",
                    "evaluation.judges", "evaluation.classifier_training",
                    "evaluation.likelihood",
                    "evaluation.entries", "evaluation.driver", "sweeps"}),
    # The command lines: flags and main() only.
    ("entry points", {"main", "evaluate", "evaluate_image_text", "classifiers"}),
)
LAYER_OF = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}


def package_modules() -> dict[str, str]:
  """Dotted name below the package ('data.base', 'models', ...) -> file path."""
  modules = {}
  for directory, _, files in os.walk(ROOT):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        relative = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        relative = relative.removesuffix(".__init__").removesuffix("__init__")
        if relative:
          modules[relative] = path
  return modules


def imports_of(path: str, known: set[str]) -> set[str]:
  """The package's modules that the file at `path` imports."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
      base = node.module[len(PACKAGE) + 1:]
      for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        found.add(candidate if candidate in known else base)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith(PACKAGE + "."):
          found.add(alias.name[len(PACKAGE) + 1:])
  return found - {""}


def test_every_module_has_a_layer():
  assert sorted(set(package_modules()) - set(LAYER_OF)) == []


def test_no_module_imports_a_higher_layer():
  modules = package_modules()
  upward = []
  for module, path in modules.items():
    for imported in imports_of(path, set(modules)):
      if LAYER_OF.get(imported, -1) > LAYER_OF.get(module, -1):
        upward.append(f"{module} ({LAYERS[LAYER_OF[module]][0]}) imports {imported} "
                      f"({LAYERS[LAYER_OF[imported]][0]})")
  assert upward == []


@pytest.mark.parametrize("module", ["core.distributions", "core.layers", "core.networks",
                                    "core.text_networks", "core.objectives"])
def test_the_pure_core_imports_no_data_flags_or_io(module):
  path = package_modules()[module]
  imported = imports_of(path, set(package_modules()))
  assert imported <= {"core.distributions", "core.layers", "core.text_networks", "errors"}
  source = open(path).read()
  for word in ("absl", "orbax", "tensorflow_datasets", "matplotlib", "open("):
    assert word not in source, f"{module} uses {word}"


def test_the_checker_sees_an_upward_import(tmp_path):
  # The rule above can fail: a core module importing the training loop is caught.
  path = tmp_path / "fake.py"
  path.write_text("from crmvae_jax.training import loop\nimport crmvae_jax.data.base\n")
  assert imports_of(str(path), set(package_modules())) == {"training.loop", "data.base"}
