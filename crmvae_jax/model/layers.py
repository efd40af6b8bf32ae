"""PyTorch's layers in JAX: Linear, Conv and ConvTranspose with PyTorch's shapes, padding
arithmetic and default initialisation, computed on XLA's fast CPU paths.

`TorchDense`, `TorchConv` and `TorchConvTranspose` are Flax modules whose outputs equal
`torch.nn.Linear`, `Conv{1,2}d` and `ConvTranspose{1,2}d` for the same weights (kernels
channels-last: [*k, C_in, C_out]), initialised as PyTorch does (kaiming-uniform with
a = sqrt(5), fan-in uniform bias: `torch_uniform`), so the reference networks carry over
shape for shape and scale for scale. `conv_reference` and `conv_transpose_reference` are
PyTorch's definitions as plain XLA convolutions, which the tests compare against.

Why the layers are computed otherwise. A transposed convolution (stride s, padding p)
scatters each input position i to the outputs i s - p + j, j = 0..k-1; written as a
convolution it is a stride-1 convolution of the s-dilated input with the flipped kernel
(`conv_transpose_reference`). XLA's CPU backend runs input-dilated convolutions, and the
window-reversed one that autodiff makes of their kernel gradient, on a slow generic
loop; and autodiff writes the input gradient of a strided convolution as exactly such an
input-dilated convolution. Two facts avoid both:

- Phase decomposition (`_phase_conv_transpose`): output m s + r (before the crop by p)
  only sees kernel taps r, r + s, ..., so all s^n phases are ONE stride-1 convolution
  with a ceil(k/s)-tap kernel and s^n C_out channels (k4 s2 p1: a 2x2 kernel), followed
  by depth-to-space and a crop.
- Adjointness: a transposed convolution is the adjoint of the strided convolution with
  the same kernel (channels swapped). So the strided convolution's input gradient is a
  phase-decomposed transposed convolution (`_general_conv`), and the transposed
  convolution's input gradient is a strided convolution, its kernel gradient that
  convolution's kernel gradient (`_general_conv_transpose`).

Layers that are matrix products (a 1-tap layer, a window over the whole input, a
transposed layer from one input position) are computed as one (`conv`,
`conv_transpose`). The custom gradients are reverse-mode only (`jax.custom_vjp`).

In bfloat16 (`config.compute_dtype`) every layer computes in its input's dtype; the
bias gradient is summed in float32 (`add_bias`). `LatentHeads` is the pair of Dense
heads every encoder ends with.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

Initializer = Callable[..., jax.Array]


def torch_uniform(fan_in: int) -> Initializer:
  """PyTorch's default initialiser for weights and biases of a layer with `fan_in`.

  PyTorch initialises weights with kaiming-uniform (a = sqrt(5)) and biases uniformly,
  both of which reduce to U(-1/sqrt(fan_in), 1/sqrt(fan_in)); for the weights this is
  `nn.initializers.variance_scaling(1/3, 'fan_in', 'uniform')`.

  Args:
    fan_in: the number of inputs feeding each output unit, as PyTorch counts it.

  Returns:
    An initialiser `(key, shape, dtype=float32) -> array`.
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def transposed_conv_output_size(
    size: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0) -> int:
  """PyTorch's transposed-convolution output length, (in - 1) s - 2 p + k + op.

  Args:
    size: input length along one spatial axis.
    kernel_size: kernel length k.
    stride: stride s.
    padding: PyTorch's `padding` p.
    output_padding: PyTorch's `output_padding` op.

  Returns:
    The output length along that axis.
  """
  return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def _channels_last_dimension_numbers(ndim: int) -> jax.lax.ConvDimensionNumbers:
  """Dimension numbers for input [B, *spatial, C] and kernel [*k, C_in, C_out]."""
  batch_feature_spatial = (0, ndim - 1) + tuple(range(1, ndim - 1))
  kernel_out_in_spatial = (ndim - 1, ndim - 2) + tuple(range(ndim - 2))
  return jax.lax.ConvDimensionNumbers(
      batch_feature_spatial, kernel_out_in_spatial, batch_feature_spatial)


def conv_reference(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """PyTorch's Conv{1,2}d (no bias) as one strided XLA convolution.

  y[o] = sum_j x_pad[o s + j] kernel[j], x_pad being x with p zeros on both sides of
  every spatial axis. PyTorch's definition, used by the tests and by
  experiments/tools/layer_timings.py to check and time the fast layers; `conv` computes the
  same forward pass with this function.

  Args:
    x: input [B, *spatial, C_in], one or two spatial axes.
    kernel: [*k, C_in, C_out], the same length k along every spatial axis.
    stride: stride s.
    padding: zero padding p on both sides of every spatial axis.

  Returns:
    [B, *spatial', C_out], spatial' = floor((spatial + 2 p - k) / s) + 1.
  """
  num_spatial = x.ndim - 2
  return jax.lax.conv_general_dilated(
      x, kernel,
      window_strides=(stride,) * num_spatial,
      padding=((padding, padding),) * num_spatial,
      dimension_numbers=_channels_last_dimension_numbers(x.ndim))


def conv_transpose_reference(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int,
    output_padding: int = 0) -> jax.Array:
  """PyTorch's ConvTranspose{1,2}d (no bias) as one input-dilated XLA convolution.

  Every input position i scatters kernel-weighted copies to outputs i s - p + j,
  j = 0..k-1, i.e. y[o] = sum_{i, j: i s - p + j = o} x[i] kernel[j]; this is a stride-1
  convolution of the s-dilated input, padded (k-1-p, k-1-p+output_padding), with the
  spatially flipped kernel. PyTorch's definition, used by the tests and by
  experiments/tools/layer_timings.py to check and time the fast layers (`conv_transpose`
  avoids its slow input dilation: module docstring).

  Args:
    x: input [B, *spatial, C_in], one or two spatial axes.
    kernel: [*k, C_in, C_out]; entry [j, c, o] is PyTorch's weight[c, o, j].
    stride: stride s.
    padding: PyTorch's `padding` p (it crops the output).
    output_padding: PyTorch's `output_padding`, extra length on the far side.

  Returns:
    [B, *spatial', C_out], spatial' = `transposed_conv_output_size(spatial, k, s, p, op)`.
  """
  num_spatial = x.ndim - 2
  edge = kernel.shape[0] - 1 - padding
  return jax.lax.conv_general_dilated(
      x, jnp.flip(kernel, axis=tuple(range(num_spatial))),
      window_strides=(1,) * num_spatial,
      padding=((edge, edge + output_padding),) * num_spatial,
      lhs_dilation=(stride,) * num_spatial,
      dimension_numbers=_channels_last_dimension_numbers(x.ndim))


def _phase_conv_transpose(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int,
    out_sizes: Sequence[int]) -> jax.Array:
  """PyTorch's ConvTranspose by phase decomposition: a stride-1 conv, depth-to-space.

  Uncropped output position t = m s + r (block m, phase r) receives
  sum_q x[m - q] kernel[q s + r], q = 0..ceil(k/s)-1 (taps past k are zero). So all s
  phases of block m are one stride-1 convolution of x with a ceil(k/s)-tap kernel of
  s^n C_out channels (the taps flipped, x padded by ceil(k/s)-1 in front), and
  depth-to-space interleaves them. PyTorch's output o is t = o + p: only blocks
  floor(p/s) .. ceil((p + out)/s) - 1 are computed, and p mod s phases are cropped in
  front. For k4 s2 p1 this is a 2x2 convolution with 4 C_out channels per pixel.

  Args:
    x: input [B, *spatial, C_in].
    kernel: [*k, C_in, C_out], as for `conv_transpose_reference`.
    stride: stride s.
    padding: PyTorch's `padding` p.
    out_sizes: the output length along each spatial axis (it fixes output_padding).

  Returns:
    [B, *out_sizes, C_out].
  """
  num_spatial = x.ndim - 2
  size, in_features, features = kernel.shape[0], kernel.shape[-2], kernel.shape[-1]
  taps = -(-size // stride)
  first_block = padding // stride
  end_blocks = [-(-(padding + out) // stride) for out in out_sizes]
  # Phase kernel: tap j = q s + r goes to [q, r], zero-padded to taps * s taps; flipped
  # in q (a convolution correlates), phases r move next to the output channels.
  kernel = jnp.pad(kernel, [(0, taps * stride - size)] * num_spatial + [(0, 0)] * 2)
  kernel = kernel.reshape((taps, stride) * num_spatial + (in_features, features))
  q_axes = tuple(range(0, 2 * num_spatial, 2))
  r_axes = tuple(range(1, 2 * num_spatial, 2))
  kernel = kernel.transpose(q_axes + (2 * num_spatial,) + r_axes + (2 * num_spatial + 1,))
  kernel = jnp.flip(kernel, axis=tuple(range(num_spatial))).reshape(
      (taps,) * num_spatial + (in_features, stride**num_spatial * features))
  blocks = jax.lax.conv_general_dilated(
      x, kernel,
      window_strides=(1,) * num_spatial,
      padding=[(taps - 1 - first_block, end - length)
               for end, length in zip(end_blocks, x.shape[1:-1])],
      dimension_numbers=_channels_last_dimension_numbers(x.ndim))
  # Depth-to-space: [B, *m, (r_1..r_n, C_out)] -> [B, m_1 s + r_1, ..., C_out].
  batch, num_blocks = x.shape[0], blocks.shape[1:-1]
  y = blocks.reshape((batch,) + num_blocks + (stride,) * num_spatial + (features,))
  interleaved = sum(((1 + axis, 1 + num_spatial + axis) for axis in range(num_spatial)), ())
  y = y.transpose((0,) + interleaved + (2 * num_spatial + 1,))
  y = y.reshape((batch,) + tuple(m * stride for m in num_blocks) + (features,))
  start = padding - first_block * stride
  return y[(slice(None),) + tuple(slice(start, start + out) for out in out_sizes)]


def _swap_channels(kernel: jax.Array) -> jax.Array:
  """[*k, C_in, C_out] -> [*k, C_out, C_in]: the adjoint layer's kernel."""
  return jnp.swapaxes(kernel, -1, -2)


def conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """`conv_reference` computed on XLA's fast paths, forward and backward.

  Two shapes are matrix products and are computed as one: a 1-tap stride-1 layer
  (y = x kernel[0] at every position), and a window that covers the whole unpadded input
  (one output position: y = flatten(x) flatten(kernel), the encoders' last layers).
  Every other layer is `_general_conv`.

  Args:
    x: input [B, *spatial, C_in], one or two spatial axes.
    kernel: [*k, C_in, C_out].
    stride: stride s.
    padding: zero padding p on both sides of every spatial axis.

  Returns:
    [B, *spatial', C_out], equal to `conv_reference(x, kernel, stride, padding)`.
  """
  num_spatial = x.ndim - 2
  size = kernel.shape[0]
  if size == 1 and stride == 1 and padding == 0:
    return x @ kernel.reshape(kernel.shape[-2:])
  if padding == 0 and all(length == size for length in x.shape[1:-1]):
    y = x.reshape(x.shape[0], -1) @ kernel.reshape(-1, kernel.shape[-1])
    return y.reshape((x.shape[0],) + (1,) * num_spatial + (kernel.shape[-1],))
  return _general_conv(x, kernel, stride, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _general_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """`conv_reference`, its input gradient a phase-decomposed transposed convolution of
  the output gradient (module docstring); the kernel gradient is XLA's own (fast).
  Arguments and result as for `conv`.
  """
  return conv_reference(x, kernel, stride, padding)


def _conv_fwd(x, kernel, stride, padding):
  return conv_reference(x, kernel, stride, padding), (x, kernel)


def _conv_bwd(stride, padding, residuals, y_grad):
  x, kernel = residuals
  # Input positions past the last window get zero gradient; out_sizes = x's sizes sets
  # the transposed convolution's output_padding to cover them.
  x_grad = _phase_conv_transpose(
      y_grad, _swap_channels(kernel), stride, padding, x.shape[1:-1])
  _, kernel_vjp = jax.vjp(lambda k: conv_reference(x, k, stride, padding), kernel)
  return x_grad, kernel_vjp(y_grad)[0]


_general_conv.defvjp(_conv_fwd, _conv_bwd)


def _check_output_padding(stride: int, output_padding: int) -> None:
  """Raises ValueError unless 0 <= output_padding < stride, as PyTorch requires."""
  if not 0 <= output_padding < stride:
    raise ValueError(
        f'output_padding must be in [0, stride); got {output_padding} with stride {stride}.')


def conv_transpose(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int,
    output_padding: int) -> jax.Array:
  """`conv_transpose_reference` on XLA's fast paths, forward and backward.

  A layer with one input position and no padding (the decoders' first layers, 1 -> k)
  is a matrix product: y[b, j, o] = sum_c x[b, c] kernel[j, c, o]. Every other layer is
  `_general_conv_transpose`.

  Args:
    x: input [B, *spatial, C_in], one or two spatial axes.
    kernel: [*k, C_in, C_out]; entry [j, c, o] is PyTorch's weight[c, o, j].
    stride: stride s.
    padding: PyTorch's `padding` p.
    output_padding: PyTorch's `output_padding`, in [0, s).

  Returns:
    [B, *spatial', C_out], equal to `conv_transpose_reference` with the same arguments.
  """
  _check_output_padding(stride, output_padding)
  num_spatial = x.ndim - 2
  if padding == 0 and output_padding == 0 and all(length == 1 for length in x.shape[1:-1]):
    size, in_features, features = kernel.shape[0], kernel.shape[-2], kernel.shape[-1]
    y = x.reshape(x.shape[0], in_features) @ jnp.moveaxis(kernel, -2, 0).reshape(in_features, -1)
    return y.reshape((x.shape[0],) + (size,) * num_spatial + (features,))
  return _general_conv_transpose(x, kernel, stride, padding, output_padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _general_conv_transpose(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int,
    output_padding: int) -> jax.Array:
  """`conv_transpose_reference` by phase decomposition, its gradients those of the
  adjoint strided convolution (module docstring): the input gradient is
  `conv_reference` of the output gradient, the kernel gradient that convolution's
  kernel gradient with x as its output gradient. Arguments and result as for
  `conv_transpose`.
  """
  return _conv_transpose_fwd(x, kernel, stride, padding, output_padding)[0]


def _conv_transpose_fwd(x, kernel, stride, padding, output_padding):
  _check_output_padding(stride, output_padding)
  out_sizes = [
      transposed_conv_output_size(length, kernel.shape[0], stride, padding, output_padding)
      for length in x.shape[1:-1]]
  return _phase_conv_transpose(x, kernel, stride, padding, out_sizes), (x, kernel)


def _conv_transpose_bwd(stride, padding, output_padding, residuals, y_grad):
  del output_padding  # The strided convolution of y_grad returns exactly x's lengths.
  x, kernel = residuals
  x_grad, kernel_vjp = jax.vjp(
      lambda k: conv_reference(y_grad, k, stride, padding), _swap_channels(kernel))
  return x_grad, _swap_channels(kernel_vjp(x)[0])


_general_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


@jax.custom_vjp
def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """y + bias (bias [C] broadcast over y [..., C]), its bias gradient summed in float32.

  The bias gradient sums the output gradient over every example and position (32,768
  terms in a 32x32 layer at batch 32). In bfloat16 XLA would add them in bfloat16, whose
  8-bit significand stops the sum growing once it is about 256 times a term (32,768
  ones sum to 256; a gradient of 1,182 came out as 14); accumulating in float32 keeps
  it, then rounds once to the bias's dtype.
  """
  return y + bias


def _add_bias_fwd(y, bias):
  return y + bias, bias  # the bias (C numbers) carries its dtype to the backward pass


def _add_bias_bwd(bias, y_grad):
  axes = tuple(range(y_grad.ndim - 1))
  return y_grad, jnp.sum(y_grad, axis=axes, dtype=jnp.float32).astype(bias.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


class TorchDense(nn.Module):
  """`torch.nn.Linear(in, features)`: y = x W + b, with PyTorch's initialisation.

  Attributes:
    features: output width.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the layer to x [..., in] and returns [..., features]."""
    fan_in = x.shape[-1]
    kernel = self.param('kernel', torch_uniform(fan_in), (fan_in, self.features))
    bias = self.param('bias', torch_uniform(fan_in), (self.features,))
    return add_bias(x @ kernel, bias)


class TorchConv(nn.Module):
  """`torch.nn.Conv{1,2}d` on channels-last input, with PyTorch's initialisation.

  The spatial rank follows the input: [B, L, C] is a 1-D convolution, [B, H, W, C] a
  2-D one. Output length per axis: floor((in + 2 p - k) / s) + 1. The kernel is
  [*k, C_in, features]; PyTorch's weight [features, C_in, *k] is its transpose.

  Computed by `conv`: the forward pass is one strided convolution; its input gradient,
  which autodiff would write as an input-dilated convolution (slow on XLA's CPU
  backend), is a phase-decomposed transposed convolution instead (see
  `TorchConvTranspose`).

  Attributes:
    features: output channels.
    kernel_size: kernel length k, the same along every spatial axis.
    stride: stride s.
    padding: zero padding p on both sides of every spatial axis.
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the convolution to x [B, *spatial, C_in]; returns [B, *spatial', features]."""
    num_spatial = x.ndim - 2
    in_features = x.shape[-1]
    fan_in = in_features * self.kernel_size**num_spatial
    kernel = self.param(
        'kernel', torch_uniform(fan_in),
        (self.kernel_size,) * num_spatial + (in_features, self.features))
    bias = self.param('bias', torch_uniform(fan_in), (self.features,))
    return add_bias(conv(x, kernel, self.stride, self.padding), bias)


class TorchConvTranspose(nn.Module):
  """`torch.nn.ConvTranspose{1,2}d` on channels-last input, with PyTorch's init.

  Output length per axis: (in - 1) s - 2 p + k + output_padding
  (`transposed_conv_output_size`). PyTorch's definition: every input position i
  scatters kernel-weighted copies to outputs i s - p + j, j = 0..k-1, i.e.
  y[o] = sum_{i, j: i s - p + j = o} x[i] kernel[j] (`conv_transpose_reference`),
  computed by phase decomposition with the adjoint's gradients (`conv_transpose`,
  module docstring).

  The kernel is [*k, C_in, features]: entry [j, c, o] is PyTorch's weight[c, o, j].
  PyTorch counts fan_in from its weight's dimension 1, so fan_in = features * k^n.

  Attributes:
    features: output channels.
    kernel_size: kernel length k, the same along every spatial axis.
    stride: stride s.
    padding: PyTorch's `padding` p (it crops the output).
    output_padding: PyTorch's `output_padding`, extra length added on the far side;
      0 <= output_padding < stride.
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the layer to x [B, *spatial, C_in]; returns [B, *spatial', features]."""
    num_spatial = x.ndim - 2
    in_features = x.shape[-1]
    fan_in = self.features * self.kernel_size**num_spatial
    kernel = self.param(
        'kernel', torch_uniform(fan_in),
        (self.kernel_size,) * num_spatial + (in_features, self.features))
    bias = self.param('bias', torch_uniform(fan_in), (self.features,))
    y = conv_transpose(x, kernel, self.stride, self.padding, self.output_padding)
    return add_bias(y, bias)


class LatentHeads(nn.Module):
  """The two Dense heads every encoder ends with: features -> (mean, logvar).

  | PyTorch            | shape  |
  |--------------------|--------|
  | Linear(F, D) mean  | [B, D] |
  | Linear(F, D) logvar| [B, D] |

  Attributes:
    latent_dim: D.
  """

  latent_dim: int

  @nn.compact
  def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps features [B, F] to (mean [B, D], logvar [B, D])."""
    mean = TorchDense(self.latent_dim, name='mean')(features)
    logvar = TorchDense(self.latent_dim, name='logvar')(features)
    return mean, logvar


def flatten(x: jax.Array) -> jax.Array:
  """[B, ...] -> [B, prod(...)]."""
  return x.reshape(x.shape[0], -1)
