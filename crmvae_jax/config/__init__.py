"""Configuration: the default config and run sizes (`defaults`), the checks a config
must pass before anything runs (`validation`), the command lines' shared code (`cli`:
flags, one-line errors, signals), and what a run directory records (`runs`: its
config.json and data.json, compared on resume, load and evaluate)."""
