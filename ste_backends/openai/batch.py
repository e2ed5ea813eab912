"""OpenAI Batch API: many chat completions at about half price, within a 24-hour window.

Flow per chunk (one model, at most `max_requests` lines and ~190 MB):

    JSONL of {"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}
      -> POST /v1/files (purpose "batch")  -> POST /v1/batches (completion_window "24h")
      -> GET /v1/batches/{id} every `poll_interval` s until completed/failed/expired/cancelled
         (a failed poll is asked again under `RetryPolicy.polling(poll_interval)`)
      -> GET /v1/files/{output_file_id}/content and /v1/files/{error_file_id}/content
      -> one BatchItem per request, matched by custom_id

Failed lines become error items (typed by their status code, as a live call would be), so the
core retries only those. Requests that appear in neither file (batch expired or was cancelled)
become TransientProviderError items. A failure of the batch itself (upload refused, batch
failed validation, polls still failing when the retry budget is spent) gives every request of
that chunk the same error item, and a batch still running is cancelled.

Every batch is in `resources` (the run's ledger) before it costs anything: begun (key: a digest
of the input file) before the upload, its input file id right after the upload, its batch id
right after the create call, ended with the sum of its lines' known costs. A session that asks
for the same lines again re-attaches to an open entry instead of paying twice: it polls the batch
(collecting results that came in while no one watched), finds the batch created from the uploaded
file (all pages of the batch list) when the create call's answer was lost, or creates it from that
file; a batch found failed, expired or cancelled is ended and its lines go out in a new batch.
If the consumer stops (cancellation, Ctrl-C), a running batch is left for the next session to
collect (`cancel_on_interrupt` false, the default), or cancelled in a task of its own that the
backend's `aclose` waits for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ste_backends.openai.errors import error_for_status, map_sdk_error, server_message
from ste_backends.openai.fanout import merge, split_sizes
from ste_backends.openai.wire import completion_from_body
from ste_core.backends import BatchItem
from ste_core.engine.retry import RetryPolicy
from ste_core.errors import (
    PermanentProviderError,
    ProviderError,
    SteError,
    TransientProviderError,
)
from ste_core.records import ChatRequest, Completion, Resource
from ste_core.resources import Resources

log = logging.getLogger("ste.backends.openai.batch")

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: Ended (or ending) without running its lines: on re-attach they go out again in a new batch.
ENDED_UNRUN = frozenset({"failed", "expired", "cancelled", "cancelling"})
#: The Batch API caps input files at 200 MB; stay under it with room for the multipart framing.
MAX_FILE_BYTES = 190 * 1024 * 1024
#: ... and a batch at 50,000 requests.
MAX_LINES = 50_000


@dataclass
class BatchSettings:
    poll_interval: float = 30.0
    max_requests: int = 50_000
    completion_window: str = "24h"
    metadata: dict[str, str] = field(default_factory=dict)
    max_n: int | None = None
    cancel_on_interrupt: bool = False


@dataclass
class _Chunk:
    model: str
    # (request index, custom_ids of its parts, n asked in total)
    requests: list[tuple[int, list[str], int]] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def key(self) -> str:
        """The ledger key: a digest of the input file, the same in every session that sends
        the same lines."""
        return hashlib.sha256(b"".join(self.lines)).hexdigest()[:32]


async def run_batches(
    get_client: Callable[[], Any],
    requests: Sequence[ChatRequest],
    *,
    body_for: Callable[[ChatRequest], dict[str, Any]],
    provider: str,
    auth_hint: str,
    settings: BatchSettings,
    resources: Resources,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[BatchItem]:
    """Run `requests` through the Batch API; yield one BatchItem per request as chunks finish.
    Each batch is recorded in `resources`."""
    chunks = _plan(requests, body_for=body_for, settings=settings)
    runner = _Runner(get_client, provider, auth_hint, settings, resources, sleep)
    tasks = [asyncio.ensure_future(runner.run(chunk)) for chunk in chunks]
    try:
        for fut in asyncio.as_completed(tasks):
            for item in await fut:
                yield item
    finally:
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _plan(
    requests: Sequence[ChatRequest],
    *,
    body_for: Callable[[ChatRequest], dict[str, Any]],
    settings: BatchSettings,
) -> list[_Chunk]:
    """Group requests by model (one model per input file, as the Batch API requires) and cut
    each group into chunks under the line and byte limits. The parts of one request (n split
    by max_n) always stay in one chunk."""
    by_model: dict[str, list[_Chunk]] = {}
    for index, request in enumerate(requests):
        lines: list[bytes] = []
        ids: list[str] = []
        offset = 0
        for k, size in enumerate(split_sizes(request.params.n, settings.max_n)):
            custom_id = f"ste-{index}" if k == 0 else f"ste-{index}-part{k}"
            part = request.with_params(n=size)
            if k and request.params.seed is not None:
                part = part.with_params(seed=request.params.seed + offset)
            offset += size
            line = {
                "custom_id": custom_id,
                "method": "POST",
                "url": ENDPOINT,
                "body": body_for(part),
            }
            lines.append(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
            ids.append(custom_id)
        chunks = by_model.setdefault(request.model, [])
        added = sum(len(x) for x in lines)
        if (
            not chunks
            or len(chunks[-1].lines) + len(lines) > min(settings.max_requests, MAX_LINES)
            or chunks[-1].size + added > MAX_FILE_BYTES
        ):
            chunks.append(_Chunk(model=request.model))
        chunk = chunks[-1]
        chunk.requests.append((index, ids, request.params.n))
        chunk.lines += lines
        chunk.size += added
    return [c for group in by_model.values() for c in group]


class _Runner:
    def __init__(
        self,
        get_client: Callable[[], Any],
        provider: str,
        auth_hint: str,
        settings: BatchSettings,
        resources: Resources,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.get_client, self.provider, self.auth_hint = get_client, provider, auth_hint
        self.settings, self.resources, self.sleep = settings, resources, sleep
        self.retry = RetryPolicy.polling(settings.poll_interval)

    def _map(self, exc: BaseException) -> SteError:
        mapped = map_sdk_error(exc, provider=self.provider, auth_hint=self.auth_hint)
        if mapped is None:
            raise exc
        return mapped

    async def run(self, chunk: _Chunk) -> list[BatchItem]:
        """Submit one chunk (or re-attach to its batch) and wait for it; never raises a provider
        error (items carry them)."""
        started = time.monotonic()
        try:
            resource, batch = await self._attach_or_submit(chunk)
        except Exception as exc:
            return self._all_failed(chunk, self._map(exc))
        try:
            batch = await self._wait(batch)
        except asyncio.CancelledError:
            if self.settings.cancel_on_interrupt:
                # Its own task: the interruption that got us here (or a second one) cannot stop
                # it, and the backend's aclose waits for it before closing the client.
                await asyncio.shield(
                    self.resources.tear_down_later(self.cancel(resource, batch.id))
                )
            else:
                log.info("batch %s left running: the next session collects its results", batch.id)
            raise
        except Exception as exc:
            await asyncio.shield(self.cancel(resource, batch.id))
            return self._all_failed(chunk, self._map(exc))
        if batch.status == "failed":
            self.resources.end(resource, cost_usd=None)
            messages = [
                f"line {e.line}: {e.message}" if e.line is not None else str(e.message)
                for e in ((batch.errors.data or []) if batch.errors else [])
            ]
            return self._all_failed(
                chunk,
                PermanentProviderError(
                    f"batch {batch.id} failed validation: "
                    f"{'; '.join(messages) or 'no reason given'}",
                    provider=self.provider,
                ),
            )
        try:
            lines = await self._download(batch.output_file_id) + await self._download(
                batch.error_file_id
            )
        except Exception as exc:
            return self._all_failed(chunk, self._map(exc))
        items = self._assemble(chunk, batch, lines, latency_s=time.monotonic() - started)
        self.resources.end(resource, cost_usd=total_cost(items))
        return items

    async def _attach_or_submit(self, chunk: _Chunk) -> tuple[Resource, Any]:
        """The batch for `chunk`: one a dead session left for the same lines, else a new one."""
        client = self.get_client()
        resource = self.resources.claim("batch", chunk.key)
        file_id: str | None = None
        if resource is not None:
            try:
                batch = await find_batch(client, resource)
            except BaseException:
                self.resources.release(resource)
                raise
            if batch is not None and batch.status not in ENDED_UNRUN:
                if resource.provider_id != batch.id:
                    resource = self.resources.update(resource, provider_id=batch.id, state="live")
                log.info("re-attaching to batch %s (%d lines)", batch.id, len(chunk.lines))
                self.resources.notify(
                    f"Re-attaching to batch {batch.id} ({len(chunk.lines)} requests)"
                )
                return resource, batch
            file_id = resource.detail.get("input_file_id")
            if batch is not None:  # it ended without running its lines: they go again
                log.warning("batch %s ended %s; its requests go out again", batch.id, batch.status)
                self.resources.end(resource, cost_usd=None)
                resource = None
        if resource is None:
            resource = self.resources.begin(
                "batch", key=chunk.key, detail={"lines": len(chunk.lines), "bytes": chunk.size}
            )
        try:
            batch = await self._submit(chunk, resource, file_id)
        except BaseException:
            # Nothing was created, or we cannot know: a retry re-claims the entry and finds
            # what this attempt left (its uploaded file, a batch whose id never came back).
            self.resources.release(resource)
            raise
        resource = self.resources.update(resource, provider_id=batch.id, state="live")
        log.info("batch %s submitted: %d lines for %s", batch.id, len(chunk.lines), chunk.model)
        return resource, batch

    async def _submit(self, chunk: _Chunk, resource: Resource, file_id: str | None) -> Any:
        """Upload the input file (unless `file_id` names it already) and create the batch; the
        ledger entry gets the file id right after the upload."""
        client = self.get_client()
        if file_id is None:
            upload = await client.files.create(
                file=(
                    f"ste-batch-{chunk.model.replace('/', '_')}.jsonl",
                    b"".join(chunk.lines),
                    "application/jsonl",
                ),
                purpose="batch",
            )
            file_id = upload.id
        if resource.detail.get("input_file_id") != file_id:
            self.resources.update(resource, detail={"input_file_id": file_id})
        return await client.batches.create(
            input_file_id=file_id,
            endpoint=ENDPOINT,
            completion_window=self.settings.completion_window,
            metadata={"source": "ste", **self.settings.metadata},
        )

    async def cancel(self, resource: Resource, batch_id: str) -> bool:
        return await cancel_batch(self.get_client(), self.resources, resource, batch_id)

    async def _wait(self, batch: Any) -> Any:
        client = self.get_client()
        batch_id = batch.id

        async def retrieve() -> Any:
            try:
                return await client.batches.retrieve(batch_id)
            except Exception as exc:
                raise self._map(exc) from exc

        while batch.status not in TERMINAL:
            await self.sleep(self.settings.poll_interval)
            batch = await self.retry.call(f"polling batch {batch_id}", retrieve, sleep=self.sleep)
        return batch

    async def _download(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        content = await self.get_client().files.content(file_id)
        rows = []
        for n, raw in enumerate(content.text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                rows.append(json.loads(raw))
            except ValueError:
                log.warning("file %s line %d is not JSON; its request counts as failed", file_id, n)
        return rows

    def _all_failed(self, chunk: _Chunk, error: SteError) -> list[BatchItem]:
        return [BatchItem(index=index, error=error) for index, _, _ in chunk.requests]

    def _assemble(
        self, chunk: _Chunk, batch: Any, rows: list[dict[str, Any]], *, latency_s: float
    ) -> list[BatchItem]:
        by_id = {str(row.get("custom_id")): row for row in rows if isinstance(row, dict)}
        items = []
        for index, ids, want in chunk.requests:
            parts: list[Completion] = []
            error: SteError | None = None
            for custom_id in ids:
                row = by_id.get(custom_id)
                try:
                    parts.append(self._line_result(row, custom_id, batch, latency_s))
                except ProviderError as exc:
                    error = exc
                    break
            if error is None:
                got = sum(len(p.texts) for p in parts)
                if got < want:
                    error = PermanentProviderError(
                        f"batch returned {got} of {want} choices for {ids[0]}: the server "
                        "ignores or caps `n`; set max_n = 1 in the backend options",
                        provider=self.provider,
                    )
            items.append(
                BatchItem(index=index, error=error)
                if error is not None
                else BatchItem(index=index, completion=merge(parts, want))
            )
        return items

    def _line_result(
        self, row: dict[str, Any] | None, custom_id: str, batch: Any, latency_s: float
    ) -> Completion:
        if row is None:
            raise TransientProviderError(
                f"request {custom_id} was not run: batch {batch.id} ended '{batch.status}'",
                provider=self.provider,
            )
        response = row.get("response")
        if row.get("error") and not (isinstance(response, dict) and response.get("body")):
            err = row["error"]
            message = server_message({"error": err}, fallback=str(err))
            code = err.get("code") if isinstance(err, dict) else None
            raise TransientProviderError(
                f"request {custom_id} in batch {batch.id}: {message} ({code})",
                provider=self.provider,
            )
        if not isinstance(response, dict):
            raise TransientProviderError(
                f"request {custom_id} in batch {batch.id}: line has no response",
                provider=self.provider,
            )
        status = int(response.get("status_code") or 0)
        request_id = response.get("request_id") or None
        body = response.get("body")
        if status != 200:
            raise error_for_status(
                status,
                server_message(body, fallback=f"HTTP {status}"),
                provider=self.provider,
                request_id=request_id,
                auth_hint=self.auth_hint,
            )
        return completion_from_body(
            body, provider=self.provider, request_id=request_id, latency_s=latency_s
        )


def total_cost(items: list[BatchItem]) -> float | None:
    """What the lines that ran cost (None when no line's price is known)."""
    costs = [i.completion.cost_usd for i in items if i.completion is not None]
    known = [c for c in costs if c is not None]
    return sum(known) if known else None


async def find_batch(client: Any, resource: Resource) -> Any | None:
    """The provider's batch of a ledger entry: by its id, else (the create call's answer was
    lost) the one created from its input file, looked for on every page of the batch list;
    None when there is none."""
    if resource.provider_id:
        try:
            return await client.batches.retrieve(resource.provider_id)
        except Exception as exc:
            if getattr(exc, "status_code", None) == 404:
                return None
            raise
    file_id = resource.detail.get("input_file_id")
    if not file_id:
        return None
    async for batch in client.batches.list(limit=100):  # the SDK's pager walks every page
        # Created after its entry was begun (with a minute for clock skew): an older batch of
        # the same file is not this entry's.
        if batch.input_file_id == file_id and batch.created_at >= resource.created - 60:
            return batch
    return None


async def cancel_batch(
    client: Any, resources: Resources, resource: Resource, batch_id: str
) -> bool:
    """Cancel the batch and end its ledger entry; False (a warning) when the cancel call failed:
    the entry stays open, for `ste cleanup` or the next session."""
    try:
        await client.batches.cancel(batch_id)
    except Exception as exc:
        if getattr(exc, "status_code", None) != 409:  # 409: it had ended already
            log.warning("could not cancel batch %s: %r", batch_id, exc)
            return False
    log.info("batch %s cancelled", batch_id)
    resources.end(resource, cost_usd=None)
    return True
