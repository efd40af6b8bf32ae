"""Bimodal CelebA: face images paired with a text of their attributes.

docs/data.md (the paper's appendix A), following Sutter et al. (2020, 2021):
- image: the aligned 218x178 CelebA face, center-cropped to 148x148 and resized to
  64x64 with bicubic filtering, as MoPoE's `get_transform_celeba` does;
- text: the names of the image's positive attributes, lower-cased with underscores
  as spaces, joined by ', ' in the attribute file's order ("5 o clock shadow, bangs,
  smiling"), written at a random start index into a string of 256 spaces, as
  characters of the 71-character alphabet of `crmvae_jax.data.text`. The start is
  uniform over 0..256 - len, drawn once per image from a seeded generator (MoPoE
  drew it once too, when it wrote its text file). The rare text longer than 256
  characters is cut to its first 256.
- labels: the 40 attributes as 0/1, for attribute classification at evaluation.

Sources, in order: a directory of CelebA files given by `--config.data.image_dir=DIR`
(TFDS's Google Drive download often fails), else the TFDS data set `celeb_a`. The
directory holds the aligned jpgs (`img_align_celeba/000001.jpg`, ...), and the two
standard text files `list_attr_celeba.txt` and `list_eval_partition.txt` lie in it or
in its parent directory, where CelebA's archives put them.

Splits: CelebA's partition 0 trains; partition 2 (TFDS 'test') tests by default.
MoPoE evaluated on partition 1 ('validation'), which `test_split` selects.
"""

from __future__ import annotations

import concurrent.futures
import pathlib
import typing
from collections.abc import Sequence

import ml_collections
import numpy as np
from ml_collections import config_dict
from PIL import Image

from crmvae_jax.common import field_checks
from crmvae_jax.data import text
from crmvae_jax.data.base import DataUnavailableError, Loader, MultimodalDataset, base_data_config

NAME = "celeba"
TFDS_NAME = "celeb_a"
MODALITIES = ("image", "text")
IMAGE_SIZE = 64
CROP_SIZE = 148
TEXT_LENGTH = 256
# CelebA's 40 attributes, in the order of list_attr_celeba.txt (and of TFDS).
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")
ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
# list_eval_partition.txt's partition number of each split (TFDS's split names).
PARTITIONS = {"train": 0, "validation": 1, "test": 2}
# Random streams: [seed, partition, _SUBSET_STREAM or _TEXT_STREAM], so that each
# split's subset and text starts are independent draws.
_SUBSET_STREAM, _TEXT_STREAM = 0, 1
_SOURCE_FLAGS = ("--config.data.image_dir=DIR (CelebA jpgs with list_attr_celeba.txt "
                 "and list_eval_partition.txt) or --config.data.data_dir=DIR (TFDS "
                 "celeb_a prepared as array_record)")


class FaceSplit(typing.NamedTuple):
  """The faces of one split, before texts are attached.

  Attributes:
    images: uint8 [N, 64, 64, 3].
    attributes: bool [N, 40], in `ATTRIBUTE_NAMES` order.
  """

  images: np.ndarray
  attributes: np.ndarray


def get_data_config() -> ml_collections.ConfigDict:
  """The default data config for Bimodal CelebA.

  Returns:
    A ConfigDict with fields `name`, `image_dir` (a directory of CelebA files, see the
    module docstring; None: read TFDS), `data_dir` (TFDS data directory), `download`,
    `text_length` (256), `test_split` ('test', or 'validation' as MoPoE), `seed`
    (text starts and subsets) and `max_train` / `max_test` (None: every image of the
    split; else that many images, drawn at random).
  """
  return base_data_config(NAME, {
      "image_dir": config_dict.placeholder(str),
      "data_dir": config_dict.placeholder(str),
      "download": True,
      "text_length": TEXT_LENGTH,
      "test_split": "test",
      "max_train": config_dict.placeholder(int),
      "max_test": config_dict.placeholder(int),
  })


def check_config(config_data: ml_collections.ConfigDict) -> None:
  """Refuses a text length that holds no character (`data.check_fields`)."""
  field_checks.check_number({"data": config_data}, "data.text_length", 1, integer=True)


def attribute_text(attributes: np.ndarray, names: Sequence[str],
                   rng: np.random.Generator, length: int = TEXT_LENGTH) -> np.ndarray:
  """Writes each row's positive attribute names at a random start in a blank string.

  Args:
    attributes: bool [N, K]: whether image n has attribute k.
    names: the K attribute names, e.g. `ATTRIBUTE_NAMES`; lower-cased, underscores
      read as spaces.
    rng: draws the start index of each row, uniform over 0..length - len(text).
    length: L, the length of every text.

  Returns:
    int32 [N, L] ids into `text.ALPHABET`: spaces, the names joined by ', ', spaces.
  """
  words = np.array([name.lower().replace("_", " ") for name in names], dtype=object)
  descriptions = [", ".join(words[row])[:length] for row in np.asarray(attributes, bool)]
  lengths = np.array([len(description) for description in descriptions], dtype=np.int64)
  starts = rng.integers(0, length - lengths + 1)
  return text.encode([
      " " * start + description + " " * (length - start - len(description))
      for start, description in zip(starts.tolist(), descriptions)])


def crop_and_resize(image: Image.Image) -> np.ndarray:
  """MoPoE's CelebA transform: a central 148x148 crop, resized bicubically to 64x64.

  Args:
    image: a face, 218x178 as CelebA's aligned images.

  Returns:
    uint8 [64, 64, 3].
  """
  top = (image.height - CROP_SIZE) // 2
  left = (image.width - CROP_SIZE) // 2
  crop = image.convert("RGB").crop((left, top, left + CROP_SIZE, top + CROP_SIZE))
  return np.asarray(crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))


def pair_with_text(split: FaceSplit, rng: np.random.Generator,
                   text_length: int = TEXT_LENGTH) -> MultimodalDataset:
  """The faces and their attribute texts as a data set, one pair per face.

  Args:
    split: N faces with their attributes.
    rng: draws the start index of each text.
    text_length: L, the length of every text.

  Returns:
    A data set with modalities ('image', 'text'): arrays image uint8 [N, 64, 64, 3]
    and text int32 [N, L], pair n using row n of both; labels int32 [N, 40] (0/1).
  """
  num_faces = len(split.images)
  return MultimodalDataset(
      modalities=MODALITIES,
      arrays={"image": split.images,
              "text": attribute_text(split.attributes, ATTRIBUTE_NAMES, rng, text_length)},
      indices={modality: np.arange(num_faces) for modality in MODALITIES},
      labels=split.attributes.astype(np.int32))


def _subset_rng(seed: int, split: str) -> np.random.Generator:
  """The generator that draws a split's subset of images."""
  return np.random.default_rng([seed, PARTITIONS[split], _SUBSET_STREAM])


def _empty_faces(num_faces: int) -> np.ndarray:
  """uint8 [N, 64, 64, 3] to fill face by face: no list of 160k faces to stack."""
  return np.empty((num_faces, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)


def _subset(num_images: int, max_images: int | None,
            rng: np.random.Generator) -> np.ndarray:
  """Sorted ids of `max_images` of `num_images` images drawn by `rng` (all if None)."""
  if max_images is None or max_images >= num_images:
    return np.arange(num_images)
  return np.sort(rng.choice(num_images, max_images, replace=False))


def _find_file(image_dir: pathlib.Path, name: str) -> pathlib.Path:
  """`name` in `image_dir` or its parent, or the error naming both places."""
  for directory in (image_dir, image_dir.parent):
    if (directory / name).is_file():
      return directory / name
  raise DataUnavailableError(
      f"CelebA file {name} is in neither {image_dir} nor {image_dir.parent}; pass "
      f"{_SOURCE_FLAGS}.")


def read_attribute_file(path: str | pathlib.Path) -> tuple[list[str], np.ndarray]:
  """Reads CelebA's `list_attr_celeba.txt`.

  The file's first line is the image count, its second the 40 attribute names, then
  one line per image: `000001.jpg -1 1 1 -1 ...` (1: present, -1: absent).

  Args:
    path: the attribute file.

  Returns:
    (file names [N], bool [N, 40] attributes in `ATTRIBUTE_NAMES` order).
  """
  lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
  columns = [ATTRIBUTE_NAMES.index(name) for name in lines[1].split()]
  rows = [line.split() for line in lines[2:] if line.strip()]
  values = np.array([row[1:] for row in rows], dtype=np.int64)
  attributes = np.zeros((len(rows), len(ATTRIBUTE_NAMES)), dtype=bool)
  attributes[:, columns] = values > 0
  return [row[0] for row in rows], attributes


def read_partition_file(path: str | pathlib.Path) -> dict[str, int]:
  """Reads CelebA's `list_eval_partition.txt`: `000001.jpg 0` lines -> {name: 0/1/2}."""
  lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
  return {name: int(partition) for name, partition in
          (line.split() for line in lines if line.strip())}


def read_directory_split(image_dir: str | pathlib.Path, split: str,
                         max_images: int | None = None, seed: int = 0) -> FaceSplit:
  """Reads one split of CelebA from a directory of its original files.

  Args:
    image_dir: the directory of aligned jpgs (layout in the module docstring).
    split: 'train', 'validation' or 'test' (partition 0, 1 or 2).
    max_images: if given, read only this many images, a random subset.
    seed: seeds the subset.

  Returns:
    The split's faces, cropped and resized, in file name order.

  Raises:
    DataUnavailableError: the directory, a text file or an image is missing.
  """
  image_dir = pathlib.Path(image_dir).expanduser()
  if not image_dir.is_dir():
    raise DataUnavailableError(f"CelebA image directory {image_dir} does not exist; pass "
                               f"{_SOURCE_FLAGS}.")
  filenames, attributes = read_attribute_file(_find_file(image_dir, ATTRIBUTE_FILE))
  partitions = read_partition_file(_find_file(image_dir, PARTITION_FILE))
  in_split = np.array([partitions.get(name) == PARTITIONS[split] for name in filenames],
                      dtype=bool)
  order = np.flatnonzero(in_split)[np.argsort(np.array(filenames)[in_split], kind="stable")]
  order = order[_subset(len(order), max_images, _subset_rng(seed, split))]
  paths = [image_dir / filenames[i] for i in order]
  missing = [path for path in paths if not path.is_file()]
  if missing:
    raise DataUnavailableError(
        f"CelebA image {missing[0]} (one of {len(missing)} missing) is not in "
        f"{image_dir}; pass {_SOURCE_FLAGS}.")

  def read_face(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as image:
      return crop_and_resize(image)

  images = _empty_faces(len(paths))
  # Pillow releases the GIL while decoding and resizing: threads overlap the work.
  with concurrent.futures.ThreadPoolExecutor() as pool:
    for i, face in enumerate(pool.map(read_face, paths)):
      images[i] = face
  return FaceSplit(images, attributes[order])


def _tfds_source(split: str, data_dir: str | None, download: bool):
  """A random-access source over a split of `celeb_a`, prepared if need be.

  Preparing and its failures are `tfds_arrays`'s; the message also names the image
  directory, CelebA's other source.
  """
  # Imported on use, so that loading configs/celeba.py does not import tensorflow_datasets.
  from crmvae_jax.data import tfds_arrays

  try:
    return tfds_arrays.open_source(TFDS_NAME, split, data_dir, download)
  except DataUnavailableError as error:
    raise DataUnavailableError(
        f"{str(error).rstrip('.')}; or pass --config.data.image_dir=DIR naming a "
        f"directory of CelebA jpgs with {ATTRIBUTE_FILE} and {PARTITION_FILE}.") from error


def read_tfds_split(split: str, data_dir: str | None = None, download: bool = True,
                    max_images: int | None = None, seed: int = 0) -> FaceSplit:
  """Reads one split of TFDS `celeb_a`, cropping and resizing images once.

  Args:
    split: 'train', 'validation' or 'test'.
    data_dir: the TFDS data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    download: whether TFDS may download and prepare the data set if it is missing.
    max_images: if given, read only this many images, a random subset in TFDS order.
    seed: seeds the subset.

  Returns:
    The split's faces in TFDS order (sorted by file name).

  Raises:
    DataUnavailableError: TFDS cannot provide the data set.
  """
  source = _tfds_source(split, data_dir, download)
  ids = _subset(len(source), max_images, _subset_rng(seed, split))
  images = _empty_faces(len(ids))
  attributes = np.empty((len(ids), len(ATTRIBUTE_NAMES)), dtype=bool)
  for row, i in enumerate(ids):
    example = source[int(i)]
    images[row] = crop_and_resize(Image.fromarray(example["image"]))
    attributes[row] = [example["attributes"][name] for name in ATTRIBUTE_NAMES]
  return FaceSplit(images, attributes)


def load(config: ml_collections.ConfigDict) -> tuple[MultimodalDataset, MultimodalDataset]:
  """Loads Bimodal CelebA as (train, test) data sets.

  Args:
    config: a data config as made by `get_data_config`.

  Returns:
    (train, test): the data sets of `pair_with_text`; the test split is
    `config.test_split`.

  Raises:
    DataUnavailableError: neither the image directory nor TFDS holds CelebA.
  """
  datasets = []
  for split, max_images in (("train", config.max_train),
                            (config.test_split, config.max_test)):
    if config.image_dir is not None:
      faces = read_directory_split(config.image_dir, split, max_images, config.seed)
    else:
      faces = read_tfds_split(split, config.data_dir, config.download, max_images,
                              config.seed)
    text_rng = np.random.default_rng([config.seed, PARTITIONS[split], _TEXT_STREAM])
    datasets.append(pair_with_text(faces, text_rng, config.text_length))
  return datasets[0], datasets[1]

# What crmvae_jax.data asks of this data set (`base.Loader`).
LOADER = Loader(load=load, check_config=check_config)
