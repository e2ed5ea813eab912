"""The openai backend's Batch API path (ste_backends/openai/batch.py), live against the fake on
127.0.0.1: what a cassette cannot hold (cancelling a running batch, expired and failed batches)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ste_backends.openai import OpenAIInference
from ste_backends.openai.fake import OpenAIFake
from ste_core.engine.retry import POLL_MAX_RETRIES
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FakeResponse, FaultPlan

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


def ask(text: str, **params) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest.of("fake-acc80", [{"role": "user", "content": text}], **params)


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def line(custom_id: str, model: str = "fake-acc80", text: str = "hello") -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


async def test_backend_cancels_its_batch_when_the_consumer_stops():
    with OpenAIFake() as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=30)

        async def consume() -> list:
            return [item async for item in backend.complete_many([ask("a"), ask("b")])]

        task = asyncio.ensure_future(consume())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if fake.counter["batches_create"]:
                break
        assert fake.counter["batches_create"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.aclose()
        assert fake.counter["batches_cancel"] == 1
        (batch,) = fake.state["openai_batches"].values()
        assert batch["status"] == "cancelling"


async def test_expired_batch_gives_retryable_items_for_every_request():
    with OpenAIFake() as fake:
        fake.state["batch_expire"] = True
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b"), ask("c")])]
        await backend.aclose()
    assert sorted(i.index for i in items) == [0, 1, 2]
    for item in items:
        assert isinstance(item.error, TransientProviderError) and item.error.retryable
        assert "batch_expired" in str(item.error)


async def test_failed_batch_polls_are_retried_then_the_batch_is_followed_to_the_end():
    polls_down = FaultPlan(
        fail_first=3, fail_first_status=503, routes=frozenset({"batches_retrieve"})
    )
    with OpenAIFake(faults=polls_down) as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
        assert fake.counter["batches_retrieve"] > 3 and fake.counter["batches_cancel"] == 0
    assert sorted(i.index for i in items) == [0, 1]
    assert all(i.completion is not None and i.completion.texts for i in items)


async def test_polls_failing_past_the_budget_cancel_the_batch_and_fail_its_requests():
    polls_down = FaultPlan(
        fail_first=10**6, fail_first_status=503, routes=frozenset({"batches_retrieve"})
    )
    with OpenAIFake(faults=polls_down) as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
        assert fake.counter["batches_retrieve"] == POLL_MAX_RETRIES + 1
        assert fake.counter["batches_cancel"] == 1
    assert sorted(i.index for i in items) == [0, 1]
    for item in items:
        assert isinstance(item.error, TransientProviderError) and item.error.status == 503


async def test_a_refused_poll_is_not_retried():
    refused = FaultPlan(
        fail_first=10**6, fail_first_status=404, routes=frozenset({"batches_retrieve"})
    )
    with OpenAIFake(faults=refused) as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a")])]
        await backend.aclose()
        assert fake.counter["batches_retrieve"] == 1
    assert isinstance(items[0].error, PermanentProviderError) and items[0].error.status == 404


async def test_failed_batch_gives_every_request_the_validation_message():
    with OpenAIFake() as fake:

        @fake.route("GET", r"/v1/batches/(?P<id>[^/]+)", "batches_retrieve_failed")
        def failed(req, match):  # type: ignore[no-untyped-def]
            return FakeResponse(
                200,
                {
                    "id": match["id"],
                    "object": "batch",
                    "endpoint": "/v1/chat/completions",
                    "input_file_id": "file-x",
                    "completion_window": "24h",
                    "created_at": 1,
                    "status": "failed",
                    "failed_at": 2,
                    "errors": {
                        "object": "list",
                        "data": [
                            {
                                "code": "invalid_model",
                                "message": "model not available for batch",
                                "param": "model",
                                "line": 1,
                            }
                        ],
                    },
                },
            )

        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
    assert len(items) == 2
    for item in items:
        assert isinstance(item.error, PermanentProviderError)
        assert "line 1: model not available for batch" in str(item.error)


async def test_batch_splits_n_by_max_n_and_merges_parts():
    with OpenAIFake() as fake:
        backend = OpenAIInference(
            base_url=fake.base_url, batch=True, batch_poll_interval=0, max_n=2
        )
        requests = [ask("Describe tides", n=3, temperature=0.9, seed=4), ask("Describe wind")]
        items = {i.index: i async for i in backend.complete_many(requests)}
        await backend.aclose()
        (batch,) = fake.state["openai_batches"].values()
        assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert len(items[0].completion.texts) == 3 and len(set(items[0].completion.texts)) == 3
    assert len(items[1].completion.texts) == 1


async def test_batch_upload_refused_gives_error_items_not_an_exception():
    with OpenAIFake(api_key="sk-ste-right") as fake:
        backend = OpenAIInference(
            base_url=fake.base_url, api_key="sk-ste-wrong", batch=True, batch_poll_interval=0
        )
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
    assert sorted(i.index for i in items) == [0, 1]
    assert all(i.error is not None and i.error.status == 401 for i in items)
