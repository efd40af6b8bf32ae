"""Nothing the user has is lost, and nothing wrong passes in silence: judges replaced
only whole and written under a lock, judges and runs tied to their data, stop signals
honoured even when a library swallows them, linear validation, library faults in one
sentence, readers beside a rotating run, and evaluations replaced as one set."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from crmvae_jax.common import atomic, errors, field_checks, startup

from crmvae_jax.config import cli, runs, validation
from crmvae_jax.config import defaults as config_lib
from crmvae_jax import data as data_lib
from crmvae_jax.model.modality import Modality
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation import (classifier_networks, classifier_training, driver,
                                   judges)
from crmvae_jax.training import checkpoints, guards
from tests.test_checkpoints import _abstract, _config, _manager, _states

MNIST = Modality("mnist", "mnist", (28, 28, 1), None, 1.0)


def _classifier(seed: int) -> judges.Classifier:
  """An untrained MNIST judge: what is stored, not how well it judges, matters here."""
  module = classifier_networks.CLASSIFIERS["mnist"](num_classes=10)
  params = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, 28, 28, 1)))["params"]
  return judges.Classifier(MNIST, module, params)


def _quickstart():
  return config_lib.quickstart_config()


def _metadata(config) -> dict:
  return {"modality": "mnist", "network": "mnist", "num_classes": 10, "multi_label": False,
          "test_accuracy": 0.5, "data": data_lib.identity(config.data)}


def _same_params(a, b) -> bool:
  return jax.tree.all(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b))


@pytest.fixture(scope="module")
def two_judges():
  return _classifier(0), _classifier(1)


# Judges: replaced only whole, written by one program at a time, tied to their data.


def test_a_judge_is_replaced_whole_and_its_old_parameters_removed(tmp_path, two_judges):
  old, new = two_judges
  config = _quickstart()
  folder = classifier_training.save_classifier(str(tmp_path), old, _metadata(config))
  classifier_training.save_classifier(str(tmp_path), new, _metadata(config))
  loaded = judges.load_classifier(config, MNIST, str(tmp_path))
  assert _same_params(loaded.params, new.params)
  with open(os.path.join(folder, judges.METADATA_FILE)) as f:
    params_dir = json.load(f)["params"]
  assert [n for n in os.listdir(folder) if n.startswith(judges.PARAMS_DIR)] == [params_dir]


def test_a_save_stopped_before_its_commit_leaves_the_old_judge(tmp_path, monkeypatch,
                                                               two_judges):
  old, new = two_judges
  config = _quickstart()
  classifier_training.save_classifier(str(tmp_path), old, _metadata(config))

  def killed(*args, **kwargs):  # the program dies between the parameters and the commit
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:
    patch.setattr(classifier_training.atomic, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
      classifier_training.save_classifier(str(tmp_path), new, _metadata(config))
  # The old judge, whole: its description and its own parameters.
  assert _same_params(judges.load_classifier(config, MNIST, str(tmp_path)).params, old.params)
  # The next save removes what the stopped one left.
  classifier_training.save_classifier(str(tmp_path), new, _metadata(config))
  assert len([n for n in os.listdir(tmp_path / "mnist")
              if n.startswith(judges.PARAMS_DIR)]) == 1


def test_a_judge_stored_the_old_way_still_loads(tmp_path, two_judges):
  old, _ = two_judges
  config = _quickstart()
  folder = classifier_training.save_classifier(str(tmp_path), old, _metadata(config))
  with open(os.path.join(folder, judges.METADATA_FILE)) as f:
    metadata = json.load(f)
  os.rename(os.path.join(folder, metadata.pop("params")), os.path.join(folder, "params"))
  atomic.write_json(os.path.join(folder, judges.METADATA_FILE), metadata)
  assert _same_params(judges.load_classifier(config, MNIST, str(tmp_path)).params, old.params)


def test_two_trainings_of_judges_into_one_directory_are_refused(tmp_path):
  config = _quickstart()
  config.eval.classifier_dir = str(tmp_path)
  with classifier_training.judges_lock(str(tmp_path)):
    with pytest.raises(UserError, match=r"Another classifier training \(pid \d+ .*\) is running "
                       r"in .*; wait for it to finish or pass another "
                       r"--config.eval.classifier_dir"):
      classifier_training.train_classifiers(config)


@pytest.mark.parametrize("recorded, fragment", [
    ({"name": "arrays", "files": {"path": "aaaa"}},
     "was trained on other data \\(name: 'arrays' for the judge, 'quickstart' for the run"),
    (None, "does not record the data it was trained on"),
])
def test_a_judge_of_other_data_is_refused_naming_the_command(tmp_path, two_judges, recorded,
                                                             fragment):
  old, _ = two_judges
  config = _quickstart()
  metadata = _metadata(config)
  if recorded is None:
    del metadata["data"]
  else:
    metadata["data"] = recorded
  classifier_training.save_classifier(str(tmp_path), old, metadata)
  with pytest.raises(UserError, match=fragment + r".*train judges for this run's data with: "
                     r"python -m crmvae_jax.classifiers"):
    judges.load_classifier(config, MNIST, str(tmp_path))


# A run's data.


def test_a_run_refuses_other_data_and_accepts_its_own(tmp_path):
  runs.save_data_identity(str(tmp_path), {"name": "arrays", "files": {"path": "ab12"}})
  runs.check_same_data(str(tmp_path), {"name": "arrays", "files": {"path": "ab12"}}, "fix")
  with pytest.raises(UserError, match=r"was trained on other data \(files.path 'ab12' then, "
                     r"'cd34' now\); pass the original file"):
    runs.check_same_data(str(tmp_path), {"name": "arrays", "files": {"path": "cd34"}},
                         "pass the original file")
  runs.check_same_data(str(tmp_path / "older_run"), {"name": "x"}, "fix")  # no data.json


# Stop signals.


def test_a_swallowed_stop_still_stops_before_training_and_at_exit(monkeypatch):
  monkeypatch.setattr(startup, "_requested", [])
  with guards.StopSignals():
    pass  # nothing asked
  with pytest.raises(cli.Stopped):
    cli._raise_stopped(signal.SIGINT, None)  # raised, and (say) swallowed by a library
  with pytest.raises(guards.TrainingInterrupted, match="SIGINT stopped the program before "
                     "training started") as raised:
    with guards.StopSignals():
      pass
  assert raised.value.exit_code == 128 + signal.SIGINT


def test_ctrl_c_is_a_stop_signal_from_the_first_instruction():
  assert signal.SIGINT in startup.STOP_SIGNALS and signal.SIGINT in cli.STOP_SIGNALS


# Validation is linear in what the user gives it.


def test_a_million_seeds_are_checked_at_once_and_repeats_named_briefly():
  config = config_lib.quickstart_config()
  config.sweep.seeds = tuple(range(1_000_000))
  field_checks.check_numbers(config, "sweep.seeds", 0, integer=True, example="(0,1)",
                             distinct=True)
  config.sweep.seeds = tuple(range(1_000_000)) + (7, 9)
  with pytest.raises(UserError, match=r"repeats 7, 9, which would train identical replicas"):
    field_checks.check_numbers(config, "sweep.seeds", 0, integer=True, example="(0,1)",
                               distinct=True)
  config.sweep.seeds = tuple(range(10)) * 2
  with pytest.raises(UserError, match=r"repeats 0, 1, 2, 3, 4 and 5 more,"):
    field_checks.check_numbers(config, "sweep.seeds", 0, integer=True, example="(0,1)",
                               distinct=True)


# Library faults, in the libraries' own forms.


def _chained(outer: Exception, inner: Exception) -> Exception:
  try:
    try:
      raise inner
    except Exception as cause:  # pylint: disable=broad-except
      raise outer from cause
  except Exception as error:  # pylint: disable=broad-except
    return error


@pytest.mark.parametrize("error, problem", [
    (OSError(28, "No space left on device"), "disk full"),
    (ValueError("Error writing tensorstore ... [OS error: No space left on device]"),
     "disk full"),
    (_chained(RuntimeError("save failed"), OSError(122, "Disk quota exceeded")), "disk full"),
    (OSError(30, "Read-only file system"), "read-only"),
    (MemoryError("Unable to allocate 73.0 GiB"), "out of memory"),
    (RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"),
     "out of memory"),
    (ValueError("a bug"), None),
    (KeyError("disk"), None),
])
def test_library_faults_are_recognised_in_their_own_forms(error, problem):
  assert errors.resource_problem(error) == problem
  converted = errors.from_library_error(error)
  assert (converted is None) == (problem is None)
  if converted is not None:
    assert "\n" not in str(converted) and str(converted).endswith(".")


def test_orbax_reporting_a_full_disk_as_value_error_is_a_checkpoint_error():
  manager = type("Manager", (), {"directory": "/nonexistent/run/checkpoints"})()
  with pytest.raises(checkpoints.CheckpointWriteError, match=r"Cannot write a checkpoint in "
                     r"/nonexistent/run/checkpoints \(the disk is full\)"):
    with checkpoints.writing(manager):
      raise ValueError("OUT_OF_RANGE: Error writing local file: No space left on device")


# Command-line inputs.


@pytest.mark.parametrize("source, fragment", [
    ("import not_a_module\ndef get_config():\n  return None\n",
     r"line 1: ModuleNotFoundError: No module named 'not_a_module'"),
    ("def get_config():\n  values = {}\n  return values['missing']\n",
     r"line 3: KeyError: 'missing'"),
])
def test_a_config_files_own_exception_is_one_line_naming_file_and_line(tmp_path, source,
                                                                        fragment):
  path = tmp_path / "broken.py"
  path.write_text(source)
  with pytest.raises(UserError, match=rf"Config file {path}, {fragment}; fix the file"):
    cli.load_config_file(str(path))


def test_a_config_directory_suggests_a_file_in_it(tmp_path):
  (tmp_path / "mine.py").write_text("def get_config():\n  return None\n")
  with pytest.raises(UserError, match=rf"--config={tmp_path} is a directory; pass a config "
                     rf"file, e.g. --config={tmp_path}/mine.py"):
    cli.load_config_file(str(tmp_path))


@pytest.mark.parametrize("flags_value, bad", [("garbage", "garbage"),
                                              ("--xla_cpu_x=1 -O2", "-O2")])
def test_xla_flags_that_xla_would_abort_on_are_refused(monkeypatch, flags_value, bad):
  monkeypatch.setenv("XLA_FLAGS", flags_value)
  with pytest.raises(UserError, match=f"XLA_FLAGS holds '{bad}', which is not an XLA flag"):
    cli.check_xla_flags()
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_onednn=false --xla_force_host_platform_device_count=2")
  cli.check_xla_flags()


def test_a_dangling_link_is_called_a_link(tmp_path):
  (tmp_path / "checkpoints").symlink_to(tmp_path / "gone")
  with pytest.raises(UserError, match=r"is a link to .*gone, which does not exist"):
    atomic.check_writable(str(tmp_path / "checkpoints"), "pass another --workdir")
  (tmp_path / "run").symlink_to(tmp_path / "gone_too")
  with pytest.raises(UserError, match=r"--workdir=.*run is a link to .*gone_too, which does "
                     "not exist"):
    runs.check_workdir(str(tmp_path / "run"))


def test_divergence_says_what_was_kept_and_names_the_weights_it_used():
  config = config_lib.quickstart_config()
  config.likelihood_weights = (1.0, 1e9)
  message = guards._divergence_message(np.array([1]), [0], [1.0], config, has_checkpoint=False)
  assert "no checkpoint had been saved yet, so nothing was written" in message
  assert "--config.likelihood_weights (now (1.0, 1000000000.0)) or beta" in message
  config.likelihood_weights = None
  message = guards._divergence_message(np.array([7]), [0], [1.0], config)
  assert "the last finite checkpoint is kept" in message and "likelihood_weights" not in message


# Readers beside a run that rotates its checkpoints.


def test_a_reader_retries_when_the_checkpoint_it_read_was_rotated_away(tmp_path, monkeypatch):
  manager = _manager(tmp_path)
  checkpoints.save(manager, 10, _states(32), _config())
  checkpoints.save(manager, 20, _states(32), _config())
  manager.wait_until_finished()
  restore = manager.restore
  calls = []

  def rotating_restore(step, *args, **kwargs):
    calls.append(step)
    if len(calls) == 1:  # the run saves step 30 and removes 10 and 20 while we read 20
      checkpoints.save(manager, 30, _states(32), _config())
      manager.wait_until_finished()
      for old in (10, 20):
        os.rename(tmp_path / "checkpoints" / str(old), tmp_path / f"removed_{old}")
      raise FileNotFoundError(f"checkpoint {step} vanished")
    return restore(step, *args, **kwargs)

  monkeypatch.setattr(manager, "restore", rotating_restore)
  restored = checkpoints.restore_latest(manager, _abstract(32), _config())
  assert restored is not None and calls == [20, 10, 30]
  assert not os.path.exists(tmp_path / checkpoints.UNREADABLE_DIR)  # nothing called damaged
  manager.close()


# An evaluation's files are one set.


def test_an_evaluation_replaces_the_previous_one_whole_or_not_at_all(tmp_path):
  eval_dir = str(tmp_path / "eval")
  os.makedirs(eval_dir)
  for name, text in (("results.json", "old"), ("tables.md", "old"), ("sweep.md", "kept")):
    (tmp_path / "eval" / name).write_text(text)

  def half_then_full_disk(directory):
    atomic.write_text(os.path.join(directory, "results.json"), "new")
    raise OSError(28, "No space left on device")

  with pytest.raises(OSError):
    driver._replace_eval_directory(eval_dir, half_then_full_disk)
  assert {n: (tmp_path / "eval" / n).read_text() for n in os.listdir(eval_dir)} == {
      "results.json": "old", "tables.md": "old", "sweep.md": "kept"}
  assert os.listdir(tmp_path) == ["eval"]  # no staging left

  def complete(directory):
    for name in ("results.json", "tables.md"):
      atomic.write_text(os.path.join(directory, name), "new")

  driver._replace_eval_directory(eval_dir, complete)
  assert {n: (tmp_path / "eval" / n).read_text() for n in os.listdir(eval_dir)} == {
      "results.json": "new", "tables.md": "new", "sweep.md": "kept"}
  assert os.listdir(tmp_path) == ["eval"]


def test_an_evaluation_stopped_between_its_renames_is_put_back(tmp_path):
  # Stopped after moving the previous evaluation aside, before the new one took its place.
  (tmp_path / "eval.old-123-abc").mkdir()
  (tmp_path / "eval.old-123-abc" / "results.json").write_text("old")
  (tmp_path / "eval.new-123-abc").mkdir()
  driver._recover_eval_directory(str(tmp_path / "eval"))
  assert sorted(os.listdir(tmp_path)) == ["eval"]
  assert (tmp_path / "eval" / "results.json").read_text() == "old"


def test_a_wrongly_typed_saved_config_names_the_file_to_correct(tmp_path):
  validation.check_saved_config(str(tmp_path))  # a new run
  runs.save_config(str(tmp_path), config_lib.quickstart_config())
  validation.check_saved_config(str(tmp_path))
  path = tmp_path / runs.CONFIG_FILE
  document = json.loads(path.read_text())
  document["latent_dim"] = "abc"
  path.write_text(json.dumps(document))
  with pytest.raises(UserError, match=rf"{path}, the run's saved config, holds a value that "
                     r"cannot be used \(--config.latent_dim .*'abc'\); correct it in that file"):
    validation.check_saved_config(str(tmp_path))


def test_a_full_disk_ends_the_program_without_the_libraries_retrying_at_exit():
  # TensorBoard's writers and Orbax's threads write again at exit and print tracebacks.
  assert errors.from_library_error(OSError(28, "No space left on device")).hard_exit
  assert not getattr(errors.from_library_error(MemoryError()), "hard_exit", False)


def test_a_judge_that_cannot_fit_is_refused_before_orbax_writes(tmp_path, monkeypatch,
                                                                 two_judges):
  old, new = two_judges
  config = _quickstart()
  classifier_training.save_classifier(str(tmp_path), old, _metadata(config))
  before = sorted(os.listdir(tmp_path / "mnist"))
  usage = classifier_training.shutil.disk_usage(str(tmp_path))
  monkeypatch.setattr(classifier_training.shutil, "disk_usage",
                      lambda path: usage._replace(free=1000))
  with pytest.raises(UserError, match=r"Cannot store the mnist judge in .*: the disk is full "
                     r"\(\d+\.\d MiB needed, 0.0 MiB free\); .*the judges there are kept"):
    classifier_training.save_classifier(str(tmp_path), new, _metadata(config))
  assert sorted(os.listdir(tmp_path / "mnist")) == before


def test_a_stop_signal_waits_until_a_judge_is_written_whichever_thread_receives_it():
  # A thread started before the write (as XLA's and Orbax's are) sends it: the kernel
  # may hand it to that thread, whose signal mask the write cannot change.
  received = []
  go = threading.Event()
  sender = threading.Thread(target=lambda: (go.wait(), os.kill(os.getpid(), signal.SIGTERM)))
  sender.start()
  previous = signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))
  try:
    with classifier_training._stop_signals_deferred():
      go.set()
      sender.join()
      time.sleep(0.05)  # time for Python to run a handler, were one to run
      assert received == []
    assert received == [signal.SIGTERM]  # delivered once the write is done
  finally:
    signal.signal(signal.SIGTERM, previous)

