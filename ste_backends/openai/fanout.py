"""Getting exactly n samples from a server that may give fewer.

The core repeats requests itself when a backend declares `max_n = 1`, but a backend must still be
correct when called directly with n larger than its server allows, and when a server silently
ignores `n` (llama.cpp, some proxies) or a provider returns fewer choices than asked. Rule: never
return fewer texts than `request.params.n`.

- n is split into requests of at most `max_n` choices, run concurrently;
- a response with fewer choices than asked is topped up with n=1 requests (and logged once, with
  the hint to set `max_n = 1`);
- each extra request gets its own seed (seed + offset) when a seed is set, since identical seeds
  would return identical samples and silently defeat the point of asking for n.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ste_core.records import ChatRequest, Completion, Usage

log = logging.getLogger("ste.backends")

Call = Callable[[ChatRequest], Awaitable[Completion]]


def split_sizes(n: int, max_n: int | None) -> list[int]:
    """Sizes of the requests that together ask for n choices, each at most max_n."""
    if max_n is None or max_n >= n:
        return [n]
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1 or None, got {max_n}")
    full, rest = divmod(n, max_n)
    return [max_n] * full + ([rest] if rest else [])


def _part(request: ChatRequest, n: int, offset: int) -> ChatRequest:
    seed = request.params.seed
    changes: dict[str, object] = {"n": n}
    if seed is not None and offset:
        changes["seed"] = seed + offset
    return request.with_params(**changes)


async def complete_n(
    request: ChatRequest,
    call: Call,
    *,
    max_n: int | None,
    provider: str,
    warned: set[str] | None = None,
) -> Completion:
    """Run `call` as often as needed to get exactly `request.params.n` texts; merge the results.

    `warned` (a set owned by the backend) keeps the shortfall warning to once per model.
    """
    want = request.params.n
    parts = []
    offset = 0
    for size in split_sizes(want, max_n):
        parts.append(_part(request, size, offset))
        offset += size
    results = await _gather(call, parts)
    got = sum(len(r.texts) for r in results)
    if got < want:
        key = f"{provider}:{request.model}"
        if warned is None or key not in warned:
            log.warning(
                "%s returned %d of %d choices for %s: the server ignores or caps `n`. Making "
                "the missing samples with separate requests; set max_n = 1 in the backend "
                "options to skip the wasted call.",
                provider,
                got,
                want,
                request.model,
            )
            if warned is not None:
                warned.add(key)
        extra = [_part(request, 1, offset + k) for k in range(want - got)]
        results += await _gather(call, extra)
        got = sum(len(r.texts) for r in results)
        if got < want:  # cannot happen with a parser that rejects empty choices; be explicit
            from ste_core.errors import TransientProviderError

            raise TransientProviderError(
                f"got {got} of {want} samples after topping up", provider=provider
            )
    return merge(results, want)


async def _gather(call: Call, requests: list[ChatRequest]) -> list[Completion]:
    if len(requests) == 1:
        return [await call(requests[0])]
    tasks = [asyncio.ensure_future(call(r)) for r in requests]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        # One failed: the request as a whole failed; stop paying for the others.
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def merge(results: list[Completion], want: int) -> Completion:
    """One Completion with the first `want` texts of `results` (usage and cost summed)."""
    if len(results) == 1 and len(results[0].texts) == want:
        return results[0]
    texts: list[str] = []
    reasons: list[str | None] = []
    for r in results:
        texts += r.texts
        reasons += r.finish_reasons or (None,) * len(r.texts)
    usage = sum((r.usage for r in results), Usage())
    costs = [r.cost_usd for r in results]
    ids = [r.request_id for r in results if r.request_id]
    return Completion(
        texts=tuple(texts[:want]),
        finish_reasons=tuple(reasons[:want]),
        usage=usage,
        request_id=",".join(ids) if ids else None,
        model=results[0].model,
        latency_s=max(r.latency_s for r in results),
        cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
    )
