"""experiments/paper/reproduce.py's pieces on synthetic results: tables, curves, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from crmvae_jax.common.errors import UserError
from experiments.paper import reproduce


def record(run, model, seed, step, cross, joint, fd, variant=""):
  return {"run": run, "data": "mnist_text", "model": model, "variant": variant, "seed": seed,
          "step": step, "cross_coherence": float(np.mean(cross)), "joint_coherence": joint,
          "coherence": {"R": joint, "M<-T": cross[0], "T<-M": cross[1]},
          "classifier_fd": fd, "classifier_fd_columns": {"T->M": fd}, "latent_probe": 0.5}


def synthetic_records():
  records = []
  for seed, offset in enumerate((0.0, 0.1, 0.2)):
    for step in (10, 20):
      records.append(record("mnist_text/crmvae", "crmvae", seed, step,
                            (0.3 + offset, 0.5 + offset), 0.2, 30.0 + seed))
      records.append(record("mnist_text/mvtcae", "mvtcae", seed, step, (0.4, 0.4), 0.1, 40.0))
  records.append(record("ablation/crmvae/beta 0.25", "crmvae", 0, 20, (0.9, 0.8), 0.3, 12.5,
                        variant="beta 0.25"))
  return records


def test_tables_give_mean_and_std_over_seeds_at_the_last_budget():
  markdown = reproduce.tables_markdown(synthetic_records())
  # crmvae M<-T over seeds: 0.3, 0.4, 0.5 -> mean 0.4, population std 0.0816
  assert "| crmvae | 3 | 20 | 0.400 ± 0.082 | 0.600 ± 0.082 | 0.500 ± 0.082 | - | 0.200 ± 0.000 " \
         "| 31.000 ± 0.816 | 0.500 ± 0.000 |" in markdown
  assert "## mnist_text, step 20" in markdown
  assert "each model at its last budget" not in markdown  # every model stopped at step 20
  assert "| crmvae | 0.500 ± 0.082 | 0.500 ± 0.082 |" in markdown  # the curve, steps 10 and 20
  assert "| crmvae | beta 0.25 | 20 | 0.900 | 0.800 | 0.300 | 12.50 |" in markdown


def test_models_that_went_further_get_a_table_at_their_own_last_budget():
  # crmvae goes on to step 40 with seeds 0 and 1 only, so its last budget with every seed
  # stays 20; mvtcae goes on to 40 with all three seeds.
  records = synthetic_records()
  for seed in (0, 1):
    records.append(record("mnist_text/crmvae", "crmvae", seed, 40, (0.8, 0.6), 0.3, 20.0))
  for seed in (0, 1, 2):
    records.append({**record("mnist_text/mvtcae", "mvtcae", seed, 40, (0.5, 0.7), 0.2, 41.0),
                    "cross_coherence_from_means": 0.8 + 0.05 * seed})
  markdown = reproduce.tables_markdown(records)
  common, own = markdown.split("## mnist_text, each model at its last budget")
  assert "## mnist_text, step 20" in common and "| mvtcae | 3 | 20 | 0.400 ± 0.000" in common
  assert "| crmvae | 3 | 20 | 0.400 ± 0.082" in own.split("Mean cross")[0]
  # from means: 0.8, 0.85, 0.9 -> 0.85 ± 0.041
  assert "| mvtcae | 3 | 40 | 0.500 ± 0.000 | 0.700 ± 0.000 | 0.600 ± 0.000 | 0.850 ± 0.041 " \
         "| 0.200 ± 0.000 |" in own
  # the curve: crmvae at step 40 over its two seeds, (0.7 + 0.7) / 2
  assert "| crmvae | 0.500 ± 0.082 | 0.500 ± 0.082 | 0.700 ± 0.000 |" in markdown


def test_learning_curves_figure_is_a_png(tmp_path):
  path = tmp_path / "curves.png"
  reproduce.learning_curves_figure(synthetic_records(), str(path))
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_are_saved_after_every_evaluation_and_read_back(tmp_path):
  curves = reproduce.Curves(str(tmp_path / "curves.json"))
  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", {"step": 5, "seed": 1})
  again = reproduce.Curves(str(tmp_path / "curves.json"))
  assert again.has("mnist_text/crmvae", 5, 1) and not again.has("mnist_text/crmvae", 5, 0)


def test_overrides_reach_nested_fields_and_data_sets_are_sized_for_a_cpu():
  config = reproduce.with_overrides(reproduce.data_config("mnist_text"),
                                    {"readings.prior_expert": False, "data.text_redraw": True,
                                     "model": "mvtcae"})
  assert (config.readings.prior_expert, config.data.text_redraw, config.model) == (
      False, True, "mvtcae")
  assert reproduce.data_config("mnist_text").readings.prior_expert  # a copy was changed
  polymnist = reproduce.data_config("polymnist3")
  assert polymnist.data.num_modalities == 3 and polymnist.data.mnist_source == "embedded"
  with pytest.raises(UserError, match="Unknown data set 'svhn'"):
    reproduce.data_config("svhn")


@pytest.mark.parametrize("seeds_in_turn", [False, True])
def test_seeds_train_as_replicas_or_in_turn(monkeypatch, tmp_path, seeds_in_turn):
  legs = []
  monkeypatch.setattr(reproduce.sweeps, "ensure_classifiers", lambda config: None)
  monkeypatch.setattr(reproduce, "train_along",
                      lambda config, workdir, budgets, *args: legs.append(
                          (tuple(config.sweep.seeds), config.model,
                           workdir.replace(str(tmp_path), ""), budgets)))
  reproduce.run_all(["polymnist3"], ["crmvae"], [0, 1, 2], 0.5, False, str(tmp_path),
                    reproduce.Curves(str(tmp_path / "curves.json")), seeds_in_turn)
  if seeds_in_turn:
    assert legs == [((seed,), "crmvae", f"/polymnist3/crmvae/seed_{seed}", [150, 300])
                    for seed in (0, 1, 2)]
  else:
    assert legs == [((0, 1, 2), "crmvae", "/polymnist3/crmvae", [150, 300])]


def mst_offline_record(model, seed, step, cross):
  columns = ["M<-S", "M<-T", "M<-S+T", "S<-M", "S<-T", "S<-M+T", "T<-M", "T<-S", "T<-M+S"]
  results = {
      "model": model, "data": "mst_offline", "seed": seed, "step": step,
      "modalities": {"M": "mnist", "S": "svhn", "T": "text"},
      "coherence": {"R": 0.1, **dict.fromkeys(columns, cross)},
      "coherence_exact": {"R": 0.05, "T<-M": cross / 2, "T<-S": cross / 2, "T<-M+S": cross / 2},
      "text_levenshtein": {"T<-M": 1.0, "T<-S": 1.0, "T<-M+S": 1.0, "T<-prior": 2.0},
      "log_likelihood": {"M+S+T": -3000.0 + seed, "M": -3100.0},
      "log_likelihood_samples": 100, "num_log_likelihood_pairs": 100,
      "fid": None, "fid_note": "FID not computed (--config.eval.fid.enabled=False).",
      "classifier_fd": {"S->M": 20.0, "M->S": 40.0 + seed},
      "latent": {**dict.fromkeys(["M", "T", "M+S", "M+T", "S+T", "M+S+T"], 0.9), "S": 0.2},
      **({"ex_post_sampler": {"R (prior)": 0.1, "R (GMM)": 0.4}} if model == "crmvae" else {}),
      "judges": {"mnist": "classifier", "svhn": "classifier", "text": "levenshtein"},
      "judge_accuracy": {"mnist": 0.95, "svhn": 0.93, "text": 1.0}}
  return {"run": f"mst_offline/{model}", "data": "mst_offline", "model": model, "variant": "",
          "seed": seed, "step": step, "cross_coherence": cross, "joint_coherence": 0.1,
          "coherence": results["coherence"], "classifier_fd": 30.0,
          "classifier_fd_columns": results["classifier_fd"], "latent_probe": 0.9,
          "results": results}


def test_mst_offline_gets_the_papers_tables_at_every_budget_and_every_seed():
  records = [mst_offline_record(model, seed, step, cross)
             for step in (1000, 2000) for seed in (0, 1)
             for model, cross in (("crmvae", 0.6), ("mvtcae", 0.4))]
  markdown = reproduce.tables_markdown(records)
  for step in (1000, 2000):
    section = markdown.split(f"## mst_offline at step {step}: the paper's layout")[1]
    # Table 1 with the paper's row under each model, the strict text table, cFD, log p(X).
    assert "| CRMVAE | 0.10 ± 0.00 | 0.60 ± 0.00 |" in section
    assert "| CRMVAE (paper) | 0.15 | 0.60 | 0.97 |" in section
    assert "| model | R | T<-M | T<-S | T<-M+S |" in section
    assert "| CRMVAE | 20.00 ± 0.00 | 40.50 ± 0.50 |" in section
    assert "| CRMVAE | -2999.5 ± 0.5 | -3100.0 ± 0.0 |" in section
    per_seed = section.split(f"### mst_offline at step {step}, every seed")[1]
    # S's own probe (not the mean over subsets, 0.9), and R with the ex-post sampler.
    assert "| crmvae | 1 | 0.600 | 0.600 | 0.600 | 0.600 | 0.600 | 0.600 | 0.300 | 0.300 " \
           "| 20.0 | 41.0 | -2999.0 | 0.200 | 0.400 |" in per_seed
    assert "| mvtcae | 1 | 0.400 |" in per_seed and "| -2999.0 | 0.200 | - |" in per_seed


def test_version_2_shows_version_1_beside_it_at_the_same_budget():
  def as_v2(record):
    return {**record, "run": record["run"].replace("mst_offline", "mst_offline_v2"),
            "data": "mst_offline_v2"}

  records = ([mst_offline_record("crmvae", 0, 1000, 0.6)]
             + [as_v2(mst_offline_record("crmvae", 0, 1000, 0.8)),
                as_v2(mst_offline_record("crmvae", 0, 2000, 0.9))])
  markdown = reproduce.tables_markdown(records)
  at_1000 = markdown.split("## mst_offline_v2 at step 1000: the paper's layout")[1]
  at_1000 = at_1000.split("## mst_offline_v2 at step 2000")[0]
  # Version 2's row, the paper's under it, then version 1's at the same budget.
  assert ("| CRMVAE | 0.10 | 0.80 | 0.80 | 0.80 | 0.80 | 0.80 | 0.80 | 0.80 | 0.80 | 0.80 |\n"
          "| CRMVAE (paper) | 0.15 |") in at_1000
  assert "| crmvae (version 1) | 0.10 | 0.60 | 0.60 |" in at_1000
  assert "| crmvae (version 1) | 0 | 0.600 |" in at_1000  # and in the per-seed table
  # No earlier row where version 1 has none at that budget.
  at_2000 = markdown.split("## mst_offline_v2 at step 2000: the paper's layout")[1]
  assert "(version 1)" not in at_2000
  # Version 1's own sections keep only its own rows.
  v1 = markdown.split("## mst_offline at step 1000: the paper's layout")[1]
  assert "(version 1)" not in v1.split("## mst_offline_v2")[0]


def test_each_surrogate_version_is_read_with_its_own_renderer():
  assert reproduce.data_config("mst_offline").data.renderer_version == 1
  assert reproduce.data_config("mst_offline_v2").data.renderer_version == 2


def test_records_judged_by_judges_trained_again_are_named_not_mixed_silently(tmp_path, capsys):
  def judged(seed, step, mnist_digest):
    return {**record("mnist_text/crmvae", "crmvae", seed, step, (0.3, 0.5), 0.2, 30.0),
            "results": {"classifier_digest": {"mnist": mnist_digest}}}

  curves = reproduce.Curves(str(tmp_path / "curves.json"))
  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", judged(0, 10, "aaaa"))
  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", judged(1, 10, "aaaa"))
  # A record made before digests were recorded is neither a set nor a warning.
  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", record(
      "mnist_text/crmvae", "crmvae", 2, 10, (0.3, 0.5), 0.2, 30.0))
  assert "WARNING" not in capsys.readouterr().err
  assert "sets of judges" not in reproduce.tables_markdown(curves.records)

  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", judged(0, 20, "bbbb"))
  assert ("mnist_text/crmvae, seed 0, step 20 was judged by other judges (mnist bbbb)"
          in capsys.readouterr().err)
  assert reproduce.judge_sets(curves.records, "mnist_text") == {
      "mnist aaaa": ["mnist_text/crmvae, seed 0, step 10", "mnist_text/crmvae, seed 1, step 10"],
      "mnist bbbb": ["mnist_text/crmvae, seed 0, step 20"]}
  markdown = reproduce.tables_markdown(reproduce.Curves(curves.path).records)
  assert "**mnist_text was judged by 2 sets of judges**" in markdown
  assert "| mnist bbbb | mnist_text/crmvae, seed 0, step 20 |" in markdown


def test_wall_time_sums_each_run_and_names_the_steps_it_did_not_time():
  def timed(model, step, train, trained_from):
    return {**record(f"mnist_text/{model}", model, 0, step, (0.3, 0.5), 0.2, 30.0),
            "seconds": {"train": train, "evaluate": 30.0, "trained_from": trained_from}}

  records = [record("mnist_text/crmvae", "crmvae", 0, 10, (0.3, 0.5), 0.2, 30.0),  # untimed
             timed("crmvae", 20, 120.0, 10),   # from the budget before: all timed
             timed("crmvae", 40, 60.0, 35),    # resumed at 35 after a stop: 15 steps untimed
             timed("mvtcae", 20, 240.0, 0)]
  section = "\n".join(reproduce.wall_time_section(records, "mnist_text"))
  assert "| crmvae | 0 | 20, 40 | 3.0 | 1.0 | 15 |" in section
  assert "| mvtcae | 0 | 20 | 4.0 | 0.5 | 0 |" in section
  assert "| all |  |  | 7.0 | 1.5 | 15 |" in section
  assert reproduce.wall_time_section(records, "polymnist3") == []
  assert "Wall time (mnist_text" in reproduce.tables_markdown(records)


def test_a_budget_records_what_it_cost_and_where_its_training_started(monkeypatch, tmp_path):
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "250").mkdir(parents=True)
  (workdir / "checkpoints" / "tmp_500.orbax-checkpoint-tmp").mkdir()  # not a step
  assert reproduce.checkpoint_step(str(workdir)) == 250
  assert reproduce.checkpoint_step(str(tmp_path / "none")) == 0
  legs = []
  monkeypatch.setattr(reproduce.loop, "train_and_evaluate",
                      lambda config, workdir: legs.append(config))
  monkeypatch.setattr(reproduce.driver, "evaluate",
                      lambda config, workdir, replica: config.num_train_steps)
  monkeypatch.setattr(reproduce, "headline", lambda step: {"step": step, "seed": 0})
  curves = reproduce.Curves(str(tmp_path / "curves.json"))
  config = reproduce.data_config("mnist_text")
  config.sweep.seeds = (0,)
  reproduce.train_along(config, str(workdir), [500, 3500], curves, "mnist_text/crmvae",
                        "mnist_text", "crmvae", "")
  seconds = curves.records[0]["seconds"]
  assert seconds["trained_from"] == 250 and seconds["train"] >= 0 and seconds["evaluate"] >= 0
  # Evaluated at each budget; saved at least every 1,000 steps between them.
  assert [(leg.num_train_steps, leg.eval_every_steps, leg.checkpoint_every_steps)
          for leg in legs] == [(500, 500, 500), (3500, 3500, 1000)]


def test_a_budget_judged_by_other_judges_is_evaluated_again_and_replaces_it_in_the_tables(
    monkeypatch, tmp_path, capsys):
  def judged(step, cross, digest):
    return {**record("mnist_text/crmvae", "crmvae", 0, step, (cross, cross), 0.2, 30.0),
            "results": {"classifier_digest": {"mnist": digest}}}

  curves = reproduce.Curves(str(tmp_path / "curves.json"))
  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", judged(10, 0.3, "aaaa"))
  curves.add("mnist_text/crmvae", "mnist_text", "crmvae", "", {
      **record("mnist_text/crmvae", "crmvae", 0, 20, (0.3, 0.3), 0.2, 30.0)})  # no digest
  # Judged by the current judges, or before digests were recorded: there. By others: not.
  assert curves.has("mnist_text/crmvae", 10, 0, "mnist aaaa")
  assert not curves.has("mnist_text/crmvae", 10, 0, "mnist bbbb")
  assert curves.has("mnist_text/crmvae", 10, 0)  # no judges named: any record
  assert curves.has("mnist_text/crmvae", 20, 0, "mnist bbbb")

  # train_along evaluates the budget again (its run is at that step), not the other one.
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "10").mkdir(parents=True)
  monkeypatch.setattr(reproduce.loop, "train_and_evaluate", lambda config, workdir: None)
  monkeypatch.setattr(reproduce.driver, "evaluate",
                      lambda config, workdir, replica: config.num_train_steps)
  monkeypatch.setattr(reproduce, "headline", lambda step: judged(step, 0.7, "bbbb"))
  config = reproduce.data_config("mnist_text")
  config.sweep.seeds = (0,)
  reproduce.train_along(config, str(workdir), [10, 20], curves, "mnist_text/crmvae",
                        "mnist_text", "crmvae", "", "mnist bbbb")
  assert [(r["step"], r["cross_coherence"]) for r in curves.records] == [
      (10, 0.3), (20, 0.3), (10, 0.7)]
  markdown = reproduce.tables_markdown(curves.records)
  assert "a budget judged by more than one set appears in the tables with its newest" in markdown
  # One seed at step 10, the new evaluation's 0.7 (not the mean of 0.3 and 0.7 over 2).
  assert "| crmvae | 0.700 | 0.300 |" in markdown  # the curve at steps 10 and 20
  assert [r["cross_coherence"] for r in reproduce.newest_records(curves.records)] == [0.3, 0.7]

  # A run already past the budget is not evaluated there (it would judge a later step).
  (workdir / "checkpoints" / "40").mkdir()
  reproduce.train_along(config, str(workdir), [10], curves, "mnist_text/crmvae",
                        "mnist_text", "crmvae", "", "mnist cccc")
  assert len(curves.records) == 3
  assert "not evaluated again at step 10 by the current judges: the run is at step 40" \
         in capsys.readouterr().out


def test_the_generation_figure_waits_for_every_run_s_first_checkpoint(tmp_path):
  path = tmp_path / "figure.png"
  assert not reproduce.generation_figure(str(tmp_path), str(path), "mst_offline_v3")
  # A run started and stopped before its first save: a workdir, no checkpoint.
  for name in reproduce.GENERATION_FIGURE_MODELS:
    (tmp_path / "mst_offline_v3" / name / "seed_0" / "checkpoints").mkdir(parents=True)
  assert not reproduce.generation_figure(str(tmp_path), str(path), "mst_offline_v3")
  assert not path.exists()
