"""A trained multimodal VAE as a Python object: encode, generate, sample, reconstruct and
score any subset of its modalities.

`TrainedModel` wraps the module, its parameters and how the model infers z from a subset
of modalities (`objectives.subset_posterior_kind`: a product of experts with or without
the prior expert, or a mixture), worked out once from the readings the model was
trained with. Every method takes inputs as a dict {modality name: array [B, ...]}, B >= 1,
holding any non-empty subset of the modalities (`Modality.check_values` says what each
kind takes): images as uint8 [B, H, W, C] in 0..255 (the stored form) or floats in
[0, 1] (read as they are, so a generated image can be fed back in), text as integer token
ids [B, L] below the vocabulary size, vectors as finite floats [B, F]. Modalities left
out are left out of the posterior (masked, never branched on), so one compiled program
serves every subset of one batch size. Large inputs are processed in batches of
`batch_size`.

Randomness: every `rng` argument takes a JAX PRNG key (raw uint32 [2] from
`jax.random.PRNGKey`, or a typed key from `jax.random.key`) or an int seed (made
`jax.random.PRNGKey(seed)`). `rng=None` means the posterior's mean in `encode`,
`latents` and `generate`, and seed 0 in `log_likelihood`; `sample` draws with seed 0 by
default. Arguments outside these rules raise a TypeError or ValueError naming them.

Outputs are what a person looks at (`Modality.display`): images as floats in [0, 1],
text as token ids [B, L] (`crmvae_jax.data.text.decode` turns MST-style ids into
strings).

    import crmvae_jax
    model = crmvae_jax.load("workdirs/quickstart_crmvae_seed0")
    names = model.generate({"mnist": images}, ["text"])["text"]

Every evaluation metric and figure of the package goes through this class.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import models, objectives, samplers
from crmvae_jax.model.modality import Modality

# Latents decoded at once when estimating log-likelihoods: [chunk, B, D], chunk B about this.
LATENTS_PER_CALL = 4096


def sample_chunk(num_samples: int, batch_size: int) -> int:
  """Importance samples per step: the largest divisor of `num_samples` whose chunk of
  latents, times the batch, stays within `LATENTS_PER_CALL` (at least 1)."""
  largest = max(1, LATENTS_PER_CALL // max(batch_size, 1))
  return max(d for d in range(1, min(num_samples, largest) + 1) if num_samples % d == 0)


def log_marginal_estimate(log_likelihood_fn, proposal: dist.Gaussian | dist.Mixture,
                          num_samples: int, rng: jax.Array, chunk: int | None = None,
                          private: dist.Gaussian | None = None) -> jax.Array:
  """Importance-sampled log p(x) for every batch element:

      log p(x) ~= logsumexp_k [log p(x | z_k) + log p(z_k) - log q(z_k)] - log K,
      z_1..z_K ~ q,

  consistent as K grows, and a lower bound in expectation for every K (the IWAE bound
  of Burda et al. 2016), with p(z) = N(0, I).

  Args:
    log_likelihood_fn: latents [k, B, D] -> log p(x | z) [k, B].
    proposal: q(z) with batch shape [B] and event size D (a Gaussian [B, D] or a
      mixture of them).
    num_samples: K.
    rng: sampling randomness.
    chunk: samples drawn and scored per step; must divide K. Default:
      `sample_chunk(K, B)`.
    private: with private latents, their proposal q(w_m) for every modality m, a
      Gaussian [M, B, P] (prior N(0, I) too). Then every sample is (z, w), w drawn from a
      stream of its own (`objectives.PRIVATE_STREAM`), the weight gains log p(w) -
      log q(w), and `log_likelihood_fn` takes (z [k, B, D], w [k, M, B, P]).

  Returns:
    [B]: the estimate of log p(x) for each element (nats).
  """
  if isinstance(proposal, dist.Gaussian):
    batch_size, latent_dim = proposal.mean.shape
  else:
    batch_size, latent_dim = proposal.components.mean.shape[1:]
  chunk = chunk or sample_chunk(num_samples, batch_size)
  if num_samples % chunk:
    raise ValueError(f"log_marginal_estimate: chunk {chunk} does not divide {num_samples}.")
  prior = dist.standard_normal((batch_size, latent_dim))

  def log_weights(rng):  # [chunk, B]
    z = jax.vmap(proposal.sample)(jax.random.split(rng, chunk))
    weights = prior.log_prob(z) - proposal.log_prob(z)
    if private is None:
      return log_likelihood_fn(z) + weights
    private_rng = jax.random.fold_in(rng, objectives.PRIVATE_STREAM)
    w = jax.vmap(private.sample)(jax.random.split(private_rng, chunk))  # [chunk, M, B, P]
    private_prior = dist.standard_normal(private.mean.shape, private.mean.dtype)
    weights += jnp.sum(private_prior.log_prob(w) - private.log_prob(w), axis=1)
    return log_likelihood_fn(z, w) + weights

  def step(running, rng):
    return jnp.logaddexp(running, jax.nn.logsumexp(log_weights(rng), axis=0)), None

  total, _ = jax.lax.scan(step, jnp.full((batch_size,), -jnp.inf),
                          jax.random.split(rng, num_samples // chunk))
  return total - jnp.log(num_samples)


# The jitted programs take the module and the posterior kind as static arguments: a
# module is a hashable dataclass, so every TrainedModel of one architecture shares them.

def _experts(model: models.MultimodalVAE, params, stored: dict) -> dist.Gaussian:
  """The unimodal experts [M, B, D] of a stored batch (every encoder runs)."""
  return models.apply(model, params, models.model_inputs(model.modalities, stored),
                      method=model.encode)


def _joint(model: models.MultimodalVAE, params, stored: dict) -> dist.Gaussian | None:
  """The joint encoder's q(z|X) [B, D] of a model that has one (JMVAE), else None."""
  if not model.joint_encoder:
    return None
  return models.apply(model, params, models.model_inputs(model.modalities, stored),
                      method=model.encode_joint)


def _posterior(model: models.MultimodalVAE, kind: objectives.SubsetPosteriorKind, params,
               stored: dict, subset: jax.Array) -> dist.Gaussian | dist.Mixture:
  return models.subset_posterior(_experts(model, params, stored), subset, kind,
                                 _joint(model, params, stored))


@functools.partial(jax.jit, static_argnames=("model", "kind", "from_mean"))
def _latents(model, kind, from_mean, params, stored, subset, rng) -> jax.Array:
  """z [B, D]: the mean of, or a sample from, the posterior of `subset` [M] (or [M, B])."""
  posterior = _posterior(model, kind, params, stored, subset)
  return models.posterior_mean(posterior) if from_mean else posterior.sample(rng)


@functools.partial(jax.jit, static_argnames=("model", "kind"))
def _subset_means(model, kind, params, stored, subsets) -> jax.Array:
  """[K, B, D]: the posterior mean of each subset of `subsets` [K, M], one encoding."""
  posteriors, joint = _experts(model, params, stored), _joint(model, params, stored)
  return jax.vmap(lambda subset: models.posterior_mean(
      models.subset_posterior(posteriors, subset, kind, joint)))(subsets)


@functools.partial(jax.jit, static_argnames=("model",))
def _decode(model, params, z, w=None) -> tuple[jax.Array, ...]:
  """Every decoder's output for latents z [B, D] (and, with private latents, each
  modality's w_m in w [M, B, P]; None: every w_m at its prior's mean, 0)."""
  rows = jnp.broadcast_to(z, (len(model.modalities),) + z.shape)
  if w is not None:
    rows = jnp.concatenate([rows, w], axis=-1)
  return models.apply(model, params, rows, method=model.decode)


def _private_given(model: models.MultimodalVAE, params, stored: dict, given: jax.Array,
                   auxiliary: bool = False) -> dist.Gaussian:
  """[M, B, P]: q(w_m|x_m) for a modality of `given` [M]; for the others their prior,
  N(0, I), or (`auxiliary`) MMVAE+'s learned r_m."""
  _, private = models.apply(model, params, models.model_inputs(model.modalities, stored),
                            method=model.encode_private)
  prior = dist.standard_normal(private.mean.shape, private.mean.dtype)
  if auxiliary:
    learned = models.apply(model, params, method=model.auxiliary_prior)  # [M, P]
    prior = jax.tree.map(lambda a: jnp.broadcast_to(a[:, None], private.mean.shape), learned)
  return jax.tree.map(lambda q, p: jnp.where(given[:, None, None], q, p), private, prior)


@functools.partial(jax.jit, static_argnames=("model", "from_mean", "auxiliary"))
def _private_latents(model, from_mean, params, stored, given, rng, auxiliary=False) -> jax.Array:
  """w [M, B, P] (`_private_given`): each one's mean, or a sample of it."""
  chosen = _private_given(model, params, stored, given, auxiliary)
  return chosen.mean if from_mean else chosen.sample(rng)


@functools.partial(jax.jit, static_argnames=("model", "kind", "num_samples"))
def _log_likelihood(model, kind, num_samples, params, stored, subset, scored, rng) -> jax.Array:
  """[B]: log p(X_scored) with the posterior of `subset` as the proposal (both [M]).

  With private latents the proposal of w_m is q(w_m|x_m) for a modality of `subset` and
  its prior N(0, I) for the others, and decoder m reads (z, w_m)."""
  proposal = _posterior(model, kind, params, stored, subset)
  log_likelihoods = models.make_log_likelihood_fn(model, params, stored, weighted=False)
  num_modalities = len(model.modalities)

  def log_likelihood_fn(z, w=None):  # [k, B, D] (and [k, M, B, P]) -> [k, B]
    rows = jnp.broadcast_to(z[:, None], (z.shape[0], num_modalities) + z.shape[1:])
    if w is not None:
      rows = jnp.concatenate([rows, w], axis=-1)
    return jnp.sum(log_likelihoods.stacked(rows) * scored[None, :, None], axis=1)

  private = _private_given(model, params, stored, subset) if model.private_dim else None
  return log_marginal_estimate(log_likelihood_fn, proposal, num_samples, rng, private=private)


# Checks of the API's arguments: each raises a TypeError (wrong type) or ValueError (wrong
# value) of one sentence that names the argument and says what it accepts.

_SEEDS = "an int seed"
_KEYS = "a JAX PRNG key (jax.random.PRNGKey(0) or jax.random.key(0))"


def _count(value, argument: str) -> int:
  """`value` as a Python int, if it is an int >= 1 (numpy integers too, bools not)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{argument} is {value!r}; pass an int >= 1.")
  if value < 1:
    raise ValueError(f"{argument} is {value}; pass an int >= 1.")
  return int(value)


def _key(rng: jax.Array | int, argument: str = "rng") -> jax.Array:
  """The PRNG key of `rng`: a JAX key as it is (raw uint32 [2] or a typed key of shape
  ()), an int seed (numpy integers too, bools not) as `jax.random.PRNGKey(seed)`."""
  if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
    if not -2**63 <= rng < 2**63:
      raise ValueError(f"{argument} is the seed {rng}; pass {_KEYS} or {_SEEDS} that fits "
                       "in int64.")
    return jax.random.PRNGKey(int(rng))
  if isinstance(rng, (jax.Array, np.ndarray)):
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) and rng.shape == ():
      return rng
    if rng.dtype == np.uint32 and rng.shape == (2,):
      return jnp.asarray(rng)
    given = f"an array of dtype {rng.dtype} and shape {rng.shape}"
  else:
    given = repr(rng) if isinstance(rng, (float, str, bool, np.bool_, type(None))) else (
        f"a {type(rng).__name__}")
  raise TypeError(f"{argument} is {given}; pass {_KEYS} or {_SEEDS}.")


class TrainedModel:
  """A trained multimodal VAE (module docstring).

  Attributes:
    model: the `MultimodalVAE` module.
    params: its parameters.
    kind: how it infers z from a subset of its modalities.
    modalities: its `Modality`s, in its order.
    names: their names.
    latent_dim: D.
    batch_size: examples per compiled call (an int >= 1).
    config: the run's config, step: the step of its checkpoint, train_set and test_set:
      its data (given by `crmvae_jax.load`; None for a model built from parts).
  """

  def __init__(self, model: models.MultimodalVAE, params, kind: objectives.SubsetPosteriorKind,
               batch_size: int = 256, *, config=None, step: int | None = None,
               train_set=None, test_set=None):
    self.model = model
    self.params = params
    self.kind = kind
    self.modalities: tuple[Modality, ...] = model.modalities
    self.names = tuple(m.name for m in self.modalities)
    self.latent_dim = model.latent_dim
    self.batch_size = batch_size
    self.config, self.step = config, step
    self.train_set, self.test_set = train_set, test_set

  @property
  def batch_size(self) -> int:
    return self._batch_size

  @batch_size.setter
  def batch_size(self, value: int) -> None:
    self._batch_size = _count(value, "batch_size")

  def __repr__(self) -> str:
    run = "" if self.config is None else f"{self.config.model} at step {self.step}, "
    return (f"TrainedModel({run}modalities {list(self.names)}, latent {self.latent_dim}, "
            f"posterior of a subset: {self.kind})")

  @classmethod
  def from_config(cls, model: models.MultimodalVAE, params, config, batch_size: int = 256,
                  **run) -> "TrainedModel":
    """The model with the posterior kind of `config`'s model and readings (batch_size:
    an int >= 1; `run`: step, train_set, test_set)."""
    return cls(model, params, objectives.subset_posterior_kind(config.model,
                                                               config.get("readings")),
               batch_size, config=config, **run)

  # Arguments.

  def _checked_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The given modalities' arrays, each checked (`Modality.check_values`), of one length."""
    if not isinstance(inputs, Mapping):
      raise TypeError(f"inputs is a {type(inputs).__name__}; pass a dict {{modality name: "
                      f"array [B, ...]}} of the model's modalities {list(self.names)}.")
    unknown = sorted(set(inputs) - set(self.names), key=str)
    if unknown or not inputs:
      raise ValueError(f"inputs has the keys {sorted(inputs, key=str)}; pass a non-empty dict "
                       f"of the model's modalities {list(self.names)}; unknown: {unknown}.")
    given = {m.name: m.check_values(inputs[m.name], f"inputs[{m.name!r}]")
             for m in self.modalities if m.name in inputs}
    sizes = {name: len(values) for name, values in given.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"inputs has modalities of different lengths {sizes}; pass one example "
                       "per row of every modality.")
    return given

  def _names(self, names: Iterable[str], argument: str) -> tuple[str, ...]:
    """`names` as a tuple, if it is a collection (not a string) of the model's modality
    names."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
      raise TypeError(f"{argument} is {names!r}; pass a list of the model's modalities, "
                      f"e.g. {list(self.names[:1])}.")
    names = tuple(names)
    unknown = sorted(set(names) - set(self.names), key=str)
    if unknown:
      raise ValueError(f"Unknown {argument} {unknown}; pass names of the model's modalities "
                       f"{list(self.names)}.")
    return names

  def _checked_latents(self, z) -> np.ndarray:
    """Latents `z` as float32 [B, D], if they are finite floats of that shape."""
    z = np.asarray(z)
    accepted = f"pass finite float latents [B, {self.latent_dim}] with B >= 1"
    if not jnp.issubdtype(z.dtype, jnp.floating):
      raise TypeError(f"z is of dtype {z.dtype}; {accepted}.")
    if z.ndim != 2 or z.shape[1] != self.latent_dim or not len(z):
      raise ValueError(f"z has shape {z.shape} and the model's latent_dim is "
                       f"{self.latent_dim}; {accepted}.")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below
      z = z.astype(np.float32)
    if not np.isfinite(z).all():
      raise ValueError(f"z holds NaN or infinite values (in float32); {accepted}.")
    return z

  # Inputs.

  def stored(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every modality's array for the encoders: the given ones checked, in the form their
    network reads (`Modality.check_values`), zeros for the others (they are masked out
    of the posterior)."""
    given = self._checked_inputs(inputs)
    size = len(next(iter(given.values())))
    return {m.name: (given[m.name] if m.name in given else
                     np.zeros((size,) + m.shape, np.int32 if m.is_text else
                              np.float32 if m.kind == "vector" else np.uint8))
            for m in self.modalities}

  def subset_of(self, names: Sequence[str]) -> np.ndarray:
    """The boolean mask [M] of the modalities `names`."""
    return np.array([name in names for name in self.names])

  def _batches(self, stored: Mapping[str, np.ndarray]):
    """(padded batch, number of real rows) over `stored`, every batch of one shape."""
    size = len(next(iter(stored.values())))
    batch_size = min(self.batch_size, size)
    for start in range(0, size, batch_size):
      chunk = {name: values[start:start + batch_size] for name, values in stored.items()}
      valid = len(next(iter(chunk.values())))
      if valid < batch_size:
        chunk = {name: np.concatenate([values, np.repeat(values[-1:], batch_size - valid, 0)])
                 for name, values in chunk.items()}
      yield chunk, valid

  # The API.

  def latents(self, inputs: Mapping[str, np.ndarray], rng: jax.Array | int | None = None,
              subset: np.ndarray | None = None) -> np.ndarray:
    """z [B, D] from the model's posterior of the modalities in `inputs` (or of `subset`).

    Args:
      inputs: {modality: array [B, ...]} (module docstring), any non-empty subset.
      rng: None: the posterior's mean; a JAX PRNG key or an int seed: a sample of it.
      subset: a boolean mask [M] over the model's modalities; default: those of `inputs`.

    Returns:
      [B, D] latents.
    """
    stored = self.stored(inputs)
    key = None if rng is None else _key(rng)
    subset = jnp.asarray(self.subset_of(list(inputs)) if subset is None else subset)
    batches = list(self._batches(stored))
    outputs = []
    for index, (batch, valid) in enumerate(batches):
      # One batch draws with the key itself; several, each with its own fold of it.
      batch_key = (jax.random.PRNGKey(0) if key is None else
                   key if len(batches) == 1 else jax.random.fold_in(key, index))
      outputs.append(np.asarray(_latents(self.model, self.kind, key is None, self.params,
                                         batch, subset, batch_key))[:valid])
    return np.concatenate(outputs)

  def encode(self, inputs: Mapping[str, np.ndarray], rng: jax.Array | int | None = None
             ) -> np.ndarray:
    """The latent representation [B, D] of `inputs` (any non-empty subset of the
    modalities, module docstring): the posterior mean with `rng` None, else a sample of
    the posterior drawn with `rng` (a JAX PRNG key or an int seed)."""
    return self.latents(inputs, rng)

  def subset_means(self, inputs: Mapping[str, np.ndarray], subsets: np.ndarray) -> np.ndarray:
    """[K, B, D]: the posterior mean of every subset of `subsets` [K, M] (one encoding of
    `inputs`, {modality: array [B, ...]} as in the module docstring)."""
    stored = self.stored(inputs)
    return np.concatenate([
        np.asarray(_subset_means(self.model, self.kind, self.params, batch,
                                 jnp.asarray(subsets)))[:, :valid]
        for batch, valid in self._batches(stored)], axis=1)

  def decode(self, z: np.ndarray, targets: Sequence[str] | None = None,
             rng: jax.Array | int | None = None) -> dict[str, np.ndarray]:
    """Latents z (finite floats [B, D], B >= 1) -> {target: displayed output} for
    `targets` (a list of modality names; default: every one).

    A model with private latents decodes each modality from (z, w_m): with `rng` None,
    w_m at its prior's mean (0); with a key or seed, w_m ~ N(0, I) drawn with it."""
    targets = self.names if targets is None else self._names(targets, "targets")
    z = self._checked_latents(z)
    w = None
    if self.model.private_dim and rng is not None:
      w = np.asarray(jax.random.normal(
          jax.random.fold_in(_key(rng), objectives.PRIVATE_STREAM),
          (len(self.modalities), len(z), self.model.private_dim)))
    return self._decoded(z, w, targets)

  def _decoded(self, z: np.ndarray, w: np.ndarray | None, targets: Sequence[str]
               ) -> dict[str, np.ndarray]:
    """z [B, D] and w [M, B, P] (or None) decoded in batches, displayed."""
    outputs = {name: [] for name in targets}
    arrays = {"z": z} if w is None else {"z": z, "w": np.swapaxes(w, 0, 1)}
    for batch, valid in self._batches(arrays):
      w_batch = None if w is None else jnp.swapaxes(jnp.asarray(batch["w"]), 0, 1)
      decoded = jax.device_get(_decode(self.model, self.params, jnp.asarray(batch["z"]),
                                       w_batch))
      for m, output in zip(self.modalities, decoded):
        if m.name in outputs:
          outputs[m.name].append(m.display(output[:valid]))
    return {name: np.concatenate(values) for name, values in outputs.items()}

  def private_latents(self, inputs: Mapping[str, np.ndarray],
                      rng: jax.Array | int | None = None,
                      private_prior: str = "prior") -> np.ndarray:
    """Each modality's private latent w_m, [M, B, P] (models with private latents): for a
    modality in `inputs` its own posterior q(w_m|x_m), for the others the prior N(0, I)
    (`private_prior="prior"`) or MMVAE+'s learned auxiliary prior r_m ("auxiliary"); the
    mean of each with `rng` None, else a sample drawn with `rng`. Dims past a modality's
    own size P_m are unused."""
    if not self.model.private_dim:
      raise ValueError(f"This {self.config.model if self.config else 'model'} has no private "
                       "latents; private_latents is for models trained with "
                       "--config.private_dims.")
    if private_prior not in ("prior", "auxiliary"):
      raise ValueError(f"private_prior is {private_prior!r}; pass 'prior' or 'auxiliary'.")
    if private_prior == "auxiliary" and not self.model.auxiliary_priors:
      raise ValueError("private_prior='auxiliary' needs a model with learned auxiliary priors "
                       "(mmvae_plus); pass 'prior'.")
    stored = self.stored(inputs)
    key = None if rng is None else jax.random.fold_in(_key(rng), objectives.PRIVATE_STREAM)
    given = jnp.asarray(self.subset_of(list(inputs)))
    parts = []
    for index, (batch, valid) in enumerate(self._batches(stored)):
      batch_key = jax.random.PRNGKey(0) if key is None else jax.random.fold_in(key, index)
      parts.append(np.asarray(_private_latents(self.model, key is None, self.params, batch,
                                               given, batch_key,
                                               auxiliary=private_prior == "auxiliary"))[:, :valid])
    return np.concatenate(parts, axis=1)

  def generate(self, inputs: Mapping[str, np.ndarray], targets: Sequence[str] | None = None,
               rng: jax.Array | int | None = None,
               private_prior: str = "prior") -> dict[str, np.ndarray]:
    """The `targets` (default: every modality) generated from `inputs`.

    Args:
      inputs: {modality: array [B, ...]}, any non-empty subset of the modalities (module
        docstring); images may be uint8 0..255 or floats in [0, 1], e.g. generated ones.
      targets: a list of the modalities to generate.
      rng: None: decode the posterior's mean; a JAX PRNG key or an int seed: decode a
        sample of it.
      private_prior: with private latents, where a modality that is not given draws its
        w_m: "prior", N(0, I), or "auxiliary", MMVAE+'s learned r_m (`private_latents`).

    Returns:
      {target: images [B, H, W, C] in [0, 1] or token ids [B, L]}.
    """
    z = self.latents(inputs, rng)
    if not self.model.private_dim:
      return self.decode(z, targets)
    # Each modality's own w_m where it is given, its prior's elsewhere.
    targets = self.names if targets is None else self._names(targets, "targets")
    return self._decoded(z, self.private_latents(inputs, rng, private_prior), targets)

  def reconstruct(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`inputs` ({modality: array [B, ...]}) encoded together and decoded back (from the
    posterior mean)."""
    return self.generate(inputs, list(inputs) if isinstance(inputs, Mapping) else None)

  def sample(self, num_samples: int, rng: jax.Array | int = 0,
             targets: Sequence[str] | None = None,
             sampler: "samplers.GaussianMixtureSampler | None" = None) -> dict[str, np.ndarray]:
    """`num_samples` (an int >= 1) examples of every modality (or of `targets`, a list of
    modality names) decoded from z ~ N(0, I), or from z ~ `sampler` (an ex-post sampler,
    `fit_sampler`), drawn with `rng` (a JAX PRNG key or an int seed; default: seed 0)."""
    num_samples = _count(num_samples, "num_samples")
    if sampler is None:
      z = np.asarray(jax.random.normal(_key(rng), (num_samples, self.latent_dim)))
    else:
      if getattr(sampler, "latent_dim", None) != self.latent_dim:
        raise ValueError(f"sampler draws latents of size {getattr(sampler, 'latent_dim', None)}"
                         f" but the model's are {self.latent_dim}; fit it with "
                         "model.fit_sampler().")
      z = sampler.sample(num_samples, _key(rng))
    return self.decode(z, targets, rng=rng)

  def fit_sampler(self, num_components: int = samplers.NUM_COMPONENTS,
                  max_examples: int | None = None, seed: int = 0
                  ) -> samplers.GaussianMixtureSampler:
    """An ex-post sampler for `sample`: a Gaussian mixture of `num_components` fitted to
    the joint posterior means of the run's training set (its first `max_examples` pairs
    in a seeded random order; None: all), MultiVae's GaussianMixtureSampler
    (`model/samplers.py`)."""
    if self.train_set is None:
      raise ValueError("fit_sampler needs the run's training set; open the run with "
                       "crmvae_jax.load.")
    num_components = _count(num_components, "num_components")
    ids = np.random.default_rng(seed).permutation(len(self.train_set))
    if self.train_set.masks is not None:  # the joint posterior of complete pairs only
      ids = ids[self.train_set.masks[ids].all(axis=1)]
    if max_examples is not None:
      ids = ids[:_count(max_examples, "max_examples")]
    batch = self.train_set.batch(np.sort(ids))
    means = self.latents({name: batch[name] for name in self.names})
    return samplers.GaussianMixtureSampler.fit(means, num_components, seed)

  def log_likelihood(self, inputs: Mapping[str, np.ndarray], num_samples: int = 1000,
                     rng: jax.Array | int | None = None,
                     proposal: Sequence[str] | None = None) -> np.ndarray:
    """Importance-sampled log p(X) of the modalities in `inputs`, per example (nats).

    log p(X | z) is the sum of the given modalities' own log-densities (Laplace for
    images, categorical for text), without the training's likelihood weights. With
    private latents each sample is (z, w_1..w_M): w_m from q(w_m|x_m) where m is in the
    proposal, from its prior N(0, I) otherwise, and log p(X | z, w) reads each w_m.

    Args:
      inputs: {modality: array [B, ...]} (module docstring).
      num_samples: K importance samples per example, an int >= 1.
      rng: sampling randomness: a JAX PRNG key or an int seed (None: seed 0).
      proposal: a list of the modalities whose posterior is the proposal; default: those
        of `inputs` (the model's joint posterior of them).

    Returns:
      [B] estimates of log p(X).
    """
    num_samples = _count(num_samples, "num_samples")
    key = _key(0 if rng is None else rng)
    stored = self.stored(inputs)
    proposal = list(inputs) if proposal is None else self._names(proposal, "proposal")
    scored = jnp.asarray(self.subset_of(list(inputs)), jnp.float32)
    subset = jnp.asarray(self.subset_of(proposal))
    return np.concatenate([
        np.asarray(_log_likelihood(self.model, self.kind, num_samples, self.params, batch,
                                   subset, scored, jax.random.fold_in(key, index)))[:valid]
        for index, (batch, valid) in enumerate(self._batches(stored))])
