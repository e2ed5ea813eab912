"""The train/eval split (ste_core.stages.split)."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ste_core.records import Instruction
from ste_core.stages.split import split_instructions


def _pool(n: int) -> list[Instruction]:
    return [Instruction.from_text(f"instruction {i}") for i in range(n)]


def _ids(xs: Any) -> list[str]:
    return [x.id for x in xs]


def test_split_sizes_disjoint_and_deterministic() -> None:
    pool = _pool(100)
    a = split_instructions(lambda: pool, eval_size=10, train_size=30, seed=1)
    b = split_instructions(lambda: list(reversed(pool)), eval_size=10, train_size=30, seed=1)
    assert len(a.eval) == 10 and len(list(a.train())) == 30
    assert _ids(a.eval) == _ids(b.eval)  # input order does not matter
    assert _ids(a.train()) == _ids(b.train())
    assert not set(_ids(a.eval)) & set(_ids(a.train()))
    c = split_instructions(lambda: pool, eval_size=10, train_size=30, seed=2)
    assert set(_ids(c.eval)) != set(_ids(a.eval))  # the seed matters


def test_split_all_remaining_streams_in_source_order_and_excludes() -> None:
    pool = _pool(50)
    excluded = {pool[0].id, pool[1].id}
    s = split_instructions(
        lambda: iter(pool), eval_size=5, train_size=None, seed=0, exclude_ids=excluded
    )
    train = list(s.train())
    assert len(train) == 50 - 5 - 2
    assert s.excluded == 2
    assert _ids(train) == [i.id for i in pool if i.id not in excluded | set(_ids(s.eval))]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 60), extra=st.integers(0, 40), seed=st.integers(0, 5))
def test_split_is_stable_when_the_pool_grows(n: int, extra: int, seed: int) -> None:
    """An instruction in the eval set of a bigger pool was in the eval set of any smaller pool
    containing it: adding data never moves existing items from train into eval."""
    small = _pool(n)
    big = small + [Instruction.from_text(f"new {i}") for i in range(extra)]
    random.Random(seed).shuffle(big)
    e_small = set(
        _ids(split_instructions(lambda: small, eval_size=5, train_size=None, seed=seed).eval)
    )
    e_big = set(_ids(split_instructions(lambda: big, eval_size=5, train_size=None, seed=seed).eval))
    assert {i for i in e_big if i in set(_ids(small))} <= e_small
