r"""Converts pytorch-fid's Inception-v3 weights into the `.npz` that FID loads.

Run once, from the repository root, on a machine where torch is installed:

  python -m crmvae_jax.convert_inception_weights \
      --torch_weights=pt_inception-2015-12-05-6726825d.pth \
      --output_npz=~/.cache/crmvae_jax/inception_fid.npz

`pt_inception-2015-12-05-6726825d.pth` is the file pytorch-fid downloads from its
GitHub release `fid_weights` into torch's hub cache on first use; without
--torch_weights it is looked for there (`$TORCH_HOME/hub/checkpoints/`). The output
holds the state dict's names and PyTorch-layout arrays, minus the classifier head and
BatchNorm step counters, which pool3 features do not use. The script then loads the
file through `crmvae_jax.evaluation.inception` (every name and shape is checked) and prints the
features of a grey image. Evaluation finds the output at the default path, at
`$CRMVAE_INCEPTION_WEIGHTS`, or at `--config.eval.fid.inception_weights=PATH`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import flags

from crmvae_jax.config import cli
from crmvae_jax.evaluation import inception
from crmvae_jax.common.errors import UserError

TORCH_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"

# State-dict entries that pool3 features never read: the 1008-way classifier and
# BatchNorm's count of training steps.
_UNUSED_PREFIXES = ("fc.",)
_UNUSED_SUFFIXES = (".num_batches_tracked",)

_TORCH_WEIGHTS = flags.DEFINE_string(
    "torch_weights", None,
    f"pytorch-fid's {TORCH_WEIGHTS_NAME}; default: torch's hub checkpoint cache.")
_OUTPUT_NPZ = flags.DEFINE_string("output_npz", inception.DEFAULT_WEIGHTS_PATH,
                              "Where to write the .npz of converted weights.")


def arrays_from_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The state dict as float32 numpy arrays, without the entries pool3 never uses.

  Args:
    state_dict: name -> tensor (or anything `np.asarray` reads) of pytorch-fid's
      FID Inception.

  Returns:
    name -> float32 array, names and layouts unchanged.
  """
  return {
      name: np.asarray(value, dtype=np.float32)
      for name, value in state_dict.items()
      if not name.startswith(_UNUSED_PREFIXES) and not name.endswith(_UNUSED_SUFFIXES)
  }


def main() -> None:
  # torch is needed only here, so importing this module works without it.
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise UserError(
        "Reading pytorch-fid's weights needs torch: run this where `pip install torch` "
        "has been done.") from error

  torch_weights = os.path.expanduser(
      _TORCH_WEIGHTS.value or
      os.path.join(torch.hub.get_dir(), "checkpoints", TORCH_WEIGHTS_NAME))
  if not os.path.isfile(torch_weights):
    raise UserError(
        f"{torch_weights} does not exist; pass --torch_weights=PATH to pytorch-fid's "
        f"{TORCH_WEIGHTS_NAME} (pytorch-fid downloads it on first use).")
  state_dict = torch.load(torch_weights, map_location="cpu", weights_only=True)
  arrays = arrays_from_state_dict(
      {name: tensor.detach().numpy() for name, tensor in state_dict.items()})

  output = os.path.expanduser(_OUTPUT_NPZ.value)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  np.savez(output, **arrays)

  extractor = inception.InceptionFeatures.load(output)
  grey_images = np.full((2, 32, 32, 3), 0.5, np.float32)
  features = extractor.features(grey_images)
  print(f"Wrote {len(arrays)} arrays to {output}; pool3 features of a grey image: "
        f"shape {features.shape}, mean {features.mean():.4f}.")


if __name__ == "__main__":
  cli.run(main, config=False)
