"""Encoders, decoders and coherence classifiers for every modality (SPEC.md section 4).

All networks are channels-last Flax linen modules:
- encoders map images float32 [B, H, W, C] in [0, 1], or one-hot text float32
  [B, L, V], to a diagonal Gaussian `(mean [B, D], logvar [B, D])`;
- decoders map z [B, D] to an image [B, H, W, C] (the Laplace location) or to text
  logits [B, L, V];
- classifiers map a modality to logits [B, num_classes] and are deterministic unless
  called with `train=True` (dropout, with a 'dropout' rng). They hold no batch
  statistics, so a trained classifier is just its params.

Every layer goes through `TorchDense`, `TorchConv` or `TorchConvTranspose`, which
reproduce PyTorch's padding arithmetic and default initialisation, so the shapes and
the initial scale of every reference network carry over. Each module's docstring
lists its layers in PyTorch notation with the channels-last shape after each. The two
convolution layers compute PyTorch's definition (`conv_reference`,
`conv_transpose_reference`) in a form whose forward and backward passes stay off XLA's
slow CPU path for input-dilated convolutions (`conv`, `conv_transpose`).

`NETWORKS` maps a network name to its (Encoder, Decoder) classes and `CLASSIFIERS`
maps the same names to a classifier class.
"""

from __future__ import annotations

import dataclasses
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
  experiments/layer_timings.py to check and time the fast layers; `conv` computes the
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
  experiments/layer_timings.py to check and time the fast layers. XLA's CPU backend
  runs this input-dilated convolution, and the window-reversed one that autodiff makes
  its kernel gradient, on a slow generic loop; `conv_transpose` avoids both.

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
  """`conv_reference` with a backward pass that stays on XLA's fast CPU paths.

  The forward pass is the strided convolution itself. Autodiff would write its input
  gradient as an input-dilated convolution, which XLA's CPU backend runs on a slow
  generic loop; it is the transposed convolution of the output gradient with the same
  kernel (channels swapped), so it is computed by `_phase_conv_transpose` instead. The
  kernel gradient is XLA's own for the strided convolution (a window-dilated one,
  which is fast). Being a `jax.custom_vjp`, it has reverse-mode derivatives only.
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
  """`conv_transpose_reference` without input-dilated convolutions.

  XLA's CPU backend runs an input-dilated convolution, and autodiff's kernel gradient
  of one (a window-reversed convolution), on a slow generic loop. Here the forward
  pass is `_phase_conv_transpose`: one stride-1 convolution and a depth-to-space. The
  backward pass uses that a transposed convolution's adjoint is the strided
  convolution with the same kernel (channels swapped): the input gradient is
  `conv_reference` of the output gradient, and the kernel gradient is that strided
  convolution's kernel gradient with x as its output gradient. Being a
  `jax.custom_vjp`, it has reverse-mode derivatives only. Arguments and result as for
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
    return x @ kernel + bias


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
    return conv(x, kernel, self.stride, self.padding) + bias


class TorchConvTranspose(nn.Module):
  """`torch.nn.ConvTranspose{1,2}d` on channels-last input, with PyTorch's init.

  Output length per axis: (in - 1) s - 2 p + k + output_padding
  (`transposed_conv_output_size`). PyTorch's definition: every input position i
  scatters kernel-weighted copies to outputs i s - p + j, j = 0..k-1, i.e.
  y[o] = sum_{i, j: i s - p + j = o} x[i] kernel[j]. This is a stride-1 convolution
  of the s-dilated input, padded (k-1-p, k-1-p+output_padding), with the spatially
  flipped kernel (`conv_transpose_reference`).

  XLA's CPU backend runs input-dilated convolutions on a slow generic loop, so
  `conv_transpose` computes the same output by phase decomposition: output position
  m s + r (before the crop by p) only sees kernel taps r, r + s, r + 2 s, ..., so the
  s^n phases are one stride-1 convolution with a ceil(k/s)-tap kernel and
  s^n x features output channels (for k4 s2 p1 a 2x2 kernel), followed by
  depth-to-space and a crop. Its gradients are those of the strided convolution
  `TorchConv` computes, the transposed convolution's adjoint.

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
    return y + bias


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


def _check_mst_length(length: int, module_name: str) -> None:
  """Raises ValueError unless `length` is the 8 characters the MST text layers fit."""
  if length != 8:
    raise ValueError(f'{module_name}: its layers fit 8-character texts, not {length}.')


def _flatten(x: jax.Array) -> jax.Array:
  """[B, ...] -> [B, prod(...)]."""
  return x.reshape(x.shape[0], -1)


class MnistEncoder(nn.Module):
  """MNIST encoder (MoPoE / MMJSD reference).

  | PyTorch          | shape          |
  |------------------|----------------|
  | input            | [B, 28, 28, 1] |
  | Flatten          | [B, 784]       |
  | Linear 784->400  | [B, 400]       |
  | ReLU             | [B, 400]       |
  | LatentHeads      | 2 x [B, D]     |

  Attributes:
    latent_dim: D.
  """

  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps images [B, 28, 28, 1] to (mean [B, D], logvar [B, D])."""
    hidden = nn.relu(TorchDense(400)(_flatten(x)))
    return LatentHeads(self.latent_dim)(hidden)


class MnistDecoder(nn.Module):
  """MNIST decoder (MoPoE / MMJSD reference).

  | PyTorch          | shape          |
  |------------------|----------------|
  | input z          | [B, D]         |
  | Linear D->400    | [B, 400]       |
  | ReLU             | [B, 400]       |
  | Linear 400->784  | [B, 784]       |
  | Sigmoid, reshape | [B, 28, 28, 1] |

  Attributes:
    latent_dim: D.
  """

  latent_dim: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to image means [B, 28, 28, 1] in (0, 1)."""
    hidden = nn.relu(TorchDense(400)(z))
    pixels = nn.sigmoid(TorchDense(28 * 28)(hidden))
    return pixels.reshape(z.shape[0], 28, 28, 1)


class SvhnEncoder(nn.Module):
  """SVHN encoder (MoPoE / MMJSD reference).

  | PyTorch                       | shape          |
  |-------------------------------|----------------|
  | input                         | [B, 32, 32, 3] |
  | Conv2d 3->32 k4 s2 p1, ReLU   | [B, 16, 16, 32]|
  | Conv2d 32->64 k4 s2 p1, ReLU  | [B, 8, 8, 64]  |
  | Conv2d 64->64 k4 s2 p1, ReLU  | [B, 4, 4, 64]  |
  | Conv2d 64->128 k4 s2 p0, ReLU | [B, 1, 1, 128] |
  | Flatten                       | [B, 128]       |
  | LatentHeads                   | 2 x [B, D]     |

  Attributes:
    latent_dim: D.
  """

  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps images [B, 32, 32, 3] to (mean [B, D], logvar [B, D])."""
    h = nn.relu(TorchConv(32, 4, stride=2, padding=1)(x))
    h = nn.relu(TorchConv(64, 4, stride=2, padding=1)(h))
    h = nn.relu(TorchConv(64, 4, stride=2, padding=1)(h))
    h = nn.relu(TorchConv(128, 4, stride=2, padding=0)(h))
    return LatentHeads(self.latent_dim)(_flatten(h))


class SvhnDecoder(nn.Module):
  """SVHN decoder (MoPoE / MMJSD reference); no output activation.

  | PyTorch                               | shape           |
  |---------------------------------------|-----------------|
  | input z                               | [B, D]          |
  | Linear D->128, reshape, ReLU          | [B, 1, 1, 128]  |
  | ConvTranspose2d 128->64 k4 s1 p0, ReLU| [B, 4, 4, 64]   |
  | ConvTranspose2d 64->64 k4 s2 p1, ReLU | [B, 8, 8, 64]   |
  | ConvTranspose2d 64->32 k4 s2 p1, ReLU | [B, 16, 16, 32] |
  | ConvTranspose2d 32->3 k4 s2 p1        | [B, 32, 32, 3]  |

  Attributes:
    latent_dim: D.
  """

  latent_dim: int
  out_channels: int = 3

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to image locations [B, 32, 32, 3]."""
    h = nn.relu(TorchDense(128)(z).reshape(z.shape[0], 1, 1, 128))
    h = nn.relu(TorchConvTranspose(64, 4, stride=1, padding=0)(h))
    h = nn.relu(TorchConvTranspose(64, 4, stride=2, padding=1)(h))
    h = nn.relu(TorchConvTranspose(32, 4, stride=2, padding=1)(h))
    return TorchConvTranspose(self.out_channels, 4, stride=2, padding=1)(h)


class MstTextEncoder(nn.Module):
  """MNIST-SVHN-Text text encoder (MoPoE / MMJSD reference), 8 characters.

  | PyTorch                         | shape         |
  |---------------------------------|---------------|
  | input one-hot                   | [B, 8, V]     |
  | Conv1d V->128 k1, ReLU          | [B, 8, 128]   |
  | Conv1d 128->128 k4 s2 p1, ReLU  | [B, 4, 128]   |
  | Conv1d 128->128 k4 s2 p0, ReLU  | [B, 1, 128]   |
  | Flatten                         | [B, 128]      |
  | LatentHeads                     | 2 x [B, D]    |

  Attributes:
    latent_dim: D.
    vocab_size: alphabet size V.
    length: characters per text; the layer stack reduces exactly 8 to 1.
  """

  latent_dim: int
  vocab_size: int = 71
  length: int = 8

  @nn.compact
  def __call__(self, text: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps one-hot text [B, 8, V] to (mean [B, D], logvar [B, D])."""
    _check_mst_length(self.length, type(self).__name__)
    h = nn.relu(TorchConv(128, 1)(text))
    h = nn.relu(TorchConv(128, 4, stride=2, padding=1)(h))
    h = nn.relu(TorchConv(128, 4, stride=2, padding=0)(h))
    return LatentHeads(self.latent_dim)(_flatten(h))


class MstTextDecoder(nn.Module):
  """MNIST-SVHN-Text text decoder (MoPoE / MMJSD reference), 8 characters.

  | PyTorch                                | shape        |
  |----------------------------------------|--------------|
  | input z                                | [B, D]       |
  | Linear D->128, reshape                 | [B, 1, 128]  |
  | ConvTranspose1d 128->128 k4 s1 p0, ReLU| [B, 4, 128]  |
  | ConvTranspose1d 128->128 k4 s2 p1, ReLU| [B, 8, 128]  |
  | Conv1d 128->V k1 (logits)              | [B, 8, V]    |

  Attributes:
    latent_dim: D.
    vocab_size: alphabet size V.
    length: characters per text; the layer stack produces exactly 8.
  """

  latent_dim: int
  vocab_size: int = 71
  length: int = 8

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to character logits [B, 8, V]."""
    _check_mst_length(self.length, type(self).__name__)
    h = TorchDense(128)(z).reshape(z.shape[0], 1, 128)
    h = nn.relu(TorchConvTranspose(128, 4, stride=1, padding=0)(h))
    h = nn.relu(TorchConvTranspose(128, 4, stride=2, padding=1)(h))
    return TorchConv(self.vocab_size, 1)(h)


class PolyMnistEncoder(nn.Module):
  """PolyMNIST encoder (MoPoE reference), one per modality.

  | PyTorch                       | shape           |
  |-------------------------------|-----------------|
  | input                         | [B, 28, 28, 3]  |
  | Conv2d 3->32 k3 s2 p1, ReLU   | [B, 14, 14, 32] |
  | Conv2d 32->64 k3 s2 p1, ReLU  | [B, 7, 7, 64]   |
  | Conv2d 64->128 k3 s2 p1, ReLU | [B, 4, 4, 128]  |
  | Flatten                       | [B, 2048]       |
  | Linear 2048->512, ReLU        | [B, 512]        |
  | LatentHeads                   | 2 x [B, D]      |

  Attributes:
    latent_dim: D (512 in the paper).
  """

  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps images [B, 28, 28, 3] to (mean [B, D], logvar [B, D])."""
    h = nn.relu(TorchConv(32, 3, stride=2, padding=1)(x))
    h = nn.relu(TorchConv(64, 3, stride=2, padding=1)(h))
    h = nn.relu(TorchConv(128, 3, stride=2, padding=1)(h))
    h = nn.relu(TorchDense(512)(_flatten(h)))
    return LatentHeads(self.latent_dim)(h)


class PolyMnistDecoder(nn.Module):
  """PolyMNIST decoder (MoPoE reference); no output activation.

  | PyTorch                                    | shape           |
  |--------------------------------------------|-----------------|
  | input z                                    | [B, D]          |
  | Linear D->2048, ReLU, reshape              | [B, 4, 4, 128]  |
  | ConvTranspose2d 128->64 k3 s2 p1, ReLU     | [B, 7, 7, 64]   |
  | ConvTranspose2d 64->32 k3 s2 p1 op1, ReLU  | [B, 14, 14, 32] |
  | ConvTranspose2d 32->3 k3 s2 p1 op1         | [B, 28, 28, 3]  |

  Attributes:
    latent_dim: D (512 in the paper).
  """

  latent_dim: int
  out_channels: int = 3

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to image locations [B, 28, 28, 3]."""
    h = nn.relu(TorchDense(4 * 4 * 128)(z)).reshape(z.shape[0], 4, 4, 128)
    h = nn.relu(TorchConvTranspose(64, 3, stride=2, padding=1)(h))
    h = nn.relu(TorchConvTranspose(32, 3, stride=2, padding=1, output_padding=1)(h))
    return TorchConvTranspose(self.out_channels, 3, stride=2, padding=1, output_padding=1)(h)


class Image64Encoder(nn.Module):
  """64x64 RGB image encoder for CUB and CelebA (MMVAE's CUB image network).

  MMVAE ends with two Conv2d 512->D k4 s1 p0 heads on the 4x4 map; a 4x4 convolution
  over a 4x4 map is a Dense layer on the flattened map (same fan_in, same init), so
  the shared `LatentHeads` stand in for them.

  | PyTorch                         | shape            |
  |---------------------------------|------------------|
  | input                           | [B, 64, 64, 3]   |
  | Conv2d 3->64 k4 s2 p1, ReLU     | [B, 32, 32, 64]  |
  | Conv2d 64->128 k4 s2 p1, ReLU   | [B, 16, 16, 128] |
  | Conv2d 128->256 k4 s2 p1, ReLU  | [B, 8, 8, 256]   |
  | Conv2d 256->512 k4 s2 p1, ReLU  | [B, 4, 4, 512]   |
  | Flatten                         | [B, 8192]        |
  | LatentHeads                     | 2 x [B, D]       |

  Attributes:
    latent_dim: D (64 for CUB and CelebA).
  """

  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps images [B, 64, 64, 3] to (mean [B, D], logvar [B, D])."""
    h = x
    for features in (64, 128, 256, 512):
      h = nn.relu(TorchConv(features, 4, stride=2, padding=1)(h))
    return LatentHeads(self.latent_dim)(_flatten(h))


class Image64Decoder(nn.Module):
  """64x64 RGB image decoder for CUB and CelebA (MMVAE's CUB image network).

  Ends with a sigmoid as MMVAE's does, keeping the Laplace location inside the
  pixel range [0, 1].

  | PyTorch                                 | shape            |
  |-----------------------------------------|------------------|
  | input z, reshape                        | [B, 1, 1, D]     |
  | ConvTranspose2d D->512 k4 s1 p0, ReLU   | [B, 4, 4, 512]   |
  | ConvTranspose2d 512->256 k4 s2 p1, ReLU | [B, 8, 8, 256]   |
  | ConvTranspose2d 256->128 k4 s2 p1, ReLU | [B, 16, 16, 128] |
  | ConvTranspose2d 128->64 k4 s2 p1, ReLU  | [B, 32, 32, 64]  |
  | ConvTranspose2d 64->3 k4 s2 p1, Sigmoid | [B, 64, 64, 3]   |

  Attributes:
    latent_dim: D (64 for CUB and CelebA).
  """

  latent_dim: int
  out_channels: int = 3

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to image means [B, 64, 64, 3] in (0, 1)."""
    h = nn.relu(TorchConvTranspose(512, 4)(z.reshape(z.shape[0], 1, 1, -1)))
    for features in (256, 128, 64):
      h = nn.relu(TorchConvTranspose(features, 4, stride=2, padding=1)(h))
    return nn.sigmoid(TorchConvTranspose(self.out_channels, 4, stride=2, padding=1)(h))


def _check_halvable(length: int, num_halvings: int, module_name: str) -> None:
  """Raises ValueError unless `length` halves exactly `num_halvings` times."""
  if length % 2**num_halvings:
    raise ValueError(
        f'{module_name}: length {length} must be a multiple of {2**num_halvings} '
        f'for its {num_halvings} stride-2 layers.')


class SequenceEncoder(nn.Module):
  """1-D convolutional encoder for long one-hot text (our design, MST-text style).

  A k1 convolution embeds each token, then every entry of `channels` adds a
  Conv1d k4 s2 p1 + ReLU that halves the length (L must be a multiple of
  2^len(channels)). With n = len(channels), c_i = channels[i], E = embed_dim:

  | PyTorch                             | shape                 |
  |-------------------------------------|-----------------------|
  | input one-hot                       | [B, L, V]             |
  | Conv1d V->E k1, ReLU                | [B, L, E]             |
  | Conv1d c_{i-1}->c_i k4 s2 p1, ReLU  | [B, L / 2^(i+1), c_i] |
  | Flatten                             | [B, L / 2^n * c_{n-1}]|
  | LatentHeads                         | 2 x [B, D]            |

  Attributes:
    latent_dim: D.
    vocab_size: V.
    length: L.
    embed_dim: E.
    channels: output channels of the stride-2 layers.
  """

  latent_dim: int
  vocab_size: int
  length: int
  embed_dim: int = 128
  channels: tuple[int, ...] = (128, 256, 512)

  @nn.compact
  def __call__(self, text: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps one-hot text [B, L, V] to (mean [B, D], logvar [B, D])."""
    _check_halvable(self.length, len(self.channels), type(self).__name__)
    h = nn.relu(TorchConv(self.embed_dim, 1)(text))
    for features in self.channels:
      h = nn.relu(TorchConv(features, 4, stride=2, padding=1)(h))
    return LatentHeads(self.latent_dim)(_flatten(h))


class SequenceDecoder(nn.Module):
  """1-D transposed-convolutional decoder for long text, mirroring `SequenceEncoder`.

  With n = len(channels), L0 = L / 2^n, and the upsampling layers going back through
  channels[n-2], ..., channels[0], E:

  | PyTorch                                     | shape              |
  |---------------------------------------------|--------------------|
  | input z                                     | [B, D]             |
  | Linear D->L0*c_{n-1}, ReLU, reshape         | [B, L0, c_{n-1}]   |
  | ConvTranspose1d k4 s2 p1, ReLU (n times)    | [B, L0 * 2^i, ...] |
  | Conv1d E->V k1 (logits)                     | [B, L, V]          |

  Attributes:
    latent_dim: D.
    vocab_size: V.
    length: L.
    embed_dim: E, the channels of the last upsampling layer.
    channels: the encoder's stride-2 channels, traversed in reverse.
  """

  latent_dim: int
  vocab_size: int
  length: int
  embed_dim: int = 128
  channels: tuple[int, ...] = (128, 256, 512)

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to token logits [B, L, V]."""
    num_halvings = len(self.channels)
    _check_halvable(self.length, num_halvings, type(self).__name__)
    base_length = self.length // 2**num_halvings
    h = nn.relu(TorchDense(base_length * self.channels[-1])(z))
    h = h.reshape(z.shape[0], base_length, self.channels[-1])
    for features in self.channels[-2::-1] + (self.embed_dim,):
      h = nn.relu(TorchConvTranspose(features, 4, stride=2, padding=1)(h))
    return TorchConv(self.vocab_size, 1)(h)


class CaptionEncoder(SequenceEncoder):
  """CUB caption encoder: `SequenceEncoder` over 32 word tokens, 32 -> 4 positions.

  Layers: Conv1d V->128 k1, then Conv1d k4 s2 p1 with 128, 256, 512 channels
  ([B, 16, 128], [B, 8, 256], [B, 4, 512]), flatten 2048, LatentHeads. The default
  vocabulary is MMVAE's CUB caption vocabulary (1590 words, min count 3).
  """

  vocab_size: int = 1590
  length: int = 32
  channels: tuple[int, ...] = (128, 256, 512)


class CaptionDecoder(SequenceDecoder):
  """CUB caption decoder: `SequenceDecoder` mirroring `CaptionEncoder`.

  Layers: Linear D->2048 + ReLU -> [B, 4, 512], ConvTranspose1d k4 s2 p1 to
  [B, 8, 256], [B, 16, 128], [B, 32, 128] (ReLU after each), Conv1d 128->V k1.
  """

  vocab_size: int = 1590
  length: int = 32
  channels: tuple[int, ...] = (128, 256, 512)


class CharTextEncoder(SequenceEncoder):
  """Bimodal CelebA attribute-text encoder: 256 characters, 256 -> 4 positions.

  Layers: Conv1d 71->128 k1, then six Conv1d k4 s2 p1 with 128, 128, 256, 256, 512,
  512 channels (lengths 128, 64, 32, 16, 8, 4), flatten 2048, LatentHeads.
  """

  vocab_size: int = 71
  length: int = 256
  channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)


class CharTextDecoder(SequenceDecoder):
  """Bimodal CelebA attribute-text decoder: `SequenceDecoder` mirroring `CharTextEncoder`.

  Layers: Linear D->2048 + ReLU -> [B, 4, 512], six ConvTranspose1d k4 s2 p1 with 512,
  256, 256, 128, 128, 128 channels (lengths 8 .. 256, ReLU after each), Conv1d 128->71
  k1.
  """

  vocab_size: int = 71
  length: int = 256
  channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)


class ImageClassifier(nn.Module):
  """Convolutional image classifier for coherence evaluation (our design).

  | PyTorch                                    | shape                       |
  |--------------------------------------------|-----------------------------|
  | input                                      | [B, H, W, C]                |
  | Conv2d k4 s2 p1, ReLU, per `channels`      | [B, H // 2, W // 2, c] each |
  | Flatten, Dropout(dropout_rate) when train  | [B, F]                      |
  | Linear F->num_classes (logits)             | [B, num_classes]            |

  Attributes:
    num_classes: number of logits (classes, or attributes for multi-label use).
    channels: output channels of the stride-2 convolutions.
    dropout_rate: dropout before the last layer, applied only when `train=True`.
  """

  num_classes: int = 10
  channels: tuple[int, ...] = (32, 64, 128)
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps images [B, H, W, C] to logits [B, num_classes].

    Args:
      x: images in [0, 1].
      train: apply dropout (needs a 'dropout' rng); otherwise deterministic.

    Returns:
      Logits [B, num_classes].
    """
    h = x
    for features in self.channels:
      h = nn.relu(TorchConv(features, 4, stride=2, padding=1)(h))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(_flatten(h))
    return TorchDense(self.num_classes)(h)


class TextClassifier(nn.Module):
  """1-D convolutional text classifier for coherence evaluation (our design).

  Global max pooling over positions makes it independent of the text length and of
  where in the string the words start.

  | PyTorch                                    | shape              |
  |--------------------------------------------|--------------------|
  | input one-hot                              | [B, L, V]          |
  | Conv1d V->128 k1, ReLU                     | [B, L, 128]        |
  | Conv1d k4 s2 p1, ReLU, per `channels`      | halves L           |
  | max over positions                         | [B, channels[-1]]  |
  | Dropout(dropout_rate) when train           | [B, channels[-1]]  |
  | Linear channels[-1]->num_classes (logits)  | [B, num_classes]   |

  Attributes:
    num_classes: number of logits.
    channels: output channels of the stride-2 convolutions; with n of them the
      receptive field is 3 * 2^n - 2 tokens.
    dropout_rate: dropout before the last layer, applied only when `train=True`.
  """

  num_classes: int = 10
  channels: tuple[int, ...] = (128, 128)
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, text: jax.Array, train: bool = False) -> jax.Array:
    """Maps one-hot text [B, L, V] to logits [B, num_classes].

    Args:
      text: one-hot tokens, L >= 2^len(channels).
      train: apply dropout (needs a 'dropout' rng); otherwise deterministic.

    Returns:
      Logits [B, num_classes].
    """
    h = nn.relu(TorchConv(128, 1)(text))
    for features in self.channels:
      h = nn.relu(TorchConv(features, 4, stride=2, padding=1)(h))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.max(h, axis=1))
    return TorchDense(self.num_classes)(h)


class MnistClassifier(ImageClassifier):
  """MNIST digit classifier: 28 -> 14 -> 7 -> 3 with 32, 64, 128 channels, 10 logits."""

  num_classes: int = 10
  channels: tuple[int, ...] = (32, 64, 128)


class SvhnClassifier(ImageClassifier):
  """SVHN digit classifier: 32 -> 16 -> 8 -> 4 -> 2 with 32..256 channels, 10 logits."""

  num_classes: int = 10
  channels: tuple[int, ...] = (32, 64, 128, 256)


class PolyMnistClassifier(ImageClassifier):
  """PolyMNIST digit classifier (one per modality): 28 -> 3 with 32, 64, 128 channels."""

  num_classes: int = 10
  channels: tuple[int, ...] = (32, 64, 128)


class Image64Classifier(ImageClassifier):
  """64x64 image classifier: 64 -> 4 with 64..512 channels.

  The default 40 logits are CelebA's attributes (multi-label, one sigmoid each); set
  `num_classes=200` for CUB species.
  """

  num_classes: int = 40
  channels: tuple[int, ...] = (64, 128, 256, 512)


class MstTextClassifier(TextClassifier):
  """MNIST-SVHN-Text text classifier: 8 characters -> 2 positions, 10 logits."""

  num_classes: int = 10
  channels: tuple[int, ...] = (128, 128)


class CaptionClassifier(TextClassifier):
  """CUB caption classifier over word tokens; receptive field 22 words, 200 species."""

  num_classes: int = 200
  channels: tuple[int, ...] = (128, 256, 256)


class CharTextClassifier(TextClassifier):
  """Bimodal CelebA text classifier; receptive field 46 characters, 40 attribute logits."""

  num_classes: int = 40
  channels: tuple[int, ...] = (128, 128, 256, 256)


class VectorEncoder(nn.Module):
  """Encoder of a real vector (our design): Linear 256, ReLU, Linear 256, ReLU, heads.

  Attributes:
    latent_dim: D.
    size: the vector's length (unused: Dense infers it; kept for a uniform signature).
    hidden: the width of the two hidden layers.
  """

  latent_dim: int
  size: int = 0
  hidden: int = 256

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps vectors [B, F] to (mean [B, D], logvar [B, D])."""
    h = nn.relu(TorchDense(self.hidden)(x))
    h = nn.relu(TorchDense(self.hidden)(h))
    return LatentHeads(self.latent_dim)(h)


class VectorDecoder(nn.Module):
  """Decoder of a real vector (our design): Linear 256, ReLU, Linear 256, ReLU, Linear F.

  Attributes:
    latent_dim: D.
    size: F, the vector's length.
    hidden: the width of the two hidden layers.
  """

  latent_dim: int
  size: int = 1
  hidden: int = 256

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Maps z [B, D] to the likelihood's location [B, F]."""
    h = nn.relu(TorchDense(self.hidden)(z))
    h = nn.relu(TorchDense(self.hidden)(h))
    return TorchDense(self.size)(h)


class VectorClassifier(nn.Module):
  """Classifier of a real vector for coherence (our design): Linear 256, ReLU, Dropout,
  Linear num_classes."""

  num_classes: int = 10
  hidden: int = 256
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = nn.relu(TorchDense(self.hidden)(x))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return TorchDense(self.num_classes)(h)


# Networks that take the modality's own sizes as constructor arguments, and which ones.
SIZED_NETWORKS = {"polymnist": ("out_channels",), "svhn": ("out_channels",),
                  "image64": ("out_channels",), "sequence": ("vocab_size", "length"),
                  "vector": ("size",)}
# A user's own networks: 'custom:package.module.Encoder,package.module.Decoder'.
CUSTOM_PREFIX = "custom:"


def network_classes(name: str) -> tuple[type[nn.Module], type[nn.Module]]:
  """The (Encoder, Decoder) classes of network `name`: a `NETWORKS` key, or a user's own
  modules named by import path after `CUSTOM_PREFIX` (each built with `latent_dim=D`; the
  encoder returns (mean, logvar), the decoder the likelihood's location)."""
  if not name.startswith(CUSTOM_PREFIX):
    return NETWORKS[name]
  import importlib  # only a user's own networks need it

  classes = []
  for path in name[len(CUSTOM_PREFIX):].split(","):
    module_name, _, class_name = path.strip().rpartition(".")
    classes.append(getattr(importlib.import_module(module_name), class_name))
  return tuple(classes)


def build(network_class: type[nn.Module], latent_dim: int, **sizes: int) -> nn.Module:
  """`network_class(latent_dim=..., ...)` with those of `sizes` that it takes (an encoder
  needs no output channels; a user's own module may take none of them)."""
  fields = {field.name for field in dataclasses.fields(network_class)}
  return network_class(latent_dim=latent_dim,
                       **{name: size for name, size in sizes.items() if name in fields})


NETWORKS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    'mnist': (MnistEncoder, MnistDecoder),
    'svhn': (SvhnEncoder, SvhnDecoder),
    'mst_text': (MstTextEncoder, MstTextDecoder),
    'polymnist': (PolyMnistEncoder, PolyMnistDecoder),
    'image64': (Image64Encoder, Image64Decoder),
    'caption': (CaptionEncoder, CaptionDecoder),
    'char_text': (CharTextEncoder, CharTextDecoder),
    # Any image, text or vector of a user's own data (crmvae_jax.data.arrays).
    'sequence': (SequenceEncoder, SequenceDecoder),
    'vector': (VectorEncoder, VectorDecoder),
}

CLASSIFIERS: dict[str, type[nn.Module]] = {
    'mnist': MnistClassifier,
    'svhn': SvhnClassifier,
    'mst_text': MstTextClassifier,
    'polymnist': PolyMnistClassifier,
    'image64': Image64Classifier,
    'caption': CaptionClassifier,
    'char_text': CharTextClassifier,
    'sequence': TextClassifier,
    'vector': VectorClassifier,
}
