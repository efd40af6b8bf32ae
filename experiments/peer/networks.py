"""MultiVae's (PyTorch) MNIST-SVHN-Text networks, timed one by one: the peer side of
`python -m experiments.tools.benchmark --sections=networks`.

Run by the venv of experiments/peer/setup.sh, never by the project, which does not
depend on torch. It takes the networks from experiments/peer/multivae_mst.py (or the
path given as its argument), so both speed comparisons time the same PyTorch modules.
Prints one line per network:

    peer NAME fwd MS fwdbwd MS

NAME is mnist_enc, mnist_dec, svhn_enc, svhn_dec, text_enc or text_dec; fwd is a
forward pass under `torch.no_grad()`, fwdbwd a forward pass and the backward pass of
the sum of its outputs (parameter gradients, as in training); medians of REPEATS calls
after warm-up calls, at batch BATCH and latent 32, with 2 threads.
"""
import importlib.util
import os
import statistics
import sys
import time

import torch

BATCH = int(os.environ.get("BATCH", 256))
REPEATS = int(os.environ.get("REPEATS", 20))


def load_peer(path):
  spec = importlib.util.spec_from_file_location("multivae_mst", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def median_ms(call):
  for _ in range(3):
    call()
  times = []
  for _ in range(REPEATS):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def outputs_sum(output):
  return sum(value.sum() for key, value in output.items()
             if key in ("embedding", "log_covariance", "reconstruction"))


def main():
  torch.set_num_threads(2)
  peer = load_peer(sys.argv[1] if len(sys.argv) > 1 else
                   os.path.join(os.path.dirname(os.path.abspath(__file__)), "multivae_mst.py"))
  generator = torch.Generator().manual_seed(0)
  inputs = {
      "mnist": torch.rand(BATCH, 1, 28, 28, generator=generator),
      "svhn": torch.rand(BATCH, 3, 32, 32, generator=generator),
      "text": torch.nn.functional.one_hot(
          torch.randint(0, 71, (BATCH, 8), generator=generator), 71).float(),
  }
  latents = torch.randn(BATCH, peer.LATENT, generator=generator)
  for name, (encoder, decoder) in peer.networks().items():
    for role, module, x in (("enc", encoder, inputs[name]), ("dec", decoder, latents)):
      def forward(module=module, x=x):
        with torch.no_grad():
          module(x)

      def forward_backward(module=module, x=x):
        module.zero_grad()
        outputs_sum(module(x)).backward()

      print(f"peer {name}_{role} fwd {median_ms(forward):.2f} "
            f"fwdbwd {median_ms(forward_backward):.2f}", flush=True)


if __name__ == "__main__":
  main()
