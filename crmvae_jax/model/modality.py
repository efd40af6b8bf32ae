"""What each modality is: its network, its likelihood, its weight, and how it looks.

A `Modality` (built for a data set by `crmvae_jax.data.modalities`) turns the stored batch arrays of `crmvae_jax.data` (uint8 images, int32
tokens) into network inputs on the device, scores decoder outputs with the modality's
likelihood (docs/models.md: Laplace with scale 0.75 for images, a categorical over
logits for text), and turns outputs back into pictures or strings for figures. It also
defines, once, what the Python API takes as an input (`Modality.check_values`): uint8
images or floats in [0, 1] (the API's own outputs), integer token ids below the
vocabulary size, finite float vectors.

Likelihood weights follow the size rule of docs/models.md, written once for every data
set: lambda_m = max_k size(x_k) / size(x_m), where an image's size is its number of
elements and a text's size is its length. On MNIST-SVHN-Text this gives MNIST
3072/784, SVHN 1 and text 3072/8 = 384; on PolyMNIST every weight is 1.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.model import distributions as dist


@dataclasses.dataclass(frozen=True)
class Modality:
  """One modality of a data set.

  Attributes:
    name: the data set's key for it ('mnist', 'svhn', 'text', 'm0', ...).
    network: its `crmvae_jax.model.networks.NETWORKS` / `CLASSIFIERS` key, from the data
      set's entry in `crmvae_jax.data.registry`.
    shape: stored per-example shape: (H, W, C) for images, (L,) for text.
    vocab_size: alphabet or vocabulary size for text, None for images.
    likelihood_weight: lambda_m.
    kind: 'image' (stored uint8, seen in [0, 1]), 'text' (token ids) or 'vector'
      (stored float32, seen as it is).
    likelihood: 'laplace' (scale 0.75) or 'gaussian' (scale 1) around the decoder's
      output for images and vectors; a text's is always 'categorical' (set here).
    abbreviation: its short name in tables and figures (the paper's M, S, T); by
      default the name upper-cased.
    classifier: the key of its judge's network in
      `crmvae_jax.evaluation.classifier_networks.CLASSIFIERS`; by default its network's
      key (a user's own networks name the judge of their kind and size,
      `crmvae_jax.data.modalities`).
    private_dim: the size of its private (modality-specific) latent w_m beside the
      shared z (0: none). Its encoder then gives q(z|x_m) and q(w_m|x_m), its decoder
      reads (z, w_m) (`models.MultimodalVAE`).
    encoder_options, decoder_options: further fields a user's own encoder and decoder
      are built with (`networks.build`), as sorted (name, value) pairs, e.g.
      (("hidden", 64),): what a module instance given to `crmvae_jax.fit` set.
  """

  name: str
  network: str
  shape: tuple[int, ...]
  vocab_size: int | None
  likelihood_weight: float
  kind: str = "image"
  likelihood: str = "laplace"
  abbreviation: str = ""
  classifier: str = ""
  private_dim: int = 0
  encoder_options: tuple[tuple[str, object], ...] = ()
  decoder_options: tuple[tuple[str, object], ...] = ()

  def __post_init__(self):
    for field in ("encoder_options", "decoder_options"):  # hashable, whatever was given
      object.__setattr__(self, field, _frozen(dict(getattr(self, field))))
    if self.vocab_size is not None:  # text: a categorical over the vocabulary, always
      object.__setattr__(self, "likelihood", "categorical")
    if not self.abbreviation:
      object.__setattr__(self, "abbreviation", self.name.upper())
    if not self.classifier:
      object.__setattr__(self, "classifier", self.network)

  @property
  def is_text(self) -> bool:
    return self.vocab_size is not None

  @property
  def size(self) -> int:
    """Elements of an image, characters or tokens of a text (the weight rule's size)."""
    return math.prod(self.shape)

  def network_kwargs(self) -> dict[str, int]:
    """Its sizes, which its networks take where they declare them as fields
    (`networks.build`): a text's vocabulary and length, an image's channels, a vector's
    length."""
    if self.is_text:
      return {"vocab_size": self.vocab_size, "length": self.shape[0]}
    return {"out_channels": self.shape[-1], "size": self.shape[0]}

  def inputs(self, stored: jax.Array) -> jax.Array:
    """Stored batch -> network input: tokens to one-hot, vectors as they are, images to
    floats in [0, 1]: integer (uint8) pixels divided by 255, float pixels (already in
    [0, 1], as `display` returns them) as they are. The dtype is static under jit; the
    training pipeline always passes uint8."""
    if self.is_text:
      return jax.nn.one_hot(stored, self.vocab_size, dtype=jnp.float32)
    if self.kind == "vector" or jnp.issubdtype(stored.dtype, jnp.floating):
      return stored.astype(jnp.float32)
    return stored.astype(jnp.float32) / 255.0

  def check_values(self, values, argument: str) -> np.ndarray:
    """`values`, a batch [B, *shape] of this modality given to the Python API
    (`model.inference.TrainedModel`), as the array that `inputs` reads.

    Accepted, per kind (the one definition of an input):
      image: uint8 0..255 (the stored form); other integers within 0..255 (made uint8);
        floats in [0, 1] (what `display` returns, so a model's output can be fed back),
        read as they are.
      text: integer token ids in [0, vocab_size) (made int32).
      vector: finite floats (made float32).

    Args:
      values: an array-like [B, *shape], B >= 1.
      argument: how the caller's message names it, e.g. "inputs['mnist']".

    Returns:
      The checked array (numpy).

    Raises:
      TypeError: a dtype the kind does not take (bool, float token ids, text, ...).
      ValueError: a wrong shape, no examples, or values outside the accepted range.
    """
    array = np.asarray(values)
    self._check_shape(array, argument)
    if self.is_text:
      return self._checked_token_ids(array, argument)
    if self.kind == "vector":
      return self._checked_vectors(array, argument)
    return self._checked_pixels(array, argument)

  def _check_shape(self, array: np.ndarray, argument: str) -> None:
    if array.ndim == 0 or array.shape[1:] != self.shape:
      if self.is_text:
        form = f"token ids [B, L] with L = {self.shape[0]} (one text as [1, {self.shape[0]}])"
      elif self.kind == "vector":
        form = f"vectors [B, F] with F = {self.shape[0]}"
      else:
        form = f"images [B, H, W, C] = [B, {', '.join(map(str, self.shape))}]"
      raise ValueError(f"{argument} has examples of shape {array.shape[1:]}; the model reads "
                       f"{self.shape}: pass {form}.")
    if not len(array):
      raise ValueError(f"{argument} holds no examples (shape {array.shape}); pass a batch "
                       "of at least one.")

  def _checked_pixels(self, array: np.ndarray, argument: str) -> np.ndarray:
    accepted = "pass uint8 images 0..255 or floats in [0, 1]"
    if array.dtype == np.uint8:
      return array
    integer = np.issubdtype(array.dtype, np.integer)
    if not (integer or jnp.issubdtype(array.dtype, jnp.floating)):
      raise TypeError(f"{argument} is of dtype {array.dtype}; {accepted}.")
    if not integer and not np.isfinite(array).all():
      raise ValueError(f"{argument} holds NaN or infinite values; {accepted}.")
    low, high = array.min(), array.max()
    if integer and not 0 <= low <= high <= 255:
      raise ValueError(f"{argument} holds {array.dtype} values in [{low}, {high}]; {accepted}.")
    if integer:
      return array.astype(np.uint8)
    if not 0 <= low <= high <= 1:
      raise ValueError(f"{argument} holds floats in [{float(low):.4g}, {float(high):.4g}]; "
                       f"{accepted} (floats are read as they are, not divided by 255).")
    return array.astype(np.float32)

  def _checked_token_ids(self, array: np.ndarray, argument: str) -> np.ndarray:
    accepted = f"pass integer token ids in [0, {self.vocab_size})"
    if not np.issubdtype(array.dtype, np.integer):
      raise TypeError(f"{argument} is of dtype {array.dtype}; {accepted} (cast integral "
                      "floats with .astype(int)).")
    low, high = array.min(), array.max()
    if not 0 <= low <= high < self.vocab_size:
      raise ValueError(f"{argument} holds token ids in [{low}, {high}]; {accepted}, the "
                       f"model's vocabulary of {self.vocab_size}.")
    return array.astype(np.int32)

  def _checked_vectors(self, array: np.ndarray, argument: str) -> np.ndarray:
    if not jnp.issubdtype(array.dtype, jnp.floating):
      raise TypeError(f"{argument} is of dtype {array.dtype}; pass float vectors "
                      f"[B, {self.shape[0]}].")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below
      array = array.astype(np.float32)
    if not np.isfinite(array).all():
      raise ValueError(f"{argument} holds NaN or infinite values (in float32); pass finite "
                       "floats.")
    return array

  def log_likelihood(self, stored: jax.Array, output: jax.Array) -> jax.Array:
    """log p(x | decoder output) summed over the example's elements: [B]."""
    if self.is_text:
      return dist.categorical_log_likelihood(stored, output)
    if self.likelihood == "gaussian":
      return dist.gaussian_log_likelihood(self.inputs(stored), output)
    return dist.laplace_log_likelihood(self.inputs(stored), output)

  def display(self, output: np.ndarray) -> np.ndarray:
    """Decoder output -> what a person looks at: images in [0, 1], token ids [B, L] or
    vectors as they are."""
    if self.is_text:
      return np.asarray(output).argmax(-1)
    if self.kind == "vector":
      return np.asarray(output)
    return np.clip(np.asarray(output), 0.0, 1.0)


def _frozen(value):
  """`value` with every dict made sorted (key, value) pairs and every list a tuple, so a
  modality holding it stays hashable (Flax compares modules' fields)."""
  if isinstance(value, dict):
    return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
  if isinstance(value, (list, tuple)):
    return tuple(_frozen(v) for v in value)
  return value
