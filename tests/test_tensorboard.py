"""What TensorBoard shows of a run: losses, the cross-generation grid and coherence."""

from __future__ import annotations

import glob

import pytest


@pytest.mark.slow
def test_a_run_with_judges_writes_images_and_coherence_along_training(tmp_path, capsys):
  from tensorboard.backend.event_processing import event_accumulator

  from crmvae_jax.config import defaults as config_lib
  from crmvae_jax.evaluation import classifier_training, coherence
  from crmvae_jax.training import loop

  config = config_lib.quickstart_config()
  config.num_train_steps = 4
  config.batch_size = 32
  config.log_every_steps = config.checkpoint_every_steps = 4
  config.eval_every_steps = 2
  config.eval_batches = 1
  config.figure_examples = 2
  config.disable_progress_bar = True
  config.eval.classifier_dir = str(tmp_path / "classifiers")
  # Without judges: no coherence, and one line saying how to get it.
  assert coherence.training_scalars(config) is None
  assert "python -m crmvae_jax.classifiers" in capsys.readouterr().out
  config.eval.classifier_epochs = 1
  config.eval.classifier_max_train_examples = 256
  classifier_training.train_classifiers(config)

  last = loop.train_and_evaluate(config, str(tmp_path / "run"), coherence.training_scalars(config))
  assert 0.0 <= last[0]["coherence/M_from_T"] <= 1.0
  (events,) = glob.glob(str(tmp_path / "run" / "events.out.tfevents.*"))
  accumulator = event_accumulator.EventAccumulator(events, size_guidance={"images": 0})
  accumulator.Reload()
  tags = accumulator.Tags()
  assert {"coherence/M_from_T", "coherence/T_from_M", "coherence/R", "coherence/mean_cross",
          "train/loss", "test/loss"} <= set(tags["scalars"])
  assert [event.step for event in accumulator.Scalars("coherence/R")] == [2, 4]
  assert tags["images"] == ["cross_generation"]
  assert [image.step for image in accumulator.Images("cross_generation")] == [2, 4]
