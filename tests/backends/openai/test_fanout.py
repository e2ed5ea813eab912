"""The n fan-out (ste_backends/openai/fanout.py; no network)."""

from __future__ import annotations

import asyncio

import pytest

from ste_backends.openai.fanout import complete_n, merge, split_sizes
from ste_core.errors import RateLimitError
from ste_core.records import ChatRequest, Completion, Usage


def req(**params) -> ChatRequest:
    return ChatRequest.of("m", [{"role": "user", "content": "hi"}], **params)


def test_split_sizes():
    assert split_sizes(5, None) == [5]
    assert split_sizes(5, 8) == [5]
    assert split_sizes(5, 2) == [2, 2, 1]
    assert split_sizes(4, 1) == [1, 1, 1, 1]


class Server:
    """A fake `call`: answers with min(n, cap) choices whose text names the seed and choice."""

    def __init__(self, cap: int | None = None, fail_on: int | None = None) -> None:
        self.cap, self.fail_on, self.calls = cap, fail_on, []

    async def __call__(self, r: ChatRequest) -> Completion:
        self.calls.append(r)
        number = len(self.calls)
        await asyncio.sleep(0)
        if self.fail_on is not None and number == self.fail_on:
            raise RateLimitError("slow", provider="p", retry_after=1)
        k = r.params.n if self.cap is None else min(r.params.n, self.cap)
        return Completion(
            texts=tuple(f"seed={r.params.seed} i={i}" for i in range(k)),
            finish_reasons=("stop",) * k,
            usage=Usage(prompt_tokens=1, completion_tokens=k),
            request_id=f"r{number}",
            cost_usd=0.5,
        )


async def test_split_by_max_n_gives_exactly_n_distinct_samples():
    server = Server()
    c = await complete_n(req(n=5, seed=10), server, max_n=2, provider="p")
    assert [r.params.n for r in server.calls] == [2, 2, 1]
    assert [r.params.seed for r in server.calls] == [10, 12, 14]
    assert len(c.texts) == 5 and len(set(c.texts)) == 5
    assert c.usage == Usage(prompt_tokens=3, completion_tokens=5)
    assert c.cost_usd == pytest.approx(1.5)
    assert c.request_id == "r1,r2,r3"


async def test_server_ignoring_n_is_topped_up_not_passed_on_short(caplog):
    server = Server(cap=1)
    warned: set[str] = set()
    c = await complete_n(req(n=3, seed=0), server, max_n=None, provider="p", warned=warned)
    assert len(c.texts) == 3 and len(set(c.texts)) == 3
    assert [r.params.n for r in server.calls] == [3, 1, 1]
    assert "max_n = 1" in caplog.text and warned == {"p:m"}


async def test_one_failed_part_fails_the_request():
    with pytest.raises(RateLimitError):
        await complete_n(req(n=4, seed=1), Server(fail_on=2), max_n=1, provider="p")


def test_merge_keeps_unknown_cost_unknown():
    a = Completion(texts=("x",), cost_usd=None)
    b = Completion(texts=("y",), cost_usd=1.0)
    assert merge([a, b], 2).cost_usd is None
