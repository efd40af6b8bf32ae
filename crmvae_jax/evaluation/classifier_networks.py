"""The coherence judges' networks: a convolutional image classifier, a 1-D convolutional
text classifier and a vector classifier, and `CLASSIFIERS`, the settings of each
network name's judge.

They are ours (the reference code's classifiers are not part of what the paper
specifies): each maps a modality to logits [B, num_classes], is deterministic unless
called with `train=True` (dropout, with a 'dropout' rng), and holds no batch statistics,
so a trained classifier is just its params. The layers are `crmvae_jax.model.layers`'.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from crmvae_jax.model.layers import TorchConv, TorchDense


def _flatten(x: jax.Array) -> jax.Array:
  """[B, ...] -> [B, prod(...)]."""
  return x.reshape(x.shape[0], -1)


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


# Network name -> its judge: the class and the settings that differ per data set (the
# receptive field a text needs, the channels an image size needs, the default logits).
# Each entry is called as `CLASSIFIERS[name](num_classes=...)`, or with no argument.
CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    # 28 -> 14 -> 7 -> 3, 10 digits.
    'mnist': functools.partial(ImageClassifier, num_classes=10, channels=(32, 64, 128)),
    # 32 -> 16 -> 8 -> 4 -> 2.
    'svhn': functools.partial(ImageClassifier, num_classes=10, channels=(32, 64, 128, 256)),
    # 8 characters -> 2 positions.
    'mst_text': functools.partial(TextClassifier, num_classes=10, channels=(128, 128)),
    # One per modality, 28 -> 3.
    'polymnist': functools.partial(ImageClassifier, num_classes=10, channels=(32, 64, 128)),
    # 64 -> 4; 40 logits: CelebA's attributes (one sigmoid each); num_classes=200 for CUB.
    'image64': functools.partial(ImageClassifier, num_classes=40, channels=(64, 128, 256, 512)),
    # CUB captions: a receptive field of 22 words, 200 species.
    'caption': functools.partial(TextClassifier, num_classes=200, channels=(128, 256, 256)),
    # Bimodal CelebA text: a receptive field of 46 characters, 40 attributes.
    'char_text': functools.partial(TextClassifier, num_classes=40,
                                   channels=(128, 128, 256, 256)),
    # A user's own data (crmvae_jax.data.arrays).
    'sequence': TextClassifier,
    'vector': VectorClassifier,
}
