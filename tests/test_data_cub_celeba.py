"""CUB image-caption and Bimodal CelebA: vocabulary, pairing, attribute text, loaders.

Everything runs on tiny data the tests write to tmp_path: caption files in the
text_c10 layout, CelebA jpgs with their attribute and partition files, and prepared
TFDS array_record data sets written by `tfds_arrays.write_arrays` (no TensorFlow, no
network), so the real TFDS readers run. Images are constant colours that encode
their index, which lets the tests check that pixels, captions and labels agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder

from crmvae_jax.data import modalities
from crmvae_jax.data import celeba
from crmvae_jax.data import cub
from crmvae_jax.data import text
from crmvae_jax.data import tfds_arrays
from crmvae_jax.data.base import DataUnavailableError
from crmvae_jax.data.vocabulary import EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from crmvae_jax.data.vocabulary import Vocabulary, tokenize

# --- Vocabulary ---------------------------------------------------------------------


def test_tokenize_lower_cases_and_splits_punctuation():
  assert tokenize("This bird's  beak, RED.\n") == [
      "this", "bird", "'", "s", "beak", ",", "red", "."]


def test_build_orders_by_count_and_drops_rare_words():
  vocabulary = Vocabulary.build(["b a b", "c b a", "d"], min_count=2)
  assert vocabulary.words == (*SPECIAL_TOKENS, "b", "a")
  capped = Vocabulary.build(["b a b", "c b a c"], min_count=1, max_size=5)
  assert capped.words == (*SPECIAL_TOKENS, "b", "a")  # a and c tie at 2: alphabetical.


def test_encode_truncates_ends_with_eos_and_pads():
  vocabulary = Vocabulary.build(["the bird is red", "the bird"], min_count=1)
  ids = vocabulary.encode(["The bird is blue", "the bird is red and small"], max_length=5)
  the, bird, is_ = (vocabulary.words.index(w) for w in ("the", "bird", "is"))
  red = vocabulary.words.index("red")
  np.testing.assert_array_equal(ids, [[the, bird, is_, UNK_ID, EOS_ID],
                                      [the, bird, is_, red, EOS_ID]])
  assert ids.dtype == np.int32
  short = vocabulary.encode(["bird"], max_length=5)
  np.testing.assert_array_equal(short, [[bird, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])


def test_decode_round_trip_stops_at_eos_and_drops_pad():
  captions = ["a small bird, with a red beak.", "this bird is blue"]
  vocabulary = Vocabulary.build(captions, min_count=1)
  assert vocabulary.decode(vocabulary.encode(captions, 16)) == [
      "a small bird , with a red beak .", "this bird is blue"]
  blue = vocabulary.words.index("blue")
  assert vocabulary.decode(np.array([[blue, PAD_ID, blue, EOS_ID, blue]])) == ["blue blue"]
  assert vocabulary.decode(vocabulary.encode(["a green bird"], 3)) == ["a <unk>"]


def test_save_load_round_trip(tmp_path):
  vocabulary = Vocabulary.build(["one two two three three three"], min_count=1)
  vocabulary.save(tmp_path / "vocabulary.json")
  loaded = Vocabulary.load(tmp_path / "vocabulary.json")
  assert loaded == vocabulary and len(loaded) == 6
  np.testing.assert_array_equal(loaded.encode(["three one four"]),
                                vocabulary.encode(["three one four"]))


# --- CUB ------------------------------------------------------------------------------

# Fake CUB: image i is in class CLASSES[i]; caption k of image i is CAPTION(i, k).
CUB_TRAIN = ["001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg",
             "001.Black_footed_Albatross/Black_Footed_Albatross_0074_59.jpg",
             "017.Cardinal/Cardinal_0001_17057.jpg"]
CUB_TEST = ["017.Cardinal/Cardinal_0004_17620.jpg", "200.Common_Yellowthroat/x_1.jpg"]
CUB_LABELS = {"train": [0, 0, 16], "test": [16, 199]}


def _caption(image_id, k):
  # Letters name the image and the caption: a decoded caption says which it is.
  return f"bird {'abcdefghij'[image_id]} caption {'klmnopqrst'[k]}"


def _archive_name(relative):
  return f"CUB_200_2011/images/{relative}"


def _write_captions(captions_dir, relatives, first_id):
  for offset, relative in enumerate(relatives):
    path = cub.caption_path(captions_dir, _archive_name(relative))
    path.parent.mkdir(parents=True, exist_ok=True)
    # A trailing blank line, as some text_c10 files have.
    path.write_text("\n".join(_caption(first_id + offset, k) for k in range(10)) + "\n\n")


@pytest.fixture
def captions_dir(tmp_path):
  directory = tmp_path / "text_c10"
  _write_captions(directory, CUB_TRAIN, 0)
  _write_captions(directory, CUB_TEST, len(CUB_TRAIN))
  return directory


def _image_split(relatives, labels, first_id):
  images = np.stack([np.full((64, 64, 3), 10 * (first_id + i), np.uint8)
                     for i in range(len(relatives))])
  return cub.ImageSplit(images, [_archive_name(r) for r in relatives], np.array(labels))


def test_caption_path_uses_class_directory_and_image_name(tmp_path):
  path = cub.caption_path(tmp_path, _archive_name(CUB_TRAIN[2]))
  assert path == tmp_path / "017.Cardinal" / "Cardinal_0001_17057.txt"


def test_cub_pairs_each_image_with_its_ten_captions(captions_dir):
  train, test = cub.build_datasets(
      _image_split(CUB_TRAIN, CUB_LABELS["train"], 0),
      _image_split(CUB_TEST, CUB_LABELS["test"], len(CUB_TRAIN)),
      captions_dir, max_caption_length=8, min_word_count=1)
  vocabulary = train.vocabularies["caption"]
  assert test.vocabularies == {"caption": vocabulary}  # built on training captions only
  assert train.modalities == ("image", "caption")
  assert len(train) == 30 and len(test) == 20
  assert train.arrays["image"].shape == (3, 64, 64, 3)
  assert train.arrays["caption"].shape == (30, 8) and train.arrays["caption"].dtype == np.int32
  np.testing.assert_array_equal(train.indices["image"], np.repeat(np.arange(3), 10))
  np.testing.assert_array_equal(test.indices["caption"], np.arange(20))
  np.testing.assert_array_equal(train.labels, np.repeat(CUB_LABELS["train"], 10))
  train_batch = train.batch(np.arange(30))
  np.testing.assert_array_equal(train_batch["image"][:, 0, 0, 0] // 10, np.arange(30) // 10)
  assert vocabulary.decode(train_batch["caption"]) == [
      _caption(j // 10, j % 10) for j in range(30)]
  test_batch = test.batch(np.arange(20))
  np.testing.assert_array_equal(test_batch["image"][:, 0, 0, 0] // 10, 3 + np.arange(20) // 10)
  # The test images' letters (d, e) never occur in training captions: unknown words.
  assert vocabulary.decode(test_batch["caption"]) == [
      f"bird <unk> caption {'klmnopqrst'[j % 10]}" for j in range(20)]


def test_cub_missing_captions_dir_names_directory_and_flag(tmp_path):
  missing = tmp_path / "no_captions"
  with pytest.raises(DataUnavailableError, match="captions_dir=DIR") as error:
    cub.read_captions(missing, [_archive_name(CUB_TRAIN[0])])
  assert str(missing) in str(error.value)
  config = cub.get_data_config()
  with pytest.raises(DataUnavailableError, match="captions_dir=DIR"):
    cub.load(config)  # No captions_dir: fails before touching TFDS.


def test_cub_missing_caption_file_is_named(captions_dir):
  with pytest.raises(DataUnavailableError, match="Nope_1.txt"):
    cub.read_captions(captions_dir, [_archive_name("017.Cardinal/Nope_1.jpg")])


def test_cub_load_reads_tfds_and_resizes(tmp_path, captions_dir):
  data_dir = str(tmp_path / "tfds")
  splits = {}
  for split, relatives, first_id in (("train", CUB_TRAIN, 0),
                                     ("test", CUB_TEST, len(CUB_TRAIN))):
    count = len(relatives)
    splits[split] = {
        # Varied sizes, as CUB's; constant colour 10 * image id.
        "image": [np.full((40 + 7 * i, 90 - 5 * i, 3), 10 * (first_id + i), np.uint8)
                  for i in range(count)],
        "image/filename": [_archive_name(r) for r in relatives],
        "label": np.array(CUB_LABELS[split]),
        "label_name": [r.split("/")[0] for r in relatives],
        "bbox": [tfds.features.BBox(0.0, 0.0, 1.0, 1.0)] * count,
        "segmentation_mask": [np.zeros((8, 8, 1), np.uint8)] * count,
    }
  tfds_arrays.write_arrays(cub.TFDS_NAME, data_dir, splits)
  config = cub.get_data_config()
  config.data_dir, config.captions_dir, config.download = data_dir, str(captions_dir), False
  config.min_word_count = 1
  train, test = cub.load(config)
  vocabulary = train.vocabularies["caption"]
  assert test.vocabularies == {"caption": vocabulary}
  # The vocabulary sizes the caption networks: special tokens and 15 training words.
  caption = modalities.modalities_of("cub", train)[1]
  assert (caption.network, caption.vocab_size) == ("caption", len(vocabulary)) == (
      "caption", 3 + 15)
  assert train.arrays["image"].shape == (3, 64, 64, 3)
  np.testing.assert_array_equal(train.arrays["image"][:, 7, 9, 0], [0, 10, 20])
  np.testing.assert_array_equal(test.arrays["image"][:, 5, 5, 2], [30, 40])
  np.testing.assert_array_equal(test.labels, np.repeat(CUB_LABELS["test"], 10))
  assert vocabulary.decode(train.arrays["caption"][[25]]) == [_caption(2, 5)]
  config.max_train = 2
  subset_train, _ = cub.load(config)
  assert len(subset_train) == 20 and len(subset_train.arrays["image"]) == 2


# --- CelebA ---------------------------------------------------------------------------

NAMES = celeba.ATTRIBUTE_NAMES


def _describe(row):
  return ", ".join(name.lower().replace("_", " ") for name, on in zip(NAMES, row) if on)


def test_attribute_text_writes_positive_names_at_seeded_start():
  attributes = np.zeros((4, 40), bool)
  attributes[0, [0, 5, 31]] = True  # 5_o_Clock_Shadow, Bangs, Smiling.
  attributes[1, 39] = True
  attributes[3] = True  # All 40 names: 502 characters, cut to the length.
  ids = celeba.attribute_text(attributes, NAMES, np.random.default_rng(3), length=256)
  assert ids.shape == (4, 256) and ids.dtype == np.int32
  strings = text.decode(ids)
  assert strings[0].strip() == "5 o clock shadow, bangs, smiling"
  assert strings[1].strip() == "young"
  assert strings[2] == " " * 256
  assert strings[3] == _describe(attributes[3])[:256]
  lengths = np.array([32, 5, 0, 256])
  expected_starts = np.random.default_rng(3).integers(0, 256 - lengths + 1)
  for string, start, length in zip(strings, expected_starts, lengths):
    if length:
      assert len(string) - len(string.lstrip(" ")) == start
  # A different seed moves the text.
  other = celeba.attribute_text(attributes[:2], NAMES, np.random.default_rng(4))
  assert text.decode(other) != strings[:2]


def test_crop_and_resize_keeps_the_central_148_pixels():
  face = np.zeros((218, 178, 3), np.uint8)
  face[35:183, 15:163] = (200, 100, 50)  # The central 148x148 crop.
  result = celeba.crop_and_resize(Image.fromarray(face))
  assert result.shape == (64, 64, 3)
  np.testing.assert_array_equal(result, np.broadcast_to([200, 100, 50], (64, 64, 3)))


# Fake CelebA directory: file i has attribute k iff (i + k) % 3 == 0, partition
# PARTITION[i], colour 40 * (i + 1).
FILENAMES = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
PARTITION = [0, 2, 0, 1]


def _fake_attributes():
  return (np.arange(4)[:, None] + np.arange(40)[None, :]) % 3 == 0


@pytest.fixture
def celeba_dir(tmp_path):
  image_dir = tmp_path / "img_align_celeba"
  image_dir.mkdir()
  for i, name in enumerate(FILENAMES):
    Image.fromarray(np.full((218, 178, 3), 40 * (i + 1), np.uint8)).save(image_dir / name)
  signs = np.where(_fake_attributes(), 1, -1)
  # The standard layout: count, names, then rows padded with double spaces; files
  # listed out of order, since the loader sorts.
  rows = [f"{FILENAMES[i]} " + " ".join(f"{s:2d}" for s in signs[i]) for i in (2, 0, 3, 1)]
  (tmp_path / celeba.ATTRIBUTE_FILE).write_text(
      "\n".join([str(len(FILENAMES)), " ".join(NAMES), *rows]) + "\n")
  (image_dir / celeba.PARTITION_FILE).write_text(
      "".join(f"{name} {p}\n" for name, p in zip(FILENAMES, PARTITION)))
  return image_dir


def test_celeba_directory_loader(celeba_dir):
  config = celeba.get_data_config()
  config.image_dir = str(celeba_dir)
  train, test = celeba.load(config)
  assert train.modalities == ("image", "text")
  assert len(train) == 2 and len(test) == 1
  assert train.arrays["image"].shape == (2, 64, 64, 3)
  assert train.arrays["text"].shape == (2, 256)
  # Train is files 1 and 3 in name order; test is file 2 (partition 2).
  np.testing.assert_allclose(train.arrays["image"].mean(axis=(1, 2, 3)), [40, 120], atol=2)
  np.testing.assert_allclose(test.arrays["image"].mean(), 80, atol=2)
  np.testing.assert_array_equal(train.labels, _fake_attributes()[[0, 2]].astype(np.int32))
  np.testing.assert_array_equal(test.labels, _fake_attributes()[[1]])
  for dataset, rows in ((train, [0, 2]), (test, [1])):
    strings = text.decode(dataset.batch(np.arange(len(dataset)))["text"])
    assert [s.strip() for s in strings] == [_describe(_fake_attributes()[r]) for r in rows]
  config.test_split = "validation"
  _, validation = celeba.load(config)
  np.testing.assert_array_equal(validation.labels, _fake_attributes()[[3]])
  config.max_train = 1
  subset_train, _ = celeba.load(config)
  assert len(subset_train) == 1


def test_celeba_missing_data_names_both_sources(tmp_path, celeba_dir):
  config = celeba.get_data_config()
  config.data_dir, config.download = str(tmp_path / "empty_tfds"), False
  with pytest.raises(DataUnavailableError) as error:
    celeba.load(config)
  message = str(error.value)
  assert "--config.data.data_dir=DIR" in message and "--config.data.image_dir=DIR" in message
  assert str(tmp_path / "empty_tfds") in message
  config.image_dir = str(tmp_path / "no_faces")
  with pytest.raises(DataUnavailableError, match="no_faces"):
    celeba.load(config)
  (celeba_dir / celeba.PARTITION_FILE).unlink()
  config.image_dir = str(celeba_dir)
  with pytest.raises(DataUnavailableError, match=celeba.PARTITION_FILE):
    celeba.load(config)


def test_celeba_reads_tfds(tmp_path):
  data_dir = str(tmp_path / "tfds")
  attributes = _fake_attributes()[:3]
  tfds_arrays.write_arrays(celeba.TFDS_NAME, data_dir, {"test": {
      "image": np.stack([np.full((218, 178, 3), 50 * (i + 1), np.uint8) for i in range(3)]),
      "attributes": [dict(zip(NAMES, row.tolist())) for row in attributes],
      "landmarks": [dict.fromkeys(celeb_a_dataset_builder.LANDMARK_HEADINGS, 0)] * 3,
      "identity": [{"Identity_No": i} for i in range(3)],
  }})
  faces = celeba.read_tfds_split("test", data_dir, download=False)
  np.testing.assert_array_equal(faces.attributes, attributes)
  np.testing.assert_array_equal(faces.images[:, 10, 20], [[50] * 3, [100] * 3, [150] * 3])
  assert celeba.read_tfds_split("test", data_dir, False, max_images=2).images.shape == (
      2, 64, 64, 3)
