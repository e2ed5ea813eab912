"""Streams between a stage's input file, its model calls and its output files.

`as_async` gives one async stream whichever way a stage's input arrives. `in_input_order` fixes
the output order: requests finish in any order, but a stage's output file must not depend on
timing (a resumed run must write exactly what an uninterrupted one writes), so results are
re-sequenced by the key of the input they belong to, reading the expected key sequence lazily
(usually from a second reader of the stage's input file). It buffers only results that finished
ahead of a slower earlier one. `write_items_and_drops` writes a stage's two output files.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ste_core.records import Drop
from ste_core.run.io import jsonl_writer

R = TypeVar("R")
T = TypeVar("T")

__all__ = ["as_async", "in_input_order", "write_items_and_drops"]


async def as_async(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """The items of a plain or an async iterable, pulled lazily, as an async iterator (so a stage
    builds its requests in one loop whether it reads a file or another stage's stream)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


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


async def write_items_and_drops(
    results: AsyncIterable[Any], out: Path, drops_out: Path
) -> tuple[int, int, dict[str, int]]:
    """Write results to `out` and `Drop`s to `drops_out` (each file whole or not at all); return
    (results seen, items written, drops by reason)."""
    seen = kept = 0
    dropped: dict[str, int] = {}
    with jsonl_writer(out) as w, jsonl_writer(drops_out) as wd:
        async for r in results:
            seen += 1
            if isinstance(r, Drop):
                dropped[r.reason] = dropped.get(r.reason, 0) + 1
                wd.write(r)
            else:
                kept += 1
                w.write(r)
    return seen, kept, dropped
