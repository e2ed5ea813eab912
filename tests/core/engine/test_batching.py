"""Batcher: chunks cut the same way in every session, whatever the timing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from ste_core.backends import BatchItem, InferenceBackend, InferenceCapabilities
from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.engine.store import RunStore
from ste_core.records import ChatRequest, Completion


class ChunkRecorder(InferenceBackend):
    """A Batch API stand-in: records each chunk's requests; answers after a random delay."""

    capabilities = InferenceCapabilities(batch=True)
    name = "recorder"

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.chunks: list[list[str]] = []
        self.rng = random.Random(seed)

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion(texts=(f"answer to {request.messages[-1].content}",))

    async def complete_many(
        self, requests: list[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        self.chunks.append([r.messages[-1].content for r in requests])
        await asyncio.sleep(self.rng.uniform(0, 0.02))
        for i, r in enumerate(requests):
            yield BatchItem(index=i, completion=await self.complete(r))


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.of("m", [{"role": "user", "content": f"q{i}"}]) for i in range(n)]


async def slow_lookups(items: Iterable[ChatRequest]) -> AsyncIterator[ChatRequest]:
    """An input like the judge stage's (async), yielding to the loop between items."""
    for item in items:
        await asyncio.sleep(0)
        yield item


async def run(store: RunStore, backend: ChunkRecorder, reqs: list[ChatRequest], *, stream: bool):
    # No linger for a list: only the rule decides. A stream may be slow: the default linger.
    linger = 0.05 if stream else 0.0
    limits = Limits(batch_size=7, batch_linger_s=linger, max_batches_in_flight=2)
    scheduler = Scheduler(backend, limits=limits, store=store)
    source = slow_lookups(reqs) if stream else reqs
    return [o async for o in scheduler.run(source)]


async def test_a_resumed_run_cuts_the_unanswered_requests_into_the_same_chunks(
    tmp_path: Path,
) -> None:
    """Killed after some chunks were answered, a run sends the rest in the chunks the first
    session would have sent: a provider backend can find the batch it already paid for. The
    answers cached by the dead session are scattered through the input, the lookups interleave
    differently: only the rule decides, not the timing."""
    reqs = requests(60)
    for stream in (False, True):
        clean = ChunkRecorder(seed=1)
        await run(RunStore(tmp_path / f"clean{stream}.sqlite"), clean, reqs, stream=stream)
        assert sum(len(c) for c in clean.chunks) == 60, clean.chunks
        assert all(len(c) == 7 for c in clean.chunks[:-1]), (stream, [len(c) for c in clean.chunks])

        # What a session killed while chunks 3 and 4 ran leaves: chunks 1, 2 and 5 answered.
        store = RunStore(tmp_path / f"resumed{stream}.sqlite")
        answered = {q for c in (clean.chunks[0], clean.chunks[1], clean.chunks[4]) for q in c}
        facts = ChunkRecorder(seed=0).describe()
        for r in reqs:
            if r.messages[-1].content in answered:
                store.cache_put(RunStore.cache_key(facts, r), Completion(texts=("cached",)))
        resumed = ChunkRecorder(seed=2)
        outcomes = await run(store, resumed, reqs, stream=stream)
        assert all(o.status == "ok" for o in outcomes)
        left = [c for i, c in enumerate(clean.chunks) if i not in (0, 1, 4)]
        assert resumed.chunks[:2] == left[:2]  # the two chunks that were running: the same
        assert [q for c in resumed.chunks for q in c] == [q for c in left for q in c]
