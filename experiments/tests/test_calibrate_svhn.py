"""experiments/paper/calibrate_svhn.py: the renderer's versions are the calibration's
candidates they were chosen from."""

import numpy as np
import pytest

from crmvae_jax.data import syndigits
from experiments.paper import calibrate_svhn


def test_each_version_is_the_calibration_candidate_it_was_chosen_from():
  assert syndigits.VERSIONS[1] == calibrate_svhn.CANDIDATES["v1"]
  assert syndigits.VERSIONS[2] == calibrate_svhn.CANDIDATES["plain"]
  assert syndigits.VERSIONS[3] == calibrate_svhn.CANDIDATES["plain_wide"]
  assert syndigits.VERSIONS[1] != syndigits.VERSIONS[2]


def test_the_plain_vae_alone_trains_and_is_measured_without_the_digit():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  labels = np.arange(16) % 10
  vaes, params = calibrate_svhn.train_vaes(images, labels, steps=2, batch_size=8,
                                           latent_dim=4, seed=0, plain_only=True)
  assert list(vaes) == list(params) == ["plain"]
  result = calibrate_svhn.evaluate_vaes(vaes, params, images, labels, -3000.0, seed=0)
  assert set(result) == {"plain", "constant_reconstruction"}  # no digit's share to give
  plain = result["plain"]
  assert plain["elbo"] == pytest.approx(plain["reconstruction"] - plain["kl"])
  assert plain["kl"] > 0
  means = calibrate_svhn.posterior_means(vaes, params, images)
  assert means.shape == (16, 4) and np.isfinite(means).all()


def test_the_plain_table_puts_the_calibration_record_first_and_counts_epochs():
  def record(steps, probe, minutes):
    return {"candidate": "plain_wide", "steps": steps, "batch_size": 256,
            "probe": {"500": probe, "1000": probe + 0.01},
            "vaes": {"plain": {"reconstruction": -1515.4, "kl": 12.9}}, "minutes": minutes}
  text = calibrate_svhn.plain_table([record(16000, 0.31, 20.0)],
                                    [record(1000, 0.13, 28.8), {**record(1000, 0.5, 1.0),
                                                                "candidate": "v1"}])
  rows = [line for line in text.splitlines() if line.startswith("| plain_wide")]
  assert rows == ["| plain_wide | 1,000 | 57 | 0.13 / 0.14 | -1515 / 12.9 | 28.8 | calibration |",
                  "| plain_wide | 16,000 | 910 | 0.31 / 0.32 | -1515 / 12.9 | 20.0 | --plain_only |"]
  assert "| v1 |" not in text  # only the candidates measured alone
