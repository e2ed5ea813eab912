"""The openai backend and the fake's Batch API, live against the fake on 127.0.0.1.

What a cassette cannot hold (timeouts, refused connections, cancelling a running batch) and the
fake's own Files/Batches routes, checked with the SDK's strict response validation so that their
shapes stay those of the `openai` types.
"""

from __future__ import annotations

import asyncio
import json
import socket

import openai
import pytest

from ste_backends.openai import OpenAIInference
from ste_backends.openai.fake import OpenAIFake
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FakeProvider, FakeResponse, FaultPlan

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


def ask(text: str, **params) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest.of("fake-acc80", [{"role": "user", "content": text}], **params)


def strict_client(fake: FakeProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="unused", max_retries=0, _strict_response_validation=True
    )


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def line(custom_id: str, model: str = "fake-acc80", text: str = "hello") -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


async def test_timeout_is_transient():
    with OpenAIFake(faults=FaultPlan(timeout_every=1, timeout_sleep_s=5)) as fake:
        backend = OpenAIInference(base_url=fake.base_url, timeout=0.3)
        try:
            with pytest.raises(TransientProviderError, match="timed out"):
                await backend.complete(ask("hi"))
        finally:
            await backend.aclose()


async def test_refused_connection_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIInference(base_url=f"http://127.0.0.1:{port}/v1", timeout=2)
    try:
        with pytest.raises(TransientProviderError, match="connection error"):
            await backend.complete(ask("hi"))
    finally:
        await backend.aclose()


async def test_fake_batch_shapes_follow_the_sdk_types():
    with OpenAIFake() as fake:
        client = strict_client(fake)
        upload = await client.files.create(
            file=("in.jsonl", jsonl([line("a"), line("b", text="bye")]), "application/jsonl"),
            purpose="batch",
        )
        assert upload.purpose == "batch" and upload.bytes > 0
        batch = await client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        seen = [batch.status]
        while batch.status not in ("completed", "failed"):
            batch = await client.batches.retrieve(batch.id)
            seen.append(batch.status)
        assert seen == ["validating", "in_progress", "finalizing", "completed"]
        assert batch.request_counts.total == 2 and batch.request_counts.completed == 2
        assert batch.usage is not None and batch.usage.total_tokens > 0
        assert batch.completed_at and batch.in_progress_at and batch.finalizing_at
        assert batch.error_file_id is None
        out = await client.files.content(batch.output_file_id)
        rows = [json.loads(x) for x in out.text.splitlines()]
        assert sorted(r["custom_id"] for r in rows) == ["a", "b"]
        assert all(r["response"]["status_code"] == 200 and r["error"] is None for r in rows)
        assert (await client.files.retrieve(batch.output_file_id)).purpose == "batch_output"
        listed = await client.batches.list()
        assert [b.id for b in listed.data] == [batch.id]
        await client.close()


async def test_fake_batch_validation_fails_like_the_api():
    with OpenAIFake() as fake:
        client = strict_client(fake)
        bad = jsonl([line("a"), line("a"), line("c", model="other-model")]) + b"not json\n"
        upload = await client.files.create(file=("bad.jsonl", bad), purpose="batch")
        batch = await client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        batch = await client.batches.retrieve(batch.id)
        assert batch.status == "failed" and batch.failed_at
        codes = {(e.code, e.line) for e in batch.errors.data}
        assert ("duplicate_custom_id", 2) in codes
        assert ("invalid_json_line", 4) in codes
        assert ("model_mismatch", None) in codes
        with pytest.raises(openai.BadRequestError):
            await client.files.create(file=("x.jsonl", b"{}\n"), purpose="nonsense")
        with pytest.raises(openai.BadRequestError):
            await client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/chat/completions",
                completion_window="48h",  # type: ignore[arg-type]
            )
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_missing")
        await client.close()


async def test_fake_batch_cancel():
    with OpenAIFake() as fake:
        client = strict_client(fake)
        upload = await client.files.create(file=("in.jsonl", jsonl([line("a")])), purpose="batch")
        batch = await client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        batch = await client.batches.cancel(batch.id)
        assert batch.status == "cancelling" and batch.cancelling_at
        batch = await client.batches.retrieve(batch.id)
        assert batch.status == "cancelled" and batch.output_file_id is None
        with pytest.raises(openai.ConflictError):
            await client.batches.cancel(batch.id)
        await client.close()


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


async def test_server_ignoring_n_is_topped_up_and_warned_once(caplog):
    with OpenAIFake() as fake:
        real = fake.find_route("POST", "/v1/chat/completions")[0].handler

        @fake.route("POST", r"/v1/chat/completions", "chat_ignores_n")
        def ignores_n(req, match):  # type: ignore[no-untyped-def]
            body = req.json()
            body.pop("n", None)  # like llama.cpp's server: one choice whatever n says
            return real(
                type(req)(req.method, req.path, req.query, req.headers, json.dumps(body).encode()),
                match,
            )

        backend = OpenAIInference(base_url=fake.base_url)
        for seed in (1, 2):
            c = await backend.complete(ask("Tides?", n=3, temperature=0.9, seed=seed * 10))
            assert len(c.texts) == 3 and len(set(c.texts)) == 3
        await backend.aclose()
        assert fake.counter["chat_ignores_n"] == 6
    assert caplog.text.count("set max_n = 1") == 1
