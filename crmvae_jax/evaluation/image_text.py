"""Image-text metrics (CUB image-caption, Bimodal CelebA; docs/metrics.md).

- cosine similarity: the mean cosine between the latents inferred from the image alone
  and from the text alone, each the mean of the model's own posterior of that one
  modality (`objectives.SUBSET_POSTERIOR`: PoE({m}) = p q_m, or q_m for mixture
  models). Coordination-based objectives pull the two together.
- attribute accuracy (CelebA): images generated from the text (z sampled from the
  text's posterior) classified by the attribute classifier (`judges.Classifier`, one
  sigmoid per attribute) and compared with the pair's attributes; the same
  classifier's accuracy on the real images is its ceiling.
- FID of images generated from text against the real images of the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.model import objectives
from crmvae_jax.evaluation import metrics
from crmvae_jax.model.inference import TrainedModel
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.model.modality import Modality
from crmvae_jax.data import text as char_text
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation.generation import encode_all, subset_posterior_means
from crmvae_jax.data.input_pipeline import padded_batches



def image_and_text_indices(modalities: Sequence[Modality]) -> tuple[int, int]:
  """Positions of the one image and the one text modality of an image-text model.

  Raises:
    ValueError: the model does not have exactly one image and one text modality.
  """
  image_indices = [i for i, m in enumerate(modalities) if not m.is_text]
  text_indices = [i for i, m in enumerate(modalities) if m.is_text]
  if len(image_indices) != 1 or len(text_indices) != 1:
    raise ValueError(
        f"Image-text evaluation needs one image and one text modality; got "
        f"{[m.name for m in modalities]}.")
  return image_indices[0], text_indices[0]


def unimodal_posterior_means(posteriors: Gaussian,
                             kind: objectives.SubsetPosteriorKind) -> jax.Array:
  """Mean of the model's posterior given each single modality.

  Args:
    posteriors: the unimodal experts q_m, arrays [M, B, D].
    kind: 'poe' (the posterior of {m} is p q_m, normalised) or 'moe' (it is q_m).

  Returns:
    [M, B, D]: row m is the posterior mean given modality m alone.
  """
  num_modalities = posteriors.mean.shape[0]
  return subset_posterior_means(posteriors, jnp.eye(num_modalities, dtype=bool), kind)


def encode_unimodal_means(trained: TrainedModel, dataset: MultimodalDataset,
                          batch_size: int) -> np.ndarray:
  """Unimodal posterior means of every pair of `dataset`.

  Args:
    trained: the trained model.
    dataset: the pairs to encode.
    batch_size: pairs per compiled call (the last batch is padded).

  Returns:
    [M, N, D]: row m holds the means given modality m alone.
  """
  single = np.eye(len(trained.modalities), dtype=bool)
  return encode_all(lambda batch: trained.subset_means(
      {n: batch[n] for n in trained.names}, single), dataset, batch_size)


def latent_cosine_similarity(unimodal_means: np.ndarray, image_index: int,
                             text_index: int) -> float:
  """Mean cosine similarity of the image and the text latents of each pair.

  Args:
    unimodal_means: [M, N, D] from `encode_unimodal_means`.
    image_index: the image modality's row.
    text_index: the text modality's row.

  Returns:
    The mean over pairs, in [-1, 1].
  """
  return metrics.cosine_similarity(unimodal_means[image_index], unimodal_means[text_index])


# (stored texts [B, L], rng or None) -> images [B, H, W, C] in [0, 1]; None: from the mean.
GenerateImages = Callable[[np.ndarray, jax.Array | None], np.ndarray]


def make_image_generator(trained: TrainedModel) -> GenerateImages:
  """Generation of images from texts alone, through the model's text posterior.

  Args:
    trained: a trained model with one image and one text modality.

  Returns:
    generate(text_ids [B, L], rng) -> images [B, H, W, C] in [0, 1]: z is sampled
    from the posterior of the text with `rng`, or is its mean when rng is None.
  """
  image_index, text_index = image_and_text_indices(trained.modalities)
  image, text = trained.names[image_index], trained.names[text_index]
  return lambda text_ids, rng: trained.generate({text: np.asarray(text_ids)}, [image],
                                                rng)[image]


def text_to_image_scores(
    generate: GenerateImages, dataset: MultimodalDataset, image_name: str, text_name: str,
    batch_size: int, rng: jax.Array,
    classifier: Callable[[np.ndarray], np.ndarray] | None = None,
    features_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    fid_ids: np.ndarray | None = None) -> dict[str, float]:
  """Scores images generated from the texts of `dataset`, batch by batch.

  Images are generated and judged a batch at a time, so no more than two batches of
  them are ever held; the FID's images go to `features_fn` in whole batches (and one
  last partial one), so its network compiles at most twice.

  Args:
    generate: texts -> images (`make_image_generator`); z is sampled.
    dataset: the test pairs; labels are 0/1 attributes [N, K] when `classifier` is
      given.
    image_name: the image modality.
    text_name: the text modality.
    batch_size: pairs per `generate` call.
    rng: sampling randomness (folded with the batch index).
    classifier: optional images -> 0/1 attributes [B, K].
    features_fn: optional images -> features [B, F] for FID.
    fid_ids: the ids of the pairs of `dataset` that enter the FID (e.g. a seeded
      random choice, `input_pipeline.sample_ids`); None: every pair.

  Returns:
    With a classifier, attribute_accuracy (generated images) and
    attribute_accuracy_real (the pairs' real images), each over all N * K entries;
    with features_fn, fid_from_text (generated against the real images of the same
    pairs).
  """
  correct = {"attribute_accuracy": 0, "attribute_accuracy_real": 0}
  features: dict[str, list[np.ndarray]] = {"generated": [], "real": []}
  # Images of FID pairs not yet turned into features, flushed in whole batches.
  pending: dict[str, list[np.ndarray]] = {"generated": [], "real": []}
  in_fid = np.zeros(len(dataset), bool)
  in_fid[np.arange(len(dataset)) if fid_ids is None else fid_ids] = True

  def flush(chunk: int) -> None:
    """Features of the pending images, in multiples of `chunk` (1: all of them)."""
    for kind in pending:
      if not pending[kind]:
        continue
      images = np.concatenate(pending[kind])
      count = len(images) // chunk * chunk
      if count:
        features[kind].append(features_fn(images[:count]))
      pending[kind] = [images[count:]] if count < len(images) else []

  for index, (ids, num_valid) in enumerate(padded_batches(len(dataset), batch_size)):
    batch = dataset.batch(ids)
    generated = generate(batch[text_name], jax.random.fold_in(rng, index))
    if classifier is not None:
      labels = batch["label"][:num_valid]
      correct["attribute_accuracy"] += int(np.sum(classifier(generated)[:num_valid] == labels))
      correct["attribute_accuracy_real"] += int(
          np.sum(classifier(batch[image_name])[:num_valid] == labels))
    chosen = in_fid[ids[:num_valid]]
    if features_fn is not None and chosen.any():
      pending["generated"].append(generated[:num_valid][chosen])
      pending["real"].append(batch[image_name][:num_valid][chosen])
      flush(len(ids))
  if features_fn is not None:
    flush(1)
  scores = {}
  if classifier is not None:
    num_entries = dataset.labels.size
    scores.update({name: count / num_entries for name, count in correct.items()})
  if features_fn is not None:
    scores["fid_from_text"] = metrics.frechet_distance_of_features(
        np.concatenate(features["generated"]), np.concatenate(features["real"]))
  return scores


def encode_texts(dataset: MultimodalDataset, text_name: str, strings: Sequence[str]
                 ) -> np.ndarray:
  """Stored ids of chosen texts, as the data set stores its texts.

  Word-level texts (CUB captions) go through the data set's vocabulary (unknown words
  become `<unk>`); character texts (CelebA) are lower-cased and written from the
  first position into the data set's text length, cut to fit.

  Args:
    dataset: a split; its arrays give the text length L.
    text_name: the text modality.
    strings: K texts.

  Returns:
    int32 [K, L].

  Raises:
    UserError: a character text holds a character outside the alphabet.
  """
  length = dataset.arrays[text_name].shape[1]
  if text_name in dataset.vocabularies:
    return dataset.vocabularies[text_name].encode(list(strings), length)
  strings = [s.lower()[:length].ljust(length) for s in strings]
  unknown = sorted(set("".join(strings)) - set(char_text.ALPHABET))
  if unknown:
    raise UserError(f"--config.eval.generation_texts hold characters {unknown} that the "
                    f"{text_name} alphabet lacks; write them with {char_text.ALPHABET!r}.")
  return char_text.encode(strings)
