"""Training: the state (`state`), the sharded train step (`step`), checkpoints
(`checkpoints`) and the loop with its one entry, `loop.train_and_evaluate(config,
workdir)`."""
