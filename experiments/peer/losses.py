"""MultiVae's (PyTorch) losses and gradients on given weights and a given batch: the peer
side of `python -m experiments.tools.compare_losses`.

Run by the venv of experiments/peer/setup.sh, never by the project, which does not
depend on torch:

    $PEER_PY experiments/peer/losses.py PROBLEM.npz OUT.npz

PROBLEM.npz (written by compare_losses) holds `setting` (a JSON string: the model, its
sizes and settings), the batch (`data_<modality>`) and every weight of the tiny networks
(one hidden ReLU layer; `x @ W + b`, the orientation of the JAX side, so nothing is
transposed). OUT.npz gets `loss` (per example) and `grad_<weight>` (of the per-example
loss) for every weight.

Every reparameterised draw, here and on the JAX side, is loc + scale * eps with the same
fixed eps, a function of the position along the batch and latent axes only
(`fixed_noise`), so that both sides decode the same latents; consequently the K
importance samples of one example coincide and their normalised weights are 1/K.
"""
import json
import sys

import numpy as np
import torch
from pythae.models.base.base_utils import ModelOutput
from torch import nn

from multivae.data.datasets.base import MultimodalBaseDataset
from multivae.models.nn.base_architectures import BaseJointEncoder, BaseMultilatentEncoder
from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder


def fixed_noise(shape):
  """1.3 sin(1 + 0.7 (b D + d)) at position (b, d) of the last two axes, broadcast."""
  rows, cols = shape[-2], shape[-1]
  index = torch.arange(rows * cols, dtype=torch.float64).reshape(rows, cols)
  return (1.3 * torch.sin(1.0 + 0.7 * index)).float().expand(*shape)


def fixed_rsample(self, sample_shape=torch.Size()):
  shape = self._extended_shape(sample_shape)
  return self.loc + self.scale * fixed_noise(shape)


torch.distributions.Normal.rsample = fixed_rsample


class Parameters(nn.Module):
  def __init__(self, weights, names):
    super().__init__()
    self.names = names
    for name in names:
      self.register_parameter(name, nn.Parameter(torch.tensor(weights[name])))

  def dense(self, prefix, x, head=""):
    return x @ getattr(self, f"{prefix}_w{head}") + getattr(self, f"{prefix}_b{head}")


def hidden_then_heads(module, prefix, x):
  h = torch.relu(module.dense(prefix, x, "1"))
  return module.dense(prefix, h, "mu"), module.dense(prefix, h, "lv")


class Encoder(BaseMultilatentEncoder):
  def __init__(self, weights, prefix, latent_dim, style_dim):
    super().__init__()
    self.prefix, self.latent_dim, self.style_dim = prefix, latent_dim, style_dim
    self.p = Parameters(weights, [f"{prefix}_{k}" for k in ("w1", "b1", "wmu", "bmu", "wlv",
                                                             "blv")])

  def forward(self, x):
    mean, logvar = hidden_then_heads(self.p, self.prefix, x)
    d = self.latent_dim
    if not self.style_dim:
      return ModelOutput(embedding=mean, log_covariance=logvar)
    return ModelOutput(embedding=mean[:, :d], log_covariance=logvar[:, :d],
                       style_embedding=mean[:, d:], style_log_covariance=logvar[:, d:])


class Decoder(BaseDecoder):
  def __init__(self, weights, prefix):
    super().__init__()
    self.prefix = prefix
    self.p = Parameters(weights, [f"{prefix}_{k}" for k in ("w1", "b1", "w2", "b2")])

  def forward(self, z):
    h = torch.relu(self.p.dense(self.prefix, z, "1"))
    return ModelOutput(reconstruction=self.p.dense(self.prefix, h, "2"))


class JointEncoder(BaseJointEncoder):
  def __init__(self, weights, names, latent_dim):
    super().__init__()
    self.modality_names, self.latent_dim = names, latent_dim
    keys = [f"joint_{k}{m}" for m in range(len(names)) for k in ("w", "b")]
    keys += [f"joint_{k}" for k in ("w", "b", "wmu", "bmu", "wlv", "blv")]
    self.p = Parameters(weights, keys)

  def forward(self, x):
    features = [torch.relu(x[name] @ getattr(self.p, f"joint_w{m}") + getattr(self.p, f"joint_b{m}"))
                for m, name in enumerate(self.modality_names)]
    h = torch.relu(self.p.dense("joint", torch.cat(features, dim=-1)))
    return ModelOutput(embedding=self.p.dense("joint", h, "mu"),
                       log_covariance=self.p.dense("joint", h, "lv"))


def build(setting, weights):
  names = setting["modalities"]
  dims = {name: (int(weights[f"data_{name}"].shape[1]),) for name in names}
  common = dict(n_modalities=len(names), latent_dim=setting["latent_dim"], input_dims=dims,
                decoders_dist={name: "normal" for name in names})
  private = setting.get("private_dim", 0)
  encoders = {name: Encoder(weights, f"enc{m}", setting["latent_dim"], private)
              for m, name in enumerate(names)}
  decoders = {name: Decoder(weights, f"dec{m}") for m, name in enumerate(names)}
  if setting["model"] == "mmvae_plus":
    from multivae.models import MMVAEPlus, MMVAEPlusConfig
    config = MMVAEPlusConfig(**common, K=setting["samples"], prior_and_posterior_dist="normal",
                             modalities_specific_dim=private, beta=setting["beta"],
                             loss={"dreg": "dreg_looser", "iwae": "iwae_looser"}[
                                 setting["estimator"]])
    model = MMVAEPlus(config, encoders=encoders, decoders=decoders)
    with torch.no_grad():
      for m, name in enumerate(names):
        model.logvars_priors[name].copy_(torch.tensor(weights["aux_logvar"][m:m + 1]))
    return model, lambda: {f"aux_logvar_{name}": model.logvars_priors[name]
                           for name in names}
  if setting["model"] == "mopoe_private":
    from multivae.models import MoPoE, MoPoEConfig
    config = MoPoEConfig(**common, modalities_specific_dim={name: private for name in names},
                         beta=setting["beta"])
    return MoPoE(config, encoders=encoders, decoders=decoders), dict
  if setting["model"] == "jmvae":
    from multivae.models import JMVAE, JMVAEConfig
    config = JMVAEConfig(**common, alpha=setting["alpha"], beta=setting["beta"], warmup=0)
    model = JMVAE(config, encoders=encoders, decoders=decoders,
                  joint_encoder=JointEncoder(weights, names, setting["latent_dim"]))
    return model, dict
  raise ValueError(f"unknown model {setting['model']!r}")


def main():
  torch.set_num_threads(2)
  problem = dict(np.load(sys.argv[1]))
  setting = json.loads(str(problem.pop("setting")))
  model, extra_parameters = build(setting, problem)
  data = {name: torch.tensor(problem[f"data_{name}"]) for name in setting["modalities"]}
  batch = len(next(iter(data.values())))
  output = model(MultimodalBaseDataset(data=data))
  # loss_sum is the batch's sum for both models (MMVAE+'s loss is that sum too, JMVAE's
  # the mean): per example here.
  per_example = output.loss_sum / batch
  per_example.backward()
  gradients = {}
  for module in model.modules():
    if isinstance(module, Parameters):
      for name in module.names:
        gradients[f"grad_{name}"] = getattr(module, name).grad.numpy()
  auxiliary = extra_parameters()
  if auxiliary:
    gradients["grad_aux_logvar"] = np.concatenate(
        [auxiliary[f"aux_logvar_{name}"].grad.numpy() for name in setting["modalities"]])
  np.savez(sys.argv[2], loss=per_example.detach().numpy(), **gradients)


if __name__ == "__main__":
  main()
