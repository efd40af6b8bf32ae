r"""Calibrates the SVHN-like renderer of MNIST-SVHN-Text offline against facts of real SVHN.

On real SVHN a plain VAE, trained on SVHN alone, learns something of the digit: the
paper's MVAE, whose SVHN encoder learns from SVHN's own reconstruction, has an SVHN
latent probe of 0.44 (Table 5). CRMVAE's claimed advantage is exactly that mechanism
made stronger (its unimodal reconstructions), so a surrogate on which a plain VAE
learns nothing of the digit cannot show it. This command measures, for each candidate
rule set of the renderer (`CANDIDATES`):

- the plain VAE: the SVHN encoder and decoder (latent 32, the Laplace likelihood,
  Adam 5e-4, batch 256) trained on the renders of the surrogate's 4,500 training digits
  for `--steps`; the linear probe of its posterior means fitted on 500 and on 1,000
  training renders and scored on the 500 test renders (Table 5's probe);
- the share of the reconstruction that knowing the digit buys: a VAE that is also given
  the digit (one-hot planes beside the encoder's input, one-hot beside z in the
  decoder), trained alike, against the plain one, on the test renders: its gain in
  log p(x|z) and in the ELBO, in nats and as a share of the plain VAE's gain over the
  best constant image (the per-pixel median of the training renders);
- the judge: the SVHN classifier on its own 30,000 renders, its test accuracy, and its
  accuracy on class means of 16 and of 256 renders (a mixture-based model that cannot
  predict S's own variation decodes such a mean: the 256-render mean must stay
  unreadable, at most 0.30);
- 40 renders in a picture (`svhn_calibration/<candidate>.png`).

The targets (chosen from real-SVHN facts, never from CRMVAE's or MVTCAE's numbers):
probe at least 0.40, judge at least 0.90, 256-render class means at most 0.30.

Version 3's rule, written before its candidates (plain_v1pose, plain_midpose,
plain_sizes) were measured: among the candidates whose judge reaches 0.90 and whose
256-render class means read at most 0.30, the one with the highest probe on 1,000
renders, whether or not it reaches 0.40. If none keeps its class means at most 0.30,
there is no version 3 from this round. Its gate is MoPoE's (seed 0, 4,000 steps): S<-M,
S<-T and S<-M+T all at most 0.50 (the paper's SVHN: 0.35-0.37) before any CRMVAE or
MVTCAE run on it.

If the first round gives no version 3, the second round (plain_wide, plain_wider,
mid_texture, written after plain_v1pose's numbers and before any other of the first
round's) is chosen among by the same rule.

    python -m experiments.paper.calibrate_svhn                         # every candidate not yet measured
    python -m experiments.paper.calibrate_svhn --candidates=v1 --redo  # measure one again
    python -m experiments.paper.calibrate_svhn --candidates=centred --steps=3000  # a longer budget
    python -m experiments.paper.calibrate_svhn --candidates=v1 --judge_only  # only the judge again
    python -m experiments.paper.calibrate_svhn --collect_only          # the table from the results
    python -m experiments.paper.calibrate_svhn --plain_only --candidates=plain_wide --steps=16000
        # the plain VAE alone at a multimodal run's budget: svhn_plain_vae.md

Results: `experiments/results/svhn_calibration.json` (one record per candidate, written
after each) and `svhn_calibration.md` (the table). Renders are cached as the
surrogate's are (`--cache_dir`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt
import numpy as np
import optax
import tqdm
from absl import app, flags

from crmvae_jax.common import atomic
from crmvae_jax.model import distributions as dist
from crmvae_jax.model import networks
from crmvae_jax.model.modality import Modality
from crmvae_jax.data import mst_offline, syndigits
from crmvae_jax.evaluation import classifier_training, metrics
from crmvae_jax.training import supervised

from configs import mst_offline as mst_offline_config

V1 = syndigits.VERSIONS[1]
# Candidate rule sets, in the order they were tried. Each differs from the one it
# starts from in the fields named; its stream keeps its renders apart from the others'.
# The drawing rules the candidates share: smooth, low-contrast surfaces with few faint
# characters and a quiet camera (`SMOOTH`); plainer, nearly grey ones (`PLAIN`); a bold
# digit of one size standing out from them (`BOLD`); and SVHN's steady crop (`STEADY`).
SMOOTH = dict(crop_sizes=(48, 200), background_blur=(3.0, 8.0), contrast=(0.1, 0.5),
              clutter_count=(0, 3), clutter_contrast=(5.0, 25.0), noise=(0.0, 4.0))
PLAIN = dict(crop_sizes=(48, 200), background_blur=(4.0, 10.0), contrast=(0.05, 0.3),
             tint=(0.85, 1.15), clutter_count=(0, 1), clutter_contrast=(5.0, 20.0),
             noise=(0.0, 4.0))
BOLD = dict(max_stroke=3, neighbour_probability=0.3, luminance_gap=(90.0, 140.0),
            camera_blur=(0.0, 1.0))
STEADY = dict(font_sizes=(42, 48), max_rotation_degrees=5.0, max_shear=0.1, max_jitter=1.5)


def _candidate(stream: int, *parts: dict, **fields) -> syndigits.RenderSettings:
  """Version 1's rules with `parts` and `fields` changed (later ones win)."""
  changes = {}
  for part in (*parts, fields):
    changes.update(part)
  return dataclasses.replace(V1, stream=stream, **changes)


CANDIDATES: dict[str, syndigits.RenderSettings] = {
    "v1": V1,
    # Real SVHN's backgrounds are mostly smooth walls and plates: the photo crops larger
    # (less detail), blurred more, at lower contrast, with less clutter and noise.
    "smooth": _candidate(101, SMOOTH),
    # Also the digit larger and bolder, as SVHN's crops are cut around it, and fewer
    # neighbours.
    "smooth_large": _candidate(102, SMOOTH, font_sizes=(38, 54), max_stroke=3,
                               neighbour_probability=0.4),
    # Also the digit standing out more from its background (a larger luminance gap, a
    # less colourful hue), a sharper camera, a steadier pose and fewer neighbours.
    "bold": _candidate(103, SMOOTH, BOLD, font_sizes=(38, 54), chroma=30.0,
                       max_rotation_degrees=8.0),
    # SVHN's cropped digits are cut and scaled around each digit's bounding box, so the
    # digit's size and place vary little. Under the Laplace likelihood a decoder draws
    # the per-pixel median given z, which shows a stroke only where the stroke covers
    # that pixel in most images z cannot tell apart: strokes that wander with the size,
    # place and pose leave the digit out of every reconstruction. "bold" with the size,
    # place and pose of the digit as steady as SVHN's crops make them.
    "centred": _candidate(104, SMOOTH, BOLD, STEADY, chroma=30.0),
    # "centred" on plainer surfaces: house plates and painted walls, nearly grey, the
    # photo's texture faint, no clutter. Fewer things for z to spend itself on before
    # the digit.
    "plain": _candidate(105, PLAIN, BOLD, STEADY, chroma=15.0),
    # "plain" with version 1's faint characters on the walls: glyph-like clutter that
    # varies from image to image, which hides the faint digit that the mean of 256
    # renders keeps when their polarities do not balance exactly.
    "plain_clutter": _candidate(106, PLAIN, BOLD, STEADY, chroma=15.0,
                                clutter_count=V1.clutter_count,
                                clutter_contrast=V1.clutter_contrast),
    # After version 2's gate (MoPoE read S generated from M and T at 0.86-0.96): centring
    # the digit is what made the class means readable (smooth_large 0.30 -> centred 1.00),
    # and plain surfaces are what let the plain VAE find it (centred 0.13 -> plain 0.25).
    # "plain" surfaces with the digit's size, place and pose wandering again, so that a
    # class mean's faint digit (256 coin flips of polarity never balance exactly) is
    # smeared: version 1's pose, an intermediate one, and only the size wandering.
    "plain_v1pose": _candidate(107, PLAIN, BOLD, chroma=15.0),
    "plain_midpose": _candidate(108, PLAIN, BOLD, STEADY, chroma=15.0, font_sizes=(36, 50),
                                max_rotation_degrees=8.0, max_shear=0.15, max_jitter=2.5),
    "plain_sizes": _candidate(109, PLAIN, BOLD, STEADY, chroma=15.0, font_sizes=(30, 50)),
    # plain_v1pose showed that the pose is not what makes plain surfaces' class means
    # readable (0.92 at version 1's pose): on a flat background the faint digit that 256
    # coin flips of polarity leave (about 8 more of one than the other) is sharp wherever
    # it stands. Second round: the digit wandering much further on plain surfaces, or a
    # centred digit on surfaces between version 1's texture and "plain"'s.
    "plain_wide": _candidate(110, PLAIN, BOLD, chroma=15.0, font_sizes=(30, 52),
                             max_jitter=8.0),
    "plain_wider": _candidate(111, PLAIN, BOLD, chroma=15.0, font_sizes=(28, 54),
                              max_jitter=12.0),
    "mid_texture": _candidate(112, BOLD, STEADY, crop_sizes=(32, 180),
                              background_blur=(2.0, 6.0), contrast=(0.1, 0.6),
                              tint=(0.75, 1.25), clutter_count=(1, 4),
                              clutter_contrast=(10.0, 35.0), noise=(0.0, 6.0), chroma=30.0),
}
TARGETS = {"probe": 0.40, "judge": 0.90, "class_means_256": 0.30}
LEARNING_RATE = 5e-4
NUM_CLASSES = 10
SVHN = Modality(name="svhn", network="svhn", shape=(32, 32, 3), vocab_size=None,
                likelihood_weight=1.0)

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags; defined only when run, so importing this module beside
  other experiments (tests do) defines no clashing flags."""
  flags.DEFINE_list("candidates", None, "Candidates to measure (default: every one not yet "
                    f"in the results). Known: {', '.join(CANDIDATES)}.")
  flags.DEFINE_bool("redo", False, "Measure the candidates again even if they have results.")
  flags.DEFINE_bool("collect_only", False, "Only write the table from the results file.")
  flags.DEFINE_bool("judge_only", False, "Measure the judge of the candidates again (its class "
                    "means and medians) and keep their VAEs' numbers.")
  flags.DEFINE_bool("plain_only", False, "Only the plain VAE of --candidates at --steps (no "
                    "VAE given the digit, no judge): what S's own reconstruction teaches its "
                    "encoder over a longer budget; svhn_plain_vae.json and .md.")
  flags.DEFINE_integer("steps", 1000, "Training steps of each VAE (the calibration budget).")
  flags.DEFINE_integer("batch_size", 256, "Examples per step.")
  flags.DEFINE_integer("latent_dim", 32, "Latent size of the VAEs.")
  flags.DEFINE_integer("seed", 0, "Seed of the data, the VAEs and the judge.")
  flags.DEFINE_integer("judge_epochs", 10, "Epochs of the judge on its 30,000 renders.")
  flags.DEFINE_string("results", "experiments/results", "Folder of the results.")
  flags.DEFINE_string("cache_dir", None, "Render cache (default: the surrogate's).")


class ConditionedEncoder(networks.SvhnEncoder):
  """The SVHN encoder that also sees the digit: one-hot planes beside the image."""

  def __call__(self, x, labels=None):
    planes = jnp.broadcast_to(jax.nn.one_hot(labels, NUM_CLASSES)[:, None, None, :],
                              (*x.shape[:3], NUM_CLASSES))
    return super().__call__(jnp.concatenate([x, planes], axis=-1))


class ConditionedDecoder(networks.SvhnDecoder):
  """The SVHN decoder that also reads the digit: one-hot beside z."""

  def __call__(self, z, labels=None):
    return super().__call__(jnp.concatenate([z, jax.nn.one_hot(labels, NUM_CLASSES)], -1))


def _vaes(latent_dim: int, plain_only: bool = False) -> dict[str, tuple]:
  """name -> (encoder, decoder): the plain VAE and (unless `plain_only`) the one given the
  digit."""
  vaes = {"plain": (networks.SvhnEncoder(latent_dim), networks.SvhnDecoder(latent_dim))}
  if not plain_only:
    vaes["given_digit"] = (ConditionedEncoder(latent_dim), ConditionedDecoder(latent_dim))
  return vaes


def _apply(module, params, inputs, labels, conditioned: bool):
  return module.apply({"params": params}, inputs, labels) if conditioned else module.apply(
      {"params": params}, inputs)


def elbo_terms(vaes, params, images, labels, rng) -> dict[str, jax.Array]:
  """Per VAE, log p(x|z) and KL(q(z|x) || N(0, I)) of each example, one z sample [B]."""
  inputs = SVHN.inputs(images)
  terms = {}
  for name, (encoder, decoder) in vaes.items():
    conditioned = name != "plain"
    posterior = dist.Gaussian(*_apply(encoder, params[name]["encoder"], inputs, labels,
                                      conditioned))
    z = posterior.sample(jax.random.fold_in(rng, len(terms)))
    location = _apply(decoder, params[name]["decoder"], z, labels, conditioned)
    terms[name] = {"reconstruction": SVHN.log_likelihood(images, location),
                   "kl": dist.kl_divergence(posterior, dist.standard_normal(posterior.mean.shape))}
  return terms


def train_vaes(images: np.ndarray, labels: np.ndarray, steps: int, batch_size: int,
               latent_dim: int, seed: int, plain_only: bool = False):
  """Trains both VAEs (or the plain one only) on the same batches (one program); returns
  (vaes, params)."""
  vaes = _vaes(latent_dim, plain_only)
  sample = SVHN.inputs(jnp.asarray(images[:1]))
  sample_labels = jnp.asarray(labels[:1])

  def init_params(rng):
    params = {}
    for index, (name, (encoder, decoder)) in enumerate(vaes.items()):
      enc_rng, dec_rng = jax.random.split(jax.random.fold_in(rng, index))
      conditioned = name != "plain"
      args = (sample, sample_labels) if conditioned else (sample,)
      z = jnp.zeros((1, latent_dim))
      params[name] = {
          "encoder": encoder.init(enc_rng, *args)["params"],
          "decoder": decoder.init(dec_rng, *((z, sample_labels) if conditioned else (z,)))[
              "params"]}
    return params

  def loss_fn(params, batch, rng):
    batch_images, batch_labels = batch
    terms = elbo_terms(vaes, params, batch_images, batch_labels, rng)
    losses = {name: jnp.mean(t["kl"] - t["reconstruction"]) for name, t in terms.items()}
    return sum(losses.values()), losses

  steps_per_epoch = len(labels) // batch_size
  epochs = -(-steps // steps_per_epoch)
  state = supervised.fit(init_params, loss_fn, optax.adam(LEARNING_RATE), (images, labels),
                         batch_size, epochs, seed,
                         "plain VAE" + ("" if plain_only else " and VAE given the digit"))
  return vaes, state.params


def evaluate_vaes(vaes, params, images: np.ndarray, labels: np.ndarray,
                  baseline_reconstruction: float, seed: int) -> dict:
  """Mean log p(x|z), KL and ELBO per VAE on `images`, and the digit's share (when the
  VAE given the digit was trained)."""
  terms_fn = jax.jit(lambda p, x, y, rng: elbo_terms(vaes, p, x, y, rng))
  totals = {name: {"reconstruction": [], "kl": []} for name in vaes}
  for start in range(0, len(labels), 250):
    batch = terms_fn(params, jnp.asarray(images[start:start + 250]),
                     jnp.asarray(labels[start:start + 250]),
                     jax.random.fold_in(jax.random.PRNGKey(seed), start))
    for name, values in batch.items():
      for term, value in values.items():
        totals[name][term].append(np.asarray(value))
  result = {}
  for name, values in totals.items():
    reconstruction = float(np.concatenate(values["reconstruction"]).mean())
    kl = float(np.concatenate(values["kl"]).mean())
    result[name] = {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl}
  result["constant_reconstruction"] = baseline_reconstruction
  if "given_digit" not in result:
    return result
  plain, given = result["plain"], result["given_digit"]
  plain_gain = plain["reconstruction"] - baseline_reconstruction
  result["digit_reconstruction_gain"] = given["reconstruction"] - plain["reconstruction"]
  result["digit_elbo_gain"] = given["elbo"] - plain["elbo"]
  result["digit_share"] = result["digit_reconstruction_gain"] / max(
      plain_gain + result["digit_reconstruction_gain"], 1e-9)
  return result


def constant_reconstruction(train_images: np.ndarray, test_images: np.ndarray) -> float:
  """log p(x) of the test renders under the best constant image for a Laplace likelihood:
  the per-pixel median of the training renders."""
  median = np.median(train_images.astype(np.float32) / 255.0, axis=0)
  location = np.broadcast_to(median, test_images.shape)
  return float(np.asarray(SVHN.log_likelihood(jnp.asarray(test_images),
                                              jnp.asarray(location))).mean())


def posterior_means(vaes, params, images: np.ndarray) -> np.ndarray:
  encoder = vaes["plain"][0]
  encode = jax.jit(lambda p, x: encoder.apply({"params": p}, SVHN.inputs(x))[0])
  return np.concatenate([np.asarray(encode(params["plain"]["encoder"],
                                           jnp.asarray(images[i:i + 500])))
                         for i in range(0, len(images), 500)])


def judge(config_data, settings, seed: int, epochs: int) -> dict:
  """The SVHN judge on its own renders: test accuracy and class-mean accuracies."""
  config = mst_offline_config.get_config()
  config.eval.classifier_epochs = epochs
  (_, _), (_, test_labels) = mst_offline.mnist_split(config_data)
  test_images = mst_offline.renders(config_data, "test", test_labels, settings=settings)
  judge_images, judge_labels = mst_offline.judge_renders(config_data, settings)
  classifier, metadata = classifier_training.train_classifier(
      SVHN, (judge_images, judge_labels), (test_images, test_labels), config.eval, seed)
  class_means = mst_offline.class_means(config_data, settings)
  accuracies = classifier_training.class_mean_accuracy(
      classifier, class_means, config.eval.classifier_batch_size)
  medians = mst_offline.class_means(config_data, settings, statistic=np.median)
  median_accuracies = {str(n): metrics.accuracy(
      classifier(images.astype(np.float32)), labels) for n, (images, labels) in medians.items()}
  return {"test_accuracy": metadata["test_accuracy"],
          "class_means": dict(accuracies), "class_medians": median_accuracies}


def renders_figure(config_data, settings, path: str, title: str) -> None:
  """40 renders, 4 of each digit, from the test pool."""
  labels = np.tile(np.arange(10), 4)
  images = mst_offline.renders(config_data, "class_means", np.repeat(np.arange(10), 4),
                               settings=settings, cache=False)
  images = images.reshape(10, 4, 32, 32, 3).transpose(1, 0, 2, 3, 4).reshape(40, 32, 32, 3)
  figure, axes = plt.subplots(4, 10, figsize=(10, 4.3))
  for axis, image, label in zip(axes.flat, images, labels):
    axis.imshow(image)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(str(label), fontsize=8)
  figure.suptitle(title, fontsize=10)
  figure.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic.write_with(path, lambda f: figure.savefig(f, format="png", dpi=80))
  plt.close(figure)


def measure(name: str, settings: syndigits.RenderSettings, config_data,
            plain_only: bool = False) -> dict:
  """Every number of the calibration table for one candidate; with `plain_only`, the
  plain VAE's alone (no VAE given the digit, no judge, no picture)."""
  start = time.time()
  (_, train_labels), (_, test_labels) = mst_offline.mnist_split(config_data)
  train_images = mst_offline.renders(config_data, "train", train_labels, settings=settings)
  test_images = mst_offline.renders(config_data, "test", test_labels, settings=settings)
  vaes, params = train_vaes(train_images, train_labels, FLAGS.steps, FLAGS.batch_size,
                            FLAGS.latent_dim, FLAGS.seed, plain_only)
  reconstruction = evaluate_vaes(vaes, params, test_images, test_labels,
                                 constant_reconstruction(train_images, test_images), FLAGS.seed)
  train_means = posterior_means(vaes, params, train_images)
  test_means = posterior_means(vaes, params, test_images)
  order = np.random.default_rng([FLAGS.seed, 7]).permutation(len(train_labels))
  probes = {str(n): metrics.linear_probe(train_means[order[:n]], train_labels[order[:n]],
                                         test_means, test_labels) for n in (500, 1000)}
  tqdm.tqdm.write(f"{name}: plain VAE probe {probes}")
  record = {"candidate": name, "settings": dataclasses.asdict(settings), "steps": FLAGS.steps,
            "batch_size": FLAGS.batch_size, "latent_dim": FLAGS.latent_dim, "seed": FLAGS.seed,
            "probe": probes, "vaes": reconstruction}
  if plain_only:
    return {**record, "plain_only": True, "minutes": (time.time() - start) / 60}
  judged = judge(config_data, settings, FLAGS.seed, FLAGS.judge_epochs)
  renders_figure(config_data, settings,
                 os.path.join(FLAGS.results, "svhn_calibration", f"{name}.png"),
                 f"renderer candidate {name!r}: 4 renders of each digit (test photos)")
  return {**record, "judge": judged, "minutes": (time.time() - start) / 60}


def changed_fields(settings: dict) -> str:
  """What a candidate changes from version 1, as `field=value` pairs."""
  base = dataclasses.asdict(V1)
  settings = {field: tuple(value) if isinstance(value, list) else value
              for field, value in settings.items()}  # as JSON gives them back
  changes = [f"{field}={value}" for field, value in settings.items()
             if field != "stream" and tuple(np.atleast_1d(value)) != tuple(
                 np.atleast_1d(base[field]))]
  return ", ".join(changes) or "(version 1)"


def _pair(accuracies: dict | None) -> str:
  return "-" if accuracies is None else f"{accuracies['16']:.2f} / {accuracies['256']:.2f}"


def table(records: list[dict]) -> str:
  """The calibration table in Markdown: every candidate tried, in order."""
  lines = [
      "# SVHN-like renderer: calibration",
      "",
      "Written by experiments/paper/calibrate_svhn.py. A plain VAE (the SVHN encoder and "
      "decoder, latent 32, Laplace likelihood, Adam 5e-4, batch 256) trained on the "
      "renders of the 4,500 training digits alone; its posterior means probed linearly "
      "(fitted on 500 / 1,000 training renders, scored on the 500 test renders; chance "
      "0.10). 'Digit's gain': log p(x|z) of a VAE also given the digit minus the plain "
      "VAE's, on the test renders (nats per image), and its share of the whole gain over "
      "the best constant image. Judge: the SVHN classifier on 30,000 renders of its own, "
      "tested on the test renders, and read on class means and per-pixel class medians of "
      "16 and 256 renders (a decoder with the Laplace likelihood that cannot predict S's own "
      "variation draws the median; '-': not measured). "
      f"Targets: probe >= {TARGETS['probe']}, judge >= {TARGETS['judge']}, 256-render "
      f"means <= {TARGETS['class_means_256']}.",
      "",
      "| candidate | probe 500 / 1,000 | digit's gain: log p(x\\|z) (share) / ELBO | "
      "plain VAE log p(x\\|z) / KL | judge | class means 16 / 256 | class medians 16 / 256 | "
      "meets | steps | minutes | changes from version 1 |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in records:
    vaes = r["vaes"]
    meets = (r["probe"]["500"] >= TARGETS["probe"] and r["judge"]["test_accuracy"] >=
             TARGETS["judge"] and r["judge"]["class_means"]["256"] <= TARGETS["class_means_256"])
    lines.append(
        f"| {r['candidate']} | {r['probe']['500']:.2f} / {r['probe']['1000']:.2f} | "
        f"{vaes['digit_reconstruction_gain']:.1f} ({vaes['digit_share']:.1%}) / "
        f"{vaes['digit_elbo_gain']:.1f} | {vaes['plain']['reconstruction']:.0f} / "
        f"{vaes['plain']['kl']:.1f} | {r['judge']['test_accuracy']:.3f} | "
        f"{r['judge']['class_means']['16']:.2f} / {r['judge']['class_means']['256']:.2f} | "
        f"{_pair(r['judge'].get('class_medians'))} | {'yes' if meets else 'no'} | {r['steps']} | {r['minutes']:.1f} | "
        f"{changed_fields(r['settings'])} |")
  return "\n".join(lines) + "\n"


def plain_table(records: list[dict], calibration: list[dict]) -> str:
  """The plain VAE's probe along budgets (`--plain_only`), each candidate's calibration
  record (1,000 steps) first."""
  lines = [
      "# SVHN-like renderer: what a plain VAE's own reconstruction teaches its encoder, by "
      "budget",
      "",
      "Written by experiments/paper/calibrate_svhn.py --plain_only. The calibration's plain "
      "VAE (the SVHN encoder and decoder, latent 32, Laplace likelihood, Adam 5e-4, batch "
      "256) on the renders of the 4,500 training digits, the same renders the multimodal "
      "runs on MNIST-SVHN-Text offline train on (each of them in 20 pairs): N steps show "
      "each render as often as N steps of a multimodal run. Probe: its posterior means "
      "classified linearly (fitted on 500 / 1,000 training renders, scored on the 500 "
      "test renders; chance 0.10), as Table 5's S column. log p(x|z) and KL: per test "
      "render, nats.",
      "",
      "| candidate | steps | epochs of the renders | probe 500 / 1,000 | log p(x\\|z) / KL | "
      "minutes | from |",
      "|---|---|---|---|---|---|---|",
  ]
  names = {r["candidate"] for r in records}
  rows = [(r, "calibration") for r in calibration if r["candidate"] in names] + [
      (r, "--plain_only") for r in records]
  for r, source in sorted(rows, key=lambda pair: (pair[0]["candidate"], pair[0]["steps"])):
    plain = r["vaes"]["plain"]
    lines.append(
        f"| {r['candidate']} | {r['steps']:,} | {r['steps'] * r['batch_size'] / 4500:,.0f} | "
        f"{r['probe']['500']:.2f} / {r['probe']['1000']:.2f} | "
        f"{plain['reconstruction']:.0f} / {plain['kl']:.1f} | {r['minutes']:.1f} | {source} |")
  return "\n".join(lines) + "\n"


def _add_record(path: str, record: dict, render=table) -> list[dict]:
  """Adds `record` to the results file `path` (one record per candidate and budget), read
  again under a lock, so that calibrations running side by side keep each other's
  records; rewrites its table (`render`, into the .md beside it); returns them all."""
  def change(records: list[dict]) -> list[dict]:
    records = [r for r in records if not (r["candidate"] == record["candidate"]
                                          and r["steps"] == record["steps"])] + [record]
    records.sort(key=lambda r: (list(CANDIDATES).index(r["candidate"])
                                if r["candidate"] in CANDIDATES else len(CANDIDATES), r["steps"]))
    # Under the same lock, so that the table is never older than the records.
    atomic.write_text(os.path.splitext(path)[0] + ".md", render(records))
    return records

  return atomic.update_json(path, change, [])


def _data_config():
  """The surrogate's data config with this command's seed and render cache."""
  config_data = mst_offline.get_data_config()
  config_data.seed = FLAGS.seed
  config_data.cache_dir = FLAGS.cache_dir
  return config_data


def _known(name: str) -> str:
  if name not in CANDIDATES:
    raise app.UsageError(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}.")
  return name


def main(argv):
  del argv
  path = os.path.join(FLAGS.results, "svhn_calibration.json")
  records = json.load(open(path)) if os.path.isfile(path) else []
  if FLAGS.plain_only:
    return plain_only(records)
  if not FLAGS.collect_only:
    config_data = _data_config()
    # A record is one candidate at one budget.
    done = lambda name: any(r["candidate"] == name and r["steps"] == FLAGS.steps
                            for r in records)
    names = FLAGS.candidates or [n for n in CANDIDATES if not done(n)]
    for name in map(_known, names):
      if FLAGS.judge_only:
        judged = judge(config_data, CANDIDATES[name], FLAGS.seed, FLAGS.judge_epochs)
        for record in [r for r in records if r["candidate"] == name]:
          records = _add_record(path, {**record, "judge": judged})
        continue
      if done(name) and not FLAGS.redo:
        continue
      record = measure(name, CANDIDATES[name], config_data)
      records = _add_record(path, record)
  atomic.write_text(os.path.join(FLAGS.results, "svhn_calibration.md"), table(records))
  print(table(records))


def plain_only(calibration: list[dict]) -> None:
  """--plain_only: the plain VAE of each named candidate at --steps, unless measured."""
  if not FLAGS.candidates:
    raise app.UsageError("Name the candidates, e.g. --plain_only --candidates=plain_wide "
                         "--steps=16000 (plain_wide is version 3).")
  path = os.path.join(FLAGS.results, "svhn_plain_vae.json")
  records = json.load(open(path)) if os.path.isfile(path) else []
  config_data = _data_config()
  for name in map(_known, FLAGS.candidates):
    if FLAGS.redo or not any(r["candidate"] == name and r["steps"] == FLAGS.steps
                             for r in records):
      records = _add_record(path, measure(name, CANDIDATES[name], config_data, True),
                            lambda records: plain_table(records, calibration))
  print(plain_table(records, calibration))


if __name__ == "__main__":
  define_flags()
  app.run(main)
