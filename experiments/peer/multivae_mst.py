"""MultiVae's training speed on the MNIST-SVHN-Text networks: the PyTorch side of
`python -m experiments.tools.benchmark` (run by the venv of experiments/peer/setup.sh, never
by the project).

    $PEER_PY experiments/peer/multivae_mst.py crmvae mvtcae mopoe

Builds MultiVae's CRMVAE, MVTCAE and MoPoE over the same six networks as
crmvae_jax.model.networks ('mnist', 'svhn', 'mst_text'; docs/models.md), with Laplace
image likelihoods (scale 0.75), a categorical text likelihood and MultiVae's likelihood
rescaling, and times a full train step (forward, backward, Adam at 5e-4) on random data
with 2 threads. Prints one line per model:

    multivae MODEL examples/s N

BATCH (default 256) and LATENT (default 32) come from the environment. MultiVae's MoPoE
decodes one sampled subset per example (our `mixture_estimator=sampled`). How its
objectives differ from ours is in docs/models.md.
"""
import os
import sys
import time

import torch
from multivae.data.datasets.base import MultimodalBaseDataset
from multivae.models import CRMVAE, MVTCAE, CRMVAEConfig, MoPoE, MoPoEConfig, MVTCAEConfig
from pythae.models.base.base_model import BaseDecoder, BaseEncoder
from pythae.models.base.base_utils import ModelOutput
from torch import nn

torch.set_num_threads(2)
LATENT = int(os.environ.get("LATENT", 32))
BATCH = int(os.environ.get("BATCH", 256))
VOCABULARY, TEXT_LENGTH = 71, 8


class Encoder(BaseEncoder):
  """A feature network, then the two linear heads (mean, log-variance)."""

  def __init__(self, features: nn.Module, width: int, transpose_text: bool = False):
    super().__init__()
    self.features, self.transpose_text = features, transpose_text
    self.mean, self.logvar = nn.Linear(width, LATENT), nn.Linear(width, LATENT)

  def forward(self, x):
    h = self.features(x.transpose(-1, -2) if self.transpose_text else x)
    return ModelOutput(embedding=self.mean(h), log_covariance=self.logvar(h))


class Decoder(BaseDecoder):
  """A linear layer from z to `width` channels at one position, then `body`."""

  def __init__(self, width: int, body: nn.Module, shape: tuple, text: bool = False):
    super().__init__()
    self.first, self.body, self.width = nn.Linear(LATENT, width), body, width
    self.shape, self.text = shape, text

  def forward(self, z):
    leading = z.shape[:-1]
    h = self.first(z.reshape(-1, LATENT))
    h = h.view(-1, self.width, 1) if self.text else h.view(-1, self.width, 1, 1)
    out = self.body(h)
    if self.text:
      out = out.transpose(-1, -2)
    return ModelOutput(reconstruction=out.reshape(*leading, *self.shape))


class MnistDecoder(BaseDecoder):
  """Dense: z -> 400 -> 784 pixels in (0, 1)."""

  def __init__(self):
    super().__init__()
    self.body = nn.Sequential(nn.Linear(LATENT, 400), nn.ReLU(), nn.Linear(400, 784),
                              nn.Sigmoid())

  def forward(self, z):
    return ModelOutput(reconstruction=self.body(z).view(*z.shape[:-1], 1, 28, 28))


def svhn_networks():
  encoder = Encoder(nn.Sequential(
      nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
      nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, 128, 4, 2, 0), nn.ReLU(),
      nn.Flatten()), 128)
  decoder = Decoder(128, nn.Sequential(
      nn.ReLU(), nn.ConvTranspose2d(128, 64, 4, 1, 0), nn.ReLU(),
      nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1),
      nn.ReLU(), nn.ConvTranspose2d(32, 3, 4, 2, 1)), (3, 32, 32))
  return encoder, decoder


def text_networks():
  encoder = Encoder(nn.Sequential(
      nn.Conv1d(VOCABULARY, 128, 1), nn.ReLU(), nn.Conv1d(128, 128, 4, 2, 1), nn.ReLU(),
      nn.Conv1d(128, 128, 4, 2, 0), nn.ReLU(), nn.Flatten()), 128, transpose_text=True)
  decoder = Decoder(128, nn.Sequential(
      nn.ConvTranspose1d(128, 128, 4, 1, 0), nn.ReLU(), nn.ConvTranspose1d(128, 128, 4, 2, 1),
      nn.ReLU(), nn.Conv1d(128, VOCABULARY, 1)), (TEXT_LENGTH, VOCABULARY), text=True)
  return encoder, decoder


def networks():
  """{'mnist' | 'svhn' | 'text': (encoder, decoder)}, fresh modules."""
  mnist = (Encoder(nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU()), 400),
           MnistDecoder())
  return {"mnist": mnist, "svhn": svhn_networks(), "text": text_networks()}


def build(model_class, config_class):
  config = config_class(
      n_modalities=3, latent_dim=LATENT,
      input_dims={"mnist": (1, 28, 28), "svhn": (3, 32, 32), "text": (TEXT_LENGTH, VOCABULARY)},
      decoders_dist={"mnist": "laplace", "svhn": "laplace", "text": "categorical"},
      decoder_dist_params={"mnist": {"scale": 0.75}, "svhn": {"scale": 0.75}},
      uses_likelihood_rescaling=True)
  pairs = networks()
  return model_class(config, encoders={name: pair[0] for name, pair in pairs.items()},
                     decoders={name: pair[1] for name, pair in pairs.items()})


def examples_per_second(model, steps: int = 20, warm_up: int = 5) -> float:
  generator = torch.Generator().manual_seed(0)
  text = nn.functional.one_hot(
      torch.randint(0, VOCABULARY, (BATCH, TEXT_LENGTH), generator=generator), VOCABULARY)
  data = MultimodalBaseDataset(
      data={"mnist": torch.rand(BATCH, 1, 28, 28, generator=generator),
            "svhn": torch.rand(BATCH, 3, 32, 32, generator=generator), "text": text.float()},
      labels=torch.zeros(BATCH))
  batch = data[torch.arange(BATCH)]
  optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
  for step in range(warm_up + steps):
    if step == warm_up:
      start = time.perf_counter()
    optimizer.zero_grad()
    model(batch).loss.backward()
    optimizer.step()
  return steps * BATCH / (time.perf_counter() - start)


MODELS = {"crmvae": (CRMVAE, CRMVAEConfig), "mvtcae": (MVTCAE, MVTCAEConfig),
          "mopoe": (MoPoE, MoPoEConfig)}

if __name__ == "__main__":
  for name in sys.argv[1:] or list(MODELS):
    print(f"multivae {name} examples/s {examples_per_second(build(*MODELS[name])):.0f}",
          flush=True)
