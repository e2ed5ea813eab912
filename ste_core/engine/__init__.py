"""Internal: the machinery every model call goes through.

- `scheduler`: the one way ste calls a model (cache, n-splitting, limits, retries, batching)
- `limits`: `Limits` (a role's `limits` table) and the token bucket
- `batching`: requests collected into `complete_many` chunks
- `budget`: spending limits and token estimates
- `store`: the run store (SQLite): request cache, stage markers, manifest, metrics
- `retry`: how long a provider asked us to wait (`parse_retry_after`, used by the backends)

Nothing here is public API: import from `ste_core` instead. Module paths may change.
"""
