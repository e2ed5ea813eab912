"""Throughput of ste's call machinery against the local fake provider (a script, not a test).

Part 1, pipeline throughput at 100 ms provider latency: the same calls made
  (a) the way the first implementation did: one instruction after another, one blocking SDK call
      at a time (baseline response, worse response, one judge call with n=3 for the instruction),
  (b) through ste's Scheduler (via the `openai` backend, stage by stage, concurrency 32, with a
      run store so every answer is cached as it arrives).
  Both make identical requests (same messages, params and seeds), so they get identical answers.
  The sequential loop is linear in the number of calls by construction (each call waits the
  latency), so by default it runs on a sample of instructions and is extrapolated to all of them;
  `--full` runs it on every instruction.

Part 2, per-request overhead at zero latency: the same N plain chat calls through
  (a) bare `asyncio.gather` over the `openai` SDK async client under a semaphore of 32,
  (b) the Scheduler over the `openai` backend, concurrency 32, no store,
  (c) the same with a run store (one SQLite commit per answer).
  The ratio (b)/(a) is the Scheduler's overhead factor (target <= 1.5).

The fake provider runs in a subprocess (its own interpreter, as a real server would be).

    /work/venv/bin/python benchmarks/throughput.py [--instructions 500] [--full] [--write-readme]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fake_server import fake_server

from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.engine.store import RunStore
from ste_core.records import ChatRequest, Completion, Usage

ROOT = Path(__file__).resolve().parent
MODEL = "fake-acc70"
GEN_PARAMS: dict[str, Any] = {"temperature": 0.7, "max_tokens": 512}
JUDGE_PARAMS: dict[str, Any] = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 1024, "n": 3}

TOPICS = [
    "photosynthesis",
    "compound interest",
    "binary search",
    "the French revolution",
    "plate tectonics",
    "vaccines",
    "sorting algorithms",
    "supply and demand",
    "black holes",
    "climate models",
    "the immune system",
    "neural networks",
    "tax brackets",
    "volcanoes",
    "public key cryptography",
    "the water cycle",
    "inflation",
    "DNA replication",
]
VERBS = [
    "Explain",
    "Summarise the key ideas of",
    "Give three examples illustrating",
    "Compare two common misconceptions about",
    "Write a short study guide on",
]


def instructions(count: int) -> list[str]:
    out = []
    for i in range(count):
        verb, topic = VERBS[i % len(VERBS)], TOPICS[(i // len(VERBS)) % len(TOPICS)]
        out.append(f"{verb} {topic} (variant {i}) for a curious high-school student.")
    return out


# -- the fake provider in a subprocess ----------------------------------------------------------


#: the ste backend the Scheduler rows go through (`--backend`)
BACKEND = "openai"
TOGETHER_ROUTES = "ste_backends.together.fake:register_routes"


@contextlib.contextmanager
def fake_provider(latency: float) -> Iterator[str]:
    """The fake's OpenAI-compatible base URL (with /v1); with Together's routes when the
    Scheduler rows go through the together backend (Together's own response shape)."""
    routes = TOGETHER_ROUTES if BACKEND == "together" else None
    with fake_server(latency, routes) as (url, _pid):
        yield url + "/v1"


# -- backends -----------------------------------------------------------------------------------


def make_backend(base_url: str) -> tuple[Any, str]:
    """The `openai` (or, with --backend together, `together`) backend through the plugin host if
    it loads, else a minimal in-file one."""
    try:
        from ste_core import get_inference_backend

        if BACKEND == "together":
            root = base_url.removesuffix("/v1")
            return (
                get_inference_backend(
                    "together", base_url=root, api_key="bench", price_lookup=False, timeout_s=60
                ),
                "ste `together` backend (ste_backends.together, loaded through the `ste` entry "
                "point)",
            )

        return (
            get_inference_backend("openai", base_url=base_url, api_key="bench", timeout=60),
            "ste `openai` backend (ste_backends.openai, loaded through the `ste` entry point)",
        )
    except Exception as exc:
        return MinimalHTTPBackend(base_url), f"in-file minimal httpx backend ({exc!r})"


class MinimalHTTPBackend:
    """Fallback when ste_backends.openai is unavailable: a bare httpx OpenAI-wire backend."""

    name = "minimal-http"

    def __init__(self, base_url: str) -> None:
        from ste_core.backends import InferenceCapabilities

        self.base_url = base_url
        self.capabilities = InferenceCapabilities()
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "base_url": self.base_url}

    async def complete(self, request: ChatRequest) -> Completion:
        import httpx

        from ste_core.errors import RateLimitError, TransientProviderError

        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url, timeout=60, limits=httpx.Limits(max_connections=256)
            )
        body = {
            "model": request.model,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": request.params.temperature,
            "top_p": request.params.top_p,
            "max_tokens": request.params.max_tokens,
            "n": request.params.n,
            "seed": request.params.seed,
        }
        r = await self._client.post("/chat/completions", json=body)
        if r.status_code == 429:
            raise RateLimitError("429", retry_after=float(r.headers.get("retry-after", 1)))
        if r.status_code >= 500:
            raise TransientProviderError(str(r.status_code))
        data = r.json()
        u = data["usage"]
        return Completion(
            texts=tuple(c["message"]["content"] for c in data["choices"]),
            finish_reasons=tuple(c["finish_reason"] for c in data["choices"]),
            usage=Usage(prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"]),
            request_id=r.headers.get("x-request-id"),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


# -- part 1: pipeline throughput --------------------------------------------------------------


def baseline_request(instruction: str, seed: int) -> ChatRequest:
    return ChatRequest.of(
        MODEL, [{"role": "user", "content": instruction}], seed=seed, **GEN_PARAMS
    )


def worse_request(instruction: str, baseline: str, seed: int) -> ChatRequest:
    from ste_prompts import get_template

    msgs = get_template("worse_response").render(
        instruction=instruction, baseline_response=baseline
    )
    return ChatRequest.of(MODEL, msgs, seed=seed, **GEN_PARAMS)


def judge_request(instruction: str, a: str, b: str, seed: int) -> ChatRequest:
    from ste_prompts import get_template

    msgs = get_template("judge_eval_plan").render(
        instruction=instruction, response_a=a, response_b=b
    )
    return ChatRequest.of(MODEL, msgs, seed=seed, **JUDGE_PARAMS)


def worse_text(text: str, instruction: str) -> str | None:
    from ste_prompts import parse_worse_response

    parsed = parse_worse_response(text, instruction=instruction)
    return parsed.response if parsed.ok else None


def sdk_kwargs(req: ChatRequest) -> dict[str, Any]:
    p = req.params
    return {
        "model": req.model,
        "messages": [m.model_dump() for m in req.messages],
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "n": p.n,
        "seed": p.seed,
    }


def sequential(base_url: str, items: list[str]) -> tuple[float, int, int]:
    """The first implementation's shape: per instruction, one blocking call after another."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    calls = judged = 0
    started = time.perf_counter()
    for i, instruction in enumerate(items):
        base = client.chat.completions.create(**sdk_kwargs(baseline_request(instruction, i)))
        baseline = base.choices[0].message.content or ""
        w = client.chat.completions.create(**sdk_kwargs(worse_request(instruction, baseline, i)))
        calls += 2
        worse = worse_text(w.choices[0].message.content or "", instruction)
        if worse is None:
            continue  # unparsable: no pair (the seed reused the baseline here; we do not)
        client.chat.completions.create(**sdk_kwargs(judge_request(instruction, baseline, worse, i)))
        calls += 1
        judged += 1
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, calls, judged


async def scheduled(base_url: str, items: list[str], concurrency: int) -> tuple[float, int, int]:
    """The same calls, stage by stage, through one Scheduler (with a run store)."""
    backend, _ = make_backend(base_url)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "store.sqlite")
        s = Scheduler(backend, limits=Limits(concurrency=concurrency), store=store)
        started = time.perf_counter()
        baselines: dict[int, str] = {}
        async for o in s.run((baseline_request(x, i) for i, x in enumerate(items)), label="base"):
            if o.ok:
                baselines[o.index] = o.texts[0]
        marks = [time.perf_counter()]
        worse_reqs = (worse_request(items[i], baselines[i], i) for i in sorted(baselines))
        order = sorted(baselines)
        worse: dict[int, str] = {}
        async for o in s.run(worse_reqs, label="worse"):
            i = order[o.index]
            text = worse_text(o.texts[0], items[i]) if o.ok else None
            if text is not None:
                worse[i] = text
        marks.append(time.perf_counter())
        judge_reqs = (judge_request(items[i], baselines[i], worse[i], i) for i in sorted(worse))
        judged = 0
        async for o in s.run(judge_reqs, label="judge"):
            judged += o.ok
        elapsed = time.perf_counter() - started
        marks.append(time.perf_counter())
        stages = [b - a for a, b in zip([started, *marks], marks, strict=False)]
        print(
            "  scheduler stages (baseline, worse, judge): "
            + ", ".join(f"{t:.2f} s" for t in stages)
        )
        errors = s.stats.api_errors
        calls = s.stats.requests
        store.close()
    await backend.aclose()
    if errors:
        print(f"  warning: {errors} api_error outcomes in the scheduled run")
    return elapsed, calls, judged


async def streamed(base_url: str, items: list[str], concurrency: int) -> tuple[float, int, int]:
    """The same calls with the stages overlapped: each worse request is sent as soon as its
    baseline arrives, each judge call as soon as its worse response does. One Scheduler, so the
    three `run()` streams share one concurrency limit."""
    backend, _ = make_backend(base_url)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "store.sqlite")
        s = Scheduler(backend, limits=Limits(concurrency=concurrency), store=store)
        to_worse: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        to_judge: asyncio.Queue[tuple[int, str, str] | None] = asyncio.Queue()
        judged = 0

        async def drain(queue: asyncio.Queue[Any], make: Any) -> Any:
            while (item := await queue.get()) is not None:
                yield make(*item)

        async def baseline_stage() -> None:
            async for o in s.run(baseline_request(x, i) for i, x in enumerate(items)):
                if o.ok:
                    to_worse.put_nowait((o.index, o.texts[0]))
            to_worse.put_nowait(None)

        async def worse_stage() -> None:
            def make(i: int, baseline: str) -> ChatRequest:
                r = worse_request(items[i], baseline, i)
                return r.model_copy(update={"metadata": {"i": i, "baseline": baseline}})

            async for o in s.run(drain(to_worse, make)):
                i, baseline = o.request.metadata["i"], o.request.metadata["baseline"]
                text = worse_text(o.texts[0], items[i]) if o.ok else None
                if text is not None:
                    to_judge.put_nowait((i, baseline, text))
            to_judge.put_nowait(None)

        async def judge_stage() -> None:
            nonlocal judged
            make = lambda i, a, b: judge_request(items[i], a, b, i)  # noqa: E731
            async for o in s.run(drain(to_judge, make)):
                judged += o.ok

        started = time.perf_counter()
        await asyncio.gather(baseline_stage(), worse_stage(), judge_stage())
        elapsed = time.perf_counter() - started
        calls = s.stats.requests
        store.close()
    await backend.aclose()
    return elapsed, calls, judged


# -- part 2: per-request overhead -------------------------------------------------------------


def plain_requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest.of(
            MODEL,
            [{"role": "user", "content": f"Say something about item {i}."}],
            max_tokens=64,
            seed=i,
        )
        for i in range(n)
    ]


async def bare_gather(base_url: str, reqs: list[ChatRequest], concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(r: ChatRequest) -> Any:
        async with sem:
            return await client.chat.completions.create(**sdk_kwargs(r))

    started = time.perf_counter()
    await asyncio.gather(*(one(r) for r in reqs))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def via_scheduler(
    base_url: str, reqs: list[ChatRequest], concurrency: int, with_store: bool
) -> float:
    backend, _ = make_backend(base_url)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "s.sqlite") if with_store else None
        s = Scheduler(backend, limits=Limits(concurrency=concurrency), store=store)
        started = time.perf_counter()
        n_ok = 0
        async for o in s.run(reqs):
            n_ok += o.ok
        elapsed = time.perf_counter() - started
        if store is not None:
            store.close()
    await backend.aclose()
    assert n_ok == len(reqs), f"{len(reqs) - n_ok} requests failed"
    return elapsed


# -- main ---------------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--instructions", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--sequential-sample",
        type=int,
        default=100,
        help="instructions the sequential loop runs on (extrapolated)",
    )
    ap.add_argument("--full", action="store_true", help="run the sequential loop on all")
    ap.add_argument("--overhead-requests", type=int, default=1500)
    ap.add_argument("--write-readme", action="store_true", help="write benchmarks/README.md")
    ap.add_argument(
        "--backend",
        choices=("openai", "together"),
        default="openai",
        help="the ste backend of the Scheduler rows (the bare rows use the openai SDK)",
    )
    args = ap.parse_args()
    global BACKEND
    BACKEND = args.backend

    command = "python benchmarks/throughput.py " + shlex.join(sys.argv[1:])
    print(f"machine: {machine()}")
    print(f"command: {command.strip()}")
    items = instructions(args.instructions)

    rows: list[tuple[str, str]] = []
    with fake_provider(args.latency) as url:
        _, backend_name = make_backend(url)
        print(f"backend: {backend_name}")
        print(
            f"\n[1] pipeline calls, {args.instructions} instructions, "
            f"{args.latency * 1000:.0f} ms latency"
        )
        sched_s, sched_calls, sched_judged = asyncio.run(scheduled(url, items, args.concurrency))
        print(
            f"  scheduler (concurrency {args.concurrency}): {sched_s:.2f} s for "
            f"{sched_calls} calls ({sched_judged} judged pairs)"
        )
        limit = args.concurrency / args.latency
        rate = sched_calls / sched_s
        print(
            f"  {rate:.0f} requests/s against a limit of {limit:.0f} (concurrency / latency): "
            f"{rate / limit:.2f}x (target >= 0.8x); peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
        stream_s, stream_calls, _ = asyncio.run(streamed(url, items, args.concurrency))
        print(f"  scheduler, stages overlapped: {stream_s:.2f} s for {stream_calls} calls")
        bound = 3 * math.ceil(len(items) / args.concurrency) * args.latency
        print(f"  (latency bound of stage-by-stage at this concurrency: {bound:.1f} s)")
        sample = items if args.full else items[: args.sequential_sample]
        seq_s, seq_calls, _ = sequential(url, sample)
        per_instr = seq_s / len(sample)
        seq_total = seq_s if args.full else per_instr * len(items)
        how = (
            "measured"
            if args.full
            else (
                f"measured on {len(sample)} instructions ({seq_s:.1f} s, {seq_calls} calls), "
                f"extrapolated"
            )
        )
        print(f"  sequential loop: {seq_total:.1f} s ({how})")
        speedup = seq_total / sched_s
        print(f"  speed-up: {speedup:.1f}x (target >= 25x)")
        rows += [
            ("Pipeline calls (baseline + worse + judge n=3), instructions", str(len(items))),
            ("Calls made by the Scheduler run", str(sched_calls)),
            (f"Scheduler, concurrency {args.concurrency}, with run store", f"{sched_s:.2f} s"),
            ("Sequential loop (first implementation's shape)", f"{seq_total:.1f} s ({how})"),
            ("**Speed-up**", f"**{speedup:.1f}x** (target >= 25x)"),
            (
                "Scheduler, stages overlapped (worse/judge sent as inputs arrive)",
                f"{stream_s:.2f} s, speed-up {seq_total / stream_s:.1f}x",
            ),
            (
                "Latency bound, stage by stage: 3 x ceil(n / concurrency) x latency",
                f"{bound:.1f} s",
            ),
        ]

    with fake_provider(0.0) as url:
        reqs = plain_requests(args.overhead_requests)
        n = len(reqs)
        print(
            f"\n[2] per-request overhead, {n} calls, zero latency, concurrency "
            f"{args.concurrency} (best of 2 runs each)"
        )
        asyncio.run(bare_gather(url, reqs[:100], args.concurrency))  # warm up server and imports
        bare = min(asyncio.run(bare_gather(url, reqs, args.concurrency)) for _ in range(2))
        sched = min(
            asyncio.run(via_scheduler(url, reqs, args.concurrency, False)) for _ in range(2)
        )
        stored = min(
            asyncio.run(via_scheduler(url, reqs, args.concurrency, True)) for _ in range(2)
        )
        for label, t in (
            ("bare asyncio.gather + SDK", bare),
            ("Scheduler (no store)", sched),
            ("Scheduler + run store", stored),
        ):
            print(f"  {label:28s} {t:6.2f} s  {t / n * 1000:6.2f} ms/request")
        ratio = sched / bare
        print(
            f"  overhead factor Scheduler / bare gather: {ratio:.2f}x (target <= 1.5x); "
            f"with store: {stored / bare:.2f}x"
        )
        rows += [
            (
                f"Zero latency, {n} calls: bare `asyncio.gather` over the SDK",
                f"{bare:.2f} s ({bare / n * 1000:.2f} ms/request)",
            ),
            (
                "Same calls through the Scheduler (no store)",
                f"{sched:.2f} s ({sched / n * 1000:.2f} ms/request)",
            ),
            (
                "Same calls through the Scheduler + run store",
                f"{stored:.2f} s ({stored / n * 1000:.2f} ms/request)",
            ),
            (
                "**Overhead factor** Scheduler / bare",
                f"**{ratio:.2f}x** (target <= 1.5x); with store {stored / bare:.2f}x",
            ),
        ]

    if args.write_readme:
        write_readme(rows, command.strip(), backend_name)
        print(f"\nwrote {ROOT / 'README.md'}")
    return 0


def write_readme(rows: list[tuple[str, str]], command: str, backend: str) -> None:
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    text = f"""# Benchmarks

Scripts that print figures (not tests). Run them from the repository root with the project's
venv; each starts its own fake provider (`python -m ste_core.testing.fake_provider`) in a
subprocess on 127.0.0.1 and stops it when done. No network, no key.

## throughput.py

What it measures (details in the script's docstring):

1. **Pipeline throughput at 100 ms latency.** For each instruction: a baseline response, a worse
   response (the `worse_response` template) and one judge call with n=3 (`judge_eval_plan`),
   skipping the judge when the worse response is unparsable (the fake makes ~10 % of them
   unparsable). Once as the first implementation did it (a sequential loop of blocking SDK
   calls), once through ste's `Scheduler` stage by stage (concurrency 32, run store on). The
   requests are identical in both. The sequential loop's time is linear in the number of calls
   (each waits the latency), so by default it runs on a sample and is extrapolated; `--full`
   measures it on every instruction (about 2.5 minutes more). A third run overlaps the stages
   (each worse request is sent as soon as its baseline arrives) to show what the stage barriers
   cost.
2. **Per-request overhead at zero latency.** The same plain calls through bare `asyncio.gather`
   over the `openai` SDK async client (semaphore of 32) and through the Scheduler (concurrency 32)
   over the `openai` backend, with and without the run store. Best of two runs each. With zero
   latency both are bound by the fake server and the client's CPU on the same machine, so the
   ratio is the Scheduler's added cost.

Backend used: {backend}.

### Results

Measured {dt.date.today().isoformat()} on {machine()}.

```
{command}
```

| measurement | result |
|---|---|
{table}

Reading the figures:

- The stage-by-stage time is bounded below by the latency bound (each stage waits for its
  slowest round); the remaining gap is client CPU: at 32 requests in flight and 100 ms latency
  the client must sustain ~320 requests/s, and a profile shows the `openai` SDK's request
  building (`_async_transform_recursive` over the messages) alone costs about 1.6 ms of CPU per
  call on this machine. The Scheduler's own share (cache key, SQLite read and commit, pydantic
  records) is a small part of that (see the zero-latency rows).
- "Stages overlapped" uses the same Scheduler with async-iterable inputs fed by the previous
  stage's outcomes (what `Scheduler.run` supports). It removes the stage barriers, but while
  the client is CPU-bound it gains little (between -4 % and +13 % in our runs).
- At zero latency the Scheduler can come out *faster* than the bare `asyncio.gather`: gather
  creates all N coroutines and SDK requests up front, the Scheduler keeps a window of
  2 x concurrency, which costs the event loop less. Treat ratios near 1 as "no measurable
  overhead", not as a speed-up.
- The machine is shared (2 cores, other processes running), so absolute times vary by
  10-20 % between runs; the fake provider's own CPU use competes with the client.
"""
    (ROOT / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
