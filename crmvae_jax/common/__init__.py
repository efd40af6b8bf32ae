"""Plain helpers every layer may use: one-line user errors (`errors`), writes that never
leave half a file (`atomic`), stop signals while a program starts (`startup`), XLA's CPU
flags (`xla_setup`), config field checks (`field_checks`) and arrays' fingerprints
(`digests`). No model, data set or
flag knowledge."""
