"""Shared fixtures of tests/ (the package's tests) and experiments/tests/ (the
experiment scripts' tests): tiny prepared TFDS data sets written by the tests (no
network), the quick start's model with initial parameters, tiny PolyMNIST runs, and a
persistent compilation cache for tests that start training subprocesses, which the
tests' own compilations use too."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from crmvae_jax.common import xla_setup

# As every program of the package does where it starts (common/startup.py), before the
# first computation starts JAX's CPU backend.
xla_setup.prefer_eigen_convolutions()

# JAX and the package's heavier modules are imported where a hook or fixture needs them,
# not here: with xdist the controller process loads this file only to start the
# workers, and importing JAX there (3 s with the package) delayed every worker's start.


def _runs_tests(config) -> bool:
  """Whether this process runs tests: an xdist worker, or pytest without workers (not
  the xdist controller, which only hands tests to its workers)."""
  return hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)


def pytest_configure(config):
  """JAX's persistent compilation cache for every compilation of the session: the
  directory in .pytest_cache that the training subprocesses use (`compilation_cache`).
  Almost all of the unit tier's time is XLA compiling small programs and single
  primitives, so a second session reads them back instead. Entries are keyed by the
  program, the XLA flags and the jaxlib version. Without the cache provider
  (-p no:cacheprovider) every session compiles everything, as CI's fresh checkout
  does."""
  cache = getattr(config, "cache", None)
  if cache is None or not _runs_tests(config):
    return
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_compilation_cache_dir", str(cache.mkdir("jax_compilation_cache")))
  # Op by op, every primitive is a program of its own that compiles in tens of ms.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_collection_modifyitems(config, items):
  """The op-by-op variants of chex-variant tests (`..._without_jit`) join the slow tier:
  run eagerly, every distinct primitive compiles as a program of its own (tens of ms
  each), so they cost seconds apiece while checking the same maths as their jitted
  twins, which stay in the unit tier."""
  del config
  for item in items:
    if item.name.endswith("__without_jit") or "__without_jit[" in item.name:
      item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """Tests compile with `jax_disable_most_optimizations`: the same programs without
  XLA's expensive LLVM passes (last bits may differ where XLA would have fused). A
  test's arrays are tiny and its training runs last tens of steps, so compiling is
  nearly all of its time and the optimisations save nothing: the end-to-end tier's
  in-process tests took 355 s this way against 625 s on 2 cores. The training
  subprocesses a test starts inherit the setting through JAX_DISABLE_MOST_OPTIMIZATIONS.
  Tests marked `optimized` (the quick start's commands and the kill -9 resumption test)
  keep the optimising compiler, so that the suite still compiles the programs users run.

  Set here, before any fixture of the test is set up, so that the module- and
  session-scoped fixtures a test is the first to need (a model's initialisation, a
  classifier) compile as the test itself does, and share the primitives the worker
  compiled before."""
  import os  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel
  unoptimized = item.get_closest_marker("optimized") is None
  jax.config.update("jax_disable_most_optimizations", unoptimized)
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "true" if unoptimized else "false"


def _random_split(rng, size, shape):
  return {"image": rng.integers(0, 256, (size, *shape), dtype=np.uint8),
          "label": np.tile(np.arange(10), size // 10)}


@pytest.fixture(scope="session")
def mst_data_dir(tmp_path_factory):
  """A TFDS data directory holding tiny random `mnist` and `svhn_cropped` data sets."""
  from crmvae_jax.data import tfds_arrays  # pylint: disable=import-outside-toplevel
  data_dir = str(tmp_path_factory.mktemp("tfds_mst"))
  rng = np.random.default_rng(0)
  tfds_arrays.write_arrays("mnist", data_dir, {
      "train": _random_split(rng, 40, (28, 28, 1)), "test": _random_split(rng, 20, (28, 28, 1))})
  svhn = {"train": _random_split(rng, 40, (32, 32, 3)), "test": _random_split(rng, 20, (32, 32, 3))}
  for split, arrays in svhn.items():
    arrays["id"] = np.array([f"{split}_{i}" for i in range(len(arrays["label"]))])
  tfds_arrays.write_arrays("svhn_cropped", data_dir, svhn)
  return data_dir


QUICKSTART_LATENT_DIM = 4


@pytest.fixture(scope="session")
def quickstart_vae():
  """(model, params): the quick start's networks (an MNIST MLP and the MST text
  convolutions) with latent dimension QUICKSTART_LATENT_DIM and their initial
  parameters, built once per worker for the tests of the trained-model API
  (test_inference.py and test_generate.py, which share an xdist group so that one
  worker builds it). The initialisation is compiled as one program (op by op, every
  initialiser compiles apart), with the classic threefry, whose draws compile several
  times faster on a CPU (as in test_networks.py)."""
  # pylint: disable=import-outside-toplevel
  import jax
  from crmvae_jax.data import text
  from crmvae_jax.data.base import MultimodalDataset
  from crmvae_jax.data.modalities import modalities_of
  from crmvae_jax.model import models
  # The model reads the modalities' shapes and kinds only: one stored pair gives them.
  arrays = {"mnist": np.zeros((1, 28, 28, 1), np.uint8),
            "text": text.digit_texts(np.zeros(1, np.int64), np.random.default_rng(0))}
  dataset = MultimodalDataset(("mnist", "text"), arrays, {name: np.arange(1) for name in arrays},
                              np.zeros(1, np.int64))
  model = models.MultimodalVAE(tuple(modalities_of("quickstart", dataset)),
                               QUICKSTART_LATENT_DIM)
  batch = dataset.batch(np.arange(1))
  with jax.threefry_partitionable(False):
    params = jax.jit(lambda rng: models.init_params(model, rng, batch))(jax.random.PRNGKey(0))
  return model, params


@pytest.fixture(scope="module")
def compilation_cache(request, tmp_path_factory) -> str:
  """A persistent compilation cache kept between sessions in .pytest_cache (a fresh
  one per session with -p no:cacheprovider)."""
  cache = getattr(request.config, "cache", None)
  if cache is None:
    return str(tmp_path_factory.mktemp("jax_compilation_cache"))
  return str(cache.mkdir("jax_compilation_cache"))


@pytest.fixture(autouse=True)
def _no_stop_requested_before(monkeypatch):
  """A test that calls a stop signal's handler in-process records the stop
  (`startup.request_stop`); every test starts with none recorded."""
  from crmvae_jax.common import startup

  monkeypatch.setattr(startup, "_requested", [])


# The first 160 embedded training digits hold at least 5 of every digit (M = 5 tuples).
POLYMNIST_MAX_TRAIN, POLYMNIST_MAX_TEST = 160, 80
POLYMNIST_SEEDS_OF = {2: [0, 1], 5: [0]}  # M = 2 also exercises a two-replica grid


def tiny_polymnist_config(num_modalities: int, root) -> ml_collections.ConfigDict:
  """The tiny run size, smaller still where these tests' counts need it."""
  from configs import polymnist as polymnist_config  # pylint: disable=import-outside-toplevel
  config = polymnist_config.get_config("tiny")
  config.data.num_modalities = num_modalities
  config.data.max_train = POLYMNIST_MAX_TRAIN
  config.data.max_test = POLYMNIST_MAX_TEST
  config.data.cache_dir = str(root / "cache")
  config.latent_dim = 16  # the networks' 512 only slows compilation here
  config.batch_size = 16
  config.num_train_steps = 2
  config.log_every_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval.classifier_dir = str(root / "classifiers")
  config.eval.classifier_max_train_examples = 64
  config.eval.batch_size = 16
  config.eval.num_examples = 24  # one padded batch after a full one
  config.eval.coherence.prior_samples = 16
  config.eval.latent.train_examples = 32
  config.eval.fid.examples = 16
  config.eval.fid.inception_weights = str(root / "missing_inception.npz")
  config.eval.fid.enabled = True
  config.eval.fid.by_subset_size = True
  config.eval.fid.subsets_per_size = -1  # every conditioning subset of each size
  return config


@pytest.fixture(scope="session")
def polymnist_runs(tmp_path_factory):
  """num_modalities -> (config, root, `sweeps.run_grid` results of CRMVAE) for M = 2 and 5:
  trained once per worker, for tests/test_polymnist.py and the Figure 2 script's test
  (both marked xdist_group("polymnist_runs"), so they share one worker)."""
  from crmvae_jax import sweeps  # pylint: disable=import-outside-toplevel
  runs = {}
  for num_modalities, seeds in POLYMNIST_SEEDS_OF.items():
    root = tmp_path_factory.mktemp(f"polymnist_m{num_modalities}")
    config = tiny_polymnist_config(num_modalities, root)
    runs[num_modalities] = (config, root, sweeps.run_grid(
        config, ["crmvae"], seeds, [config.beta], str(root / "runs")))
  return runs


def two_image_text_steps(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` (CUB or CelebA) trained two steps of batch 4 and evaluated on 6 test pairs,
  the judges one epoch of batch 4: as small as the 64x64 networks allow (in place)."""
  config.num_train_steps, config.batch_size = 2, 4
  config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps = 1, 2, 2
  config.figure_examples, config.disable_progress_bar = 2, True
  config.eval.batch_size, config.eval.num_examples = 4, 6
  config.eval.classifier_epochs, config.eval.classifier_batch_size = 1, 4
  return config


@pytest.fixture(scope="module")
def classic_threefry():
  """Partitionable threefry (JAX's default) compiles every parameter initialiser of the
  64x64 networks about five times slower on a CPU; the classic one keeps the image-text
  tests' compilation in budget (`pytestmark = pytest.mark.usefixtures(...)`). The values
  differ, not what the tests check."""
  import jax  # pylint: disable=import-outside-toplevel
  with jax.threefry_partitionable(False):
    yield

