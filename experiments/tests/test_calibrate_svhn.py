"""experiments/paper/calibrate_svhn.py: the renderer's versions are the calibration's
candidates they were chosen from."""

from crmvae_jax.data import syndigits
from experiments.paper import calibrate_svhn


def test_each_version_is_the_calibration_candidate_it_was_chosen_from():
  assert syndigits.VERSIONS[1] == calibrate_svhn.CANDIDATES["v1"]
  assert syndigits.VERSIONS[2] == calibrate_svhn.CANDIDATES["plain"]
  assert syndigits.VERSIONS[3] == calibrate_svhn.CANDIDATES["plain_wide"]
  assert syndigits.VERSIONS[1] != syndigits.VERSIONS[2]
