"""Together Batch API round trip for `TogetherInference.complete_many(batch=True)`.

One batch job per chunk of requests: write the input JSONL (one `{"custom_id", "body"}` line per
request), upload it with purpose `batch-api`, create the batch against `/v1/chat/completions`, poll
until it ends, download the output and error files and map lines back to requests by custom_id.

Errors are per item: a line in the error file, a non-200 line in the output file, or a request
missing from both yields an error BatchItem for that request only, so a partially failed batch
costs one retry of the failed lines (the core's scheduler retries them), not of the whole batch.

A failed status poll (5xx, 429, timeout) is asked again under
`RetryPolicy.polling(batch_poll_interval_s)`; when that budget is spent, or `batch_timeout_s`
passes, or the run is interrupted, the batch is cancelled and its requests get the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ste_core.backends import BatchItem
from ste_core.engine.retry import RetryPolicy
from ste_core.errors import PermanentProviderError, SteError, TransientProviderError
from ste_core.records import ChatRequest, content_hash
from ste_core.run.io import jsonl_writer

from .client import PROVIDER
from .errors import error_for_status, map_error, provider_message
from .inference import chat_body, completion_from_body
from .pricing import cost_of

if TYPE_CHECKING:
    from .inference import TogetherInference

BATCH_ENDPOINT = "/v1/chat/completions"
MAX_CUSTOM_ID = 64
TERMINAL = {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"}


def custom_id_for(index: int, request: ChatRequest) -> str:
    """A stable id for line `index`: position plus a content hash, well under 64 characters."""
    digest = content_hash(request.model_dump(mode="json"))[:16]
    cid = f"ste-{index:07d}-{digest}"
    assert len(cid) <= MAX_CUSTOM_ID
    return cid


def write_batch_input(requests: Iterable[ChatRequest], path: Path, offset: int = 0) -> list[str]:
    """Write the Batch API input file; return the custom_ids in request order."""
    ids: list[str] = []
    with jsonl_writer(path) as w:
        for i, req in enumerate(requests):
            cid = custom_id_for(offset + i, req)
            ids.append(cid)
            w.write({"custom_id": cid, "body": chat_body(req)})
    return ids


def parse_result_lines(data: bytes) -> Iterable[dict[str, Any]]:
    """JSON objects from a JSONL payload; a garbled line is reported as {'_unparsable': text}."""
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield {"_unparsable": line[:200]}
            continue
        if isinstance(obj, dict):
            yield obj


def _line_error(line: dict[str, Any]) -> SteError:
    """The typed error of one error-file line (or failed output line)."""
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    status = None
    body: Any = line.get("error")
    if response is not None:
        status = response.get("status_code")
        body = response.get("body", body)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        status = status or body["error"].get("status_code") or body["error"].get("code")
    if isinstance(status, int) and status >= 400:
        return error_for_status(status, body, what="batch request")
    message = provider_message({"error": body} if not isinstance(body, dict) else body)
    return TransientProviderError(
        f"batch request failed: {message or 'no error message'}", provider=PROVIDER
    )


async def run_batches(
    backend: TogetherInference, requests: list[ChatRequest]
) -> AsyncIterator[BatchItem]:
    """Run all requests as one or more batch jobs, yielding items as each job finishes."""
    size = backend.options.batch_max_requests
    chunks = [(start, requests[start : start + size]) for start in range(0, len(requests), size)]
    queue: asyncio.Queue[list[BatchItem]] = asyncio.Queue()

    async def one(start: int, chunk: list[ChatRequest]) -> None:
        try:
            items = await _run_one_batch(backend, chunk, start)
        except Exception as exc:  # one failing chunk must not lose the others
            err = map_error(exc, what="batch job")
            items = [BatchItem(index=start + i, error=err) for i in range(len(chunk))]
        await queue.put(items)

    tasks = [asyncio.ensure_future(one(start, chunk)) for start, chunk in chunks]
    try:
        for _ in tasks:
            for item in await queue.get():
                yield item
    finally:
        for t in tasks:
            t.cancel()


async def _run_one_batch(
    backend: TogetherInference, chunk: list[ChatRequest], offset: int
) -> list[BatchItem]:
    client = backend._client
    with tempfile.TemporaryDirectory(prefix="ste-together-batch-") as tmp:
        path = Path(tmp) / f"batch-{offset:07d}.jsonl"
        ids = write_batch_input(chunk, path, offset)
        uploaded = await client.files.upload(path, purpose="batch-api")
    index_of = {cid: offset + i for i, cid in enumerate(ids)}
    models = {r.model for r in chunk}
    created = await client.batches.create(
        endpoint=BATCH_ENDPOINT,
        input_file_id=uploaded.id,
        **({"model_id": next(iter(models))} if len(models) == 1 else {}),
    )
    job = created.job
    if job is None or not job.id:
        raise TransientProviderError("batch create returned no job", provider=PROVIDER)
    job_id = job.id

    async def retrieve() -> Any:
        try:
            return await client.batches.retrieve(job_id)
        except Exception as exc:
            raise map_error(exc, what=f"polling batch {job_id}") from exc

    retry = RetryPolicy.polling(backend.options.batch_poll_interval_s)
    started = time.monotonic()
    try:
        while (job.status or "") not in TERMINAL:
            if time.monotonic() - started > backend.options.batch_timeout_s:
                raise TransientProviderError(
                    f"batch {job_id} did not finish within {backend.options.batch_timeout_s:.0f}s; "
                    "it was cancelled",
                    provider=PROVIDER,
                )
            await asyncio.sleep(backend.options.batch_poll_interval_s)
            job = await retry.call(f"polling batch {job_id}", retrieve)
    except (asyncio.CancelledError, SteError):
        # Interrupted, timed out, or its polls kept failing: stop paying for a batch nobody reads.
        await asyncio.shield(_cancel_quietly(client, job_id))
        raise
    return await _collect(backend, job, chunk, index_of, offset)


async def _collect(
    backend: TogetherInference,
    job: Any,
    chunk: list[ChatRequest],
    index_of: dict[str, int],
    offset: int,
) -> list[BatchItem]:
    client = backend._client
    items: dict[int, BatchItem] = {}
    latency = 0.0
    if job.created_at is not None and job.completed_at is not None:
        latency = max(0.0, (job.completed_at - job.created_at).total_seconds())
    for file_id, is_error_file in ((job.output_file_id, False), (job.error_file_id, True)):
        if not file_id:
            continue
        content = await (await client.files.content(file_id)).read()
        for line in parse_result_lines(content):
            index = index_of.get(str(line.get("custom_id")))
            if index is None or index in items:
                continue
            items[index] = await _item_for_line(
                backend, line, index, chunk[index - offset], is_error_file, latency
            )
    missing_error: SteError
    if job.status == "FAILED":
        missing_error = PermanentProviderError(
            f"batch {job.id} failed: {job.error or 'no reason given'}", provider=PROVIDER
        )
    else:
        missing_error = TransientProviderError(
            f"batch {job.id} ended {job.status} without a result for this request",
            provider=PROVIDER,
        )
    for i in range(len(chunk)):
        if offset + i not in items:
            items[offset + i] = BatchItem(index=offset + i, error=missing_error)
    return [items[k] for k in sorted(items)]


async def _item_for_line(
    backend: TogetherInference,
    line: dict[str, Any],
    index: int,
    request: ChatRequest,
    is_error_file: bool,
    latency: float,
) -> BatchItem:
    response = line.get("response") if isinstance(line.get("response"), dict) else None
    status = response.get("status_code", 200) if response is not None else None
    if is_error_file or line.get("error") or response is None or status != 200:
        return BatchItem(index=index, error=_line_error(line))
    body = response.get("body")
    if not isinstance(body, dict):
        return BatchItem(
            index=index,
            error=TransientProviderError("batch output line without a body", provider=PROVIDER),
        )
    try:
        completion, usage = completion_from_body(
            body,
            request_id=response.get("request_id") or body.get("id"),
            latency_s=latency,
            requested_n=request.params.n,
        )
    except SteError as exc:
        return BatchItem(index=index, error=exc)
    price = await backend._price(request.model)
    cost = cost_of(usage, price, backend.options.batch_discount)
    return BatchItem(index=index, completion=completion.model_copy(update={"cost_usd": cost}))


async def _cancel_quietly(client: Any, batch_id: str) -> None:
    with contextlib.suppress(Exception):
        await client.batches.cancel(batch_id)
