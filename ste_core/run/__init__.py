"""Internal: one open run and its directory.

- `context`: `RunContext`, what the stages of an open run share (store, manifest, budget,
  backends, schedulers, templates) and what they report back (usage, funnel, metrics)
- `serving`: the judge a stage calls: the seed model, or a fine-tuned one served for a block
- `rundir`: the run directory's paths; `io`: reading and writing its files, atomically
- `exports`: manifest.json, metrics.json, summary.md, written from the store
- `progress`: progress bars, quiet mode and JSON log lines
- `preflight`: before the first paid call, the backends built (credentials checked) and the
  estimate of what the rest of the run needs, against the budget (`ste run --check`)

Nothing here is public API: import from `ste_core` instead. Module paths may change.
"""
