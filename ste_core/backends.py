"""The two interfaces the core talks to: InferenceBackend and FineTuneBackend.

A backend is a class registered by a plugin (see `ste_core.plugins`). Its constructor takes the
options from the config's backend section as keyword arguments. Backends must import their
provider SDK lazily (inside `__init__` or methods, never at module import), so listing backends
or showing `ste --help` never pays for torch or litellm; the host checks `requires` before
constructing one and names the pip extra when something is missing.

Capabilities are declared, not guessed: the core reads them to decide how to call a backend
(e.g. it repeats a request n times when `max_n` is 1).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ste_core.errors import SteError
from ste_core.records import (
    ChatRequest,
    Completion,
    DPOExample,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    ModelRef,
    SFTExample,
)


class InferenceCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_n: int | None = Field(
        None, description="Most choices one request may ask for; None = no limit, 1 = no n>1."
    )
    batch: bool = Field(
        False,
        description="complete_many does real batching (a local GPU batch or a provider Batch API)",
    )
    supports_seed: bool = True
    suggested_concurrency: int = Field(16, ge=1)


class FineTuneCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    methods: frozenset[FineTuneMethod] = frozenset({FineTuneMethod.SFT})
    continue_from_previous: bool = Field(
        False, description="can start a job from an earlier fine-tuned model (init_from=previous)"
    )
    lora: bool = True
    full: bool = False


class BatchItem(BaseModel):
    """One answer from `complete_many`: the index of its request and a completion or an error."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    index: int
    completion: Completion | None = None
    error: SteError | None = None


class _Backend:
    """What both kinds share: a name, the extra that installs their dependencies, and `requires`."""

    #: Name the backend is registered under (set by the plugin host on registration).
    name: ClassVar[str] = ""
    #: Importable modules the backend needs; checked before construction.
    requires: ClassVar[tuple[str, ...]] = ()
    #: The pip extra that installs `requires`, named in the error when something is missing.
    extra: ClassVar[str | None] = None

    def describe(self) -> dict[str, Any]:
        """Provider-identifying facts that enter cache keys and the manifest (never secrets)."""
        return {"backend": self.name}

    async def aclose(self) -> None:
        """Release clients, connections or GPU memory."""

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class InferenceBackend(_Backend, ABC):
    """Async chat completion."""

    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities()

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """Run one request; raise a `ste_core.errors` type on failure, never return partial junk."""

    async def complete_many(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        """Run many requests; yield results as they finish, in any order.

        The default is bounded-concurrency calls to `complete`; backends with real batching (a local
        model on a GPU, a provider Batch API) override it. Errors are yielded per item, not raised,
        so one failure does not lose the rest.
        """
        limit = asyncio.Semaphore(concurrency or self.capabilities.suggested_concurrency)

        async def one(i: int, req: ChatRequest) -> BatchItem:
            async with limit:
                try:
                    return BatchItem(index=i, completion=await self.complete(req))
                except SteError as exc:
                    return BatchItem(index=i, error=exc)

        tasks = [asyncio.ensure_future(one(i, r)) for i, r in enumerate(requests)]
        try:
            for fut in asyncio.as_completed(tasks):
                yield await fut
        finally:
            for t in tasks:
                t.cancel()


class FineTuneBackend(_Backend, ABC):
    """Train a judge from SFT/DPO examples and make the result callable."""

    capabilities: ClassVar[FineTuneCapabilities] = FineTuneCapabilities()

    @abstractmethod
    def write_training_file(
        self,
        examples: Iterable[SFTExample] | Iterable[DPOExample],
        method: FineTuneMethod,
        path: Path,
    ) -> int:
        """Write examples to `path` in the provider's own format; return how many were written."""

    async def estimate_cost(self, spec: FineTuneSpec, training_file: Path) -> float | None:
        """USD the job is expected to cost, or None when the provider gives no estimate."""
        return None

    @abstractmethod
    async def submit(
        self, spec: FineTuneSpec, training_file: Path, validation_file: Path | None = None
    ) -> FineTuneJobState:
        """Upload what is needed and start the job; return its first state (with the job id)."""

    @abstractmethod
    async def poll(self, job_id: str) -> FineTuneJobState:
        """Current state; `events` holds the provider's log lines, `model` is set on success."""

    async def find_job(self, spec: FineTuneSpec, *, created_after: datetime) -> str | None:
        """The id of a job for `spec` that the provider created at or after `created_after`.

        Called when a run was killed inside `submit`: the provider may have created the job
        although its id never reached the run store. Finding it lets the resumed run re-attach
        instead of paying for a second job. Return None when there is no such job, or when the
        provider cannot list jobs (the default): the run then submits again, with a warning.
        """
        return None

    @abstractmethod
    async def cancel(self, job_id: str) -> FineTuneJobState:
        """Ask the provider to stop the job."""

    def serve(self, model: ModelRef) -> contextlib.AbstractAsyncContextManager[ModelRef]:
        """Make `model` callable for inference for the duration of the `async with` block.

        Returns the reference to use for inference (e.g. a dedicated endpoint's name). Whatever it
        set up is torn down on exit, including on error and cancellation. The default assumes the
        model is callable as it is.
        """
        return _already_served(model)


@contextlib.asynccontextmanager
async def _already_served(model: ModelRef) -> AsyncIterator[ModelRef]:
    yield model
