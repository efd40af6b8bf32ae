r"""Makes tests/data/inception_golden.npz: pytorch-fid's own pool3 features of a fixed
input under seeded random weights, which tests/test_inception_golden.py asks the JAX port
(crmvae_jax.evaluation.inception) to reproduce.

Run it where torch, torchvision and pytorch-fid are installed, never in the project's
environment (the project does not depend on torch); from the repository root:

  . experiments/peer/setup.sh               # the PyTorch venv, once per machine
  $PEER_PY -m pip install pytorch-fid
  $PEER_PY experiments/tools/make_inception_golden.py

pytorch-fid builds its FID Inception (`InceptionV3([3])`: torchvision's Inception3 with
the pool branches patched to match TensorFlow, resizing to 299x299 and scaling to
[-1, 1]) and loads its weights strictly from what `load_state_dict_from_url` returns;
here that function returns seeded random weights instead of downloading the FID ones,
so the file tests the architecture and the preprocessing, not the trained weights.

The 21.8M random numbers are not stored (87 MB): `random_state_dict` regenerates them
from the names, shapes and seed with numpy alone (one PCG64 stream per array, keyed by
its name), the same here and in the test, and the file keeps a SHA-256 of them so that
a difference in regeneration fails loudly instead of comparing other weights. The file
holds the state dict's names and shapes as pytorch-fid's module has them, the seed, that
hash, the input images and the expected features (about 50 KB).
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from crmvae_jax.common import digests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN_PATH = os.path.join(REPO, "tests", "data", "inception_golden.npz")
SEED = 20240613
# Two images, neither square nor 299x299, so that the bilinear resize is exercised in
# both directions with different scales.
IMAGE_SHAPE = (2, 24, 40, 3)


def random_array(name: str, shape: Sequence[int], seed: int) -> np.ndarray:
  """One state-dict entry of random weights, from numpy alone.

  Conv kernels ([out, in, kh, kw]) are uniform with He variance 2 / fan_in, so
  activations stay O(1) through the 94 layers; BatchNorm scales and running variances
  are uniform in [0.5, 1.5), biases and running means uniform in [-0.1, 0.1). The
  classifier head and BatchNorm's step counters, which pool3 features never read, are
  zeros.

  Args:
    name: the PyTorch state-dict name, e.g. 'Mixed_5b.branch1x1.conv.weight'.
    shape: its shape in PyTorch layout.
    seed: the seed shared by every array.

  Returns:
    float32 array of `shape` (int64 for `num_batches_tracked`).
  """
  shape = tuple(int(size) for size in shape)
  if name.endswith(".num_batches_tracked"):
    return np.zeros(shape, np.int64)
  if name.startswith("fc."):
    return np.zeros(shape, np.float32)
  # Generator.random (53-bit doubles from the PCG64 stream) and SeedSequence are stable
  # across numpy versions.
  uniform = np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())])).random(shape)
  if name.endswith("conv.weight"):
    fan_in = int(np.prod(shape[1:]))
    value = (2.0 * uniform - 1.0) * np.sqrt(6.0 / fan_in)
  elif name.endswith(("bn.weight", "bn.running_var")):
    value = 0.5 + uniform
  elif name.endswith(("bn.bias", "bn.running_mean")):
    value = 0.2 * uniform - 0.1
  else:
    raise ValueError(f"random_array: no rule for state-dict entry {name!r}.")
  return value.astype(np.float32)


def random_state_dict(manifest: Sequence[tuple[str, Sequence[int]]],
                      seed: int) -> dict[str, np.ndarray]:
  """Every entry of `manifest` ([(name, shape), ...]) drawn by `random_array`."""
  return {name: random_array(name, shape, seed) for name, shape in manifest}


def weights_sha256(state_dict: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over names, dtypes, shapes and bytes, in sorted name order."""
  return digests.arrays_sha256(state_dict)


def fixed_images(seed: int) -> np.ndarray:
  """[2, 24, 40, 3] float32 images in [0, 1]: a smooth ramp plus noise, NHWC."""
  rng = np.random.Generator(np.random.PCG64(seed))
  _, height, width, _ = IMAGE_SHAPE
  ramp = (np.linspace(0.0, 1.0, height)[:, None, None] * np.linspace(1.0, 0.0, width)[None, :, None])
  noise = rng.random(IMAGE_SHAPE)
  images = 0.5 * ramp[None] + 0.5 * noise
  images[1] = images[1, ::-1]  # a second, different image
  return images.astype(np.float32)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--output", default=GOLDEN_PATH, help="Where to write the .npz.")
  parser.add_argument("--seed", type=int, default=SEED)
  args = parser.parse_args()

  # Imported here: the test imports this module's numpy functions without torch.
  import pytorch_fid  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  from pytorch_fid import inception as fid_inception  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(min(2, os.cpu_count() or 1))
  # The names and shapes of pytorch-fid's FID Inception: the torchvision Inception3 it
  # patches (built by pytorch-fid's own helper, without weights or initialisation).
  # The patched blocks subclass torchvision's and keep their parameters, and the strict
  # load below checks every name and shape against the module actually built.
  template = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  manifest = [(name, list(tensor.shape)) for name, tensor in template.state_dict().items()]
  state_dict = random_state_dict(manifest, args.seed)

  def seeded_random_weights(url, *unused_args, **unused_kwargs):
    assert url == fid_inception.FID_WEIGHTS_URL, url
    return {name: torch.from_numpy(array) for name, array in state_dict.items()}

  fid_inception.load_state_dict_from_url = seeded_random_weights  # no download
  model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
  model.eval()
  loaded = {name: tensor.numpy() for name, tensor in model.blocks.state_dict().items()}
  assert len(loaded) == len(state_dict) - 2  # everything but the unused fc head

  images = fixed_images(args.seed)
  with torch.no_grad():
    [pool3] = model(torch.from_numpy(images.transpose(0, 3, 1, 2)))  # NCHW, in [0, 1]
  features = pool3.numpy()[:, :, 0, 0].astype(np.float32)
  assert features.shape == (2, 2048) and np.all(np.isfinite(features)), features.shape

  versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
              "pytorch_fid": pytorch_fid.__version__, "numpy": np.__version__}
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  np.savez_compressed(
      args.output, images=images, features=features, seed=np.int64(args.seed),
      manifest=np.array(json.dumps(manifest)),
      weights_sha256=np.array(weights_sha256(state_dict)),
      versions=np.array(json.dumps(versions)))
  print(f"Wrote {args.output} ({os.path.getsize(args.output):,} bytes): {len(manifest)} "
        f"state-dict entries, features of {images.shape} images with mean "
        f"{features.mean():.4f}, std {features.std():.4f}, max {features.max():.4f} "
        f"({versions}).")


if __name__ == "__main__":
  main()
