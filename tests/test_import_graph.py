"""Imports flow one way: from the programs down to the pure model, never back up.

The package's folders are its layers: a module may import modules of its own folder or
of folders below it. A module directly in `crmvae_jax/` is a program or the Python API
(the top layer); a new folder must be given its place here.
"""

from __future__ import annotations

import ast
import os

import pytest

PACKAGE = "crmvae_jax"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)

# Lowest first: one line per folder.
LAYERS = (
    "common",      # plain helpers: errors, atomic writes, signals, XLA flags, field checks
    "model",       # distributions, layers, networks, objectives, the modality spec, the VAE
    "data",        # data sets, their modalities, text, the input pipeline
    "config",      # defaults, validation, the command line's shared code, run records
    "reporting",   # tables, Markdown summaries, figures and TensorBoard
    "training",    # state, sharded steps, checkpoints, the loop, the judges' loop
    "evaluation",  # metrics, judges, the evaluation driver
    "",            # the top: programs (main, evaluate, classifiers, sweeps) and the API
)


def layer_of(module: str) -> int:
  """The layer index of a dotted module name below the package ('data.base', 'main')."""
  folder = module.split(".")[0] if "." in module or module in LAYERS else ""
  return LAYERS.index(folder)


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


def test_every_folder_is_a_layer():
  folders = {name for name in os.listdir(ROOT)
             if os.path.isfile(os.path.join(ROOT, name, "__init__.py"))}
  assert sorted(folders - set(LAYERS)) == []


def test_no_module_imports_a_higher_layer():
  modules = package_modules()
  upward = []
  for module, path in modules.items():
    for imported in imports_of(path, set(modules)):
      if layer_of(imported) > layer_of(module):
        upward.append(f"{module} imports {imported}")
  assert upward == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The import circles of `graph` (module -> modules it imports), one path each."""
  found, state = [], {}

  def visit(module, path):
    state[module] = "open"
    for imported in sorted(graph.get(module, ())):
      if state.get(imported) == "open":
        found.append(path[path.index(imported):] + [imported])
      elif imported not in state:
        visit(imported, path + [imported])
    state[module] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])
  return found


def test_no_import_circles():
  # Imports inside functions count: they would hide a circle from Python, not from this.
  modules = package_modules()
  graph = {module: imports_of(path, set(modules)) - {module} for module, path in modules.items()}
  assert cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", ["model.distributions", "model.layers", "model.networks",
                                    "model.text_networks", "model.objectives"])
def test_the_pure_core_imports_no_data_flags_or_io(module):
  path = package_modules()[module]
  imported = imports_of(path, set(package_modules()))
  assert imported <= {"model.distributions", "model.layers", "model.text_networks"}
  source = open(path).read()
  for word in ("absl", "orbax", "tensorflow_datasets", "matplotlib", "open("):
    assert word not in source, f"{module} uses {word}"


def test_the_checker_sees_an_upward_import(tmp_path):
  # The rule above can fail: a core module importing the training loop is caught.
  path = tmp_path / "fake.py"
  path.write_text("from crmvae_jax.training import loop\nimport crmvae_jax.data.base\n")
  assert imports_of(str(path), set(package_modules())) == {"training.loop", "data.base"}
