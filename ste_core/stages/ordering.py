"""Deterministic output order for streaming stages.

Requests finish in any order, but a stage's output file must not depend on timing (a resumed run
must write exactly what an uninterrupted one writes). `in_input_order` re-sequences results by
the key of the input they belong to, reading the expected key sequence lazily (usually from a
second reader of the stage's input file). It buffers only results that finished ahead of a
slower earlier one.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterator
from typing import TypeVar

R = TypeVar("R")

__all__ = ["in_input_order"]


async def in_input_order(
    results: AsyncIterable[R],
    expected: Iterator[Hashable],
    key: Callable[[R], Hashable],
    *,
    per_key: int = 1,
    sort: Callable[[R], int] | None = None,
) -> AsyncIterator[R]:
    """Yield `results` grouped by key, in the order of `expected`.

    Every expected key must produce exactly `per_key` results (`sort` orders a key's results,
    e.g. by sample index). Results whose key is not expected are yielded at the end (a bug
    elsewhere should not lose data); keys that never complete are flushed at the end too.
    """
    buffer: dict[Hashable, list[R]] = {}
    sentinel = object()
    nxt: Hashable = next(expected, sentinel)

    def ready() -> bool:
        return nxt is not sentinel and len(buffer.get(nxt, ())) >= per_key

    async for r in results:
        buffer.setdefault(key(r), []).append(r)
        while ready():
            group = buffer.pop(nxt)
            for item in sorted(group, key=sort) if sort else group:
                yield item
            nxt = next(expected, sentinel)
    # Whatever is left: incomplete keys in expected order, then unexpected keys.
    while nxt is not sentinel:
        group = buffer.pop(nxt, [])
        for item in sorted(group, key=sort) if sort else group:
            yield item
        nxt = next(expected, sentinel)
    for group in buffer.values():
        for item in sorted(group, key=sort) if sort else group:
            yield item
