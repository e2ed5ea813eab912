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
that chunk the same error item, and a batch still running is cancelled. If the consumer stops
(cancellation, Ctrl-C), batches still running are cancelled at the provider so they stop costing.
"""

from __future__ import annotations

import asyncio
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
from ste_core.records import ChatRequest, Completion

log = logging.getLogger("ste.backends.openai.batch")

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: The Batch API caps input files at 200 MB; stay under it with room for the multipart framing.
MAX_FILE_BYTES = 190 * 1024 * 1024


@dataclass
class BatchSettings:
    poll_interval: float = 30.0
    max_requests: int = 50_000
    completion_window: str = "24h"
    metadata: dict[str, str] = field(default_factory=dict)
    max_n: int | None = None


@dataclass
class _Chunk:
    model: str
    # (request index, custom_ids of its parts, n asked in total)
    requests: list[tuple[int, list[str], int]] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


async def run_batches(
    get_client: Callable[[], Any],
    requests: Sequence[ChatRequest],
    *,
    body_for: Callable[[ChatRequest], dict[str, Any]],
    provider: str,
    auth_hint: str,
    settings: BatchSettings,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[BatchItem]:
    """Run `requests` through the Batch API; yield one BatchItem per request as chunks finish."""
    chunks = _plan(requests, body_for=body_for, settings=settings)
    runner = _Runner(get_client, provider, auth_hint, settings, sleep)
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
            or len(chunks[-1].lines) + len(lines) > settings.max_requests
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
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.get_client, self.provider, self.auth_hint = get_client, provider, auth_hint
        self.settings, self.sleep = settings, sleep
        self.retry = RetryPolicy.polling(settings.poll_interval)

    def _map(self, exc: BaseException) -> SteError:
        mapped = map_sdk_error(exc, provider=self.provider, auth_hint=self.auth_hint)
        if mapped is None:
            raise exc
        return mapped

    async def run(self, chunk: _Chunk) -> list[BatchItem]:
        """Submit one chunk and wait for it; never raises a provider error (items carry them)."""
        started = time.monotonic()
        client = self.get_client()
        try:
            upload = await client.files.create(
                file=(
                    f"ste-batch-{chunk.model.replace('/', '_')}.jsonl",
                    b"".join(chunk.lines),
                    "application/jsonl",
                ),
                purpose="batch",
            )
            batch = await client.batches.create(
                input_file_id=upload.id,
                endpoint=ENDPOINT,
                completion_window=self.settings.completion_window,
                metadata={"source": "ste", **self.settings.metadata},
            )
        except Exception as exc:
            return self._all_failed(chunk, self._map(exc))
        log.info("batch %s submitted: %d lines for %s", batch.id, len(chunk.lines), chunk.model)
        try:
            batch = await self._wait(batch)
        except asyncio.CancelledError:
            await self._cancel_quietly(batch.id)
            raise
        except Exception as exc:
            await self._cancel_quietly(batch.id)
            return self._all_failed(chunk, self._map(exc))
        if batch.status == "failed":
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
        return self._assemble(chunk, batch, lines, latency_s=time.monotonic() - started)

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

    async def _cancel_quietly(self, batch_id: str) -> None:
        """Best effort: a cancelled run should not leave a batch running up a bill."""
        try:
            await asyncio.shield(self.get_client().batches.cancel(batch_id))
            log.info("batch %s cancelled", batch_id)
        except BaseException as exc:
            log.warning("could not cancel batch %s: %r", batch_id, exc)

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
