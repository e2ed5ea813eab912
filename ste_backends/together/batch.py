"""Together Batch API round trip for `TogetherInference.complete_many(batch=True)`.

One batch job per chunk of requests: write the input JSONL (one `{"custom_id", "body"}` line per
request), upload it with purpose `batch-api`, create the batch against `/v1/chat/completions`, poll
until it ends, download the output and error files and map lines back to requests by custom_id.

Errors are per item: a line in the error file, a non-200 line in the output file, or a request
missing from both yields an error BatchItem for that request only, so a partially failed batch
costs one retry of the failed lines (the core's scheduler retries them), not of the whole batch.

Every job is in the backend's `resources` (the run's ledger) before it costs anything: begun
(key: a digest of the input file) before the upload, its input file id right after the upload,
its batch id right after the create call, ended with the sum of its lines' costs. A session that
asks for the same lines again re-attaches to an open entry instead of paying twice: it polls the
batch (collecting results that came in while no one watched), finds the batch created from the
uploaded file when the create call's answer was lost, or creates it from that file; a batch
found FAILED, EXPIRED or CANCELLED is ended and its lines go out in a new batch.

A failed status poll (5xx, 429, timeout) is asked again under
`RetryPolicy.polling(batch_poll_interval_s)`; when that budget is spent, or `batch_timeout_s`
passes, the batch is cancelled and its requests get the error. When the run is interrupted the
batch is left running for the next session to collect (`cancel_on_interrupt = false`, the
default), or cancelled in a task of its own that the backend's `aclose` waits for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ste_core.backends import BatchItem
from ste_core.engine.retry import RetryPolicy
from ste_core.errors import PermanentProviderError, SteError, TransientProviderError
from ste_core.records import ChatRequest, Resource, content_hash
from ste_core.run.io import jsonl_writer

from .client import PROVIDER
from .errors import error_for_status, map_error, provider_message
from .inference import chat_body, completion_from_body
from .pricing import cost_of

if TYPE_CHECKING:
    from .inference import TogetherInference

log = logging.getLogger("ste.backends.together.batch")

BATCH_ENDPOINT = "/v1/chat/completions"
MAX_CUSTOM_ID = 64
TERMINAL = {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"}
#: Ended without running its lines: they go out again in a new batch.
ENDED_UNRUN = {"FAILED", "EXPIRED", "CANCELLED"}
#: Together's limits per batch job: 50,000 requests and 100 MB per input file
#: (https://docs.together.ai/docs/inference/batch/overview). Lines are also capped by the
#: `batch_max_requests` option.
MAX_LINES = 50_000
MAX_FILE_BYTES = 100 * 1000 * 1000
#: Seconds a provider's clock may run behind ours when matching a batch to its ledger entry.
CLOCK_SKEW_S = 60.0


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


@dataclass
class BatchChunk:
    """One batch job's requests (from `offset` in the complete_many input) and its input file."""

    offset: int
    requests: list[ChatRequest]
    ids: list[str]
    data: bytes

    @property
    def key(self) -> str:
        """The ledger key: a digest of the input file, the same in every session that sends
        the same lines."""
        return hashlib.sha256(self.data).hexdigest()[:32]


def plan_chunks(
    requests: list[ChatRequest], max_lines: int, max_bytes: int = MAX_FILE_BYTES
) -> list[BatchChunk]:
    """Cut the requests into batch jobs of at most `max_lines` lines and `max_bytes` bytes."""
    chunks: list[BatchChunk] = []
    current: BatchChunk | None = None
    for index, request in enumerate(requests):
        cid = custom_id_for(index, request)
        line = json.dumps({"custom_id": cid, "body": chat_body(request)}, ensure_ascii=False)
        raw = line.encode("utf-8") + b"\n"
        if (
            current is None
            or len(current.ids) >= max_lines
            or len(current.data) + len(raw) > max_bytes
        ):
            current = BatchChunk(offset=index, requests=[], ids=[], data=b"")
            chunks.append(current)
        current.requests.append(request)
        current.ids.append(cid)
        current.data += raw
    return chunks


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
    max_lines = min(backend.options.batch_max_requests, MAX_LINES)
    chunks = plan_chunks(requests, max_lines)
    queue: asyncio.Queue[list[BatchItem]] = asyncio.Queue()

    async def one(chunk: BatchChunk) -> None:
        try:
            items = await _run_one_batch(backend, chunk)
        except Exception as exc:  # one failing chunk must not lose the others
            err = map_error(exc, what="batch job")
            items = [BatchItem(index=chunk.offset + i, error=err) for i in range(len(chunk.ids))]
        await queue.put(items)

    tasks = [asyncio.ensure_future(one(chunk)) for chunk in chunks]
    try:
        for _ in tasks:
            for item in await queue.get():
                yield item
    finally:
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _run_one_batch(backend: TogetherInference, chunk: BatchChunk) -> list[BatchItem]:
    resource, job = await _attach_or_submit(backend, chunk)
    job = await _wait(backend, resource, job)
    index_of = {cid: chunk.offset + i for i, cid in enumerate(chunk.ids)}
    items = await _collect(backend, job, chunk.requests, index_of, chunk.offset)
    backend.resources.end(resource, cost_usd=total_cost(items))
    return items


def total_cost(items: Iterable[BatchItem]) -> float | None:
    """What the lines that ran cost (None when no line's price is known)."""
    costs = [i.completion.cost_usd for i in items if i.completion is not None]
    known = [c for c in costs if c is not None]
    return sum(known) if known else None


async def _attach_or_submit(backend: TogetherInference, chunk: BatchChunk) -> tuple[Resource, Any]:
    """The batch job for `chunk`: one a dead session left for the same lines, else a new one."""
    resources = backend.resources
    resource = resources.claim("batch", chunk.key)
    file_id: str | None = None
    if resource is not None:
        try:
            job = await find_batch(backend, resource)
        except BaseException:
            resources.release(resource)
            raise
        if job is not None and (job.status or "") not in ENDED_UNRUN:
            if resource.provider_id != job.id:
                resource = resources.update(resource, provider_id=job.id, state="live")
            log.info("re-attaching to batch %s (%d lines)", job.id, len(chunk.ids))
            resources.notify(f"Re-attaching to batch {job.id} ({len(chunk.ids)} requests)")
            return resource, job
        file_id = resource.detail.get("input_file_id")
        if job is not None:  # it ended without running its lines: they go again
            log.warning("batch %s ended %s; its requests go out again", job.id, job.status)
            resources.end(resource, cost_usd=None)
            resource = None
    if resource is None:
        resource = resources.begin(
            "batch",
            key=chunk.key,
            detail={"lines": len(chunk.ids), "bytes": len(chunk.data)},
        )
    try:
        job = await _submit(backend, chunk, resource, file_id)
    except BaseException:
        # Nothing was created, or we cannot know: a retry re-claims the entry and finds what
        # this attempt left (its uploaded file, a batch whose id never came back).
        resources.release(resource)
        raise
    resource = resources.update(resource, provider_id=job.id, state="live")
    return resource, job


async def _submit(
    backend: TogetherInference, chunk: BatchChunk, resource: Resource, file_id: str | None
) -> Any:
    """Upload the input file (unless `file_id` names it already) and create the batch; the
    ledger entry gets the file id right after the upload."""
    client = backend._client
    if file_id is None:
        with tempfile.TemporaryDirectory(prefix="ste-together-batch-") as tmp:
            path = Path(tmp) / f"batch-{chunk.offset:07d}.jsonl"
            path.write_bytes(chunk.data)
            uploaded = await client.files.upload(path, purpose="batch-api")
        file_id = uploaded.id
    if resource.detail.get("input_file_id") != file_id:
        backend.resources.update(resource, detail={"input_file_id": file_id})
    models = {r.model for r in chunk.requests}
    created = await client.batches.create(
        endpoint=BATCH_ENDPOINT,
        input_file_id=file_id,
        **({"model_id": next(iter(models))} if len(models) == 1 else {}),
    )
    job = created.job
    if job is None or not job.id:
        raise TransientProviderError("batch create returned no job", provider=PROVIDER)
    return job


async def find_batch(backend: TogetherInference, resource: Resource) -> Any | None:
    """The provider's batch of a ledger entry: by its id, else (the create call's answer was
    lost) the one created from its input file; None when there is none."""
    client = backend._client
    if resource.provider_id:
        try:
            return await client.batches.retrieve(resource.provider_id)
        except Exception as exc:
            if getattr(exc, "status_code", None) == 404:
                return None
            raise map_error(exc, what=f"looking up batch {resource.provider_id}") from exc
    file_id = resource.detail.get("input_file_id")
    if not file_id:
        return None
    try:
        found = [
            job
            async for job in _all_batches(client)
            if job.input_file_id == file_id and _created_since(job, resource.created)
        ]
    except Exception as exc:
        raise map_error(exc, what="listing batches") from exc
    return found[0] if found else None


def _created_since(job: Any, since: float) -> bool:
    """Created after its ledger entry was begun (a minute's clock skew allowed): Together
    hands out the same file id for the same content, so an older batch from the same file
    is another session's (paid for there), not this entry's."""
    created = getattr(job, "created_at", None)
    return created is None or created.timestamp() >= since - CLOCK_SKEW_S


async def _all_batches(client: Any) -> AsyncIterator[Any]:
    """Every batch of the account, across all pages."""
    page = await client.batches.list()
    if isinstance(page, list):  # a bare list: the whole account on one page
        for job in page:
            yield job
        return
    async for job in page:  # a paginated page iterates over every page
        yield job


async def _wait(backend: TogetherInference, resource: Resource, job: Any) -> Any:
    client = backend._client
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
    except asyncio.CancelledError:
        if backend.options.cancel_on_interrupt:
            # Its own task: the interruption that got us here (or a second one) cannot stop it,
            # and the backend's aclose waits for it before closing the client.
            await asyncio.shield(
                backend.resources.tear_down_later(cancel_batch(backend, resource, job_id))
            )
        else:
            log.info("batch %s left running: the next session collects its results", job_id)
        raise
    except SteError:
        # Timed out, or its polls kept failing: stop paying for a batch nobody reads.
        await asyncio.shield(cancel_batch(backend, resource, job_id))
        raise
    return job


async def cancel_batch(backend: TogetherInference, resource: Resource, job_id: str) -> bool:
    """Cancel the batch at Together and end its ledger entry; False (a warning) when the
    cancel call failed: the entry stays open, for `ste cleanup` or the next session."""
    try:
        await backend._client.batches.cancel(job_id)
    except Exception as exc:
        log.warning("could not cancel batch %s: %s", job_id, exc)
        return False
    log.info("batch %s cancelled", job_id)
    backend.resources.end(resource, cost_usd=None)
    return True


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
