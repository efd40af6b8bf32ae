"""The multimodal VAE: one encoder and one decoder per modality, and its loss.

The module only maps arrays to arrays: `encode` stacks the unimodal experts into a
Gaussian [M, B, D], `decode` maps latents [M, B, D] (row m for modality m) to each
modality's decoder output. Which objective combines them is the loss function's
business (`make_loss_fn`), so every model of docs/models.md shares one module.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import layers, networks, objectives, user_networks
from crmvae_jax.model.distributions import Gaussian
from crmvae_jax.model.modality import Modality


class MultimodalVAE(nn.Module):
  """Encoders and decoders of `modalities`, sharing a latent space of size latent_dim.

  A modality with a private latent (`Modality.private_dim` P_m > 0) has an encoder of
  D + P_m outputs, whose first D are its expert on the shared z and the rest q(w_m|x_m),
  and a decoder that reads (z, w_m) concatenated. Without private latents every network
  is built exactly as before they existed (same parameters, same checkpoints).
  """

  modalities: tuple[Modality, ...]
  latent_dim: int
  # The networks' arithmetic ("float32" or "bfloat16"); parameters stay float32 (`apply`).
  compute_dtype: str = "float32"
  # A joint encoder q(z|X) of its own beside the unimodal ones (JMVAE; `JointEncoder`).
  joint_encoder: bool = False
  # Learned auxiliary priors r_m(w_m) = N(0, diag(exp(logvar_m))) on the private latents
  # (MMVAE+; `auxiliary_prior`), their log-variances starting at 0.
  auxiliary_priors: bool = False

  @property
  def private_dim(self) -> int:
    """P = the largest private size (0: no private latents); private rows are [.., P]."""
    return max((m.private_dim for m in self.modalities), default=0)

  def setup(self):
    self.encoders = [
        user_networks.build(user_networks.network_classes(m.network)[0],
                            self.latent_dim + m.private_dim, dict(m.encoder_options),
                            **m.network_kwargs())
        for m in self.modalities]
    self.decoders = [
        user_networks.build(user_networks.network_classes(m.network)[1],
                            self.latent_dim + m.private_dim, dict(m.decoder_options),
                            **m.network_kwargs())
        for m in self.modalities]

    if self.joint_encoder:
      self.joint = JointEncoder(self.modalities, self.latent_dim)
    if self.auxiliary_priors:
      self.auxiliary_logvar = self.param(
          "auxiliary_logvar", nn.initializers.zeros, (len(self.modalities), self.private_dim))

  def auxiliary_prior(self) -> Gaussian:
    """The auxiliary priors r_m(w_m), arrays [M, P]: mean 0 and the learned log-variance
    (dims past a modality's own P_m are read by no decoder)."""
    return Gaussian(jnp.zeros_like(self.auxiliary_logvar), self.auxiliary_logvar)

  def encode_joint(self, inputs: Sequence[jax.Array]) -> Gaussian:
    """Network inputs of every modality -> the joint encoder's q(z|X), arrays [B, D]."""
    return Gaussian(*self.joint(inputs))

  def _outputs(self, inputs: Sequence[jax.Array]):
    return [encoder(x) for encoder, x in zip(self.encoders, inputs)]

  def encode(self, inputs: Sequence[jax.Array]) -> Gaussian:
    """Network inputs, one per modality -> the unimodal experts on z, arrays [M, B, D]."""
    dim = self.latent_dim
    means, logvars = zip(*((mean[..., :dim], logvar[..., :dim])
                           for mean, logvar in self._outputs(inputs)))
    return Gaussian(jnp.stack(means), jnp.stack(logvars))

  def encode_private(self, inputs: Sequence[jax.Array]) -> tuple[Gaussian, Gaussian]:
    """-> (the experts on z [M, B, D], the private posteriors q(w_m|x_m) [M, B, P]); a
    modality's dims past its own P_m hold N(0, 1), the prior, so they add no KL."""
    dim, width = self.latent_dim, self.private_dim
    shared, private = [], []
    for mean, logvar in self._outputs(inputs):
      shared.append((mean[..., :dim], logvar[..., :dim]))
      pad = [(0, 0)] * (mean.ndim - 1) + [(0, width - (mean.shape[-1] - dim))]
      private.append((jnp.pad(mean[..., dim:], pad), jnp.pad(logvar[..., dim:], pad)))
    return (Gaussian(*(jnp.stack(part) for part in zip(*shared))),
            Gaussian(*(jnp.stack(part) for part in zip(*private))))

  def decode(self, z: jax.Array) -> tuple[jax.Array, ...]:
    """Latents [M, B, D] (or [M, B, D + P]: z and each row's private w) -> decoder m's
    output for row m, one per modality. Without w, every w_m is its prior's mean, 0."""
    dim = self.latent_dim
    if self.private_dim and z.shape[-1] == dim:
      z = jnp.concatenate([z, jnp.zeros(z.shape[:-1] + (self.private_dim,), z.dtype)], -1)
    return tuple(decoder(z[m, ..., :dim + modality.private_dim])
                 for m, (decoder, modality) in enumerate(zip(self.decoders, self.modalities)))

  def __call__(self, inputs: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
    """Encode then decode the means (used to initialise every parameter)."""
    posteriors = self.encode(inputs)
    if self.joint_encoder:
      self.encode_joint(inputs)
    return self.decode(posteriors.mean)


# The features each modality's head gives the joint encoder, and its hidden width.
JOINT_FEATURES = 512


class JointEncoder(nn.Module):
  """JMVAE's joint encoder q(z|X), after MultiVae's MultipleHeadJointEncoder: each
  modality read by a copy of its own encoder architecture (parameters of its own) whose
  two heads give JOINT_FEATURES / 2 features each; all of them concatenated,
  Linear(JOINT_FEATURES), ReLU, and the (mean, logvar) heads."""

  modalities: tuple[Modality, ...]
  latent_dim: int

  @nn.compact
  def __call__(self, inputs: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    features = []
    for m, x in zip(self.modalities, inputs):
      head = user_networks.build(user_networks.network_classes(m.network)[0],
                                 JOINT_FEATURES // 2, dict(m.encoder_options),
                                 **m.network_kwargs())
      features.extend(head(x))  # both heads, so that every parameter is used
    hidden = nn.relu(layers.TorchDense(JOINT_FEATURES)(jnp.concatenate(features, axis=-1)))
    return layers.LatentHeads(self.latent_dim)(hidden)


COMPUTE_DTYPES = ("float32", "bfloat16")


def cast_floating(tree: Any, dtype) -> Any:
  """Every floating-point leaf of `tree` as `dtype`; integer leaves unchanged."""
  return jax.tree_util.tree_map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def apply(model: MultimodalVAE, params: dict, *args: Any, method: Callable) -> Any:
  """`model.apply` in the model's compute dtype, with float32 parameters and results.

  In bfloat16 the parameters and inputs are cast before the networks run and every
  output is cast back to float32, so the objectives' sums, the optimiser and the
  checkpoints stay float32; the parameters' gradients flow back through the cast as
  float32. In float32 it is `model.apply` itself.

  Args:
    model: the module (its `compute_dtype` decides).
    params: float32 parameters.
    *args: the method's arguments (arrays or lists of arrays).
    method: `model.encode` or `model.decode`.
  """
  if model.compute_dtype == "float32":
    return model.apply({"params": params}, *args, method=method)
  if model.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype {model.compute_dtype!r}: use one of {COMPUTE_DTYPES}.")
  dtype = jnp.dtype(model.compute_dtype)
  outputs = model.apply({"params": cast_floating(params, dtype)}, *cast_floating(args, dtype),
                        method=method)
  return cast_floating(outputs, jnp.float32)


def model_inputs(modalities: Sequence[Modality], batch: dict) -> list[jax.Array]:
  return [m.inputs(batch[m.name]) for m in modalities]


def init_params(model: MultimodalVAE, rng: jax.Array, batch: dict) -> dict:
  """Parameters for `model`, shaped by one batch of stored arrays."""
  return model.init(rng, model_inputs(model.modalities, batch))["params"]


def make_loss_fn(model: MultimodalVAE, objective_name: str, mixture_estimator: str = "stratified",
                 readings: Mapping[str, Any] | None = None,
                 augment: Callable[[dict, jax.Array], dict] | None = None,
                 options: Mapping[str, Any] | None = None) -> Callable:
  """loss_fn(params, batch, rng, beta) -> (loss, terms) for the named objective.

  The objective gets `make_log_likelihood_fn(model, params, batch)`.

  Args:
    model: the encoders and decoders.
    objective_name: a key of `objectives.OBJECTIVES`.
    mixture_estimator: "stratified" or "sampled" (mixture-based objectives).
    readings: `config.readings`, the open choices of `objectives.READINGS` (missing:
      the paper's).
    augment: augment(batch, rng) -> batch, applied on the device before encoding with a
      key split from the step's (the data's own augmentation, e.g.
      `crmvae_jax.data.text.redraw_augmentation`).
    options: the objective's own settings (`objectives.objective_options`, e.g. JMVAE's
      alpha).
  """
  objective = functools.partial(objectives.get_objective(objective_name),
                                **objectives.reading_arguments(objective_name, readings),
                                **dict(options or {}))
  modalities = model.modalities
  private = objectives.MODELS[objective_name].private
  joint_encoder = objectives.MODELS[objective_name].joint_encoder
  auxiliary_priors = objectives.MODELS[objective_name].auxiliary_priors
  if joint_encoder and not model.joint_encoder:
    raise ValueError(f"{objective_name} needs a model with a joint encoder "
                     "(MultimodalVAE(joint_encoder=True)).")
  if auxiliary_priors and not model.auxiliary_priors:
    raise ValueError(f"{objective_name} needs a model with auxiliary priors "
                     "(MultimodalVAE(auxiliary_priors=True)).")
  if model.private_dim and not private:
    raise ValueError(f"{objective_name} has no private latents, but the model's modalities "
                     f"have {[m.private_dim for m in modalities]}.")

  def loss_fn(params, batch, rng, beta):
    if augment is not None:
      rng, augment_rng = jax.random.split(rng)
      batch = augment(batch, augment_rng)
    inputs = model_inputs(modalities, batch)
    # A batch with missing modalities carries 'mask' [B, M]; the objectives take [M, B].
    mask = batch["mask"].T if "mask" in batch else None
    log_likelihood_fn = make_log_likelihood_fn(model, params, batch)
    if joint_encoder:
      posteriors = apply(model, params, inputs, method=model.encode)
      joint = apply(model, params, inputs, method=model.encode_joint)
      return objective(posteriors, log_likelihood_fn, rng, beta=beta, mask=mask,
                       mixture_estimator=mixture_estimator, joint=joint)
    if not private:
      posteriors = apply(model, params, inputs, method=model.encode)
      return objective(posteriors, log_likelihood_fn, rng, beta=beta, mask=mask,
                       mixture_estimator=mixture_estimator)
    posteriors, private_posteriors = apply(model, params, inputs, method=model.encode_private)
    extra = ({"auxiliary": apply(model, params, method=model.auxiliary_prior)}
             if auxiliary_priors else {})
    return objective(posteriors, log_likelihood_fn, rng, beta=beta, mask=mask,
                     mixture_estimator=mixture_estimator, private=private_posteriors, **extra)

  return loss_fn


def make_log_likelihood_fn(model: MultimodalVAE, params: dict, batch: dict,
                           weighted: bool = True) -> Callable:
  """The objectives' log_likelihood_fn: latents [M, B, D] -> [M, B].

  Row m of z is decoded by decoder m and scored against modality m of `batch` with its
  likelihood, times lambda_m (with `weighted`; without, the plain log-density, as the
  test log-likelihood needs). The function's `stacked` attribute takes K stacks of
  latents [K, M, B, D] -> [K, M, B] in one call: the stacks are folded into one batch
  of K B, so every decoder runs once (`distributions.decode_stack`), with the same
  numbers as `jax.vmap` of the function.
  """
  modalities = model.modalities
  weights = jnp.array([m.likelihood_weight if weighted else 1.0 for m in modalities])

  def log_likelihood_fn(z):  # [M, N, D], N = K B (K copies of the batch) -> [M, N]
    outputs = apply(model, params, z, method=model.decode)
    copies = z.shape[1] // batch[modalities[0].name].shape[0]
    log_likelihoods = jnp.stack([
        m.log_likelihood(_repeat(batch[m.name], copies), output)
        for m, output in zip(modalities, outputs)])
    return weights[:, None] * log_likelihoods

  def stacked(z):  # [K, M, B, D] -> [K, M, B]
    num_stacks, num_modalities, batch_size, latent_dim = z.shape
    folded = jnp.swapaxes(z, 0, 1).reshape(num_modalities, num_stacks * batch_size, latent_dim)
    log_likelihoods = log_likelihood_fn(folded).reshape(num_modalities, num_stacks, batch_size)
    return jnp.swapaxes(log_likelihoods, 0, 1)

  log_likelihood_fn.stacked = stacked
  return log_likelihood_fn


def _repeat(x: jax.Array, copies: int) -> jax.Array:
  """[B, ...] -> [copies B, ...]: the batch `copies` times over."""
  return x if copies == 1 else jnp.tile(x, (copies,) + (1,) * (x.ndim - 1))


def subset_posterior(posteriors: Gaussian, subset: jax.Array,
                     kind: objectives.SubsetPosteriorKind,
                     joint: Gaussian | None = None) -> Gaussian | dist.Mixture:
  """The model's posterior given the modalities in `subset` (docs/metrics.md).

  Args:
    posteriors: unimodal experts [M, B, D].
    subset: booleans [M] (or [M, B]) of the conditioning modalities.
    kind: "poe" (PoE(S) with the prior), "poe_without_prior" or "moe" (the uniform
      mixture of q_m, m in S) or "jmvae" (the joint encoder's q(z|X), `joint` [B, D], for
      the full set; PoE(S) without the prior for a proper subset: q_m alone for {m});
      `objectives.subset_posterior_kind`.
  """
  mask = jnp.broadcast_to(subset.reshape(subset.shape[0], -1), posteriors.mean.shape[:2])
  if kind == "jmvae":
    product = dist.product_of_experts(posteriors, mask, prior_weight=0.0)
    if joint is None:
      return product
    full = jnp.all(mask, axis=0)[:, None]  # [B, 1]
    return jax.tree.map(lambda a, b: jnp.where(full, a, b), joint, product)
  if kind in ("poe", "poe_without_prior"):
    return dist.product_of_experts(posteriors, mask, prior_weight=float(kind == "poe"))
  return dist.mixture_of_experts(posteriors, mask)


def posterior_mean(posterior: Gaussian | dist.Mixture) -> jax.Array:
  """The mean of a Gaussian or of a mixture: [B, D]."""
  if isinstance(posterior, Gaussian):
    return posterior.mean
  return jnp.einsum("kb,kbd->bd", posterior.weights, posterior.components.mean)
