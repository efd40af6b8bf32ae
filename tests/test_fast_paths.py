"""The speed paths compute the same numbers as the plain ones: stacked decoding against
vmap, the objectives' one decoding call against two, and the XLA option every program
of the package sets where it starts (crmvae_jax.common.xla_setup; conftest.py sets it
for the tests)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.model import distributions as dist
from crmvae_jax.model import models, objectives
from crmvae_jax.common import xla_setup
from crmvae_jax.data.base import MultimodalDataset
from crmvae_jax.data.modalities import modalities_of


def _mnist_text_model():
  rng = np.random.default_rng(0)
  arrays = {"mnist": rng.integers(0, 256, (4, 28, 28, 1), np.uint8),
            "text": rng.integers(0, 71, (4, 8), np.int32)}
  dataset = MultimodalDataset(("mnist", "text"), arrays, {n: np.arange(4) for n in arrays},
                              np.zeros(4, np.int64))
  model = models.MultimodalVAE(modalities_of("quickstart", dataset), 4)
  batch = dataset.batch(np.arange(4))
  params = jax.eval_shape(lambda key: models.init_params(model, key, batch), jax.random.key(0))
  params = jax.tree.map(lambda leaf: 0.3 * rng.standard_normal(leaf.shape).astype(np.float32),
                        params)
  return model, params, batch


def test_model_stacked_log_likelihoods_equal_vmap_values_and_gradients():
  model, params, batch = _mnist_text_model()
  z = np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float32)  # [K, M, B, D]

  def total(params, stacked):
    fn = models.make_log_likelihood_fn(model, params, batch)
    values = fn.stacked(z) if stacked else jax.vmap(fn)(z)
    return jnp.sum(jnp.sin(values)), values

  value_and_grad = jax.jit(jax.value_and_grad(total, has_aux=True), static_argnums=1)
  (_, folded), folded_grads = value_and_grad(params, True)
  (_, mapped), mapped_grads = value_and_grad(params, False)
  assert folded.shape == (3, 2, 4)
  np.testing.assert_allclose(folded, mapped, rtol=1e-5, atol=1e-3)
  for a, b in zip(jax.tree.leaves(folded_grads), jax.tree.leaves(mapped_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
  # Each stack is decoded with its own latents: stack k alone gives row k.
  single = jax.jit(lambda params: models.make_log_likelihood_fn(model, params, batch)(z[2]))(
      params)
  np.testing.assert_allclose(folded[2], single, rtol=1e-5, atol=1e-3)


def _quadratic_log_likelihood_fn(calls):
  """l_m(z) = -(m + 1) |z - 1|^2 / 2; records each call's kind and latent shape."""
  scale = jnp.array([1.0, 2.0, 3.0])[:, None]

  def fn(z):
    calls.append(("plain", z.shape))
    return -0.5 * scale * jnp.sum((z - 1.0) ** 2, axis=-1)

  def stacked(z):
    calls.append(("stacked", z.shape))
    return -0.5 * scale * jnp.sum((z - 1.0) ** 2, axis=-1)

  fn.stacked = stacked
  return fn


@pytest.mark.parametrize("name,estimator", [
    ("crmvae", "stratified"), ("mvae", "stratified"), ("mopoe", "stratified"),
    ("mmvae", "stratified"), ("mopoe", "sampled")])
def test_objectives_decode_once_with_the_same_value_as_without_stacking(name, estimator):
  rng = np.random.default_rng(0)
  posteriors = dist.Gaussian(jnp.asarray(rng.normal(size=(3, 5, 2)), jnp.float32),
                             jnp.asarray(rng.normal(size=(3, 5, 2)) * 0.3, jnp.float32))
  calls = []
  with_stack = _quadratic_log_likelihood_fn(calls)

  def without_stack(z):
    return with_stack(z)

  objective = objectives.get_objective(name)
  key = jax.random.key(7)
  # Each side compiled as one program (the calls are recorded while tracing); op by op,
  # every primitive of the objective would compile apart.
  loss, terms = jax.jit(lambda: objective(posteriors, with_stack, key, beta=0.7,
                                          mixture_estimator=estimator))()
  stacked_calls = list(calls)
  reference, reference_terms = jax.jit(lambda: objective(posteriors, without_stack, key,
                                                         beta=0.7,
                                                         mixture_estimator=estimator))()
  np.testing.assert_allclose(loss, reference, rtol=1e-6)
  np.testing.assert_allclose(terms["log_likelihoods"], reference_terms["log_likelihoods"],
                             rtol=1e-6)
  expected = {"crmvae": [("stacked", (2, 3, 5, 2))], "mvae": [("stacked", (2, 3, 5, 2))],
              "mopoe": [("stacked", (7, 3, 5, 2))], "mmvae": [("stacked", (3, 3, 5, 2))]}
  if estimator == "sampled":
    assert stacked_calls == [("plain", (3, 5, 2))]
  else:
    assert stacked_calls == expected[name]


def test_stacked_output_of_the_wrong_shape_is_named():
  fn = _quadratic_log_likelihood_fn([])
  fn.stacked = lambda z: jnp.zeros(z.shape[:2])
  posteriors = dist.Gaussian(jnp.zeros((3, 5, 2)), jnp.zeros((3, 5, 2)))
  with pytest.raises(ValueError, match=r"log_likelihood_fn must map latents \(2, 3, 5, 2\)"):
    # Refused while tracing: nothing needs to be compiled or run.
    jax.eval_shape(lambda: objectives.crmvae(posteriors, fn, jax.random.key(0), beta=1.0))


@pytest.mark.parametrize("environ,version,flags_after", [
    ({}, (0, 10), xla_setup.SETTING),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, (0, 10),
     f"--xla_force_host_platform_device_count=2 {xla_setup.SETTING}"),
    # A user's own setting of the option wins.
    ({"XLA_FLAGS": f"{xla_setup.OPTION}=individual_dot"}, (0, 10),
     f"{xla_setup.OPTION}=individual_dot"),
    ({xla_setup.OPT_OUT: "1"}, (0, 10), None),
    # jaxlib versions not known to have the option are left at XLA's defaults.
    ({}, (0, 7), None),
    ({}, (0, 12), None),
    ({}, (1, 0), None),
])
def test_prefer_eigen_convolutions_edits_xla_flags_only_where_safe(environ, version, flags_after):
  flags_before = environ.get("XLA_FLAGS")
  environ = dict(environ)
  changed = xla_setup.prefer_eigen_convolutions(environ, version)
  assert environ.get("XLA_FLAGS") == flags_after
  assert changed == (flags_after != flags_before)


def _run_python(code: str) -> str:
  environ = {name: value for name, value in os.environ.items()
             if name not in ("XLA_FLAGS", xla_setup.OPT_OUT)}
  return subprocess.run([sys.executable, "-c", code], env=environ, check=True,
                        capture_output=True, text=True).stdout.strip()


def test_importing_the_package_changes_no_environment_and_imports_no_jax():
  code = ("import os, sys\nimport crmvae_jax\n"
          "print(os.environ.get('XLA_FLAGS'), 'jax' in sys.modules, crmvae_jax.__all__)")
  assert _run_python(code) == ("None False ['fit', 'train_judges', 'evaluate', 'load', "
                                "'TrainedModel', 'UserError']")


def test_a_program_sets_the_option_where_it_starts():
  code = ("import os\nfrom crmvae_jax.common import startup, xla_setup\n"
          "startup.start_program()\n"
          "print(os.environ.get('XLA_FLAGS') == (xla_setup.SETTING if xla_setup.option_known("
          "xla_setup.installed_jaxlib_version()) else None))")
  assert _run_python(code) == "True"


def test_the_option_moves_cpu_convolutions_off_ynnpack():
  # conftest.py set it before JAX's backend started, as every program does.
  if jax.default_backend() != "cpu" or not xla_setup.option_known(
      xla_setup.installed_jaxlib_version()):
    pytest.skip("only jaxlib versions known to have the option, on CPU")
  if xla_setup.SETTING not in os.environ.get("XLA_FLAGS", ""):
    pytest.skip("XLA_FLAGS set the option before the package was imported")
  x, kernel = jnp.ones((2, 8, 8, 3)), jnp.ones((4, 4, 3, 5))
  compiled = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))).lower(x, kernel).compile()
  text = compiled.as_text()
  assert "convolution(" in text
  assert "__ynn_fusion" not in text
