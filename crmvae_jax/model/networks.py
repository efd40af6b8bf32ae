"""Encoders and decoders for every modality, and `NETWORKS`, the registry of them.

All networks are channels-last Flax linen modules:
- encoders map images float32 [B, H, W, C] in [0, 1], or one-hot text float32
  [B, L, V], to a diagonal Gaussian `(mean [B, D], logvar [B, D])`;
- decoders map z [B, D] to an image [B, H, W, C] (the Laplace location) or to text
  logits [B, L, V].

This module holds the image and vector networks; the text networks are in
`crmvae_jax.model.text_networks`, the judges' classifiers in
`crmvae_jax.evaluation.classifier_networks`. Every layer goes through `TorchDense`,
`TorchConv` or `TorchConvTranspose` (`crmvae_jax.model.layers`), which reproduce
PyTorch's padding arithmetic and default initialisation, so the shapes and the initial
scale of every reference network carry over. Each module's docstring lists its layers in
PyTorch notation with the channels-last shape after each.

`NETWORKS` maps a network name to its (Encoder, Decoder) classes (and
`classifier_networks.CLASSIFIERS` the same names to their judges).
"""

from __future__ import annotations

import dataclasses

import jax
from flax import linen as nn

from crmvae_jax.model.layers import LatentHeads, TorchConv, TorchConvTranspose, TorchDense, flatten
from crmvae_jax.model.text_networks import (CaptionDecoder, CaptionEncoder, CharTextDecoder,
                                           CharTextEncoder, MstTextDecoder, MstTextEncoder,
                                           SequenceDecoder, SequenceEncoder)


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
    hidden = nn.relu(TorchDense(400)(flatten(x)))
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
    return LatentHeads(self.latent_dim)(flatten(h))


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
    h = nn.relu(TorchDense(512)(flatten(h)))
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
    return LatentHeads(self.latent_dim)(flatten(h))


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


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
  """One network of `NETWORKS`: a modality's encoder and decoder, and its judge.

  Attributes:
    encoder: the Flax module mapping a modality's inputs to (mean, logvar) [B, D]; built
      with `latent_dim=D` and, where it declares them as fields, the modality's sizes
      (`build`: out_channels, size, vocab_size, length).
    decoder: the Flax module mapping z [B, D] to the likelihood's location, built alike.
    classifier: the key of its judge's network in
      `crmvae_jax.evaluation.classifier_networks.CLASSIFIERS`.
  """

  encoder: type[nn.Module]
  decoder: type[nn.Module]
  classifier: str


# A user's own networks: 'custom:package.module.Encoder,package.module.Decoder'
# (`crmvae_jax.model.user_networks` finds them).
CUSTOM_PREFIX = "custom:"


def build(network_class: type[nn.Module], latent_dim: int, options: dict | None = None,
          **sizes: int) -> nn.Module:
  """`network_class(latent_dim=..., **options, ...)` with those of `sizes` that it takes
  (an encoder needs no output channels; a user's own module may take none of them)."""
  fields = {field.name for field in dataclasses.fields(network_class)}
  return network_class(latent_dim=latent_dim, **{
      **{name: size for name, size in sizes.items() if name in fields}, **(options or {})})


NETWORKS: dict[str, NetworkSpec] = {
    'mnist': NetworkSpec(MnistEncoder, MnistDecoder, classifier='mnist'),
    'svhn': NetworkSpec(SvhnEncoder, SvhnDecoder, classifier='svhn'),
    'mst_text': NetworkSpec(MstTextEncoder, MstTextDecoder, classifier='mst_text'),
    'polymnist': NetworkSpec(PolyMnistEncoder, PolyMnistDecoder, classifier='polymnist'),
    'image64': NetworkSpec(Image64Encoder, Image64Decoder, classifier='image64'),
    'caption': NetworkSpec(CaptionEncoder, CaptionDecoder, classifier='caption'),
    'char_text': NetworkSpec(CharTextEncoder, CharTextDecoder, classifier='char_text'),
    # Any image, text or vector of a user's own data (crmvae_jax.data.arrays).
    'sequence': NetworkSpec(SequenceEncoder, SequenceDecoder, classifier='sequence'),
    'vector': NetworkSpec(VectorEncoder, VectorDecoder, classifier='vector'),
}
