"""Evaluation of trained runs: one module per metric (`coherence`, `fid`, `probes`,
`image_text`), the model as functions they call (`generation`), the judges and their
training (`judges`, `classifier_training`), and the drivers (`driver`)."""
