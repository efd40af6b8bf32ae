"""Ex-post samplers: a distribution over the shared latent fitted to a trained model's
posteriors, to draw joint samples from instead of the prior N(0, I).

A model whose aggregate posterior does not fill N(0, I) generates poorly from the prior:
many prior samples fall where no training example's posterior is, and each decoder makes
something of them on its own, so joint coherence suffers. MultiVae's
`GaussianMixtureSampler` fits a Gaussian mixture to the joint posterior means of the
training set after training and samples z from it; `GaussianMixtureSampler` here is that,
with scikit-learn's `GaussianMixture` (full covariances, k-means start, seeded).

    sampler = model.fit_sampler()                      # TrainedModel, model/inference.py
    outputs = model.sample(1000, rng=0, sampler=sampler)
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

# MultiVae's default number of components.
NUM_COMPONENTS = 10


@dataclasses.dataclass(frozen=True)
class GaussianMixtureSampler:
  """A Gaussian mixture over z [D]: weights [K], means [K, D], covariances [K, D, D]."""

  weights: np.ndarray
  means: np.ndarray
  covariances: np.ndarray

  @classmethod
  def fit(cls, latents: np.ndarray, num_components: int = NUM_COMPONENTS,
          seed: int = 0) -> "GaussianMixtureSampler":
    """The mixture fitted by EM to `latents` [N, D] (N >= num_components)."""
    from sklearn.mixture import GaussianMixture  # slow to import; only fitting needs it

    latents = np.asarray(latents, np.float64)
    if latents.ndim != 2 or len(latents) < num_components:
      raise ValueError(f"Fitting {num_components} components needs latents [N, D] with N >= "
                       f"{num_components}; got {latents.shape}.")
    mixture = GaussianMixture(num_components, covariance_type="full", random_state=seed,
                              reg_covar=1e-6).fit(latents)
    return cls(mixture.weights_, mixture.means_, mixture.covariances_)

  @property
  def latent_dim(self) -> int:
    return self.means.shape[1]

  def sample(self, num_samples: int, rng: jax.Array) -> np.ndarray:
    """`num_samples` draws z [num_samples, D] float32, a function of `rng` (a JAX key)."""
    component_key, normal_key = jax.random.split(rng)
    components = np.asarray(jax.random.choice(component_key, len(self.weights), (num_samples,),
                                              p=self.weights / self.weights.sum()))
    noise = np.asarray(jax.random.normal(normal_key, (num_samples, self.latent_dim)),
                       np.float64)
    factors = np.linalg.cholesky(self.covariances)  # [K, D, D]
    z = self.means[components] + np.einsum("nij,nj->ni", factors[components], noise)
    return z.astype(np.float32)

  def log_density(self, z: np.ndarray) -> np.ndarray:
    """log q(z) under the mixture, [N] (float64)."""
    z = np.asarray(z, np.float64)
    factors = np.linalg.cholesky(self.covariances)
    dim = self.latent_dim
    per_component = []
    for weight, mean, factor in zip(self.weights, self.means, factors):
      solved = np.linalg.solve(factor, (z - mean).T)  # [D, N]
      log_det = 2.0 * np.sum(np.log(np.diag(factor)))
      per_component.append(np.log(weight) - 0.5 * (np.sum(solved ** 2, axis=0) + log_det
                                                   + dim * np.log(2 * np.pi)))
    stacked = np.stack(per_component)
    top = stacked.max(axis=0)
    return top + np.log(np.exp(stacked - top).sum(axis=0))
