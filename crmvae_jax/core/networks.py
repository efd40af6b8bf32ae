"""Encoders, decoders and coherence classifiers for every modality.

All networks are channels-last Flax linen modules:
- encoders map images float32 [B, H, W, C] in [0, 1], or one-hot text float32
  [B, L, V], to a diagonal Gaussian `(mean [B, D], logvar [B, D])`;
- decoders map z [B, D] to an image [B, H, W, C] (the Laplace location) or to text
  logits [B, L, V];
- classifiers map a modality to logits [B, num_classes] and are deterministic unless
  called with `train=True` (dropout, with a 'dropout' rng). They hold no batch
  statistics, so a trained classifier is just its params.

Every layer goes through `TorchDense`, `TorchConv` or `TorchConvTranspose`
(`crmvae_jax.core.layers`), which reproduce PyTorch's padding arithmetic and default
initialisation, so the shapes and the initial scale of every reference network carry
over. Each module's docstring lists its layers in PyTorch notation with the
channels-last shape after each.

`NETWORKS` maps a network name to its (Encoder, Decoder) classes and `CLASSIFIERS`
maps the same names to a classifier class.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn

from crmvae_jax.core.layers import TorchConv, TorchConvTranspose, TorchDense


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
