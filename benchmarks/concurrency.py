"""Throughput at high concurrency and second-long latency (a script, not a test).

Issue 13's second setting: concurrency 256, 1 s provider latency, N chat requests (default
2,000). The physical limit is concurrency / latency = 256 requests/s. Measured side by side in
one invocation, each against its own fake provider in a subprocess (the Together routes for the
`together` rows, the plain OpenAI-compatible fake for the `openai` rows):

- ste: a `Scheduler` (concurrency 256, no store) over the `together` / `openai` backend, with
  each HTTP transport (`http_transport` = aiohttp, the default, and httpx);
- bare: `asyncio.gather` under a semaphore of 256 over the SDK's async client, once with the
  SDK's default client (httpx, pool of 100 / 20 kept alive) and once with its
  `DefaultAioHttpClient` and a pool of 256.

For each: requests/s, the ratio to the limit, client CPU seconds, the fake's CPU seconds (to
show it is not the bottleneck), and the peak RSS of this process so far.

    python benchmarks/concurrency.py [--requests 2000] [--concurrency 256] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fake_server import fake_server

from ste_core import get_inference_backend
from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.records import ChatRequest

MODEL = "fake-acc70"
TOGETHER_ROUTES = "ste_backends.together.fake:register_routes"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest.of(
            MODEL,
            [{"role": "user", "content": f"Explain item {i} in one sentence."}],
            max_tokens=64,
            temperature=0.7,
            seed=i,
        )
        for i in range(n)
    ]


async def through_ste(backend_name: str, options: dict[str, Any], reqs: list[ChatRequest], c: int):
    backend = get_inference_backend(backend_name, **options)
    scheduler = Scheduler(backend, limits=Limits(concurrency=c, max_retries=0, timeout_s=60))
    try:
        outcomes = [o async for o in scheduler.run(reqs)]
    finally:
        await backend.aclose()
    return sum(o.status == "ok" for o in outcomes)


async def bare(
    make: Callable[[], Any], call: Callable[[Any, ChatRequest], Awaitable[Any]], reqs, c
):
    client = make()
    limit = asyncio.Semaphore(c)

    async def one(r: ChatRequest) -> bool:
        async with limit:
            try:
                await call(client, r)
                return True
            except Exception:
                return False

    try:
        return sum(await asyncio.gather(*(one(r) for r in reqs)))
    finally:
        await client.close()


def body(r: ChatRequest) -> dict[str, Any]:
    return {
        "model": r.model,
        "messages": [m.model_dump() for m in r.messages],
        "max_tokens": r.params.max_tokens,
        "temperature": r.params.temperature,
        "seed": r.params.seed,
    }


def together_client(base: str, aio: bool, c: int) -> Callable[[], Any]:
    def make() -> Any:
        import httpx
        import together

        kwargs: dict[str, Any] = {"api_key": "bench", "base_url": base, "max_retries": 0}
        if aio:
            pool = httpx.Limits(max_connections=c, max_keepalive_connections=c)
            kwargs["http_client"] = together.DefaultAioHttpClient(limits=pool)
        return together.AsyncTogether(**kwargs)

    return make


def openai_client(base: str, aio: bool, c: int) -> Callable[[], Any]:
    def make() -> Any:
        import openai
        from openai._base_client import httpx2

        kwargs: dict[str, Any] = {"api_key": "bench", "base_url": base, "max_retries": 0}
        if aio:
            pool = httpx2.Limits(max_connections=c, max_keepalive_connections=c)
            kwargs["http_client"] = openai.DefaultAioHttpClient(limits=pool)
        return openai.AsyncOpenAI(**kwargs)

    return make


async def chat(client: Any, r: ChatRequest) -> Any:
    return await client.chat.completions.create(**body(r))


def measure(label: str, run: Callable[[], Awaitable[int]], fake_pid: int, n: int, limit: float):
    fake_before, cpu_before = cpu_seconds(fake_pid), own_cpu()
    started = time.perf_counter()
    ok = asyncio.run(run())
    seconds = time.perf_counter() - started
    rate = n / seconds
    return {
        "label": label,
        "ok": ok,
        "rate": rate,
        "ratio": rate / limit,
        "client_cpu": own_cpu() - cpu_before,
        "fake_cpu": cpu_seconds(fake_pid) - fake_before,
        "rss": peak_rss_mb(),
    }


def overhead_ratios(rows: list[dict[str, Any]]) -> None:
    """At zero latency: each row's 'ratio' becomes the bare gather's rate (same SDK, same
    transport; the SDK default client counts as httpx) over the row's: the overhead factor."""

    def kind(label: str) -> tuple[str, str]:
        sdk = "together" if "together" in label.lower() else "openai"
        return sdk, "aiohttp" if "aiohttp" in label else "httpx"

    bare = {kind(r["label"]): r["rate"] for r in rows if r["label"].startswith("bare")}
    for r in rows:
        r["ratio"] = bare.get(kind(r["label"]), float("nan")) / r["rate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    n, c, latency = args.requests, args.concurrency, args.latency
    # At zero latency there is no physical limit: the ratio column is then per the bare
    # gather over the same SDK and transport (the scheduler's overhead, issue 13's setting 3).
    limit = c / latency if latency > 0 else float("nan")
    reqs = requests(n)
    rows = []
    with fake_server(latency, TOGETHER_ROUTES) as (url, pid):
        # A warm-up first: the first run would otherwise pay for importing the SDKs.
        warm = {"base_url": url, "api_key": "bench", "price_lookup": False}
        asyncio.run(through_ste("together", warm, reqs[:64], c))
        for transport in ("aiohttp", "httpx"):
            opts = {"base_url": url, "api_key": "bench", "price_lookup": False}
            opts |= {"http_transport": transport, "concurrency": c}
            rows.append(
                measure(
                    f"ste Scheduler, together backend, {transport}",
                    lambda o=opts: through_ste("together", o, reqs, c),  # type: ignore[misc]
                    pid,
                    n,
                    limit,
                )
            )
        for aio, what in ((False, "SDK default client (httpx)"), (True, f"aiohttp, pool {c}")):
            rows.append(
                measure(
                    f"bare AsyncTogether gather, {what}",
                    lambda a=aio: bare(together_client(url, a, c), chat, reqs, c),  # type: ignore[misc]
                    pid,
                    n,
                    limit,
                )
            )
    with fake_server(latency) as (url, pid):
        asyncio.run(through_ste("openai", {"base_url": url + "/v1"}, reqs[:64], c))
        for transport in ("aiohttp", "httpx"):
            opts = {"base_url": url + "/v1", "http_transport": transport, "concurrency": c}
            rows.append(
                measure(
                    f"ste Scheduler, openai backend, {transport}",
                    lambda o=opts: through_ste("openai", o, reqs, c),  # type: ignore[misc]
                    pid,
                    n,
                    limit,
                )
            )
        for aio, what in ((False, "SDK default client (httpx)"), (True, f"aiohttp, pool {c}")):
            rows.append(
                measure(
                    f"bare AsyncOpenAI gather, {what}",
                    lambda a=aio: bare(openai_client(url + "/v1", a, c), chat, reqs, c),  # type: ignore[misc]
                    pid,
                    n,
                    limit,
                )
            )
    if latency == 0:
        overhead_ratios(rows)
    print(f"{n} chat requests, concurrency {c}, latency {latency:.2f} s: limit {limit:.0f} req/s")
    if latency == 0:
        print("(zero latency: the 'x limit' column is the bare gather's rate over this run's, for")
        print(" the same SDK and transport: the scheduler's overhead factor)")
    head = ("ok", "req/s", "x limit", "cpu s", "fake cpu", "rss MB")
    widths = (5, 7, 8, 6, 8, 7)
    print(f"{'run':<52} " + " ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print(
            f"{r['label']:<52} {r['ok']:>5} {r['rate']:>7.1f} {r['ratio']:>8.2f} "
            f"{r['client_cpu']:>6.1f} {r['fake_cpu']:>8.1f} {r['rss']:>7.0f}"
        )


if __name__ == "__main__":
    main()
