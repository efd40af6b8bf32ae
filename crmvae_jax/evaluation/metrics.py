"""Evaluation metrics (docs/metrics.md), on arrays that evaluation has gathered.

Nothing here knows about models: callers decode, classify or encode, then hand the
resulting labels, features or latents to these functions.

- `text_to_digit`, `exact_digit`, `digit_name_distances`: judge generated
  MNIST-SVHN-Text strings by Levenshtein distance (leniently: the nearest name) or by
  exact match.
- `accuracy` and `joint_coherence`: cross- and joint coherence from classifier outputs.
- `gaussian_statistics` and `frechet_distance`: FID from Inception pool3 features
  (`frechet_distance_of_features` from the features themselves).
- `linear_probe`: logistic-regression accuracy of latent representations (Table 5).
- `cosine_similarity`: agreement of two modalities' latents (CUB, CelebA).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from crmvae_jax.data.text import DIGIT_NAMES


def text_to_digit(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """Reads a digit from each generated text by least Levenshtein distance.

  Whitespace (the padding spaces, and the alphabet's newline) is removed first, so
  '  seven ' reads as 'seven'. The prediction is the digit whose English name is at
  least edit distance from what remains; ties go to the lowest digit (e.g. 'fine' is
  one edit from both 'five' and 'nine' and reads as 5), and an empty string reads as
  1 ('one', the first of the three-letter names).

  Args:
    strings: N decoded texts.

  Returns:
    (predicted_digit, distance): int arrays [N]; distance is the edit distance to the
    predicted digit's name.
  """
  distances = digit_name_distances(strings)
  # argmin returns the first minimum, which is the lowest digit.
  predicted_digit = np.argmin(distances, axis=1)
  distance = distances[np.arange(len(strings)), predicted_digit]
  return predicted_digit.astype(np.int64), distance.astype(np.int64)


def digit_name_distances(strings: Sequence[str]) -> np.ndarray:
  """Levenshtein distance of each text, whitespace removed, to each digit name: [N, 10]."""
  stripped = ["".join(text.split()) for text in strings]
  return process.cdist(stripped, DIGIT_NAMES, scorer=Levenshtein.distance,
                       dtype=np.int32).astype(np.int64)


def exact_digit(strings: Sequence[str]) -> np.ndarray:
  """The digit each text names exactly once whitespace is removed, or -1: int [N].

  The strict reading of the paper's text judge: '  seven ' reads as 7, 'seve' and
  'sevenn' as -1 (no digit), where `text_to_digit` reads both as 7.
  """
  distances = digit_name_distances(strings)
  return np.where(distances.min(axis=1) == 0, distances.argmin(axis=1), -1)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of predictions equal to their labels.

  Args:
    predictions: [N] predicted classes.
    labels: [N] true classes.

  Returns:
    The accuracy in [0, 1].
  """
  predictions = np.asarray(predictions)
  labels = np.asarray(labels)
  if predictions.shape != labels.shape:
    raise ValueError(f"accuracy: predictions {predictions.shape} and labels "
                     f"{labels.shape} differ in shape.")
  return float(np.mean(predictions == labels))


def joint_coherence(predictions: np.ndarray) -> float:
  """Fraction of samples on which every modality's classifier gives the same class.

  This is the joint coherence R of Table 1: z ~ p(z) is decoded into every modality
  and each decoded sample is classified; the sample counts when all K agree.

  Args:
    predictions: [K, N], the K modalities' predicted classes for the N samples.

  Returns:
    The agreeing fraction in [0, 1].
  """
  predictions = np.asarray(predictions)
  if predictions.ndim != 2:
    raise ValueError(f"joint_coherence: predictions must be [K, N], got "
                     f"{predictions.shape}.")
  return float(np.mean(np.all(predictions == predictions[0], axis=0)))


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of features, the Gaussian that FID compares.

  Args:
    features: [N, F] features (e.g. Inception pool3, F = 2048), N >= 2.

  Returns:
    (mu [F], sigma [F, F]) in float64; sigma is the unbiased sample covariance, as in
    pytorch-fid.
  """
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"gaussian_statistics: need features [N >= 2, F], got "
                     f"{features.shape}.")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

  d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

  The trace of the root is computed from eigenvalues (see the code), not with
  pytorch-fid's scipy `sqrtm` of the product: the same number (to float64 round-off,
  with no 1e-6 diagonal offset needed for singular covariances), about 20x faster for
  the 1,152 features of the MNIST classifier.

  Args:
    mu1: [F] mean of the first Gaussian (e.g. generated images' features).
    sigma1: [F, F] its covariance.
    mu2: [F] mean of the second Gaussian (e.g. real images' features).
    sigma2: [F, F] its covariance.

  Returns:
    The squared Frechet distance (what is reported as FID).

  Raises:
    ValueError: shapes disagree.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (
      mu1.shape[0], mu1.shape[0]):
    raise ValueError(f"frechet_distance: shapes mu {mu1.shape}, {mu2.shape} and "
                     f"sigma {sigma1.shape}, {sigma2.shape} do not match.")

  # Tr (sigma1 sigma2)^(1/2) = sum_i sqrt(lambda_i), lambda the eigenvalues of the
  # symmetric A sigma2 A with A = sigma1^(1/2): two symmetric eigendecompositions,
  # exact for covariances (positive semi-definite, singular ones included) and much
  # faster than a general matrix square root of the product.
  eigenvalues, eigenvectors = np.linalg.eigh(sigma1)
  root1 = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
  product_eigenvalues = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
  trace_root = np.sum(np.sqrt(np.clip(product_eigenvalues, 0.0, None)))
  mean_difference = mu1 - mu2
  return float(mean_difference @ mean_difference + np.trace(sigma1) +
               np.trace(sigma2) - 2.0 * trace_root)


def frechet_distance_of_features(features1: np.ndarray, features2: np.ndarray) -> float:
  """`frechet_distance` of the Gaussians fitted to two feature sets [N1, F] and [N2, F]
  (`gaussian_statistics`), the same number computed faster when both sets have fewer
  examples than features.

  With X1, X2 the centred features, sigma_i = X_i^T X_i / (N_i - 1), and the nonzero
  eigenvalues of sigma1 sigma2 are the squared singular values of X1 X2^T divided by
  (N1 - 1)(N2 - 1): Tr (sigma1 sigma2)^(1/2) is the sum of those singular values over
  sqrt((N1 - 1)(N2 - 1)), from an N1 x N2 matrix instead of two F x F eigendecompositions
  (a 16-example evaluation with the MNIST judge's 1,152 features: ~1 ms against ~0.3 s).
  """
  features1 = np.asarray(features1, dtype=np.float64)
  features2 = np.asarray(features2, dtype=np.float64)
  if (features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]
      or min(len(features1), len(features2)) < 2):
    raise ValueError(f"frechet_distance_of_features: need features [N >= 2, F] of one F, "
                     f"got {features1.shape} and {features2.shape}.")
  if max(len(features1), len(features2)) >= features1.shape[1]:
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))
  mean1, mean2 = features1.mean(axis=0), features2.mean(axis=0)
  centred1, centred2 = features1 - mean1, features2 - mean2
  scale1, scale2 = len(features1) - 1.0, len(features2) - 1.0
  trace_root = np.linalg.svd(centred1 @ centred2.T, compute_uv=False).sum() / np.sqrt(
      scale1 * scale2)
  mean_difference = mean1 - mean2
  return float(mean_difference @ mean_difference + np.sum(centred1 ** 2) / scale1 +
               np.sum(centred2 ** 2) / scale2 - 2.0 * trace_root)


def linear_probe(train_latents: np.ndarray, train_labels: np.ndarray,
                 test_latents: np.ndarray, test_labels: np.ndarray,
                 max_iter: int = 1000) -> float:
  """Test accuracy of a logistic regression trained on latent representations.

  Table 5's latent classification: features are standardised with the training set's
  mean and deviation, then scikit-learn's LogisticRegression is fitted with its
  defaults otherwise: the lbfgs solver, L2 regularisation with C = 1, and a
  multinomial (softmax) model when there are more than two classes.

  Args:
    train_latents: [N_train, D] latents (e.g. posterior means of one subset).
    train_labels: [N_train] integer classes.
    test_latents: [N_test, D] latents from the same subset.
    test_labels: [N_test] integer classes.
    max_iter: lbfgs iteration limit.

  Returns:
    Accuracy on the test points, in [0, 1].
  """
  # Imported here: scikit-learn takes about a second to import, and only the probes
  # need it (every command line imports this module).
  from sklearn import linear_model, pipeline, preprocessing

  probe = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(max_iter=max_iter))
  probe.fit(np.asarray(train_latents), np.asarray(train_labels))
  return accuracy(probe.predict(np.asarray(test_latents)), np.asarray(test_labels))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
  """Mean row-wise cosine similarity of two sets of vectors.

  Used for CUB and CelebA, where row i of `a` and `b` are the latents inferred from
  the two modalities of pair i. A zero row has similarity 0 with anything.

  Args:
    a: [N, D] vectors.
    b: [N, D] vectors.

  Returns:
    mean_i <a_i, b_i> / (|a_i| |b_i|), in [-1, 1].
  """
  a = np.asarray(a, dtype=np.float64)
  b = np.asarray(b, dtype=np.float64)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"cosine_similarity: need two [N, D] arrays of one shape, got "
                     f"{a.shape} and {b.shape}.")
  norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
  dots = np.sum(a * b, axis=1)
  return float(np.mean(dots / np.maximum(norms, np.finfo(np.float64).tiny)))
