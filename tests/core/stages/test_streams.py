"""Output ordering (ste_core.stages._streams): results back in input order."""

from __future__ import annotations

from ste_core.stages._streams import in_input_order


async def test_in_input_order_resequences_and_groups() -> None:
    async def results():
        for item in [("b", 1), ("a", 0), ("c", 0), ("b", 0), ("a", 1), ("c", 1)]:
            yield item

    got = [
        x
        async for x in in_input_order(
            results(), iter("abc"), lambda r: r[0], per_key=2, sort=lambda r: r[1]
        )
    ]
    assert got == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)]

    async def incomplete():
        for item in [("z", 0), ("b", 0)]:
            yield item

    got = [x async for x in in_input_order(incomplete(), iter("ab"), lambda r: r[0])]
    assert got == [("b", 0), ("z", 0)]  # missing "a" does not block; unexpected kept
