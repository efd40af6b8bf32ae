"""A word-level vocabulary for captions (CUB, docs/data.md).

Captions are lower-cased and split by `tokenize`: a token is a run of letters and
digits, or a single punctuation character, and whitespace separates tokens without
being one ("this bird's beak, red." -> this bird ' s beak , red .). MMVAE tokenised its
CUB captions with NLTK's word tokenizer; this regular expression needs no extra
dependency and keeps punctuation as tokens in the same way.

Ids 0, 1 and 2 are the special tokens `<pad>`, `<eos>` and `<unk>`; the words follow
by decreasing training count (ties alphabetical), so the same captions give the same
ids on every machine. A vocabulary is built from training captions only: a test word
never seen in training encodes to `<unk>`.
"""

from __future__ import annotations

import collections
import json
import pathlib
import re
from collections.abc import Sequence

import numpy as np

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
# A token: a run of letters/digits, or any one character that is neither that nor space.
_TOKEN_PATTERN = re.compile(r"[^\W_]+|[^\w\s]|_")


def tokenize(caption: str) -> list[str]:
  """Lower-cases `caption` and splits it on whitespace and punctuation.

  Args:
    caption: one caption.

  Returns:
    Its tokens: runs of letters and digits, and each punctuation character on its own.
  """
  return _TOKEN_PATTERN.findall(caption.lower())


class Vocabulary:
  """Maps words to integer ids and back.

  Attributes:
    words: the token of each id; `words[:3]` are `<pad>`, `<eos>`, `<unk>`.
  """

  def __init__(self, words: Sequence[str]):
    """Makes a vocabulary whose id i is `words[i]`.

    Args:
      words: the tokens by id, starting with `SPECIAL_TOKENS`, without repeats.

    Raises:
      ValueError: `words` does not start with the special tokens or repeats a word.
    """
    if tuple(words[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
      raise ValueError(f"Vocabulary must start with {SPECIAL_TOKENS}, got {words[:3]}.")
    if len(set(words)) != len(words):
      raise ValueError("Vocabulary words must be distinct.")
    self.words = tuple(words)
    self._ids = {word: i for i, word in enumerate(self.words)}

  @classmethod
  def build(cls, captions: Sequence[str], min_count: int = 3,
            max_size: int | None = None) -> Vocabulary:
    """Builds the vocabulary of a set of (training) captions.

    Args:
      captions: the training captions; test captions must not be included.
      min_count: a word enters the vocabulary if it occurs at least this often
        (MMVAE's CUB vocabulary used 3).
      max_size: if given, the largest vocabulary size, special tokens included; the
        most frequent words are kept.

    Returns:
      The vocabulary: special tokens, then words by decreasing count, ties sorted.
    """
    counts = collections.Counter(
        token for caption in captions for token in tokenize(caption))
    frequent = sorted((word for word, count in counts.items()
                       if count >= min_count and word not in SPECIAL_TOKENS),
                      key=lambda word: (-counts[word], word))
    if max_size is not None:
      frequent = frequent[:max(max_size - len(SPECIAL_TOKENS), 0)]
    return cls(SPECIAL_TOKENS + tuple(frequent))

  def __len__(self) -> int:
    return len(self.words)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Vocabulary) and self.words == other.words

  def encode(self, captions: Sequence[str], max_length: int = 32) -> np.ndarray:
    """Token ids of captions, each ended by `<eos>` and padded to `max_length`.

    A caption with more than `max_length - 1` tokens is cut to its first
    `max_length - 1`, so that `<eos>` always fits (as MMVAE's CUB loader did).

    Args:
      captions: N captions.
      max_length: L, the length of every encoded caption, `<eos>` included.

    Returns:
      int32 [N, L]: word ids (`<unk>` for unknown words), `<eos>`, then `<pad>` (0).
    """
    if max_length < 1:
      raise ValueError(f"max_length must be at least 1, got {max_length}.")
    ids = np.full((len(captions), max_length), PAD_ID, dtype=np.int32)
    for row, caption in enumerate(captions):
      tokens = tokenize(caption)[:max_length - 1]
      ids[row, :len(tokens)] = [self._ids.get(token, UNK_ID) for token in tokens]
      ids[row, len(tokens)] = EOS_ID
    return ids

  def decode(self, ids: np.ndarray) -> list[str]:
    """Captions from token ids: tokens joined by spaces, up to the first `<eos>`.

    Args:
      ids: int [N, L] token ids.

    Returns:
      N strings; `<pad>` is dropped, `<unk>` is kept as the text "<unk>".
    """
    captions = []
    for row in np.asarray(ids):
      tokens = []
      for token_id in row.tolist():
        if token_id == EOS_ID:
          break
        if token_id != PAD_ID:
          tokens.append(self.words[token_id])
      captions.append(" ".join(tokens))
    return captions

  def save(self, path: str | pathlib.Path) -> None:
    """Writes the vocabulary as JSON: {"words": [token of id 0, id 1, ...]}."""
    pathlib.Path(path).write_text(json.dumps({"words": list(self.words)}), encoding="utf-8")

  @classmethod
  def load(cls, path: str | pathlib.Path) -> Vocabulary:
    """Reads a vocabulary written by `save`."""
    return cls(json.loads(pathlib.Path(path).read_text(encoding="utf-8"))["words"])
