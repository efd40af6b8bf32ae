"""experiments/paper/calibrate_svhn.py: the renderer's versions are the calibration's
candidates they were chosen from."""

from crmvae_jax.data import syndigits
from experiments.paper import calibrate_svhn


def test_version_1_is_the_first_render_and_version_2_the_calibrated_plain_candidate():
  assert syndigits.VERSIONS[1] == calibrate_svhn.CANDIDATES["v1"]
  assert syndigits.VERSIONS[2] == calibrate_svhn.CANDIDATES["plain"]
  assert syndigits.VERSIONS[1] != syndigits.VERSIONS[2]
