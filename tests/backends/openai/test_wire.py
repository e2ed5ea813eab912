"""Request bodies, tolerant response parsing and the n fan-out (no network)."""

from __future__ import annotations

import asyncio

import pytest

from ste_backends.openai.errors import MalformedResponseError
from ste_backends.openai.fanout import complete_n, merge, split_sizes
from ste_backends.openai.wire import chat_body, completion_from_body
from ste_core.errors import RateLimitError
from ste_core.records import ChatRequest, Completion, Usage


def req(**params) -> ChatRequest:
    return ChatRequest.of("m", [{"role": "user", "content": "hi"}], **params)


def test_chat_body_includes_only_what_is_set():
    body = chat_body(req(temperature=0.7, max_tokens=64))
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 64,
    }
    body = chat_body(
        req(n=3, seed=5, stop=("</s>",)),
        max_tokens_field="max_completion_tokens",
        extra_body={"top_k": 40},
    )
    assert body["n"] == 3 and body["seed"] == 5 and body["stop"] == ["</s>"]
    assert "max_tokens" not in body and body["max_completion_tokens"] == 1024
    assert body["top_k"] == 40


def test_completion_from_body_orders_choices_and_reads_usage():
    data = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {
                "index": 1,
                "message": {"role": "assistant", "content": "second"},
                "finish_reason": "length",
            },
            {
                "index": 0,
                "message": {"role": "assistant", "content": "first"},
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    c = completion_from_body(data, provider="p", request_id="req_1", latency_s=0.5)
    assert c.texts == ("first", "second")
    assert c.finish_reasons == ("stop", "length")
    assert c.usage == Usage(prompt_tokens=3, completion_tokens=4)
    assert c.request_id == "req_1" and c.model == "m" and c.latency_s == 0.5
    # Without a header the body's id is the request id; missing usage is zero, not an error.
    del data["usage"]
    c = completion_from_body(data, provider="p")
    assert c.request_id == "chatcmpl-1" and c.usage == Usage()


def test_null_content_is_empty_text_and_refusal_is_kept():
    data = {
        "choices": [
            {"index": 0, "message": {"content": None}, "finish_reason": "length"},
            {"index": 1, "message": {"content": None, "refusal": "no"}, "finish_reason": "stop"},
        ]
    }
    assert completion_from_body(data, provider="p").texts == ("", "no")


@pytest.mark.parametrize(
    "data",
    [
        "<html>bad gateway</html>",
        [],
        {"choices": []},
        {"object": "chat.completion"},
        {"error": {"message": "overloaded"}},
        {"choices": [{"index": 0, "text": "completions-style"}]},
    ],
)
def test_unusable_bodies_are_malformed_and_retryable(data):
    with pytest.raises(MalformedResponseError) as info:
        completion_from_body(data, provider="p")
    assert info.value.retryable


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
