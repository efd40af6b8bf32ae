"""Text and sequence encoders and decoders: the MNIST-SVHN-Text names (8 characters),
and the 1-D convolutional networks of CUB captions, Bimodal CelebA descriptions and a
user's own token sequences.

Encoders map one-hot text float32 [B, L, V] to `(mean [B, D], logvar [B, D])`; decoders
map z [B, D] to logits [B, L, V]. Layers and conventions as in `crmvae_jax.model.networks`.
"""

from __future__ import annotations

import jax
from flax import linen as nn

from crmvae_jax.model.layers import LatentHeads, TorchConv, TorchConvTranspose, TorchDense, flatten


def _check_mst_length(length: int, module_name: str) -> None:
  """Raises ValueError unless `length` is the 8 characters the MST text layers fit."""
  if length != 8:
    raise ValueError(f'{module_name}: its layers fit 8-character texts, not {length}.')


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
    return LatentHeads(self.latent_dim)(flatten(h))


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


def _check_halvable(length: int, num_halvings: int, module_name: str) -> None:
  """Raises ValueError unless `length` halves exactly `num_halvings` times."""
  if length % 2**num_halvings:
    raise ValueError(
        f'{module_name}: length {length} must be a multiple of {2**num_halvings} '
        f'for its {num_halvings} stride-2 layers.')


class _SequenceSizes(nn.Module):
  """The fields the sequence encoder and decoder share (see each for their meaning)."""

  latent_dim: int
  vocab_size: int
  length: int
  embed_dim: int = 128
  channels: tuple[int, ...] = (128, 256, 512)


class SequenceEncoder(_SequenceSizes):
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

  @nn.compact
  def __call__(self, text: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Maps one-hot text [B, L, V] to (mean [B, D], logvar [B, D])."""
    _check_halvable(self.length, len(self.channels), type(self).__name__)
    h = nn.relu(TorchConv(self.embed_dim, 1)(text))
    for features in self.channels:
      h = nn.relu(TorchConv(features, 4, stride=2, padding=1)(h))
    return LatentHeads(self.latent_dim)(flatten(h))


class SequenceDecoder(_SequenceSizes):
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
