"""experiments/paper/mst_queue.py: its legs and where a queue stands."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from crmvae_jax.common.errors import UserError
from crmvae_jax.training import checkpoints, loop
from experiments.paper import mst_queue, reproduce
from tests.test_train import quickstart_config


def test_every_leg_names_known_models_and_rising_budgets():
  for phase, legs in mst_queue.PHASES.items():
    for leg in legs:
      assert set(leg.models) <= set(reproduce.MODELS), phase
      assert list(leg.budgets) == sorted(set(leg.budgets)), phase
  assert mst_queue.data_name(1) == "mst_offline" and mst_queue.data_name(3) == "mst_offline_v3"
  with pytest.raises(UserError, match="No renderer version 9"):
    mst_queue.data_name(9)


def test_status_counts_each_run_once_to_its_last_budget(tmp_path):
  data = "mst_offline_v3"
  records = [{"data": data, "model": "crmvae", "seed": 0, "step": step,
              "cross_coherence": 0.1 * step / 1000} for step in (1000, 2000)]
  records.append({"data": "mst_offline", "model": "crmvae", "seed": 0, "step": 4000,
                  "cross_coherence": 0.9})  # another version: not this queue's
  # MVTCAE stopped between budgets with a checkpoint at 2,500; MoPoE not started.
  os.makedirs(tmp_path / data / "mvtcae" / "seed_0" / "checkpoints" / "2500")
  text = mst_queue.status("claim", data, str(tmp_path), records)
  # Runs and their last budgets: the three main models' seed 0 to 35,200, their seed 1
  # to 16,000, the three added models to 8,000, MVAE and MVTCAE-rescale to 16,000. A
  # record is not a checkpoint: CRMVAE's was lost, so it trains again from step 0.
  total = 3 * 35200 + 3 * 16000 + 3 * 8000 + 2 * 16000
  assert text.startswith(f"{data}, phase claim: {2500:,} of {total:,} training steps")
  assert "| 1 | crmvae | 0 | 1000, 2000 | 0 | 4000 | 0.200 |" in text
  # Its budgets before the checkpoint have no record and will get none (evaluating now
  # would judge step 2,500 under their names): passed, not left.
  assert "| 1 | mvtcae | 0 | - | 2500 | 4000 (passed without a record: 1000, 2000) | - |" in text
  assert "| 2 | crmvae | 0 | - | 0 | 8000 | - |" in text
  assert "| 1 | mopoe_sampled | 0 | - | 0 | 1000, 2000, 4000 | - |" in text
  # A run carried beside the results counts before the queue puts it back.
  os.makedirs(tmp_path / "results" / "carry" / data / "mopoe_sampled" / "seed_0" / "checkpoints"
              / "1500")
  text = mst_queue.status("claim", data, str(tmp_path), records, str(tmp_path / "results"))
  assert ("| 1 | mopoe_sampled | 0 | - | 1500 | 2000, 4000 (passed without a record: 1000) "
          "| - |") in text
  assert text.startswith(f"{data}, phase claim: {2500 + 1500:,} of")
  # A run with every budget recorded is done, checkpoint or not.
  records += [{"data": data, "model": "mvae", "seed": 0, "step": step, "cross_coherence": 0.3}
              for step in mst_queue.ALONG]
  text = mst_queue.status("claim", data, str(tmp_path), records, str(tmp_path / "results"))
  assert text.startswith(f"{data}, phase claim: {2500 + 1500 + 16000:,} of")
  # Records judged by other judges than the queue's count as not made.
  judged = [{**r, "results": {"classifier_digest": {"svhn": "old"}}} for r in records]
  text = mst_queue.status("claim", data, str(tmp_path), judged, None, {"svhn": "new"})
  assert "| 1 | crmvae | 0 | - | 0 | 1000, 2000, 4000 | - |" in text
  assert text.startswith(f"{data}, phase claim: {2500:,} of")
  text = mst_queue.status("claim", data, str(tmp_path), judged, None, {"svhn": "old"})
  assert "| 1 | crmvae | 0 | 1000, 2000 | 0 | 4000 | 0.200 |" in text
  # A run at its last budget whose early records were made by other judges is done; its
  # early budgets passed without a record by these.
  os.makedirs(tmp_path / data / "crmvae_private" / "seed_0" / "checkpoints" / "8000")
  judged += [{"data": data, "model": "crmvae_private", "seed": 0, "step": step,
              "cross_coherence": 0.2, "results": {"classifier_digest": {"svhn": digest}}}
             for step, digest in ((1000, "old"), (2000, "old"), (4000, "new"), (8000, "new"))]
  text = mst_queue.status("claim", data, str(tmp_path), judged, None, {"svhn": "new"})
  assert ("| 3 | crmvae_private | 0 | 4000, 8000 | 8000 | done (passed without a record: "
          "1000, 2000) | 0.200 |") in text
  assert text.startswith(f"{data}, phase claim: {2500 + 8000:,} of")


def test_stored_judges_digests_are_the_evaluations(tmp_path):
  # A judge stored as training stores it, read without its network, has the digest that
  # evaluation records for it (judges.params_digest of the restored parameters).
  params = {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                        "bias": np.ones(3, np.float32)}}
  directory = tmp_path / "judges"
  os.makedirs(directory / "svhn")
  checkpointer = mst_queue.ocp.StandardCheckpointer()
  checkpointer.save(str(directory / "svhn" / "params-1"), params)
  checkpointer.wait_until_finished()
  (directory / "svhn" / "classifier.json").write_text('{"params": "params-1"}')
  os.makedirs(directory / "text_unfinished")  # no metadata: not a judge
  assert mst_queue.stored_judges(str(directory)) == {
      "svhn": mst_queue.judges_lib.params_digest(params)}


class _Leg:
  """A stand-in for a leg's process: `wait` answers from `answers` (an exception is raised)."""

  def __init__(self, answers):
    self.answers, self.signals, self.commands = list(answers), [], []

  def __call__(self, command):
    self.commands.append(command)
    return self

  def wait(self):
    answer = self.answers.pop(0)
    if isinstance(answer, BaseException):
      raise answer
    return answer

  def send_signal(self, number):
    self.signals.append(number)


def test_a_stopped_queue_lets_its_leg_save_and_a_failed_leg_stops_the_queue(monkeypatch):
  leg = _Leg([KeyboardInterrupt(), 0])
  monkeypatch.setattr(mst_queue.subprocess, "Popen", leg)
  with pytest.raises(KeyboardInterrupt):
    mst_queue.run("claim", "mst_offline_v3", "/r", "/out")
  # SIGTERM (the leg saves its step and stops), then waited for: never killed unsaved.
  assert leg.signals == [mst_queue.signal.SIGTERM] and not leg.answers
  assert leg.commands[0][1:] == [
      "-m", "experiments.paper.reproduce", "--data=mst_offline_v3", "--noablation",
      "--root=/r", "--results=/out", "--models=crmvae,mvtcae,mopoe_sampled", "--seeds=0",
      "--budgets=1000,2000,4000"]

  leg = _Leg([0, 3])
  monkeypatch.setattr(mst_queue.subprocess, "Popen", leg)
  with pytest.raises(UserError, match="The leg stopped"):
    mst_queue.run("claim", "mst_offline_v3", "/r", "/out")
  assert len(leg.commands) == 2  # no leg after the one that failed


def _store_judge(directory, name, weights):
  os.makedirs(directory / name / "params-1")
  (directory / name / "params-1" / "weights").write_bytes(weights)
  (directory / name / "classifier.json").write_text("{}")


def test_judges_are_kept_beside_the_records_and_restored_on_a_new_machine(monkeypatch, tmp_path):
  data, results = "mst_offline_v3", tmp_path / "results"
  first, second = tmp_path / "first_machine", tmp_path / "second_machine"

  def train_judges(root):
    def leg(command):
      trained = root / "classifiers" / data
      for name in ("mnist", "svhn"):
        if not (trained / name).exists():
          _store_judge(trained, name, f"{name} trained on {root.name}".encode())
      os.makedirs(trained / "svhn_unfinished" / "params-2")  # no metadata: not a judge
      (trained / "classifiers.lock").write_text("")
      return _Leg([0])
    return leg

  # The first machine trains the judges; they are kept beside the results.
  monkeypatch.setattr(mst_queue.subprocess, "Popen", train_judges(first))
  mst_queue.run("gate", data, str(first), str(results))
  kept = results / mst_queue.JUDGES_DIR / data
  assert sorted(os.listdir(kept)) == ["mnist", "svhn"]
  assert (kept / "svhn" / "params-1" / "weights").read_bytes() == b"svhn trained on first_machine"

  # A new machine (an empty root) judges with them, not with judges trained again.
  monkeypatch.setattr(mst_queue.subprocess, "Popen", train_judges(second))
  mst_queue.run("gate", data, str(second), str(results))
  for name in ("mnist", "svhn"):
    assert ((second / "classifiers" / data / name / "params-1" / "weights").read_bytes()
            == f"{name} trained on first_machine".encode())
  assert sorted(os.listdir(kept)) == ["mnist", "svhn"]  # and they stay as they were


@pytest.mark.slow
def test_a_run_carried_beside_the_results_goes_on_bit_for_bit_on_a_new_machine(
    monkeypatch, tmp_path):
  data, results = "quickstart", str(tmp_path / "results")
  first, second = str(tmp_path / "first_machine"), str(tmp_path / "second_machine")
  monkeypatch.setitem(mst_queue.PHASES, "test", (mst_queue.Leg(("crmvae",), (0,), (20,)),))
  workdir = os.path.join(first, data, "crmvae", "seed_0")
  loop.train_and_evaluate(quickstart_config(10), workdir)  # stopped at step 10 of 20
  os.makedirs(results)

  assert mst_queue.carry_out("test", data, first, results) == ["crmvae, seed 0: step 10 carried"]
  carried = os.path.join(results, mst_queue.CARRY_DIR, data, "crmvae", "seed_0")
  assert os.listdir(os.path.join(carried, "checkpoints")) == ["10"]  # the newest only
  assert sorted(os.listdir(carried)) == ["checkpoints", "config.json", "data.json"]
  assert mst_queue.carry_out("test", data, first, results) == []  # nothing newer
  assert mst_queue.carry_in(data, first, results) == []  # this machine has it already

  # A new machine puts the run back and goes on; so does the first: the same bits.
  assert mst_queue.carry_in(data, second, results) == ["crmvae, seed 0: from step 10"]
  on_second = os.path.join(second, data, "crmvae", "seed_0")
  for run in (workdir, on_second):
    loop.train_and_evaluate(quickstart_config(20), run)
  (_, params_first, *_), (_, params_second, *_) = (
      checkpoints.load_trained(quickstart_config(20), run) for run in (workdir, on_second))
  jax.tree.map(np.testing.assert_array_equal, params_first, params_second)

  # At its last budget the run leaves no carry.
  assert mst_queue.carry_out("test", data, second, results) == [
      "crmvae, seed 0: at its last budget, carry removed"]
  assert not os.path.exists(carried)


def test_a_run_with_every_budget_recorded_leaves_no_carry_whatever_its_checkpoint(
    monkeypatch, tmp_path):
  """A run trained again only to judge its early budgets again (its later ones recorded
  by the same judges) stops short of its last budget: nothing is left to train for it,
  so its carry (15 MB a run, committed) must go, not stay or be refreshed."""
  data, root, results = "mst_offline_v3", tmp_path / "root", tmp_path / "results"
  monkeypatch.setitem(mst_queue.PHASES, "test", (
      mst_queue.Leg(("crmvae", "mvtcae", "mopoe_sampled"), (0,), (1000, 2000)),
      mst_queue.Leg(("crmvae",), (0,), (4000,))))
  for model, step in (("crmvae", 2000), ("mvtcae", 1500), ("mopoe_sampled", 2000)):
    os.makedirs(root / data / model / "seed_0" / "checkpoints" / str(step))
    (root / data / model / "seed_0" / "config.json").write_text("{}")
  for model, step in (("crmvae", 1500), ("mopoe_sampled", 1000)):
    os.makedirs(results / "carry" / data / model / "seed_0" / "checkpoints" / str(step))
  records = [{"data": data, "model": model, "seed": 0, "step": step}
             for model, steps in (("crmvae", (1000, 2000, 4000)), ("mvtcae", (1000,)))
             for step in steps]
  (results / reproduce.CURVES_FILE).write_text(json.dumps(records))

  assert sorted(mst_queue.carry_out("test", data, str(root), str(results))) == [
      "crmvae, seed 0: every budget recorded, carry removed",
      "mopoe_sampled, seed 0: at its last budget, carry removed",
      "mvtcae, seed 0: step 1,500 carried"]
  assert sorted(os.listdir(results / "carry" / data)) == ["mvtcae"]
  assert mst_queue.carry_out("test", data, str(root), str(results)) == []  # and it stays so

  # Records count only when the queue's judges made them.
  judged = [{**r, "results": {"classifier_digest": {"svhn": "kept"}}} for r in records]
  assert mst_queue.recorded_runs("test", data, judged, {"svhn": "kept"}) == {("crmvae", 0)}
  assert mst_queue.recorded_runs("test", data, judged, {"svhn": "trained again"}) == set()
  assert mst_queue.recorded_runs("test", data, records[:2]) == set()  # 4,000 not recorded


def test_legs_picks_which_legs_run_so_that_two_queues_can_share_a_phase(monkeypatch):
  leg = _Leg([0, 0])
  monkeypatch.setattr(mst_queue.subprocess, "Popen", leg)
  mst_queue.run("claim", "mst_offline_v3", "/r", "/out", legs=[3, 5])
  assert [command[-3:] for command in leg.commands] == [
      ["--models=crmvae_private,mopoe_private,mmvae_plus", "--seeds=0",
       "--budgets=1000,2000,4000,8000"],
      ["--models=crmvae,mvtcae,mopoe_sampled", "--seeds=1", "--budgets=1000,2000,4000,8000,16000"]]
