"""An example ste plugin: a deterministic, offline backend that registers through entry points."""
