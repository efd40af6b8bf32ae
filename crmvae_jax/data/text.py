"""The character text of MNIST-SVHN-Text (docs/data.md).

A text is the English name of a digit written into `TEXT_LENGTH` = 8 characters at a
uniformly random start and padded with spaces, e.g. "  five  ". Characters are ids
into the reference's 71-character `ALPHABET`; a model sees them one-hot (or as
logits) over 71 classes.

The reference alphabet holds '-' twice (ids 36 and 59). Like the reference, which
looks characters up with `str.find`, `encode` maps '-' to its first id, 36; id 59
decodes to '-' as well but no encoded text ever holds it. Keeping both positions
keeps the 71 classes of the reference networks. Digit texts hold only lower-case
letters and spaces, so the duplicate never touches the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-,;.!?:'\"\\/|_@#$%^&*~`+-=<>()[]{} \n"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
               "nine")
TEXT_LENGTH = 8

SPACE_ID = ALPHABET.index(" ")
# ASCII code -> alphabet id (-1: not in the alphabet); `str.index` finds the first
# occurrence, so '-' gets id 36 as with the reference's `str.find`.
_FIRST_ID = {character: ALPHABET.index(character) for character in ALPHABET}
_ID_OF_ASCII = np.full(128, -1, dtype=np.int32)
_ID_OF_ASCII[[ord(character) for character in _FIRST_ID]] = list(_FIRST_ID.values())
_CHARACTERS = np.array(list(ALPHABET))
_LONGEST_NAME = max(len(name) for name in DIGIT_NAMES)
# [10, _LONGEST_NAME] ids of each digit name, padded with spaces.
_DIGIT_NAME_IDS = np.array(
    [[ALPHABET.index(c) for c in name.ljust(_LONGEST_NAME)] for name in DIGIT_NAMES],
    dtype=np.int32)
_DIGIT_NAME_LENGTHS = np.array([len(name) for name in DIGIT_NAMES])


def encode(strings: Sequence[str]) -> np.ndarray:
  """Turns equal-length strings into alphabet ids (`place` pads names to a model's
  text length first).

  Args:
    strings: N strings of one length L, every character in `ALPHABET`.

  Returns:
    int32 [N, L] ids; '-' maps to its first id (see the module docstring).

  Raises:
    ValueError: if the strings differ in length or hold a character outside
      `ALPHABET`.
  """
  lengths = {len(s) for s in strings}
  if len(lengths) > 1:
    raise ValueError(f"encode: strings must share one length, got lengths {sorted(lengths)}.")
  length = lengths.pop() if lengths else 0
  try:
    codes = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)
  except UnicodeEncodeError as error:
    raise ValueError(f"encode: non-ASCII character in {strings!r}.") from error
  ids = _ID_OF_ASCII[codes]
  if np.any(ids < 0):
    unknown = sorted({chr(c) for c in codes[ids < 0]})
    raise ValueError(f"encode: characters {unknown} are not in the alphabet.")
  return ids.reshape(len(strings), length)


def place(strings: Sequence[str], length: int = TEXT_LENGTH,
          rng: np.random.Generator | None = None) -> np.ndarray:
  """Writes texts as the training data does: each in a row of `length` characters,
  space padded, its last character always a space; ready for a model's text input.

      model.generate({"text": text.place(["four"])}, ["mnist"])

  Args:
    strings: N texts (e.g. digit names), each at most `length` - 1 characters of
      `ALPHABET`.
    length: characters per row (the model's text length; 8 for MNIST-SVHN-Text).
    rng: draws each text's start uniformly from 0..length-1-len(text), as the training
      data does; None: every text starts at 0.

  Returns:
    int32 [N, length] alphabet ids.

  Raises:
    ValueError: a text too long for `length`, or a character outside `ALPHABET`.
  """
  strings = list(strings)
  too_long = [s for s in strings if len(s) > length - 1]
  if too_long:
    raise ValueError(f"place: {too_long} leave no room for the trailing space in {length} "
                     "characters; shorten them or pass a larger length.")
  starts = (np.zeros(len(strings), int) if rng is None
            else rng.integers(0, [length - len(s) for s in strings]))
  return encode([" " * start + s + " " * (length - start - len(s))
                 for start, s in zip(starts, strings)])


def decode(ids: np.ndarray) -> list[str]:
  """Turns alphabet ids back into strings.

  Args:
    ids: int [N, L] ids in 0..70 (e.g. the argmax of a text decoder's logits).

  Returns:
    N strings of length L.
  """
  return ["".join(row) for row in _CHARACTERS[np.asarray(ids)]]


def digit_texts(labels: np.ndarray, rng: np.random.Generator,
                length: int = TEXT_LENGTH) -> np.ndarray:
  """Writes each digit's English name at a uniformly random start, space padded.

  As the reference (`random.randint(0, length - 1 - len(word))`, both ends
  inclusive), the start is uniform over 0..length-1-len(word): the last character
  is always a space.

  Args:
    labels: int [N] digits 0..9.
    rng: the generator that draws the N start positions.
    length: characters per text; at least one more than the longest name (5).

  Returns:
    int32 [N, length] alphabet ids.
  """
  if length <= _LONGEST_NAME:
    raise ValueError(f"digit_texts: length {length} leaves no room for 'three' and a space.")
  labels = np.asarray(labels)
  name_lengths = _DIGIT_NAME_LENGTHS[labels]
  starts = rng.integers(0, length - name_lengths)  # exclusive high: 0..length-1-len
  offsets = np.arange(length)[None, :] - starts[:, None]
  in_name = (offsets >= 0) & (offsets < name_lengths[:, None])
  name_ids = _DIGIT_NAME_IDS[labels[:, None], np.clip(offsets, 0, _LONGEST_NAME - 1)]
  return np.where(in_name, name_ids, SPACE_ID).astype(np.int32)


def redraw_starts(ids: jax.Array, rng: jax.Array) -> jax.Array:
  """Moves every digit name of `ids` to a new uniformly random start, on the device.

  The reference's data loader writes each name at a fresh start whenever it loads a
  pair; `digit_texts` draws the start once per pair. Redrawing at every training step
  (`config.data.text_redraw`) gives the reference's augmentation, so the image encoder
  cannot learn a pair's fixed text position. Same distribution as `digit_texts`: a
  name of n characters starts at 0..L-1-n.

  Args:
    ids: int [B, L] digit texts (one name, spaces around it).
    rng: PRNG key.

  Returns:
    int32 [B, L]: the same names, each at its new start, space padded.
  """
  length = ids.shape[-1]
  in_name = ids != SPACE_ID
  name_lengths = jnp.sum(in_name, axis=-1)
  old_starts = jnp.argmax(in_name, axis=-1)
  new_starts = jax.random.randint(rng, name_lengths.shape, 0, length - name_lengths)
  offsets = jnp.arange(length) - new_starts[:, None]
  source = jnp.clip(old_starts[:, None] + offsets, 0, length - 1)
  moved = jnp.take_along_axis(ids, source, axis=-1)
  inside = (offsets >= 0) & (offsets < name_lengths[:, None])
  return jnp.where(inside, moved, SPACE_ID).astype(jnp.int32)


def redraw_augmentation(modalities: Sequence) -> Callable[[dict, jax.Array], dict]:
  """augment(batch, rng) for `model.models.make_loss_fn`: every text modality's digit
  names redrawn at new starts (`redraw_starts`), each with its own key folded in from
  `rng` by the modality's index (`config.data.text_redraw`)."""

  def augment(batch: dict, rng: jax.Array) -> dict:
    return {**batch, **{m.name: redraw_starts(batch[m.name], jax.random.fold_in(rng, index))
                        for index, m in enumerate(modalities) if m.is_text}}

  return augment
