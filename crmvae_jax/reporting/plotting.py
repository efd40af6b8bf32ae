"""Pictures and summaries: cross-generation grids, TensorBoard scalars.

A cross-generation grid shows, for a few test examples (columns), every input
modality and then every target modality generated from every single source modality
(rows labelled 'T <- S'), decoded from the mean of the model's own posterior. Text is
drawn as characters, so a person can read what the model wrote.
"""

from __future__ import annotations

import textwrap
from typing import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from crmvae_jax.common import atomic
from crmvae_jax.model.inference import TrainedModel

CELL = 64
LABEL_WIDTH = 72
TEXT_COLUMNS = 10
# Characters per line of a text written above its grid column.
_GRID_TEXT_WIDTH = 24


def curve_styles(models: list[str]) -> dict[str, tuple[str, str]]:
  """(colour, line style) of each model's curves in a figure: the same in every panel,
  so that one legend reads for all, and no two models alike (matplotlib's default
  cycle repeats after ten): its ten colours solid, then dashed, dotted, dash-dotted."""
  lines = ("-", "--", ":", "-.")
  if len(models) > 10 * len(lines):
    raise ValueError(f"{len(models)} models are more than the {10 * len(lines)} curve styles.")
  return {model: (f"C{i % 10}", lines[i // 10]) for i, model in enumerate(models)}


def summary_writer(workdir: str):
  """A TensorBoard writer into workdir (event files readable by `tensorboard --logdir`)."""
  from tensorboardX import SummaryWriter

  return SummaryWriter(logdir=workdir)


def write_scalars(writer, step: int, scalars: dict[str, float]) -> None:
  for name, value in scalars.items():
    writer.add_scalar(name, value, step)
  writer.flush()


def write_image(writer, step: int, tag: str, path: str) -> None:
  """The PNG at `path` as TensorBoard image `tag` at `step`."""
  with Image.open(path) as image:
    writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
  writer.flush()


def _image_cell(image: np.ndarray) -> Image.Image:
  pixels = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  if pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  return Image.fromarray(pixels).resize((CELL, CELL), Image.NEAREST)


def _text_cell(string: str, font) -> Image.Image:
  cell = Image.new("RGB", (CELL, CELL), "white")
  lines = textwrap.wrap(string.strip(), TEXT_COLUMNS)[:5] or [""]
  top = (CELL - 12 * len(lines)) // 2  # centred vertically, 12 px a line
  ImageDraw.Draw(cell).multiline_text((2, top), "\n".join(lines), fill="black", font=font,
                                      spacing=1)
  return cell


def _row_cells(modality, values, text_decoders, font) -> list[Image.Image]:
  if modality.is_text:
    return [_text_cell(s, font) for s in text_decoders[modality.name](np.asarray(values))]
  return [_image_cell(image) for image in np.asarray(values)]


def grid_image(rows: list[tuple[str, list[Image.Image]]]) -> Image.Image:
  """Labelled rows of equal-size cells -> one picture."""
  font = ImageFont.load_default()
  columns = max(len(cells) for _, cells in rows)
  canvas = Image.new("RGB", (LABEL_WIDTH + columns * (CELL + 2), len(rows) * (CELL + 2)), "white")
  draw = ImageDraw.Draw(canvas)
  for r, (label, cells) in enumerate(rows):
    top = r * (CELL + 2)
    draw.text((4, top + CELL // 2 - 6), label, fill="black", font=font)
    for c, cell in enumerate(cells):
      canvas.paste(cell, (LABEL_WIDTH + c * (CELL + 2), top))
  return canvas


def cross_generation_rows(trained: TrainedModel, batch: dict,
                          text_decoders: dict[str, Callable]) -> list[tuple[str, list]]:
  """Rows of the cross-generation grid: inputs, then 'target <- source' generations,
  each decoded from the mean of the posterior of its one source modality."""
  font = ImageFont.load_default()
  modalities = trained.modalities
  # Inputs as the model sees them: images in [0, 1] (stored as uint8), text as ids.
  rows = [(f"{m.abbreviation} (input)",
           _row_cells(m, batch[m.name] if m.is_text else np.asarray(m.inputs(batch[m.name])),
                      text_decoders, font))
          for m in modalities]
  for source in modalities:
    outputs = trained.generate({source.name: batch[source.name]})
    for target in modalities:
      rows.append((f"{target.abbreviation} <- {source.abbreviation}",
                   _row_cells(target, outputs[target.name], text_decoders, font)))
  return rows


def cross_generation_figure(trained: TrainedModel, batch: dict,
                            text_decoders: dict[str, Callable], path: str, title: str = ""
                            ) -> None:
  """Saves the cross-generation grid of `batch` as a PNG at `path`.

  Args:
    trained: the trained model.
    batch: stored arrays of a few examples (they become the columns).
    text_decoders: text modality name -> decode(ids) -> list[str].
    path: where the PNG goes (its directory is created).
    title: a line written above the grid.
  """
  rows = cross_generation_rows(trained, batch, text_decoders)
  grid = grid_image(rows)
  canvas = Image.new("RGB", (grid.width, grid.height + 16), "white")
  ImageDraw.Draw(canvas).text((4, 2), title, fill="black", font=ImageFont.load_default())
  canvas.paste(grid, (0, 16))
  atomic.write_with(path, lambda f: canvas.save(f, format="PNG"))


def save_text_grid(texts: Sequence[str], rows: Sequence[tuple[str, np.ndarray]], path: str,
                   title: str = "") -> None:
  """Saves a grid of images generated from texts: one column per text.

  Args:
    texts: K texts, each written above its column.
    rows: (label, images [K, H, W, C] in [0, 1]) per row.
    path: the PNG to write (its directory is created).
    title: a line above the grid.
  """
  num_columns = len(texts)
  captions = [textwrap.fill(" ".join(string.split()), _GRID_TEXT_WIDTH) for string in texts]
  # The header row as tall as its longest caption (a 6-point line is ~1/16 of an image
  # row), so that one-word captions leave no band of white under the title.
  header = min(0.7, 0.1 + 0.07 * max([c.count("\n") + 1 for c in captions], default=1))
  height = 1.0 + 1.6 * len(rows)
  figure = Figure(figsize=(1.2 + 1.6 * num_columns, height))
  grid = figure.add_gridspec(len(rows) + 1, num_columns + 1,
                             width_ratios=[0.6] + [1.0] * num_columns,
                             height_ratios=[header] + [1.0] * len(rows),
                             top=1.0 - (0.45 if title else 0.1) / height)
  for column, caption in enumerate(captions):
    axis = figure.add_subplot(grid[0, column + 1])
    axis.axis("off")
    axis.text(0.5, 0.0, caption, ha="center", va="bottom", fontsize=6, wrap=True)
  for row, (label, images) in enumerate(rows):
    label_axis = figure.add_subplot(grid[row + 1, 0])
    label_axis.axis("off")
    label_axis.text(1.0, 0.5, label, ha="right", va="center", fontsize=7)
    for column, image in enumerate(images):
      axis = figure.add_subplot(grid[row + 1, column + 1])
      axis.imshow(np.clip(image, 0.0, 1.0))
      axis.set_xticks([])
      axis.set_yticks([])
  if title:
    figure.suptitle(title, fontsize=9, y=1.0 - 0.1 / height, va="top")
  atomic.write_with(path, lambda f: figure.savefig(f, format="png", dpi=100,
                                                  bbox_inches="tight"))
