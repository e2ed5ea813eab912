"""The fake's own Files/Batches routes (ste_backends/openai/fake.py), live on 127.0.0.1, checked
with the SDK's strict response validation so that their shapes stay those of the `openai` types."""

from __future__ import annotations

import json

import openai
import pytest

from ste_backends.openai.fake import OpenAIFake
from ste_core.testing.fake_provider import FakeProvider

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


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
