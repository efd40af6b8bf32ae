"""Tests for crmvae_jax.model.networks: PyTorch-faithful layers, shapes, sizes, classifiers."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.model import layers, networks
from crmvae_jax.evaluation import classifier_networks

BATCH = 2

# name -> (input shape without the batch axis, which the decoder reproduces; latent dim).
NETWORK_SHAPES = {
    'mnist': ((28, 28, 1), 32),
    'svhn': ((32, 32, 3), 32),
    'mst_text': ((8, 71), 32),
    'polymnist': ((28, 28, 3), 512),
    'image64': ((64, 64, 3), 64),
    'caption': ((32, 1590), 64),
    'char_text': ((256, 71), 64),
    'sequence': ((16, 30), 8),
    'vector': ((5,), 8),
}
# The sizes the networks below take (`networks.build`: text V and L, a vector's length).
NETWORK_SIZES = {'sequence': {'vocab_size': 30, 'length': 16}, 'vector': {'size': 5}}


def _random_params(module, *inputs):
  """Standard-normal params of `module`'s shapes, drawn by NumPy.

  Compiling JAX's random initialisers costs seconds per shape on a CPU; tests that
  only need some parameter values use these (the initialisers are tested apart).
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(
      lambda leaf: rng.standard_normal(leaf.shape).astype(np.float32), shapes)


def _standard_normal(shape, seed=0) -> np.ndarray:
  """float32 standard-normal inputs drawn by NumPy (JAX's sampler compiles per shape)."""
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _count(params) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def _layer_output_shapes(module, x) -> dict[str, tuple[int, ...]]:
  """Name -> output shape of every top-level Torch* layer of `module`."""
  torch_layers = (layers.TorchDense, layers.TorchConv, layers.TorchConvTranspose)

  def capture(x):
    params = module.init(jax.random.key(0), x)
    return module.apply(
        params, x, mutable=['intermediates'],
        capture_intermediates=lambda mdl, method: (
            isinstance(mdl, torch_layers) and method == '__call__'))

  _, state = jax.eval_shape(capture, x)
  return {name: value['__call__'][0].shape
          for name, value in state['intermediates'].items() if '__call__' in value}


def _reference_conv(x, kernel, stride, padding):
  """PyTorch Conv by its definition: y[o] = sum_j x_pad[o s + j] . kernel[j]."""
  num_spatial = x.ndim - 1
  x_padded = np.pad(x, [(padding, padding)] * num_spatial + [(0, 0)])
  k = kernel.shape[0]
  out_size = [(n + 2 * padding - k) // stride + 1 for n in x.shape[:-1]]
  y = np.zeros(out_size + [kernel.shape[-1]])
  for o in np.ndindex(*out_size):
    for j in np.ndindex(*kernel.shape[:-2]):
      y[o] += x_padded[tuple(a * stride + b for a, b in zip(o, j))] @ kernel[j]
  return y


def _reference_conv_transpose(x, kernel, stride, padding, output_padding):
  """PyTorch ConvTranspose by its definition: x[i] scatters to i s - p + j."""
  k = kernel.shape[0]
  full = [(n - 1) * stride + k + output_padding for n in x.shape[:-1]]
  y = np.zeros(full + [kernel.shape[-1]])
  for i in np.ndindex(*x.shape[:-1]):
    for j in np.ndindex(*kernel.shape[:-2]):
      y[tuple(a * stride + b for a, b in zip(i, j))] += x[i] @ kernel[j]
  out_size = [
      layers.transposed_conv_output_size(n, k, stride, padding, output_padding)
      for n in x.shape[:-1]]
  return y[tuple(slice(padding, padding + n) for n in out_size)]


@pytest.mark.parametrize('num_spatial', [1, 2])
@pytest.mark.parametrize('kernel_size,stride,padding', [(1, 1, 0), (3, 2, 1), (4, 2, 0)])
def test_torch_conv_matches_definition(num_spatial, kernel_size, stride, padding):
  x = _standard_normal((1,) + (6,) * num_spatial + (3,))
  layer = layers.TorchConv(5, kernel_size, stride=stride, padding=padding)
  params = _random_params(layer, x)
  y = jax.jit(layer.apply)(params, x)
  p = params['params']
  expected = _reference_conv(x[0], np.asarray(p['kernel']), stride, padding) + p['bias']
  np.testing.assert_allclose(y[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('num_spatial', [1, 2])
@pytest.mark.parametrize('size,kernel_size,stride,padding,output_padding', [
    (1, 4, 1, 0, 0), (4, 4, 2, 1, 0), (7, 3, 2, 1, 1), (3, 5, 3, 2, 2)])
def test_torch_conv_transpose_matches_definition(
    num_spatial, size, kernel_size, stride, padding, output_padding):
  x = _standard_normal((1,) + (size,) * num_spatial + (3,))
  layer = layers.TorchConvTranspose(
      2, kernel_size, stride=stride, padding=padding, output_padding=output_padding)
  params = _random_params(layer, x)
  y = jax.jit(layer.apply)(params, x)
  out_size = (size - 1) * stride - 2 * padding + kernel_size + output_padding
  assert y.shape == (1,) + (out_size,) * num_spatial + (2,)
  p = params['params']
  expected = _reference_conv_transpose(
      x[0], np.asarray(p['kernel']), stride, padding, output_padding) + p['bias']
  np.testing.assert_allclose(y[0], expected, rtol=1e-5, atol=1e-5)


# Every convolution the networks use, at its real size (batch BATCH):
# (kind, spatial size, kernel, stride, padding, output_padding, C_in, C_out).
NETWORK_CONV_LAYERS = {
    # SvhnEncoder 32 -> 16 -> 8 -> 4 -> 1; the classifiers use the same k4 s2 p1 layers.
    'svhn_enc_32': ('conv', (32, 32), 4, 2, 1, 0, 3, 32),
    'svhn_enc_16': ('conv', (16, 16), 4, 2, 1, 0, 32, 64),
    'svhn_enc_8': ('conv', (8, 8), 4, 2, 1, 0, 64, 64),
    'svhn_enc_4_p0': ('conv', (4, 4), 4, 2, 0, 0, 64, 128),
    # SvhnDecoder 1 -> 4 -> 8 -> 16 -> 32.
    'svhn_dec_1_s1': ('conv_transpose', (1, 1), 4, 1, 0, 0, 128, 64),
    'svhn_dec_4': ('conv_transpose', (4, 4), 4, 2, 1, 0, 64, 64),
    'svhn_dec_8': ('conv_transpose', (8, 8), 4, 2, 1, 0, 64, 32),
    'svhn_dec_16': ('conv_transpose', (16, 16), 4, 2, 1, 0, 32, 3),
    # Image64Encoder 64 -> 32 -> ... and Image64Decoder's first and last layers.
    'image64_enc_64': ('conv', (64, 64), 4, 2, 1, 0, 3, 64),
    'image64_enc_8': ('conv', (8, 8), 4, 2, 1, 0, 256, 512),
    'image64_dec_1_s1': ('conv_transpose', (1, 1), 4, 1, 0, 0, 64, 512),
    'image64_dec_32': ('conv_transpose', (32, 32), 4, 2, 1, 0, 64, 3),
    # MnistClassifier 7 -> 3: the odd length leaves the last input row out of every window.
    'mnist_clf_7': ('conv', (7, 7), 4, 2, 1, 0, 64, 128),
    # PolyMnistEncoder 28 -> 14 -> 7 -> 4 and PolyMnistDecoder 4 -> 7 -> 14 -> 28.
    'polymnist_enc_28': ('conv', (28, 28), 3, 2, 1, 0, 3, 32),
    'polymnist_enc_14': ('conv', (14, 14), 3, 2, 1, 0, 32, 64),
    'polymnist_enc_7': ('conv', (7, 7), 3, 2, 1, 0, 64, 128),
    'polymnist_dec_4': ('conv_transpose', (4, 4), 3, 2, 1, 0, 128, 64),
    'polymnist_dec_7_op1': ('conv_transpose', (7, 7), 3, 2, 1, 1, 64, 32),
    'polymnist_dec_14_op1': ('conv_transpose', (14, 14), 3, 2, 1, 1, 32, 3),
    # MstTextEncoder 8 -> 8 (k1) -> 4 -> 1 and MstTextDecoder 1 -> 4 -> 8 -> 8 (k1).
    'text_enc_k1': ('conv', (8,), 1, 1, 0, 0, 71, 128),
    'text_enc_8': ('conv', (8,), 4, 2, 1, 0, 128, 128),
    'text_enc_4_p0': ('conv', (4,), 4, 2, 0, 0, 128, 128),
    'text_dec_1_s1': ('conv_transpose', (1,), 4, 1, 0, 0, 128, 128),
    'text_dec_4': ('conv_transpose', (4,), 4, 2, 1, 0, 128, 128),
    'text_dec_k1': ('conv', (8,), 1, 1, 0, 0, 128, 71),
    # CharText / Caption sequence networks: long 1-D chains.
    'char_enc_256': ('conv', (256,), 4, 2, 1, 0, 128, 128),
    'char_dec_128': ('conv_transpose', (128,), 4, 2, 1, 0, 128, 128),
}


def _general_conv_layers(seed: int, count: int) -> list[tuple]:
  """`count` random valid configurations: k 1..5, s 1..3, p 0..k-1, op 0..s-1."""
  rng = np.random.default_rng(seed)
  configs = []
  while len(configs) < count:
    kind = ('conv', 'conv_transpose')[len(configs) % 2]
    num_spatial = int(rng.integers(1, 3))
    kernel_size = int(rng.integers(1, 6))
    stride = int(rng.integers(1, 4))
    padding = int(rng.integers(0, kernel_size))
    output_padding = int(rng.integers(0, stride)) if kind == 'conv_transpose' else 0
    # Sizes may differ between axes: the gradient's output padding is per axis.
    sizes = tuple(int(size) for size in rng.integers(1, 9, num_spatial))
    if kind == 'conv':
      valid = all(size + 2 * padding >= kernel_size for size in sizes)
    else:
      valid = all(layers.transposed_conv_output_size(
          size, kernel_size, stride, padding, output_padding) > 0 for size in sizes)
    if valid:
      configs.append((kind, sizes, kernel_size, stride, padding, output_padding, 3, 5))
  return configs


def _fast_and_reference(config):
  """The layer for `config` and PyTorch's definition of it as `(params, x) -> y`."""
  kind, _, kernel_size, stride, padding, output_padding, _, features = config
  if kind == 'conv':
    layer = layers.TorchConv(features, kernel_size, stride=stride, padding=padding)
    reference = functools.partial(layers.conv_reference, stride=stride, padding=padding)
  else:
    layer = layers.TorchConvTranspose(
        features, kernel_size, stride=stride, padding=padding, output_padding=output_padding)
    reference = functools.partial(
        layers.conv_transpose_reference, stride=stride, padding=padding,
        output_padding=output_padding)

  def reference_layer(params, x):
    return reference(x, params['params']['kernel']) + params['params']['bias']

  return layer, reference_layer


def _assert_close(actual, expected, tolerance=1e-5):
  """Equal to float32 rounding: rtol `tolerance`, atol `tolerance` x the largest |value|."""
  expected = np.asarray(expected)
  scale = max(float(np.max(np.abs(expected))), 1.0) if expected.size else 1.0
  np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def _assert_layer_matches_reference(config, seed=0):
  """Outputs and gradients (input, kernel, bias) of the layer equal the reference's."""
  _, sizes, *_, in_features, _ = config
  layer, reference_layer = _fast_and_reference(config)
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((BATCH,) + sizes + (in_features,)).astype(np.float32)
  params = _random_params(layer, x)
  y_shape = jax.eval_shape(layer.apply, params, x).shape
  cotangent = rng.standard_normal(y_shape).astype(np.float32)

  @jax.jit
  def outputs_and_gradients(params, x, cotangent):
    results = []
    for apply in (layer.apply, reference_layer):
      y, vjp = jax.vjp(apply, params, x)
      results.append((y,) + vjp(cotangent))
    return results

  fast, reference = outputs_and_gradients(params, x, cotangent)
  assert fast[0].shape == reference[0].shape == y_shape
  for actual, expected in zip(jax.tree_util.tree_leaves(fast),
                              jax.tree_util.tree_leaves(reference)):
    _assert_close(actual, expected)


@pytest.mark.parametrize('name', list(NETWORK_CONV_LAYERS))
def test_network_conv_layers_match_reference(name):
  _assert_layer_matches_reference(NETWORK_CONV_LAYERS[name])


@pytest.mark.parametrize('config', _general_conv_layers(seed=0, count=16), ids=str)
def test_general_conv_layers_match_reference(config):
  _assert_layer_matches_reference(config, seed=1)


def test_conv_reference_functions_match_definition():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 5, 6, 3)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
  _assert_close(layers.conv_reference(x, kernel, 2, 1)[0],
                _reference_conv(x[0], kernel, 2, 1))
  _assert_close(layers.conv_transpose_reference(x, kernel, 2, 1, 1)[0],
                _reference_conv_transpose(x[0], kernel, 2, 1, 1))


def test_conv_layers_match_reference_under_vmap():
  # Sweeps vmap the train step over replicas, i.e. over stacked params.
  for config in (NETWORK_CONV_LAYERS['svhn_enc_8'], NETWORK_CONV_LAYERS['svhn_dec_4']):
    _, sizes, *_, in_features, _ = config
    layer, reference_layer = _fast_and_reference(config)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH,) + sizes + (in_features,)).astype(np.float32)
    params = jax.tree_util.tree_map(
        lambda *leaves: np.stack(leaves), _random_params(layer, x),
        jax.tree_util.tree_map(lambda leaf: 0.5 * leaf, _random_params(layer, x)))

    def loss(apply, params):
      return jnp.sum(jnp.sin(apply(params, x)))

    fast, reference = [
        jax.jit(jax.vmap(jax.value_and_grad(functools.partial(loss, apply))))(params)
        for apply in (layer.apply, reference_layer)]
    for actual, expected in zip(jax.tree_util.tree_leaves(fast),
                                jax.tree_util.tree_leaves(reference)):
      _assert_close(actual, expected)


def test_conv_transpose_rejects_output_padding_of_stride():
  layer = layers.TorchConvTranspose(4, 3, stride=2, padding=1, output_padding=2)
  with pytest.raises(ValueError, match='output_padding'):  # raised while tracing
    jax.eval_shape(layer.init, jax.random.key(0), jnp.zeros((1, 4, 4, 2)))


def _assert_uniform_bound(values, fan_in):
  """max |values| lies in (0.9 b, b], b = 1 / sqrt(fan_in): PyTorch's U(-b, b)."""
  bound = 1.0 / math.sqrt(fan_in)
  largest = float(np.max(np.abs(values)))
  assert largest <= bound
  assert largest > 0.9 * bound


@pytest.mark.parametrize('layer,x_shape,fan_in', [
    (layers.TorchDense(64), (1, 100), 100),
    (layers.TorchConv(64, 4, stride=2, padding=1), (1, 8, 8, 4), 4 * 4 * 4),
    (layers.TorchConv(64, 4), (1, 8, 71), 71 * 4),
    # PyTorch's fan_in of a transposed conv counts output channels: 64 * 4 * 4, not 2 * 16.
    (layers.TorchConvTranspose(64, 4, stride=2, padding=1), (1, 4, 4, 2), 64 * 4 * 4),
    (layers.TorchConvTranspose(64, 3), (1, 4, 8), 64 * 3),
])
def test_torch_init_bounds(layer, x_shape, fan_in):
  # Partitionable threefry (JAX's default) compiles each initialiser's draw several
  # times slower on a CPU than the classic one; the bounds are what is checked, not
  # the values (as in test_image_text.py).
  # The initialisation is compiled as one program (op by op, every initialiser and its
  # draw compile apart); the statistics are taken on the host.
  with jax.threefry_partitionable(False):
    params = jax.jit(layer.init)(jax.random.key(0), jnp.zeros(x_shape))['params']
  kernel, bias = (np.asarray(params[name], np.float64) for name in ('kernel', 'bias'))
  _assert_uniform_bound(kernel, fan_in)
  _assert_uniform_bound(bias, fan_in)
  # U(-b, b) has variance b^2 / 3.
  np.testing.assert_allclose(np.var(kernel), 1.0 / (3 * fan_in), rtol=0.1)


def test_transposed_conv_output_size_formula():
  assert layers.transposed_conv_output_size(1, 4, 1, 0) == 4
  assert layers.transposed_conv_output_size(4, 3, 2, 1) == 7
  assert layers.transposed_conv_output_size(7, 3, 2, 1, 1) == 14


@pytest.mark.parametrize('name', sorted(networks.NETWORKS))
def test_every_network_names_a_judge(name):
  assert networks.NETWORKS[name].classifier in classifier_networks.CLASSIFIERS


@pytest.mark.parametrize('name', sorted(networks.NETWORKS))
def test_registry_shapes(name):
  input_shape, latent_dim = NETWORK_SHAPES[name]
  encoder_cls, decoder_cls = networks.NETWORKS[name].encoder, networks.NETWORKS[name].decoder
  sizes = NETWORK_SIZES.get(name, {})
  encoder = networks.build(encoder_cls, latent_dim, **sizes)
  decoder = networks.build(decoder_cls, latent_dim, **sizes)
  x = jax.ShapeDtypeStruct((BATCH,) + input_shape, jnp.float32)
  encoder_params = jax.eval_shape(encoder.init, jax.random.key(0), x)
  mean, logvar = jax.eval_shape(encoder.apply, encoder_params, x)
  assert mean.shape == logvar.shape == (BATCH, latent_dim)
  z = jax.ShapeDtypeStruct((BATCH, latent_dim), jnp.float32)
  decoder_params = jax.eval_shape(decoder.init, jax.random.key(0), z)
  output = jax.eval_shape(decoder.apply, decoder_params, z)
  assert output.shape == (BATCH,) + input_shape
  assert output.dtype == jnp.float32


@pytest.mark.parametrize('name', ['mnist', 'image64'])
def test_sigmoid_decoders_stay_in_unit_interval(name):
  _, latent_dim = NETWORK_SHAPES[name]
  decoder = networks.NETWORKS[name].decoder(latent_dim=latent_dim)
  z = 10.0 * _standard_normal((BATCH, latent_dim))
  output = jax.jit(decoder.apply)(_random_params(decoder, z), z)
  assert np.all((output >= 0.0) & (output <= 1.0))


# Per-layer output shapes (batch axis dropped), as the reference networks have them.
LAYER_SHAPES = {
    networks.SvhnEncoder: ((32, 32, 3), [
        ('TorchConv_0', (16, 16, 32)), ('TorchConv_1', (8, 8, 64)),
        ('TorchConv_2', (4, 4, 64)), ('TorchConv_3', (1, 1, 128))]),
    networks.SvhnDecoder: ((32,), [
        ('TorchDense_0', (128,)), ('TorchConvTranspose_0', (4, 4, 64)),
        ('TorchConvTranspose_1', (8, 8, 64)), ('TorchConvTranspose_2', (16, 16, 32)),
        ('TorchConvTranspose_3', (32, 32, 3))]),
    networks.MstTextEncoder: ((8, 71), [
        ('TorchConv_0', (8, 128)), ('TorchConv_1', (4, 128)), ('TorchConv_2', (1, 128))]),
    networks.MstTextDecoder: ((32,), [
        ('TorchDense_0', (128,)), ('TorchConvTranspose_0', (4, 128)),
        ('TorchConvTranspose_1', (8, 128)), ('TorchConv_0', (8, 71))]),
    networks.PolyMnistEncoder: ((28, 28, 3), [
        ('TorchConv_0', (14, 14, 32)), ('TorchConv_1', (7, 7, 64)),
        ('TorchConv_2', (4, 4, 128)), ('TorchDense_0', (512,))]),
    networks.PolyMnistDecoder: ((32,), [
        ('TorchDense_0', (2048,)), ('TorchConvTranspose_0', (7, 7, 64)),
        ('TorchConvTranspose_1', (14, 14, 32)), ('TorchConvTranspose_2', (28, 28, 3))]),
    networks.CaptionEncoder: ((32, 1590), [
        ('TorchConv_0', (32, 128)), ('TorchConv_1', (16, 128)), ('TorchConv_2', (8, 256)),
        ('TorchConv_3', (4, 512))]),
    networks.CaptionDecoder: ((32,), [
        ('TorchDense_0', (2048,)), ('TorchConvTranspose_0', (8, 256)),
        ('TorchConvTranspose_1', (16, 128)), ('TorchConvTranspose_2', (32, 128)),
        ('TorchConv_0', (32, 1590))]),
    networks.CharTextDecoder: ((32,), [
        ('TorchDense_0', (2048,)), ('TorchConvTranspose_0', (8, 512)),
        ('TorchConvTranspose_1', (16, 256)), ('TorchConvTranspose_2', (32, 256)),
        ('TorchConvTranspose_3', (64, 128)), ('TorchConvTranspose_4', (128, 128)),
        ('TorchConvTranspose_5', (256, 128)), ('TorchConv_0', (256, 71))]),
}


@pytest.mark.parametrize('module_cls', list(LAYER_SHAPES), ids=lambda cls: cls.__name__)
def test_layer_shapes(module_cls):
  input_shape, expected = LAYER_SHAPES[module_cls]
  module = module_cls(latent_dim=32)
  shapes = _layer_output_shapes(module, jnp.zeros((BATCH,) + input_shape))
  assert shapes == {name: (BATCH,) + shape for name, shape in expected}


def _dense(n_in, n_out):
  return n_in * n_out + n_out


def _conv(c_in, c_out, k, num_spatial=2):
  return c_in * c_out * k**num_spatial + c_out


# PyTorch parameter counts of the reference networks, layer by layer.
PARAM_COUNTS = [
    (networks.MnistEncoder, 32, (28, 28, 1),
     _dense(784, 400) + 2 * _dense(400, 32), 339_664),
    (networks.MnistDecoder, 32, None, _dense(32, 400) + _dense(400, 784), 327_584),
    (networks.SvhnEncoder, 32, (32, 32, 3),
     _conv(3, 32, 4) + _conv(32, 64, 4) + _conv(64, 64, 4) + _conv(64, 128, 4)
     + 2 * _dense(128, 32), 239_456),
    (networks.SvhnDecoder, 32, None,
     _dense(32, 128) + _conv(128, 64, 4) + _conv(64, 64, 4) + _conv(64, 32, 4)
     + _conv(32, 3, 4), 235_299),
    (networks.MstTextEncoder, 32, (8, 71),
     _conv(71, 128, 1, 1) + 2 * _conv(128, 128, 4, 1) + 2 * _dense(128, 32), 148_800),
    (networks.MstTextDecoder, 32, None,
     _dense(32, 128) + 2 * _conv(128, 128, 4, 1) + _conv(128, 71, 1, 1), 144_711),
    (networks.PolyMnistEncoder, 512, (28, 28, 3),
     _conv(3, 32, 3) + _conv(32, 64, 3) + _conv(64, 128, 3) + _dense(2048, 512)
     + 2 * _dense(512, 512), 1_667_648),
    (networks.PolyMnistDecoder, 512, None,
     _dense(512, 2048) + _conv(128, 64, 3) + _conv(64, 32, 3) + _conv(32, 3, 3), 1_143_747),
]


@pytest.mark.parametrize(
    'module_cls,latent_dim,input_shape,layer_sum,total', PARAM_COUNTS,
    ids=lambda value: value.__name__ if isinstance(value, type) else None)
def test_parameter_counts(module_cls, latent_dim, input_shape, layer_sum, total):
  assert layer_sum == total
  module = module_cls(latent_dim=latent_dim)
  x = jnp.zeros((1,) + (input_shape or (latent_dim,)))
  params = jax.eval_shape(module.init, jax.random.key(0), x)
  assert _count(params) == total


def test_text_length_checks():
  z = jnp.zeros((1, 8))
  with pytest.raises(ValueError, match='8-character'):
    networks.MstTextDecoder(latent_dim=8, length=16).init(jax.random.key(0), z)
  with pytest.raises(ValueError, match='multiple of 8'):
    networks.CaptionDecoder(latent_dim=8, length=20).init(jax.random.key(0), z)


CLASSIFIER_CASES = {
    'mnist': ((28, 28, 1), 10),
    'svhn': ((32, 32, 3), 10),
    'mst_text': ((8, 71), 10),
    'polymnist': ((28, 28, 3), 10),
    'image64': ((64, 64, 3), 40),
    'caption': ((32, 1590), 200),
    'char_text': ((256, 71), 40),
    'sequence': ((16, 30), 10),
    'vector': ((5,), 10),
}


@pytest.mark.parametrize('name', sorted(classifier_networks.CLASSIFIERS))
def test_classifier_logits_shapes(name):
  input_shape, num_classes = CLASSIFIER_CASES[name]
  classifier = classifier_networks.CLASSIFIERS[name]()
  x = jax.ShapeDtypeStruct((BATCH,) + input_shape, jnp.float32)
  params = jax.eval_shape(classifier.init, jax.random.key(0), x)
  assert jax.eval_shape(classifier.apply, params, x).shape == (BATCH, num_classes)


# Every classifier is an ImageClassifier or a TextClassifier; one of each runs for real.
@pytest.mark.parametrize('name', ['mnist', 'mst_text'])
def test_classifier_dropout_only_in_training(name):
  input_shape, _ = CLASSIFIER_CASES[name]
  classifier = classifier_networks.CLASSIFIERS[name]()
  x = np.random.default_rng(0).uniform(size=(BATCH,) + input_shape).astype(np.float32)
  params = _random_params(classifier, x)
  # Compiled once per call signature: the default, train=False and train=True.
  apply = jax.jit(classifier.apply, static_argnames='train')
  logits = apply(params, x)
  np.testing.assert_array_equal(logits, apply(params, x, train=False))
  train_logits = [apply(params, x, train=True, rngs={'dropout': jax.random.key(seed)})
                  for seed in (2, 3)]
  assert not np.allclose(train_logits[0], train_logits[1])
  assert not np.allclose(train_logits[0], logits)


def test_text_classifier_accepts_any_length():
  classifier = classifier_networks.CLASSIFIERS['char_text']()
  params = jax.eval_shape(classifier.init, jax.random.key(0), jnp.zeros((1, 256, 71)))
  for length in (64, 300):
    text = jax.ShapeDtypeStruct((BATCH, length, 71), jnp.float32)
    assert jax.eval_shape(classifier.apply, params, text).shape == (BATCH, 40)


def test_latent_heads_are_shared_submodule():
  encoder = networks.SvhnEncoder(latent_dim=4)
  params = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
  assert set(params['LatentHeads_0']) == {'mean', 'logvar'}
  assert params['LatentHeads_0']['mean']['kernel'].shape == (128, 4)


def test_registries_share_names():
  assert set(classifier_networks.CLASSIFIERS) == set(networks.NETWORKS) == set(NETWORK_SHAPES)
