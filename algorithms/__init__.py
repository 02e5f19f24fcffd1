"""Algorithm modules; each is one file plus one YAML in ``configs/algo/``."""
