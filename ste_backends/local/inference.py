"""LocalInference: chat completion with a Hugging Face model on this machine's CPU or GPU.

The core hands `complete_many` many requests at once; they are grouped by model, tokenised with
the model's chat template, expanded into one row per choice, sorted by length and run in batches
of `batch_size` rows. Each batch runs in a worker thread (`asyncio.to_thread`) so the event loop
stays responsive, and a request's completion is yielded as soon as its last row finishes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ste_backends.local.generation import RowResult, build_rows, plan_batches, run_batch
from ste_backends.local.models import DEVICE_LOCK, MODEL_CACHE, ModelCache
from ste_backends.local.options import LocalInferenceOptions
from ste_backends.local.requirements import ensure_installed
from ste_core.backends import BatchItem, InferenceBackend, InferenceCapabilities
from ste_core.errors import PermanentProviderError, SteError
from ste_core.records import ChatRequest, Completion, Usage

log = logging.getLogger("ste_backends.local")

EXTRA = "local"


@dataclass
class LocalStats:
    """Running totals of what this backend instance generated (read them after a stage)."""

    requests: int = 0
    rows: int = 0
    batches: int = 0
    prompt_tokens: int = 0  # prompt tokens processed (once per row: n choices prefill n times)
    completion_tokens: int = 0
    generation_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated (completion) tokens per second of generation time."""
        return self.completion_tokens / self.generation_seconds if self.generation_seconds else 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.generation_seconds if self.generation_seconds else 0.0


class LocalInference(InferenceBackend):
    """Chat completion with transformers on the local CPU/GPU; models load by hub id or path.

    Options: `LocalInferenceOptions` (`ste backends --options local` lists them).

    `request.model` is a hub id, a model directory, or a LoRA adapter directory (one holding
    `adapter_config.json`, as LocalFineTune writes): its base model loads with the adapter on top.
    """

    name: ClassVar[str] = "local"
    Options = LocalInferenceOptions
    options: LocalInferenceOptions
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers", "peft")
    extra: ClassVar[str | None] = EXTRA
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(
        max_n=None, batch=True, suggested_concurrency=64
    )

    def __init__(self, options: LocalInferenceOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        ensure_installed(self.name, EXTRA, self.requires)
        self.stats = LocalStats()
        self._cache: ModelCache = MODEL_CACHE
        self._device: str | None = None
        self._dtype: Any = None

    # -- InferenceBackend --------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """One request (a batch of one)."""
        async for item in self.complete_many([request]):
            if item.error is not None:
                raise item.error
            assert item.completion is not None
            return item.completion
        raise PermanentProviderError("no result for the request", provider="local")

    async def complete_many(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        """Run `requests` in length-sorted batches; yield each request's result when it is done.

        `concurrency` is ignored: the batch size (option `batch_size`) bounds the work at once.
        Errors are yielded per request. Stopping the iteration (or cancelling the task) stops the
        running batch at its next token.
        """
        requests = list(requests)
        cancel = threading.Event()
        groups: dict[str, list[tuple[int, ChatRequest]]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.model, []).append((index, request))
        try:
            for model_name, group in groups.items():
                async for item in self._run_group(model_name, group, cancel):
                    yield item
        finally:
            cancel.set()

    async def aclose(self) -> None:
        """Free the loaded model(s) (shared cache: another instance reloads on its next call)."""
        await asyncio.to_thread(self._cache.release)

    # -- internals -----------------------------------------------------------------------------

    async def _run_group(
        self, model_name: str, group: list[tuple[int, ChatRequest]], cancel: threading.Event
    ) -> AsyncIterator[BatchItem]:
        try:
            rows, errors, prompt_tokens = await asyncio.to_thread(self._prepare, model_name, group)
        except Exception as exc:  # cannot load or tokenise: every request of the group fails
            for index, _ in group:
                yield BatchItem(index=index, error=_as_ste_error(exc, model_name))
            return
        for index, err in errors.items():
            yield BatchItem(index=index, error=err)

        by_index = dict(group)
        done: dict[int, dict[int, RowResult]] = {i: {} for i in prompt_tokens}
        latency: dict[int, float] = dict.fromkeys(prompt_tokens, 0.0)
        failed: set[int] = set()
        for batch in plan_batches(rows, self.options.batch_size):
            batch = [r for r in batch if r.request_index not in failed]
            if not batch:
                continue
            started = time.perf_counter()
            error: SteError | None = None
            results: list[RowResult] = []
            try:
                results = await asyncio.to_thread(self._generate, model_name, batch, cancel)
            except Exception as exc:
                error = _as_ste_error(exc, model_name)
            elapsed = time.perf_counter() - started
            if error is not None:
                for index in sorted({r.request_index for r in batch}):
                    failed.add(index)
                    yield BatchItem(index=index, error=error)
                continue
            self._record(batch, results, elapsed)
            for result in results:
                done[result.request_index][result.choice] = result
            for index in sorted({r.request_index for r in batch}):
                latency[index] += elapsed
                request = by_index[index]
                if len(done[index]) == request.params.n:
                    yield BatchItem(
                        index=index,
                        completion=self._completion(
                            request, done.pop(index), prompt_tokens[index], latency[index]
                        ),
                    )

    def _resolve(self) -> tuple[str, Any]:
        if self._device is None:
            from ste_backends.local.devices import resolve_device, resolve_dtype

            self._device = resolve_device(self.options.device)
            self._dtype = resolve_dtype(self.options.dtype, self._device)
        return self._device, self._dtype

    def _load(self, model_name: str) -> Any:
        device, dtype = self._resolve()
        return self._cache.get(
            model_name,
            device=device,
            dtype=dtype,
            trust_remote_code=self.options.trust_remote_code,
            local_files_only=self.options.local_files_only,
        )

    def _prepare(
        self, model_name: str, group: list[tuple[int, ChatRequest]]
    ) -> tuple[list[Any], dict[int, SteError], dict[int, int]]:
        with DEVICE_LOCK:
            return build_rows(self._load(model_name), group)

    def _generate(
        self, model_name: str, batch: list[Any], cancel: threading.Event
    ) -> list[RowResult]:
        # The lock spans lookup and generation so another thread cannot evict the model between.
        with DEVICE_LOCK:
            return run_batch(
                self._load(model_name),
                batch,
                repetition_penalty=self.options.repetition_penalty,
                cancel=cancel,
            )

    def _record(self, batch: list[Any], results: list[RowResult], elapsed: float) -> None:
        self.stats.batches += 1
        self.stats.rows += len(batch)
        self.stats.prompt_tokens += sum(len(r.prompt_ids) for r in batch)
        new_tokens = sum(r.completion_tokens for r in results)
        self.stats.completion_tokens += new_tokens
        self.stats.generation_seconds += elapsed
        log.debug(
            "batch of %d rows: %d new tokens in %.2fs (%.1f tok/s)",
            len(batch),
            new_tokens,
            elapsed,
            new_tokens / elapsed if elapsed else 0.0,
        )

    def _completion(
        self,
        request: ChatRequest,
        results: dict[int, RowResult],
        prompt_tokens: int,
        latency: float,
    ) -> Completion:
        ordered = [results[c] for c in range(request.params.n)]
        self.stats.requests += 1
        return Completion(
            texts=tuple(r.text for r in ordered),
            finish_reasons=tuple(r.finish_reason for r in ordered),
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=sum(r.completion_tokens for r in ordered),
            ),
            request_id=f"local-{uuid.uuid4().hex[:16]}",
            model=request.model,
            latency_s=latency,
            cost_usd=0.0,
        )


def _as_ste_error(exc: Exception, model_name: str) -> SteError:
    """A SteError as it is; anything else (a torch/transformers failure) as a permanent error."""
    if isinstance(exc, SteError):
        return exc
    log.error("local generation with %s failed", model_name, exc_info=exc)
    return PermanentProviderError(
        f"local generation with {model_name} failed: {type(exc).__name__}: {exc}",
        provider="local",
    )
