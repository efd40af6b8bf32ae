"""CUB image-caption: Caltech-UCSD Birds 200-2011 images with ten captions each.

docs/data.md (the paper's appendix A). Images come from the TFDS data set
`caltech_birds2011` (5,994 train / 5,794 test images over the same 200 classes; we keep
TFDS's split, where MMVAE used Reed et al.'s class-disjoint one) and are resized, whole
and without keeping the aspect ratio, to 64x64 with bilinear filtering, as MMVAE's
`transforms.Resize([64, 64])` did. No image features are extracted.

Captions are Reed et al. (2016)'s, which TFDS does not carry: the user supplies the
directory `text_c10` of their `cub_icml` archive with `--config.data.captions_dir=DIR`.
The layout expected is

    <captions_dir>/<class directory>/<image name>.txt

one caption per line, ten lines per file, e.g.
`text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.txt`. The key that
matches an image to its file is TFDS's `image/filename` feature, the image's path in
the CUB archive (`CUB_200_2011/images/001.Black_footed_Albatross/
Black_Footed_Albatross_0009_34.jpg`): its last directory and its name with `.txt` for
`.jpg`.

Each (image, caption) pair is one row of the data set, so an epoch sees every image
ten times, once with each caption: images are stored once and indexed ten times.
Captions are word ids over a vocabulary built from the training captions only
(`crmvae_jax.data.vocabulary`).
"""

from __future__ import annotations

import pathlib
import typing
from collections.abc import Sequence

import ml_collections
import numpy as np
from ml_collections import config_dict
from PIL import Image

from crmvae_jax.common import field_checks
from crmvae_jax.data.base import DataUnavailableError, Loader, MultimodalDataset, base_data_config
from crmvae_jax.common.errors import UserError
from crmvae_jax.data.vocabulary import Vocabulary

NAME = "cub"
TFDS_NAME = "caltech_birds2011"
MODALITIES = ("image", "caption")
IMAGE_SIZE = 64
CAPTIONS_PER_IMAGE = 10
CAPTIONS_DIR_FLAG = "--config.data.captions_dir=DIR"
# Independent random streams for the two splits' subsets (max_train / max_test).
_SPLIT_STREAMS = {"train": 0, "test": 1}


class ImageSplit(typing.NamedTuple):
  """The images of one split, before captions are attached.

  Attributes:
    images: uint8 [N, 64, 64, 3].
    filenames: N image paths as in the CUB archive; they locate the caption files.
    labels: int [N] bird class, 0..199.
  """

  images: np.ndarray
  filenames: Sequence[str]
  labels: np.ndarray


def get_data_config() -> ml_collections.ConfigDict:
  """The default data config for CUB image-caption.

  Returns:
    A ConfigDict with fields `name`, `data_dir` (TFDS data directory; None: TFDS's
    default), `captions_dir` (the `text_c10` directory; required), `download`,
    `max_caption_length` (L, `<eos>` included; MMVAE used 32), `min_word_count` (a
    training word enters the vocabulary at this count; MMVAE used 3), `seed` (draws
    the image subsets) and `max_train` / `max_test` (None: every image of the split;
    else that many images, drawn at random).
  """
  return base_data_config(NAME, {
      "data_dir": config_dict.placeholder(str),
      "captions_dir": config_dict.placeholder(str),
      "download": True,
      "max_caption_length": 32,
      "min_word_count": 3,
      "max_train": config_dict.placeholder(int),
      "max_test": config_dict.placeholder(int),
  })


def check_config(config_data: ml_collections.ConfigDict) -> None:
  """Refuses caption settings that cannot build a vocabulary (`data.check_fields`)."""
  for field in ("max_caption_length", "min_word_count"):
    field_checks.check_number({"data": config_data}, f"data.{field}", 1, integer=True)


def caption_path(captions_dir: str | pathlib.Path, image_filename: str) -> pathlib.Path:
  """The caption file of an image: `<captions_dir>/<class directory>/<name>.txt`.

  Args:
    captions_dir: the `text_c10` directory.
    image_filename: the image's path in the CUB archive, e.g.
      `CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg`.

  Returns:
    The path of its caption file.
  """
  image_path = pathlib.PurePosixPath(image_filename.replace("\\", "/"))
  return pathlib.Path(captions_dir) / image_path.parent.name / f"{image_path.stem}.txt"


def _existing_captions_dir(captions_dir: str | pathlib.Path | None) -> pathlib.Path:
  """`captions_dir` as a path, if it names an existing directory; else the error."""
  if captions_dir is None:
    raise DataUnavailableError(
        f"CUB needs Reed et al.'s caption directory text_c10 and no config names one; "
        f"supply it with {CAPTIONS_DIR_FLAG}.")
  path = pathlib.Path(captions_dir).expanduser()
  if not path.is_dir():
    raise DataUnavailableError(
        f"CUB captions directory {path} does not exist; supply Reed et al.'s text_c10 "
        f"directory (<class>/<image>.txt, ten captions a file) with {CAPTIONS_DIR_FLAG}.")
  return path


def read_captions(captions_dir: str | pathlib.Path,
                  image_filenames: Sequence[str]) -> list[str]:
  """The ten captions of every image, image after image.

  Args:
    captions_dir: the `text_c10` directory (layout in the module docstring).
    image_filenames: N image paths as in the CUB archive.

  Returns:
    N * 10 captions: those of image i are entries 10 i .. 10 i + 9, in file order.

  Raises:
    DataUnavailableError: the directory or an image's caption file is missing.
    UserError: a caption file holds fewer than ten non-empty lines.
  """
  captions_dir = _existing_captions_dir(captions_dir)
  captions = []
  for image_filename in image_filenames:
    path = caption_path(captions_dir, image_filename)
    if not path.is_file():
      raise DataUnavailableError(
          f"CUB caption file {path} for image {image_filename} is missing; point "
          f"{CAPTIONS_DIR_FLAG} at the complete text_c10 directory.")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < CAPTIONS_PER_IMAGE:
      raise UserError(f"CUB caption file {path} holds {len(lines)} captions, not "
                      f"{CAPTIONS_PER_IMAGE}; point {CAPTIONS_DIR_FLAG} at an intact text_c10 "
                      "directory.")
    captions.extend(lines[:CAPTIONS_PER_IMAGE])
  return captions


def pair_with_captions(split: ImageSplit, captions: Sequence[str], vocabulary: Vocabulary,
                       max_caption_length: int) -> MultimodalDataset:
  """One data set row per (image, caption) pair.

  Args:
    split: N images with their labels.
    captions: the N * 10 captions of `read_captions`, ten per image in image order.
    vocabulary: the vocabulary that encodes the captions.
    max_caption_length: L, the length of every encoded caption.

  Returns:
    A data set of N * 10 pairs with modalities ('image', 'caption'): arrays image uint8
    [N, 64, 64, 3] and caption int32 [N * 10, L]; pair j uses image j // 10 and caption
    j, and is labelled with the class of its image. Its `vocabularies` are
    {'caption': vocabulary}, which give the caption networks their class count.
  """
  num_images = len(split.images)
  if len(captions) != num_images * CAPTIONS_PER_IMAGE:
    raise ValueError(f"{len(captions)} captions for {num_images} images; expected "
                     f"{CAPTIONS_PER_IMAGE} each.")
  image_ids = np.repeat(np.arange(num_images), CAPTIONS_PER_IMAGE)
  return MultimodalDataset(
      modalities=MODALITIES,
      arrays={"image": split.images,
              "caption": vocabulary.encode(captions, max_caption_length)},
      indices={"image": image_ids, "caption": np.arange(len(captions))},
      labels=np.asarray(split.labels)[image_ids],
      vocabularies={"caption": vocabulary})


def build_datasets(
    train_split: ImageSplit, test_split: ImageSplit, captions_dir: str | pathlib.Path,
    max_caption_length: int = 32, min_word_count: int = 3,
) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Reads the captions of both splits, builds the vocabulary on training captions,
  and pairs images with captions.

  Args:
    train_split: the training images.
    test_split: the test images.
    captions_dir: the `text_c10` directory.
    max_caption_length: L, the length of every encoded caption.
    min_word_count: the fewest training occurrences that put a word in the vocabulary.

  Returns:
    (train, test): the paired data sets of `pair_with_captions`, sharing one
    vocabulary, `train.vocabularies['caption']`.
  """
  train_captions = read_captions(captions_dir, train_split.filenames)
  test_captions = read_captions(captions_dir, test_split.filenames)
  vocabulary = Vocabulary.build(train_captions, min_count=min_word_count)
  return (pair_with_captions(train_split, train_captions, vocabulary, max_caption_length),
          pair_with_captions(test_split, test_captions, vocabulary, max_caption_length))


def resize_image(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
  """Resizes a whole image to size x size with bilinear filtering (MMVAE's Resize).

  Args:
    image: uint8 [H, W, 3] (TFDS gives grey CUB images three channels).

  Returns:
    uint8 [size, size, 3].
  """
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def read_tfds_split(split: str, data_dir: str | None = None, download: bool = True,
                    max_images: int | None = None, seed: int = 0) -> ImageSplit:
  """Reads one split of TFDS `caltech_birds2011`, resizing images to 64x64 once.

  Args:
    split: 'train' or 'test'.
    data_dir: the TFDS data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    download: whether TFDS may download and prepare the data set if it is missing.
    max_images: if given, read only this many images, a random subset in TFDS order.
    seed: seeds the subset; the two splits draw from independent streams.

  Returns:
    The split's images (uint8 [N, 64, 64, 3]), archive file names and class labels.

  Raises:
    DataUnavailableError: TFDS cannot provide the data set.
  """
  # Imported on use, so that loading configs/cub.py does not import tensorflow_datasets.
  import tensorflow_datasets as tfds

  from crmvae_jax.data import tfds_arrays

  # Segmentation masks are not used: skip decoding one PNG per image.
  source = tfds_arrays.open_source(
      TFDS_NAME, split, data_dir, download,
      decoders={"segmentation_mask": tfds.decode.SkipDecoding()})
  ids = np.arange(len(source))
  if max_images is not None and max_images < len(ids):
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
    ids = np.sort(rng.choice(ids, max_images, replace=False))
  images, filenames, labels = [], [], []
  # One example at a time: a split's full-size images would take gigabytes at once.
  for example in (source[int(i)] for i in ids):
    images.append(resize_image(example["image"]))
    filenames.append(example["image/filename"].decode())
    labels.append(example["label"])
  return ImageSplit(np.stack(images), filenames, np.asarray(labels, dtype=np.int32))


def load(config: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Loads CUB image-caption as (train, test) data sets.

  Args:
    config: a data config as made by `get_data_config`.

  Returns:
    (train, test): the data sets of `build_datasets`; both carry the caption
    vocabulary in `vocabularies['caption']`, whose length is the caption networks'
    class count.

  Raises:
    DataUnavailableError: the captions directory or the TFDS images are missing.
  """
  # Checked first: reading and resizing the images takes a while.
  captions_dir = _existing_captions_dir(config.captions_dir)
  train_split = read_tfds_split("train", config.data_dir, config.download,
                                config.max_train, config.seed)
  test_split = read_tfds_split("test", config.data_dir, config.download,
                               config.max_test, config.seed)
  return build_datasets(train_split, test_split, captions_dir, config.max_caption_length,
                        config.min_word_count)

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load, check_config=check_config)
