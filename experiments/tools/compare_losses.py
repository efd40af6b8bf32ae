"""Our losses and gradients against MultiVae 1.0.3's (PyTorch) on the same weights and batch.

    . experiments/peer/setup.sh                     # the peer's venv, once; sets PEER_PY
    python -m experiments.tools.compare_losses      # every case below
    python -m experiments.tools.compare_losses --cases=mmvae_plus_dreg

For each case both sides build the same tiny networks (two modalities of 5 and 4
numbers, Gaussian likelihoods of scale 1, one hidden ReLU layer of 8 per network, latent
3, private 2 where the model has private latents; random float32 weights, copied
across), take the same batch of 6, and draw every reparameterised sample as loc + scale *
eps with the same fixed eps (`fixed_noise`; experiments/peer/losses.py patches
`torch.distributions.Normal.rsample` alike), so that both decode the same latents. The
K importance samples of an example then coincide, and their normalised weights are 1/K;
which decoder reads which private latent, the auxiliary priors and the v versus v^2
weighting of DReG's gradients are still seen (the last by a factor K).

Prints one row per case: our loss per example, MultiVae's, their relative difference,
and the largest relative difference over the gradients of every weight (the largest
absolute difference over a weight's entries, divided by that weight's largest gradient
entry). Float32 rounding is about 1e-6. Nothing here is a test dependency: the project
never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

import jax
import jax.numpy as jnp
import numpy as np

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import objectives
from crmvae_jax.model.distributions import Gaussian

NAMES = ("a", "b")
SIZES = (5, 4)
BATCH, LATENT, PRIVATE, HIDDEN = 6, 3, 2, 8
# name -> (objective, its keyword arguments, beta)
CASES = {
    "mmvae_plus_dreg": ("mmvae_plus", {"samples": 3, "estimator": "dreg"}, 0.7),
    "mmvae_plus_iwae": ("mmvae_plus", {"samples": 3, "estimator": "iwae"}, 0.7),
    "mmvae_plus_k1": ("mmvae_plus", {"samples": 1, "estimator": "dreg"}, 1.0),
    # MultiVae's MoPoE: the prior expert in the full set's PoE only, and one subset per
    # example, which it assigns in turn (`balanced_subsets` does the same here).
    "mopoe_private": ("mopoe_private", {"mixture_estimator": "sampled",
                                        "mopoe_subset_prior": "full_only"}, 0.7),
    # MultiVae weights JMVAE's alpha terms by alpha alone, ours by beta alpha: equal at 1.
    "jmvae": ("jmvae", {"alpha": 0.1}, 1.0),
}

flags.DEFINE_list("cases", list(CASES), f"Cases, of {', '.join(CASES)}.")
flags.DEFINE_string("peer_python", os.environ.get("PEER_PY", ""),
                    "The peer venv's python (experiments/peer/setup.sh sets $PEER_PY).")
FLAGS = flags.FLAGS


def fixed_noise(shape):
  """1.3 sin(1 + 0.7 (b D + d)) at position (b, d) of the last two axes, broadcast."""
  rows, cols = shape[-2], shape[-1]
  index = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)
  return jnp.broadcast_to(jnp.asarray(1.3 * np.sin(1.0 + 0.7 * index), jnp.float32), shape)


def fixed_sample(self, rng):
  del rng
  return self.mean + jnp.exp(0.5 * self.logvar) * fixed_noise(self.mean.shape)


def balanced_subsets(key, logits, axis=-1, **unused):
  """MultiVae's deterministic_mixture_component_selection for uniform weights, in place
  of `jax.random.categorical`: of B examples, the first floor(B / K) take component 0,
  the next floor(B / K) component 1, ..., the last component the rest."""
  del key, axis, unused
  batch, components = logits.shape
  per_component = batch // components
  return jnp.asarray(np.minimum(np.arange(batch) // per_component, components - 1))


def problem(model: str, seed: int = 0) -> dict[str, np.ndarray]:
  """The batch and every weight, float32, named as experiments/peer/losses.py reads them."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape, scale=0.5: rng.normal(0.0, scale, shape).astype(np.float32)
  private = PRIVATE if objectives.MODELS[model].private else 0
  arrays = {}
  for m, size in enumerate(SIZES):
    arrays[f"data_{NAMES[m]}"] = normal(BATCH, size, scale=1.0)
    arrays.update({f"enc{m}_w1": normal(size, HIDDEN), f"enc{m}_b1": normal(HIDDEN),
                   f"enc{m}_wmu": normal(HIDDEN, LATENT + private),
                   f"enc{m}_bmu": normal(LATENT + private),
                   f"enc{m}_wlv": normal(HIDDEN, LATENT + private, scale=0.3),
                   f"enc{m}_blv": normal(LATENT + private, scale=0.3),
                   f"dec{m}_w1": normal(LATENT + private, HIDDEN), f"dec{m}_b1": normal(HIDDEN),
                   f"dec{m}_w2": normal(HIDDEN, size), f"dec{m}_b2": normal(size)})
    if model == "jmvae":
      arrays.update({f"joint_w{m}": normal(size, HIDDEN), f"joint_b{m}": normal(HIDDEN)})
  if model == "jmvae":
    arrays.update({"joint_w": normal(len(SIZES) * HIDDEN, HIDDEN), "joint_b": normal(HIDDEN),
                   "joint_wmu": normal(HIDDEN, LATENT), "joint_bmu": normal(LATENT),
                   "joint_wlv": normal(HIDDEN, LATENT, scale=0.3),
                   "joint_blv": normal(LATENT, scale=0.3)})
  if objectives.MODELS[model].auxiliary_priors:
    arrays["aux_logvar"] = normal(len(SIZES), private)
  return arrays


def our_loss(model: str, options: dict, beta: float, weights: dict, data: dict) -> jax.Array:
  """The loss per example of our objective on the networks of `weights`."""
  dense = lambda prefix, x, head: x @ weights[f"{prefix}_w{head}"] + weights[f"{prefix}_b{head}"]
  means, logvars = [], []
  for m in range(len(SIZES)):
    h = jax.nn.relu(dense(f"enc{m}", data[f"data_{NAMES[m]}"], "1"))
    means.append(dense(f"enc{m}", h, "mu"))
    logvars.append(dense(f"enc{m}", h, "lv"))
  mean, logvar = jnp.stack(means), jnp.stack(logvars)
  posteriors = Gaussian(mean[..., :LATENT], logvar[..., :LATENT])

  def log_likelihood_fn(rows):  # [M, N, D (+ P)] -> [M, N]
    copies = rows.shape[1] // BATCH
    out = []
    for m in range(len(SIZES)):
      h = jax.nn.relu(dense(f"dec{m}", rows[m], "1"))
      target = jnp.tile(data[f"data_{NAMES[m]}"], (copies, 1))
      out.append(dist.gaussian_log_likelihood(target, dense(f"dec{m}", h, "2")))
    return jnp.stack(out)

  arguments = dict(options)
  if objectives.MODELS[model].private:
    arguments["private"] = Gaussian(mean[..., LATENT:], logvar[..., LATENT:])
  if objectives.MODELS[model].auxiliary_priors:
    arguments["auxiliary"] = Gaussian(jnp.zeros_like(weights["aux_logvar"]),
                                      weights["aux_logvar"])
  if model == "jmvae":
    features = [jax.nn.relu(data[f"data_{name}"] @ weights[f"joint_w{m}"]
                            + weights[f"joint_b{m}"]) for m, name in enumerate(NAMES)]
    h = jax.nn.relu(dense("joint", jnp.concatenate(features, -1), ""))
    arguments["joint"] = Gaussian(dense("joint", h, "mu"), dense("joint", h, "lv"))
  loss, _ = objectives.get_objective(model)(posteriors, log_likelihood_fn, jax.random.key(1),
                                            beta=beta, **arguments)
  return loss


def peer(setting: dict, arrays: dict) -> dict[str, np.ndarray]:
  with tempfile.TemporaryDirectory() as folder:
    problem_path, out_path = os.path.join(folder, "problem.npz"), os.path.join(folder, "out.npz")
    np.savez(problem_path, setting=json.dumps(setting), **arrays)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer", "losses.py")
    subprocess.run([FLAGS.peer_python, script, problem_path, out_path], check=True)
    return dict(np.load(out_path))


def compare(case: str) -> tuple[float, float, float, float, str]:
  model, options, beta = CASES[case]
  arrays = problem(model)
  weights = {k: jnp.asarray(v) for k, v in arrays.items() if not k.startswith("data_")}
  data = {k: jnp.asarray(v) for k, v in arrays.items() if k.startswith("data_")}
  ours, grads = jax.value_and_grad(lambda w: our_loss(model, options, beta, w, data))(weights)
  setting = {"model": model, "modalities": list(NAMES), "latent_dim": LATENT, "beta": beta,
             "private_dim": PRIVATE if objectives.MODELS[model].private else 0, **options}
  theirs = peer(setting, arrays)
  loss_difference = abs(float(ours) - float(theirs["loss"])) / abs(float(theirs["loss"]))
  worst, worst_name = 0.0, ""
  for name, gradient in grads.items():
    reference = theirs[f"grad_{name}"].reshape(gradient.shape)
    scale = max(float(np.abs(reference).max()), 1e-12)
    difference = float(np.abs(np.asarray(gradient) - reference).max()) / scale
    if difference >= worst:
      worst, worst_name = difference, name
  return float(ours), float(theirs["loss"]), loss_difference, worst, worst_name


def main(argv):
  del argv
  if not FLAGS.peer_python or not os.path.exists(FLAGS.peer_python):
    sys.exit("error: the MultiVae venv is missing; run `. experiments/peer/setup.sh` first, "
             "which builds it and sets $PEER_PY.")
  Gaussian.sample = fixed_sample
  jax.random.categorical = balanced_subsets
  print("| case | ours | MultiVae | relative difference | gradients: largest relative "
        "difference (weight) |")
  print("|---|---|---|---|---|")
  for case in FLAGS.cases:
    ours, theirs, loss_difference, worst, worst_name = compare(case)
    print(f"| {case} | {ours:.6f} | {theirs:.6f} | {loss_difference:.1e} | {worst:.1e} "
          f"({worst_name}) |", flush=True)


if __name__ == "__main__":
  app.run(main)
