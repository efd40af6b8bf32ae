"""Training: the state (`state`), the sharded train step (`step`), checkpoints
(`checkpoints`) and the loop with its one entry, `loop.train_and_evaluate(config,
workdir)`; and on the same state and step, the supervised loop of the judges'
classifiers (`supervised.fit`)."""
