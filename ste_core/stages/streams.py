"""One async stream from a stage's input, whichever way it arrives.

A stage takes a plain iterable (a list, a file read lazily) or an async iterable (the previous
stage still streaming its results); the stages iterate `as_async(input)` so each builds its
requests in one loop instead of one per kind of input.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")


async def as_async(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """The items of a plain or an async iterable, pulled lazily, as an async iterator."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
