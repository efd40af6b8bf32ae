"""Times every convolution layer, and whole networks, against PyTorch's definition.

    python -m experiments.tools.layer_timings                     # MST and PolyMNIST networks
    python -m experiments.tools.layer_timings --networks=image64 --batch=64

`TorchConv` and `TorchConvTranspose` compute their convolutions with
`layers.conv` / `layers.conv_transpose`, which avoid input-dilated convolutions
(slow on XLA's CPU backend). The reference is the layers as they were before: the same
modules with those two functions swapped for `layers.conv_reference` /
`layers.conv_transpose_reference` (`reference_convolutions`), which compute
PyTorch's definition with one XLA convolution each.

Two Markdown tables, on whatever device JAX uses:
1. layers: every TorchConv / TorchConvTranspose of the selected networks, with its
   input shape at --batch, forward and forward+backward milliseconds of the reference
   and of the fast layer, and the speedups;
2. networks: the same for whole encoders and decoders.
Forward+backward is one jitted call returning the outputs and the gradients with
respect to the params and the input, for a fixed random output cotangent (so a
network's first layer also pays for an input gradient that training does not need).
Every time is the median of --repeats calls after a warm-up call, the reference and
fast programs alternating so that a change in the machine's load hits both alike.
A TorchConv's forward pass is the same XLA program in both (only its gradients
differ), so the spread of its fwd speedup around 1 shows the timing noise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import linen as nn

from crmvae_jax.model import layers, networks
from experiments.tools import timing

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 256, "Examples per call.")
flags.DEFINE_integer("repeats", 3, "Timed calls per program; the median is reported.")
flags.DEFINE_list("networks", ["svhn", "mst_text", "polymnist"],
                  "Networks to time, among svhn, mst_text, polymnist, image64 (the 64x64 "
                  "CUB / CelebA image networks: minutes at batch 256 on a CPU).")

# name -> (encoder, its input shape without the batch axis, decoder, its latent size).
NETWORKS = {
    "svhn": (networks.SvhnEncoder(32), (32, 32, 3), networks.SvhnDecoder(32), 32),
    "mst_text": (networks.MstTextEncoder(32), (8, 71), networks.MstTextDecoder(32), 32),
    "polymnist": (networks.PolyMnistEncoder(512), (28, 28, 3),
                  networks.PolyMnistDecoder(512), 512),
    "image64": (networks.Image64Encoder(64), (64, 64, 3), networks.Image64Decoder(64), 64),
}
CONV_LAYERS = (layers.TorchConv, layers.TorchConvTranspose)


@contextlib.contextmanager
def reference_convolutions() -> Iterator[None]:
  """Within this context the conv layers compute PyTorch's definition as before.

  Programs must be traced (compiled) inside the context; the compiled programs keep
  the reference computation afterwards.
  """
  fast = layers.conv, layers.conv_transpose
  layers.conv, layers.conv_transpose = (
      layers.conv_reference, layers.conv_transpose_reference)
  try:
    yield
  finally:
    layers.conv, layers.conv_transpose = fast


def conv_layers_of(module: nn.Module, x: jax.Array) -> list[tuple[str, nn.Module, tuple]]:
  """(path, unbound copy, input shape) of every conv layer `module` applies to x."""
  found = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, CONV_LAYERS) and context.method_name == "__call__":
      path = "/".join((type(module).__name__,) + context.module.scope.path)
      found.append((path, context.module.clone(parent=None), args[0].shape))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(module.init, jax.random.key(0), x)
  return found


def describe(layer: nn.Module) -> str:
  """PyTorch-style summary, e.g. 'ConvT k4 s2 p1 op1 -> 32'."""
  kind = "ConvT" if isinstance(layer, layers.TorchConvTranspose) else "Conv"
  text = f"{kind} k{layer.kernel_size} s{layer.stride} p{layer.padding}"
  if getattr(layer, "output_padding", 0):
    text += f" op{layer.output_padding}"
  return f"{text} -> {layer.features}"


def compile_programs(module: nn.Module, params, x: jax.Array) -> tuple[Callable, Callable]:
  """Compiled forward `(params, x) -> outputs` and forward+backward programs.

  Forward+backward returns the outputs and the gradients of <outputs, cotangent> with
  respect to the params and x, for a fixed random cotangent of the outputs' shape
  (returning the outputs keeps XLA from dropping a forward pass the gradients of a
  linear layer do not need).
  """
  outputs = jax.eval_shape(module.apply, params, x)
  rng = np.random.default_rng(0)
  cotangent = jax.tree_util.tree_map(
      lambda leaf: jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype), outputs)

  def forward_backward(params, x):
    outputs, vjp = jax.vjp(module.apply, params, x)
    return outputs, vjp(cotangent)

  forward = jax.jit(module.apply).lower(params, x).compile()
  return forward, jax.jit(forward_backward).lower(params, x).compile()


def random_params(module: nn.Module, x: jax.Array):
  """Params of `module`'s shapes drawn by NumPy, U(-0.1, 0.1).

  Timings do not depend on the values, and compiling JAX's random initialisers costs
  seconds per shape on a CPU.
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(
      lambda leaf: rng.uniform(-0.1, 0.1, leaf.shape).astype(np.float32), shapes)


def time_module(module: nn.Module, x: jax.Array, repeats: int) -> list[float]:
  """[reference fwd, reference fwd+bwd, fast fwd, fast fwd+bwd] in milliseconds."""
  params = random_params(module, x)
  with reference_convolutions():
    reference = compile_programs(module, params, x)
  fast = compile_programs(module, params, x)
  forward_ms = timing.median_ms([reference[0], fast[0]], (params, x), repeats)
  backward_ms = timing.median_ms([reference[1], fast[1]], (params, x), repeats)
  return [forward_ms[0], backward_ms[0], forward_ms[1], backward_ms[1]]


def table_row(name: str, shape: tuple, ms: list[float]) -> list[str]:
  """Table cells: name, input shape, the four `time_module` times and two speedups."""
  ref_forward, ref_backward, fast_forward, fast_backward = ms
  shape_text = "[" + ", ".join(str(size) for size in shape) + "]"
  return [name, shape_text] + [f"{value:.1f}" for value in ms] + [
      f"{ref_forward / fast_forward:.2f}x", f"{ref_backward / fast_backward:.2f}x"]


def print_table(title: str, rows: list[list[str]]) -> None:
  """Prints `rows` (from `table_row`) as a Markdown table under a heading."""
  header = ["", "input", "ref fwd ms", "ref fwd+bwd ms", "fast fwd ms", "fast fwd+bwd ms",
            "fwd speedup", "fwd+bwd speedup"]
  print(f"\n### {title}\n")
  print("| " + " | ".join(header) + " |")
  print("|" + "|".join("---" for _ in header) + "|")
  for row in rows:
    print("| " + " | ".join(row) + " |")


def main(argv):
  """Prints the layer table, then the network table, for --networks at --batch."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
  unknown = sorted(set(FLAGS.networks) - set(NETWORKS))
  if unknown:
    raise app.UsageError(f"Unknown networks {unknown}; known: {', '.join(NETWORKS)}.")
  batch, repeats = FLAGS.batch, FLAGS.repeats
  rng = np.random.default_rng(0)
  modules = []
  for name in FLAGS.networks:
    encoder, input_shape, decoder, latent_dim = NETWORKS[name]
    modules.append((encoder, rng.uniform(size=(batch,) + input_shape).astype(np.float32)))
    modules.append((decoder, rng.standard_normal((batch, latent_dim)).astype(np.float32)))
  print(f"Device: {jax.devices()[0].device_kind}; batch {batch}; median of {repeats} calls.")

  layer_rows = []
  for module, x in modules:
    for path, layer, shape in conv_layers_of(module, x):
      layer_input = rng.standard_normal(shape).astype(np.float32)
      ms = time_module(layer, layer_input, repeats)
      layer_rows.append(table_row(f"{path} ({describe(layer)})", shape, ms))
  print_table("Convolution layers", layer_rows)

  network_rows = [table_row(type(module).__name__, x.shape, time_module(module, x, repeats))
                  for module, x in modules]
  print_table("Networks", network_rows)


if __name__ == "__main__":
  app.run(main)
