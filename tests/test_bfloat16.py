"""config.compute_dtype = "bfloat16": the networks compute in bfloat16, everything the
optimiser and the checkpoints see stays float32, and the numbers stay close to float32's
on the same batch (crmvae_jax.model.models.apply)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.model import models
from crmvae_jax.data.modalities import modalities_of
from crmvae_jax.data.base import MultimodalDataset

BATCH = 32


def _mst_model_and_batch():
  """The MNIST-SVHN-Text networks (dense, convolutional, transposed and 1-D text layers)
  on a batch of smooth random images and random names."""
  rng = np.random.default_rng(0)
  ramp = np.linspace(0, 255, 32)
  svhn = (ramp[None, :, None, None] * rng.uniform(0.2, 1, (BATCH, 1, 1, 3))
          + ramp[None, None, :, None] * rng.uniform(0, 0.5, (BATCH, 1, 1, 3))) / 1.5
  arrays = {"mnist": rng.integers(0, 256, (BATCH, 28, 28, 1)).astype(np.uint8),
            "svhn": svhn.astype(np.uint8),
            "text": rng.integers(0, 71, (BATCH, 8)).astype(np.int32)}
  dataset = MultimodalDataset(tuple(arrays), arrays, {n: np.arange(BATCH) for n in arrays},
                              np.zeros(BATCH, np.int64))
  model = models.MultimodalVAE(modalities_of("mst", dataset), 8)
  batch = dataset.batch(np.arange(BATCH))
  params = models.init_params(model, jax.random.key(0), batch)
  return model, params, batch


@pytest.fixture(scope="module")
def losses_and_grads():  # compiles the MST loss and gradient twice: the slow tier
  model, params, batch = _mst_model_and_batch()
  results = {}
  for dtype in models.COMPUTE_DTYPES:
    loss_fn = models.make_loss_fn(dataclasses.replace(model, compute_dtype=dtype), "crmvae")
    (loss, terms), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params, batch, jax.random.key(1), 1.0)
    results[dtype] = loss, terms, grads
  return params, results


@pytest.mark.slow
def test_bfloat16_keeps_parameters_gradients_and_sums_in_float32(losses_and_grads):
  params, results = losses_and_grads
  loss, terms, grads = results["bfloat16"]
  assert loss.dtype == jnp.float32
  assert all(value.dtype == jnp.float32 for value in jax.tree.leaves(terms))
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_bfloat16_loss_within_half_a_percent_of_float32(losses_and_grads):
  _, results = losses_and_grads
  full, half = results["float32"][0], results["bfloat16"][0]
  # bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.4%); the sums over pixels
  # run in float32, so the loss keeps far more than one step's accuracy.
  assert abs(float(half) - float(full)) <= 5e-3 * abs(float(full)), (float(half), float(full))


@pytest.mark.slow
def test_bfloat16_gradients_point_the_same_way(losses_and_grads):
  _, results = losses_and_grads
  full, half = results["float32"][2], results["bfloat16"][2]
  flat_full = np.concatenate([np.ravel(g) for g in jax.tree.leaves(full)])
  flat_half = np.concatenate([np.ravel(g) for g in jax.tree.leaves(half)])
  cosine = flat_full @ flat_half / (np.linalg.norm(flat_full) * np.linalg.norm(flat_half))
  assert cosine > 0.99, cosine
  # Layer by layer too: no network's gradient is lost in the cast.
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(full), jax.tree.leaves(half)):
    a, b = np.ravel(a), np.ravel(b)
    if np.linalg.norm(a) > 0:
      layer_cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
      assert layer_cosine > 0.95, (jax.tree_util.keystr(path), layer_cosine)


@pytest.mark.slow
def test_the_networks_really_compute_in_bfloat16():
  # The test above could pass with a cast that changes nothing: the decoders' outputs
  # must differ from float32's by bfloat16's rounding, not by zero.
  model, params, batch = _mst_model_and_batch()
  z = jax.random.normal(jax.random.key(2), (3, BATCH, 8))
  outputs = {dtype: models.apply(dataclasses.replace(model, compute_dtype=dtype), params, z,
                                 method=model.decode)
             for dtype in models.COMPUTE_DTYPES}
  for full, half in zip(outputs["float32"], outputs["bfloat16"]):
    assert half.dtype == jnp.float32
    difference = float(jnp.max(jnp.abs(full - half)))
    assert 0 < difference <= 0.05 * float(jnp.max(jnp.abs(full))) + 1e-3


def test_unknown_compute_dtype_is_refused():
  arrays = {"mnist": np.zeros((2, 28, 28, 1), np.uint8), "text": np.zeros((2, 8), np.int32)}
  dataset = MultimodalDataset(tuple(arrays), arrays, {n: np.arange(2) for n in arrays},
                              np.zeros(2, np.int64))
  model = models.MultimodalVAE(modalities_of("quickstart", dataset), 4, compute_dtype="float16")
  with pytest.raises(ValueError, match="float16"):
    models.apply(model, {}, models.model_inputs(model.modalities, dataset.batch(np.arange(2))),
                 method=model.encode)


@pytest.mark.slow
def test_a_bfloat16_run_checkpoints_float32_and_resumes_exactly(tmp_path):
  # Training in bfloat16 through the command line: checkpoints hold float32 parameters
  # and optimiser state, and a run stopped at step 6 and resumed to 12 ends with the
  # parameters of a run trained to 12 at once.
  import subprocess
  import sys

  from training_runs import REPO, checkpoint_steps, read_checkpoint, subprocess_env

  env = subprocess_env(1, str(tmp_path / "cache"))
  flags = ["--config=configs/quickstart.py", "--config.compute_dtype=bfloat16",
           "--config.batch_size=32", "--config.checkpoint_every_steps=6",
           "--config.eval_every_steps=100", "--config.log_every_steps=6",
           "--config.disable_progress_bar=True"]

  def train(workdir, steps):
    subprocess.run([sys.executable, "-m", "crmvae_jax.main", *flags,
                    f"--config.num_train_steps={steps}", f"--workdir={workdir}"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=600)

  train(tmp_path / "straight", 12)
  train(tmp_path / "resumed", 6)
  train(tmp_path / "resumed", 12)
  assert checkpoint_steps(str(tmp_path / "resumed")) == [6, 12]
  straight = read_checkpoint(str(tmp_path / "straight"), 12)
  resumed = read_checkpoint(str(tmp_path / "resumed"), 12)
  assert straight.keys() == resumed.keys()
  for key, value in straight.items():
    if np.issubdtype(value.dtype, np.floating):
      assert value.dtype == np.float32, key
    np.testing.assert_array_equal(value, resumed[key], err_msg=key)


def test_the_bias_gradient_of_a_bfloat16_layer_is_summed_in_float32():
  # 32 x 32 x 32 positions, each contributing 1: in bfloat16 a plain sum stops growing
  # long before 32,768; the layer's own gradient must be exact (32,768 is a bfloat16).
  from crmvae_jax.model import layers

  y = jnp.zeros((32, 32, 32, 3), jnp.bfloat16)
  bias = jnp.zeros((3,), jnp.bfloat16)
  grad = jax.grad(lambda b: jnp.sum(layers.add_bias(y, b).astype(jnp.float32)))(bias)
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(grad, np.float32), [32768.0] * 3)
  # The same in float32, to the bit, as autodiff of y + b.
  y32, b32 = jnp.asarray(np.random.default_rng(0).normal(size=(8, 5, 3)), jnp.float32), jnp.ones(3)
  ours = jax.grad(lambda b: jnp.sum(jnp.sin(layers.add_bias(y32, b))))(b32)
  plain = jax.grad(lambda b: jnp.sum(jnp.sin(y32 + b)))(b32)
  np.testing.assert_allclose(ours, plain, rtol=1e-6)


def test_cast_floating_leaves_integers_alone():
  tree = {"w": jnp.ones(2), "ids": jnp.arange(3), "nested": [jnp.zeros((), jnp.float32)]}
  cast = models.cast_floating(tree, jnp.bfloat16)
  assert cast["w"].dtype == cast["nested"][0].dtype == jnp.bfloat16
  assert cast["ids"].dtype == tree["ids"].dtype
