"""Latent linear probes (Table 5): logistic regression on the posterior means of every
non-empty subset of the modalities, fitted on training pairs and scored on test pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

from crmvae_jax.model import distributions as dist
from crmvae_jax.evaluation import metrics
from crmvae_jax.model.modality import Modality
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.evaluation.coherence import subset_abbreviations
from crmvae_jax.evaluation.generation import EncodeMeans, encode_all
from crmvae_jax.reporting import tables


def latent_probes(encode_means: EncodeMeans, train_set: MultimodalDataset,
                  test_set: MultimodalDataset, modalities: Sequence[Modality],
                  batch_size: int) -> dict[str, float]:
  """Linear-probe accuracy of the posterior means of every non-empty subset (Table 5).

  Args:
    encode_means: stored batch -> posterior means [K, B, D] of the K subsets of
      `distributions.nonempty_subsets(M)`, in that order.
    train_set: pairs the logistic regressions are fitted on.
    test_set: pairs they are scored on.
    modalities: the model's modalities, in its order.
    batch_size: pairs per `encode_means` call.

  Returns:
    Subset name ('M+S', `tables.subset_name`) -> test accuracy.
  """
  train_means = encode_all(encode_means, train_set, batch_size)
  test_means = encode_all(encode_means, test_set, batch_size)
  return {
      tables.subset_name(subset_abbreviations(modalities, subset)): metrics.linear_probe(
          train_means[index], train_set.labels, test_means[index], test_set.labels)
      for index, subset in enumerate(dist.nonempty_subsets(len(modalities)))}
