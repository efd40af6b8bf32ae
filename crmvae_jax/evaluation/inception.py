"""The FID Inception-v3 network (pytorch-fid's variant) in Flax, and its weights.

FID compares Inception-v3 pool3 features (2048-d, after the final global average
pool) of generated and real images. The numbers in the literature use the
TensorFlow 2015-12-05 Inception graph, which pytorch-fid ported to PyTorch; that port
is torchvision's Inception3 (1008 classes, no auxiliary head) with the pool branches
patched to match TensorFlow, reproduced here:
- FIDInceptionA/C and the first FIDInceptionE (Mixed_7b) average-pool without
  counting the zero padding;
- the second FIDInceptionE (Mixed_7c) max-pools in its pool branch.
As in torchvision, convolutions have no bias and BatchNorm (inference mode here)
uses eps = 1e-3.

Images enter as floats in [0, 1], are resized to 299x299 bilinearly (half-pixel
centres, no antialiasing, like torch's `F.interpolate(align_corners=False)`) and
scaled to [-1, 1]. Layout is NHWC throughout.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, converted once by

  python -m crmvae_jax.convert_inception_weights \\
      --torch_weights=pt_inception-2015-12-05-6726825d.pth

(from the repository root, where torch is installed) into an `.npz` of PyTorch
state-dict names -> arrays in PyTorch layout, written by default to
`~/.cache/crmvae_jax/inception_fid.npz`.
`variables_from_state_dict` maps those names onto this module's variables.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.common.errors import UserError

WEIGHTS_ENV_VAR = "CRMVAE_INCEPTION_WEIGHTS"
DEFAULT_WEIGHTS_PATH = os.path.join("~", ".cache", "crmvae_jax", "inception_fid.npz")
CONVERT_COMMAND = ("python -m crmvae_jax.convert_inception_weights "
                   "--torch_weights=pt_inception-2015-12-05-6726825d.pth")
# The fix for a weights file that is not pytorch-fid's converted Inception.
_REMAKE = (f"the file is not pytorch-fid's converted Inception-v3: remake it with "
           f"`{CONVERT_COMMAND}` or pass another --config.eval.fid.inception_weights.")

INPUT_SIZE = 299
FEATURE_DIM = 2048
_BATCH_NORM_EPSILON = 1e-3

Variables = Mapping[str, Any]


class BasicConv2d(nn.Module):
  """Convolution without bias, inference BatchNorm (eps 1e-3), ReLU.

  Attributes:
    features: output channels.
    kernel_size: (height, width).
    strides: (height, width).
    padding: symmetric zero padding (height, width).
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(self.features, self.kernel_size, self.strides,
                padding=[(p, p) for p in self.padding], use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BATCH_NORM_EPSILON,
                     name="bn")(x)
    return nn.relu(x)


def _average_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool whose border averages ignore the zero padding."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_stride_2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class FIDInceptionA(nn.Module):
  """Mixed_5b/c/d: 1x1, 5x5, double 3x3 and pooled branches (35x35 grid).

  Attributes:
    pool_features: channels of the pooled branch.
  """

  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)

    branch5x5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    branch5x5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(branch5x5)

    branch3x3dbl = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1),
                               name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1),
                               name="branch3x3dbl_3")(branch3x3dbl)

    branch_pool = BasicConv2d(self.pool_features, (1, 1),
                              name="branch_pool")(_average_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: grid reduction 35x35 -> 17x17 (unpatched in pytorch-fid)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = BasicConv2d(384, (3, 3), strides=(2, 2), name="branch3x3")(x)

    branch3x3dbl = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=(1, 1),
                               name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv2d(96, (3, 3), strides=(2, 2),
                               name="branch3x3dbl_3")(branch3x3dbl)

    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride_2(x)], axis=-1)


class FIDInceptionC(nn.Module):
  """Mixed_6b/c/d/e: factorised 7x7 branches on the 17x17 grid.

  Attributes:
    channels_7x7: channels inside the 7x7 branches.
  """

  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    branch1x1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)

    branch7x7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
    branch7x7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
    branch7x7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)

    branch7x7dbl = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
    branch7x7dbl = BasicConv2d(c7, (7, 1), padding=(3, 0),
                               name="branch7x7dbl_2")(branch7x7dbl)
    branch7x7dbl = BasicConv2d(c7, (1, 7), padding=(0, 3),
                               name="branch7x7dbl_3")(branch7x7dbl)
    branch7x7dbl = BasicConv2d(c7, (7, 1), padding=(3, 0),
                               name="branch7x7dbl_4")(branch7x7dbl)
    branch7x7dbl = BasicConv2d(192, (1, 7), padding=(0, 3),
                               name="branch7x7dbl_5")(branch7x7dbl)

    branch_pool = BasicConv2d(192, (1, 1), name="branch_pool")(_average_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: grid reduction 17x17 -> 8x8 (unpatched in pytorch-fid)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch3x3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    branch3x3 = BasicConv2d(320, (3, 3), strides=(2, 2), name="branch3x3_2")(branch3x3)

    branch7x7x3 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    branch7x7x3 = BasicConv2d(192, (1, 7), padding=(0, 3),
                              name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = BasicConv2d(192, (7, 1), padding=(3, 0),
                              name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = BasicConv2d(192, (3, 3), strides=(2, 2),
                              name="branch7x7x3_4")(branch7x7x3)

    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride_2(x)], axis=-1)


class FIDInceptionE(nn.Module):
  """Mixed_7b/c: expanded 3x3 branches on the 8x8 grid.

  Attributes:
    pool: 'avg' (Mixed_7b, padding not counted) or 'max' (Mixed_7c: the TensorFlow
      graph max-pools here, which pytorch-fid keeps).
  """

  pool: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    branch1x1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)

    branch3x3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    branch3x3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
    ], axis=-1)

    branch3x3dbl = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv2d(384, (3, 3), padding=(1, 1),
                               name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(branch3x3dbl),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(branch3x3dbl),
    ], axis=-1)

    if self.pool == "avg":
      pooled = _average_pool_3x3(x)
    elif self.pool == "max":
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      raise ValueError(f"FIDInceptionE: pool must be 'avg' or 'max', got {self.pool!r}.")
    branch_pool = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """Inception-v3 up to pool3, as pytorch-fid's `InceptionV3([3])` without resizing.

  Submodule names are torchvision's (Conv2d_1a_3x3, Mixed_5b, ...), so a PyTorch
  state-dict name maps onto a variable path by splitting at the dots.
  """

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """Pool3 features.

    Args:
      images: [N, H, W, 3] in [-1, 1]; H, W >= 75 (299 for the FID convention).

    Returns:
      [N, 2048] features after the final global average pool.
    """
    x = BasicConv2d(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(images)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride_2(x)
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride_2(x)
    x = FIDInceptionA(pool_features=32, name="Mixed_5b")(x)
    x = FIDInceptionA(pool_features=64, name="Mixed_5c")(x)
    x = FIDInceptionA(pool_features=64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = FIDInceptionC(channels_7x7=128, name="Mixed_6b")(x)
    x = FIDInceptionC(channels_7x7=160, name="Mixed_6c")(x)
    x = FIDInceptionC(channels_7x7=160, name="Mixed_6d")(x)
    x = FIDInceptionC(channels_7x7=192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = FIDInceptionE(pool="avg", name="Mixed_7b")(x)
    x = FIDInceptionE(pool="max", name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


def preprocess(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """Resizes images to the network's input and scales them to [-1, 1].

  Args:
    images: [N, H, W, C] floats in [0, 1], C = 1 (repeated to 3 channels) or 3.
    size: output height and width.

  Returns:
    [N, size, size, 3] in [-1, 1], bilinearly resized without antialiasing (as
    pytorch-fid's `F.interpolate(mode='bilinear', align_corners=False)`).
  """
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if images.shape[-1] != 3:
    raise ValueError(f"preprocess: images need 1 or 3 channels, got {images.shape}.")
  resized = jax.image.resize(images, (images.shape[0], size, size, 3), method="bilinear",
                             antialias=False)
  return 2.0 * resized - 1.0


def _variable_to_state_dict_name(collection: str, path: tuple[str, ...]) -> str:
  """The PyTorch state-dict name of one Flax variable of `FIDInceptionV3`."""
  layer, name = path[:-2], path[-2:]
  torch_names = {
      ("params", ("conv", "kernel")): "conv.weight",
      ("params", ("bn", "scale")): "bn.weight",
      ("params", ("bn", "bias")): "bn.bias",
      ("batch_stats", ("bn", "mean")): "bn.running_mean",
      ("batch_stats", ("bn", "var")): "bn.running_var",
  }
  return ".".join(layer + (torch_names[(collection, name)],))


@functools.cache
def _variable_shapes() -> dict[str, Any]:
  """The model's variable tree with ShapeDtypeStruct leaves (nothing is computed; the
  trace takes about a second, so it is made once). Callers must not change it."""
  return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                        jnp.zeros((1, 75, 75, 3), jnp.float32))


def variables_from_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """Maps pytorch-fid's state dict (names and layouts) onto `FIDInceptionV3`.

  Conv weights go from PyTorch's [out, in, kh, kw] to Flax's [kh, kw, in, out];
  BatchNorm weight/bias/running_mean/running_var become scale/bias (params) and
  mean/var (batch_stats). Every variable must be present with its exact shape, and
  no other name may be (the converter already dropped the 1008-way classifier).

  Args:
    state_dict: name -> array, e.g. 'Mixed_5b.branch1x1.conv.weight' -> [64, 192, 1, 1].

  Returns:
    {'params': ..., 'batch_stats': ...} for `FIDInceptionV3().apply`.

  Raises:
    UserError: a name is missing or unexpected, or a shape differs (the weights file
      is not pytorch-fid's converted Inception).
  """
  shapes = _variable_shapes()
  used_names = set()

  def convert(collection: str, key_path: tuple[Any, ...],
              shape: jax.ShapeDtypeStruct) -> jax.Array:
    path = tuple(key.key for key in key_path)
    name = _variable_to_state_dict_name(collection, path)
    if name not in state_dict:
      raise UserError(f"Inception weights: '{name}' is missing; {_REMAKE}")
    array = np.asarray(state_dict[name], dtype=np.float32)
    if path[-1] == "kernel":
      array = array.transpose(2, 3, 1, 0)
    if array.shape != shape.shape:
      raise UserError(f"Inception weights: '{name}' has shape {array.shape} after "
                      f"layout conversion, the model needs {shape.shape}; {_REMAKE}")
    used_names.add(name)
    return jnp.asarray(array)

  variables = {
      collection: jax.tree_util.tree_map_with_path(functools.partial(convert, collection),
                                                   tree)
      for collection, tree in shapes.items()
  }
  unexpected = sorted(set(state_dict) - used_names)
  if unexpected:
    raise UserError(f"Inception weights: unexpected names {unexpected[:5]} "
                    f"({len(unexpected)} in all); {_REMAKE}")
  return variables


def find_weights(weights_path: str | None = None) -> str:
  """Locates the converted weights file.

  An explicit path is the only candidate when given (a wrong explicit path is an
  error, not a reason to use another file); otherwise `$CRMVAE_INCEPTION_WEIGHTS`,
  then `~/.cache/crmvae_jax/inception_fid.npz`.

  Args:
    weights_path: explicit `.npz` path (from `--config.eval.fid.inception_weights`).

  Returns:
    The path of an existing file.

  Raises:
    DataUnavailableError: no candidate exists.
  """
  if weights_path:
    candidates = {weights_path: "the path given"}
  else:
    environment_path = os.environ.get(WEIGHTS_ENV_VAR)
    candidates = {environment_path: f"${WEIGHTS_ENV_VAR}"} if environment_path else {}
    candidates[DEFAULT_WEIGHTS_PATH] = (
        "the default" if environment_path else f"the default; ${WEIGHTS_ENV_VAR} is unset")
  for path in candidates:
    if os.path.isfile(os.path.expanduser(path)):
      return os.path.expanduser(path)
  looked_at = " or ".join(f"{os.path.expanduser(path)} ({source})"
                          for path, source in candidates.items())
  raise DataUnavailableError(
      f"The FID Inception-v3 weights file was not found at {looked_at}; make it "
      f"from pytorch-fid's "
      f"pt_inception-2015-12-05-6726825d.pth with `{CONVERT_COMMAND}` (needs torch; "
      f"it writes the default path), or pass --config.eval.fid.inception_weights=PATH to "
      f"a converted file.")


@jax.jit
def _pool3_features(variables: Variables, images: jax.Array) -> jax.Array:
  # Variables are an argument, not a closure, so the 21.8M weights are not baked
  # into the compiled program as constants. Full float32 precision keeps GPUs from
  # using TF32 in the convolutions and the resize (on CPU the features match
  # pytorch-fid's to about 1e-6 of their scale).
  with jax.default_matmul_precision("highest"):
    return FIDInceptionV3().apply(variables, preprocess(images))


@dataclasses.dataclass(frozen=True)
class InceptionFeatures:
  """Pool3 features of the FID Inception network with loaded weights.

  Attributes:
    variables: {'params': ..., 'batch_stats': ...} of `FIDInceptionV3`.
  """

  variables: Variables

  @classmethod
  def load(cls, weights_path: str | None = None) -> InceptionFeatures:
    """Loads the converted `.npz` (see `find_weights` for where it is looked for).

    Args:
      weights_path: explicit path, or None to search the environment and the cache.

    Returns:
      The feature extractor.

    Raises:
      DataUnavailableError: no weights file was found.
      UserError: the file does not hold pytorch-fid's Inception state dict.
    """
    path = find_weights(weights_path)
    try:
      with np.load(path) as state_dict:
        arrays = dict(state_dict)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
      raise UserError(f"Inception weights {path} cannot be read ({error}); {_REMAKE}") from error
    return cls(variables_from_state_dict(arrays))

  def features(self, images: np.ndarray, batch_size: int = 200) -> np.ndarray:
    """Pool3 features of images, computed in batches.

    Args:
      images: [N, H, W, C], C = 1 or 3; floats in [0, 1] (uint8 in [0, 255] is
        divided by 255).
      batch_size: images per forward pass (at most N); the last batch is padded to
        this size so the network compiles once.

    Returns:
      [N, 2048] float32 features.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
      images = images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    batch_size = max(1, min(batch_size, len(images)))
    features = []
    for start in range(0, len(images), batch_size):
      batch = images[start:start + batch_size]
      padding = batch_size - len(batch)
      padded = np.pad(batch, [(0, padding)] + [(0, 0)] * (batch.ndim - 1))
      features.append(np.asarray(_pool3_features(self.variables, padded))[:len(batch)])
    if not features:
      return np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(features, axis=0)
