"""Tests for crmvae_jax.networks: PyTorch-faithful layers, shapes, sizes, classifiers."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax import networks

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
}


def _random_params(module, *inputs):
  """Standard-normal params of `module`'s shapes, drawn by NumPy.

  Compiling JAX's random initialisers costs seconds per shape on a CPU; tests that
  only need some parameter values use these (the initialisers are tested apart).
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(
      lambda leaf: rng.standard_normal(leaf.shape).astype(np.float32), shapes)


def _count(params) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def _layer_output_shapes(module, x) -> dict[str, tuple[int, ...]]:
  """Name -> output shape of every top-level Torch* layer of `module`."""
  torch_layers = (networks.TorchDense, networks.TorchConv, networks.TorchConvTranspose)

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
      networks.transposed_conv_output_size(n, k, stride, padding, output_padding)
      for n in x.shape[:-1]]
  return y[tuple(slice(padding, padding + n) for n in out_size)]


@pytest.mark.parametrize('num_spatial', [1, 2])
@pytest.mark.parametrize('kernel_size,stride,padding', [(1, 1, 0), (3, 2, 1), (4, 2, 0)])
def test_torch_conv_matches_definition(num_spatial, kernel_size, stride, padding):
  x = np.asarray(jax.random.normal(jax.random.key(0), (1,) + (6,) * num_spatial + (3,)))
  layer = networks.TorchConv(5, kernel_size, stride=stride, padding=padding)
  params = _random_params(layer, x)
  y = layer.apply(params, x)
  p = params['params']
  expected = _reference_conv(x[0], np.asarray(p['kernel']), stride, padding) + p['bias']
  np.testing.assert_allclose(y[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('num_spatial', [1, 2])
@pytest.mark.parametrize('size,kernel_size,stride,padding,output_padding', [
    (1, 4, 1, 0, 0), (4, 4, 2, 1, 0), (7, 3, 2, 1, 1), (3, 5, 3, 2, 2)])
def test_torch_conv_transpose_matches_definition(
    num_spatial, size, kernel_size, stride, padding, output_padding):
  x = np.asarray(jax.random.normal(jax.random.key(0), (1,) + (size,) * num_spatial + (3,)))
  layer = networks.TorchConvTranspose(
      2, kernel_size, stride=stride, padding=padding, output_padding=output_padding)
  params = _random_params(layer, x)
  y = layer.apply(params, x)
  out_size = (size - 1) * stride - 2 * padding + kernel_size + output_padding
  assert y.shape == (1,) + (out_size,) * num_spatial + (2,)
  p = params['params']
  expected = _reference_conv_transpose(
      x[0], np.asarray(p['kernel']), stride, padding, output_padding) + p['bias']
  np.testing.assert_allclose(y[0], expected, rtol=1e-5, atol=1e-5)


def _assert_uniform_bound(values, fan_in):
  bound = 1.0 / math.sqrt(fan_in)
  largest = float(jnp.max(jnp.abs(values)))
  assert largest <= bound
  assert largest > 0.9 * bound


@pytest.mark.parametrize('layer,x_shape,fan_in', [
    (networks.TorchDense(64), (1, 100), 100),
    (networks.TorchConv(64, 4, stride=2, padding=1), (1, 8, 8, 4), 4 * 4 * 4),
    (networks.TorchConv(64, 4), (1, 8, 71), 71 * 4),
    # PyTorch's fan_in of a transposed conv counts output channels: 64 * 4 * 4, not 2 * 16.
    (networks.TorchConvTranspose(64, 4, stride=2, padding=1), (1, 4, 4, 2), 64 * 4 * 4),
    (networks.TorchConvTranspose(64, 3), (1, 4, 8), 64 * 3),
])
def test_torch_init_bounds(layer, x_shape, fan_in):
  params = layer.init(jax.random.key(0), jnp.zeros(x_shape))['params']
  _assert_uniform_bound(params['kernel'], fan_in)
  _assert_uniform_bound(params['bias'], fan_in)
  # U(-b, b) has variance b^2 / 3.
  np.testing.assert_allclose(jnp.var(params['kernel']), 1.0 / (3 * fan_in), rtol=0.1)


def test_transposed_conv_output_size_formula():
  assert networks.transposed_conv_output_size(1, 4, 1, 0) == 4
  assert networks.transposed_conv_output_size(4, 3, 2, 1) == 7
  assert networks.transposed_conv_output_size(7, 3, 2, 1, 1) == 14


@pytest.mark.parametrize('name', sorted(networks.NETWORKS))
def test_registry_shapes(name):
  input_shape, latent_dim = NETWORK_SHAPES[name]
  encoder_cls, decoder_cls = networks.NETWORKS[name]
  encoder, decoder = encoder_cls(latent_dim=latent_dim), decoder_cls(latent_dim=latent_dim)
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
  decoder = networks.NETWORKS[name][1](latent_dim=latent_dim)
  z = 10.0 * jax.random.normal(jax.random.key(0), (BATCH, latent_dim))
  output = decoder.apply(_random_params(decoder, z), z)
  assert np.all((output >= 0.0) & (output <= 1.0))


# Per-layer output shapes (batch axis dropped), as SPEC.md section 4 states them.
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


# PyTorch parameter counts of the reference networks, layer by layer from SPEC.md.
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
}


@pytest.mark.parametrize('name', sorted(networks.CLASSIFIERS))
def test_classifier_logits_shapes(name):
  input_shape, num_classes = CLASSIFIER_CASES[name]
  classifier = networks.CLASSIFIERS[name]()
  x = jax.ShapeDtypeStruct((BATCH,) + input_shape, jnp.float32)
  params = jax.eval_shape(classifier.init, jax.random.key(0), x)
  assert jax.eval_shape(classifier.apply, params, x).shape == (BATCH, num_classes)


# Every classifier is an ImageClassifier or a TextClassifier; one of each runs for real.
@pytest.mark.parametrize('name', ['mnist', 'mst_text'])
def test_classifier_dropout_only_in_training(name):
  input_shape, _ = CLASSIFIER_CASES[name]
  classifier = networks.CLASSIFIERS[name]()
  x = jax.random.uniform(jax.random.key(0), (BATCH,) + input_shape)
  params = _random_params(classifier, x)
  logits = classifier.apply(params, x)
  np.testing.assert_array_equal(logits, classifier.apply(params, x, train=False))
  train_logits = [
      classifier.apply(params, x, train=True, rngs={'dropout': jax.random.key(seed)})
      for seed in (2, 3)]
  assert not np.allclose(train_logits[0], train_logits[1])
  assert not np.allclose(train_logits[0], logits)


def test_text_classifier_accepts_any_length():
  classifier = networks.CharTextClassifier()
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
  assert set(networks.CLASSIFIERS) == set(networks.NETWORKS) == set(NETWORK_SHAPES)
