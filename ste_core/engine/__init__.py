"""Internal: the machinery every model call goes through.

- `scheduler`: the one way ste calls a model (cache, n-splitting, limits, retries, batching)
- `limits`: `Limits` (a role's `limits` table) and the token bucket
- `batching`: requests collected into `complete_many` chunks
- `budget`: spending limits and token estimates
- `store`: the run store (SQLite): request cache, stage markers, manifest, metrics
- `retry`: `RetryPolicy`, the one retry policy of every loop that asks a provider again (the
  scheduler, fine-tune polls, the backends' batch and endpoint polls), and `parse_retry_after`

Nothing here is public API: import from `ste_core` instead. Module paths may change.
"""
