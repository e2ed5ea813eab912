"""A test backend that answers with a function, and the scheduler the stage tests run it on
(`from tests.core.stages.scripted import Scripted, _sched`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ste_core.backends import InferenceBackend, InferenceCapabilities
from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.records import ChatRequest, Completion, Usage

FAST = Limits(max_retries=1, backoff_initial_s=0.0, backoff_max_s=0.0)


class Scripted(InferenceBackend):
    """Answers with `answer(request) -> str | list[str] | Exception`."""

    name = "test"
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(max_n=None)

    def __init__(self, answer: Callable[[ChatRequest], Any], finish: str = "stop") -> None:
        super().__init__()
        self.answer, self.finish, self.seen = answer, finish, []

    async def complete(self, request: ChatRequest) -> Completion:
        self.seen.append(request)
        out = self.answer(request)
        if isinstance(out, Exception):
            raise out
        texts = tuple(out) if isinstance(out, list) else (out,) * request.params.n
        return Completion(
            texts=texts,
            finish_reasons=(self.finish,) * len(texts),
            usage=Usage(prompt_tokens=10, completion_tokens=4),
        )


def _sched(backend: InferenceBackend, concurrency: int = 16) -> Scheduler:
    return Scheduler(backend, limits=FAST.model_copy(update={"concurrency": concurrency}))
