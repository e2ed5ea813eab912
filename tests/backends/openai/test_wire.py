"""Request bodies and tolerant response parsing (ste_backends/openai/wire.py; no network)."""

from __future__ import annotations

import pytest

from ste_backends.openai.errors import MalformedResponseError
from ste_backends.openai.wire import chat_body, completion_from_body
from ste_core.records import ChatRequest, Usage


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
