"""SVHN-like digits rendered offline: the S modality of `mst_offline`.

Real SVHN cannot be downloaded everywhere, and what makes it hard for multimodal VAEs
is not the digit but everything around it: a photo background, a font, a colour, a
pose and neighbouring digits that nothing in the other modalities predicts. The mean
of many SVHN images of one digit is a grey blur that no classifier reads. This module
renders digits with that property, in the spirit of SynDigits (Ganin & Lempitsky,
2015), from material that ships with installed packages:

- background: a random crop (24-160 px) of one of 14 photos shipped with scikit-image
  and scikit-learn, resized to the 64x64 canvas, blurred (sigma 0-3), its contrast
  scaled by 0.3-1 and each channel tinted by 0.6-1.4;
- the digit: one of 21 text fonts shipped with matplotlib (DejaVu Sans, Serif and Mono
  and STIX General in their styles, Computer Modern cmr10, cmb10, cmss10, cmtt10,
  cmti10), 30-50 px, stroke 0-2 px, centre jittered by up to 3 px, rotated by up to
  12 degrees and sheared by up to 0.25, in a colour lighter or darker (a fair coin)
  than the background under it by 70-125 luminance levels of 255, the same for both
  polarities, so that the mean of many images of a digit shows no digit;
- neighbours, as in SVHN's cropped digits: on each side, with probability 0.6, another
  random digit in the same font and colour, 1.05-1.4 glyph widths away, cut off by the
  border;
- camera: the canvas is reduced to 32x32, blurred (sigma 0-1.6 px at 32x32) and
  given Gaussian noise (sigma 0-8/255).

Every image is a pure function of (seed, pool, index): image i of a pool is the same
whichever images are rendered with it. Pools are disjoint by seed and by photo region:
the training pool and the judge's training pool crop the left 75% of every photo, the
test pool and the class-mean pool the right 25% (`PHOTO_REGIONS`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence

import matplotlib
import numpy as np
import skimage.data
import tqdm
from PIL import Image, ImageDraw, ImageFilter, ImageFont

IMAGE_SIZE = 32
CANVAS_SIZE = 64

_FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf")
_SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                   "hubble_deep_field", "camera", "moon", "coins", "brick", "grass", "gravel")
# Pool -> (stream of the seed, horizontal fraction of every photo it crops from).
PHOTO_REGIONS = {"train": (0.0, 0.75), "judge": (0.0, 0.75), "test": (0.75, 1.0),
                 "class_means": (0.75, 1.0)}
_POOL_STREAMS = {"train": 0, "test": 1, "judge": 2, "class_means": 3}
_CLUTTER_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LUMINANCE = np.array([0.299, 0.587, 0.114])


@dataclasses.dataclass(frozen=True)
class RenderSettings:
  """Every drawing rule of the renderer: (low, high) ranges drawn uniformly per image.

  Attributes:
    stream: the number mixed into every image's seed: settings with different streams
      draw different images, so cached renders of one are never read as another's.
    crop_sizes: side of the square photo crop (px), resized to the 64x64 canvas.
    background_blur: Gaussian blur of the background (sigma, canvas px).
    contrast: the photo's contrast about its mean is scaled by this.
    tint: each colour channel of the background is multiplied by this.
    font_sizes: the digit's font size (canvas px).
    max_stroke: the glyph's outline width is drawn from 0..max_stroke (canvas px).
    max_jitter: the digit's centre moves by up to this (canvas px).
    max_rotation_degrees, max_shear: the digit's pose.
    luminance_gap: the digit's luminance minus its background's, in either polarity.
    chroma: the spread of the digit's hue about its grey (per channel, of 255).
    neighbour_probability: on each side, the chance of a cut-off neighbouring digit.
    neighbour_distance: a neighbour's centre to the digit's, in glyph widths.
    clutter_count, clutter_sizes, clutter_contrast: faint characters in the
      background, as on the walls and signs around house numbers: how many, their size
      (canvas px) and their luminance difference from the photo.
    camera_blur: blur after reduction to 32x32 (sigma, px at 32x32).
    noise: Gaussian noise (sigma, of 255).
  """

  stream: int
  crop_sizes: tuple[int, int] = (24, 160)
  background_blur: tuple[float, float] = (0.0, 3.0)
  contrast: tuple[float, float] = (0.3, 1.0)
  tint: tuple[float, float] = (0.6, 1.4)
  font_sizes: tuple[int, int] = (30, 50)
  max_stroke: int = 2
  max_jitter: float = 3.0
  max_rotation_degrees: float = 12.0
  max_shear: float = 0.25
  luminance_gap: tuple[float, float] = (70.0, 125.0)
  chroma: float = 60.0
  neighbour_probability: float = 0.6
  neighbour_distance: tuple[float, float] = (1.05, 1.4)
  clutter_count: tuple[int, int] = (2, 6)
  clutter_sizes: tuple[int, int] = (12, 60)
  clutter_contrast: tuple[float, float] = (10.0, 45.0)
  camera_blur: tuple[float, float] = (0.0, 1.6)
  noise: tuple[float, float] = (0.0, 8.0)


# The renderer's versions. A version's rules never change: a new rule is a new version,
# and `crmvae_jax.data.mst_offline` keys its cache on the version's settings.
VERSIONS = {
    # The first surrogate: textured photo crops and clutter, calibrated only so that the
    # mean of many renders of a digit shows none.
    1: RenderSettings(stream=1),
    # The candidate "plain" of experiments/paper/calibrate_svhn.py (its table is
    # experiments/results/svhn_calibration.md): the digit centred, upright and of one
    # size as SVHN's crops make it, on plain, nearly grey surfaces without clutter, where
    # a plain VAE learns most of the digit (probe 0.25 / 0.32 against version 1's 0.13
    # after 1,000 steps); its class means are readable, unlike version 1's.
    2: RenderSettings(
        stream=105, crop_sizes=(48, 200), background_blur=(4.0, 10.0), contrast=(0.05, 0.3),
        tint=(0.85, 1.15), clutter_count=(0, 1), clutter_contrast=(5.0, 20.0), noise=(0.0, 4.0),
        font_sizes=(42, 48), max_stroke=3, neighbour_probability=0.3,
        luminance_gap=(90.0, 140.0), chroma=15.0, camera_blur=(0.0, 1.0),
        max_rotation_degrees=5.0, max_shear=0.1, max_jitter=1.5),
    # The candidate "plain_wide", chosen by the rule written before its round was measured
    # (the highest probe among candidates whose judge reaches 0.90 and whose 256-render
    # class means read at most 0.30): version 2's plain surfaces with the digit's size and
    # place wandering far (30-52 px, up to 8 px off centre), version 1's pose. Its class
    # means are unreadable again (0.18), but a plain VAE barely finds the digit (probe
    # 0.13 / 0.16 against version 1's 0.13 / 0.13).
    3: RenderSettings(
        stream=110, crop_sizes=(48, 200), background_blur=(4.0, 10.0), contrast=(0.05, 0.3),
        tint=(0.85, 1.15), clutter_count=(0, 1), clutter_contrast=(5.0, 20.0), noise=(0.0, 4.0),
        font_sizes=(30, 52), max_stroke=3, neighbour_probability=0.3, max_jitter=8.0,
        luminance_gap=(90.0, 140.0), chroma=15.0, camera_blur=(0.0, 1.0)),
}
# The default of `render_pool` and of configs/mst_offline.py: version 2 becomes it once
# MoPoE's averaging is seen to fail on it (experiments/paper/mst_offline_queue.sh, gate).
VERSION = 1


def font_paths() -> list[str]:
  """The matplotlib font files digits are drawn in (text fonts only, no symbol fonts)."""
  directory = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
  return [os.path.join(directory, name) for name in _FONT_FILES]


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
  """The background photos: 12 of scikit-image's offline samples and scikit-learn's two.

  Returns:
    Read-only uint8 RGB arrays [H, W, 3] (grey photos repeated over the channels).
  """
  images = [np.asarray(getattr(skimage.data, name)()) for name in _SKIMAGE_PHOTOS]
  import sklearn.datasets  # about a second to import; only the photos need it

  images += list(sklearn.datasets.load_sample_images().images)
  result = []
  for image in images:
    image = np.ascontiguousarray(
        np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3],
        dtype=np.uint8)
    image.setflags(write=False)
    result.append(image)
  return tuple(result)


@functools.cache
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(path, size)


def _background(rng: np.random.Generator, region: tuple[float, float],
                settings: RenderSettings) -> np.ndarray:
  """A blurred, contrast-scaled, tinted photo crop: float [64, 64, 3] in [0, 255]."""
  all_photos = photos()
  photo = all_photos[rng.integers(len(all_photos))]
  height, width = photo.shape[:2]
  left, right = int(region[0] * width), int(region[1] * width)
  size = min(int(rng.integers(settings.crop_sizes[0], settings.crop_sizes[1] + 1)), height, right - left)
  top = int(rng.integers(0, height - size + 1))
  start = int(rng.integers(left, right - size + 1))
  crop = Image.fromarray(photo[top:top + size, start:start + size])
  crop = crop.resize((CANVAS_SIZE, CANVAS_SIZE), Image.BILINEAR)
  crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(*settings.background_blur)))
  pixels = np.asarray(crop, dtype=np.float64)
  mean = pixels.mean()
  pixels = mean + rng.uniform(*settings.contrast) * (pixels - mean)
  return np.clip(pixels * rng.uniform(*settings.tint, size=3), 0.0, 255.0)


def _clutter(background: np.ndarray, rng: np.random.Generator,
             settings: RenderSettings) -> np.ndarray:
  """`background` with a few faint characters anywhere on it, lighter or darker."""
  paths = font_paths()
  for _ in range(int(rng.integers(settings.clutter_count[0], settings.clutter_count[1] + 1))):
    layer = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
    font = _font(paths[rng.integers(len(paths))],
                 int(rng.integers(settings.clutter_sizes[0], settings.clutter_sizes[1] + 1)))
    character = _CLUTTER_CHARACTERS[rng.integers(len(_CLUTTER_CHARACTERS))]
    position = tuple(rng.uniform(0, CANVAS_SIZE, size=2))
    ImageDraw.Draw(layer).text(position, character, fill=255, font=font, anchor="mm")
    coverage = np.asarray(layer, np.float64)[..., None] / 255.0
    shift = rng.choice((-1.0, 1.0)) * rng.uniform(*settings.clutter_contrast)
    background = np.clip(background + shift * coverage, 0.0, 255.0)
  return background


def _digit_mask(digit: int, rng: np.random.Generator, settings: RenderSettings) -> np.ndarray:
  """Coverage [64, 64] in [0, 1] of the digit, its neighbours, posed (rotated, sheared)."""
  paths = font_paths()
  font = _font(paths[rng.integers(len(paths))], int(rng.integers(settings.font_sizes[0],
                                                                  settings.font_sizes[1] + 1)))
  stroke = int(rng.integers(0, settings.max_stroke + 1))
  canvas = Image.new("L", (CANVAS_SIZE, CANVAS_SIZE), 0)
  draw = ImageDraw.Draw(canvas)
  centre_x, centre_y = (CANVAS_SIZE / 2 + rng.uniform(-settings.max_jitter, settings.max_jitter, size=2))
  left, _, right, _ = font.getbbox(str(digit), stroke_width=stroke)
  glyph_width = right - left
  draw.text((centre_x, centre_y), str(digit), fill=255, font=font, anchor="mm",
            stroke_width=stroke, stroke_fill=255)
  for side in (-1, 1):
    if rng.uniform() < settings.neighbour_probability:
      offset = side * rng.uniform(*settings.neighbour_distance) * glyph_width
      draw.text((centre_x + offset, centre_y), str(int(rng.integers(10))), fill=255, font=font,
                anchor="mm", stroke_width=stroke, stroke_fill=255)
  # PIL's affine transform maps output to input coordinates: the inverse of the pose
  # (a rotation after a horizontal shear, both about the canvas centre).
  angle = np.deg2rad(rng.uniform(-settings.max_rotation_degrees,
                                 settings.max_rotation_degrees))
  shear = rng.uniform(-settings.max_shear, settings.max_shear)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  inverse = np.linalg.inv(rotation @ np.array([[1.0, shear], [0.0, 1.0]]))
  centre = np.full(2, CANVAS_SIZE / 2)
  translation = centre - inverse @ centre
  posed = canvas.transform(
      canvas.size, Image.AFFINE,
      (inverse[0, 0], inverse[0, 1], translation[0], inverse[1, 0], inverse[1, 1],
       translation[1]), resample=Image.BILINEAR)
  return np.asarray(posed, dtype=np.float64) / 255.0


def _digit_colour(background: np.ndarray, luminance: float, rng: np.random.Generator,
                  settings: RenderSettings = VERSIONS[1]) -> tuple[np.ndarray, np.ndarray]:
  """A digit colour `d` lighter or darker (a fair coin) than the background under it.

  The luminance difference d is drawn from one distribution for both polarities, and
  the chroma from a symmetric one, so over many images of a digit the digit's colour
  averages to its background's: the class's mean image, and the per-pixel median a
  decoder with a Laplace likelihood approaches, carry no digit. Where the photo is too
  light or too dark for d on both sides, the background is shifted (its texture kept).

  Returns:
    (background, colour): the background, shifted where needed, and an RGB colour.
  """
  difference = rng.uniform(*settings.luminance_gap)
  target = float(np.clip(luminance, difference, 255.0 - difference))
  background = np.clip(background + (target - luminance), 0.0, 255.0)
  grey = target + (difference if rng.uniform() < 0.5 else -difference)
  # A random hue at that luminance: a zero-luminance chroma vector, shrunk until the
  # colour fits in [0, 255] (shrinking keeps the luminance).
  chroma = rng.normal(size=3) * settings.chroma
  chroma -= (_LUMINANCE @ chroma) * np.ones(3)
  for _ in range(20):
    colour = grey + chroma
    if np.all((colour >= 0) & (colour <= 255)):
      return background, colour
    chroma *= 0.7
  return background, np.full(3, grey)


def render(digit: int, rng: np.random.Generator, region: tuple[float, float],
           settings: RenderSettings = VERSIONS[VERSION]) -> np.ndarray:
  """One SVHN-like image of `digit` (module docstring): uint8 [32, 32, 3].

  Args:
    digit: 0..9.
    rng: its randomness; the image is a function of the generator's state.
    region: the horizontal fraction (start, end) of every photo it may crop.
    settings: the drawing rules.
  """
  background = _clutter(_background(rng, region, settings), rng, settings)
  mask = _digit_mask(digit, rng, settings)[..., None]
  covered = mask[..., 0] > 0.5
  under = background[covered] if covered.any() else background.reshape(-1, 3)
  background, colour = _digit_colour(background, float(under.mean(axis=0) @ _LUMINANCE), rng,
                                     settings)
  canvas = background * (1.0 - mask) + colour * mask
  image = Image.fromarray(canvas.round().astype(np.uint8)).reduce(CANVAS_SIZE // IMAGE_SIZE)
  image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*settings.camera_blur)))
  pixels = np.asarray(image, dtype=np.float64)
  pixels += rng.normal(size=pixels.shape) * rng.uniform(*settings.noise)
  return np.clip(pixels.round(), 0, 255).astype(np.uint8)


def settings_of(version: int) -> RenderSettings:
  """The drawing rules of renderer `version` (`VERSIONS`)."""
  if version not in VERSIONS:
    raise ValueError(f"unknown renderer version {version!r}; known: "
                     f"{', '.join(map(str, VERSIONS))}.")
  return VERSIONS[version]


def render_pool(labels: Sequence[int], seed: int, pool: str, description: str | None = None,
                disable_progress_bar: bool = False,
                settings: RenderSettings | None = None) -> np.ndarray:
  """Renders one image per label: image i is `render(labels[i], ...)` with its own generator.

  Args:
    labels: int digits [N].
    seed: the data seed.
    pool: one of `PHOTO_REGIONS` ('train', 'test', 'judge', 'class_means'); it picks the
      photo region and an independent stream of randomness.
    description: the progress bar's text; None: no progress bar.
    disable_progress_bar: hide the progress bar.
    settings: the drawing rules; None: those of `VERSION`.

  Returns:
    uint8 [N, 32, 32, 3].
  """
  if pool not in PHOTO_REGIONS:
    raise ValueError(f"render_pool: unknown pool {pool!r}; known: {', '.join(PHOTO_REGIONS)}.")
  settings = VERSIONS[VERSION] if settings is None else settings
  labels = np.asarray(labels)
  images = np.empty((len(labels), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  indices = tqdm.trange(len(labels), desc=description, unit="image", leave=False,
                        disable=disable_progress_bar or description is None)
  for i in indices:
    rng = np.random.default_rng([seed, settings.stream, _POOL_STREAMS[pool], i])
    images[i] = render(int(labels[i]), rng, PHOTO_REGIONS[pool], settings)
  return images
