"""RunStore: cache round trip, state, stage markers, and data surviving a SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ste_core.engine.store import RunStore
from ste_core.records import ChatRequest, Completion, Usage


def _req(text: str = "hi", **params) -> ChatRequest:
    return ChatRequest.of("m", [{"role": "user", "content": text}], **params)


def test_cache_round_trip_keeps_all_texts(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "store.sqlite")
    backend = {"backend": "fake", "base_url": "http://x/v1"}
    req = _req(n=3)
    key = RunStore.cache_key(backend, req)
    assert store.cache_get(key) is None
    comp = Completion(
        texts=("a", "b", "c"),
        finish_reasons=("stop", "stop", "length"),
        usage=Usage(prompt_tokens=5, completion_tokens=7),
        request_id="r1",
        cost_usd=0.25,
    )
    store.cache_put(key, comp, request=req)
    got = store.cache_get(key)
    assert got is not None
    assert got.texts == ("a", "b", "c")
    assert got.finish_reasons == ("stop", "stop", "length")
    assert got.usage == comp.usage and got.cost_usd == 0.25 and got.request_id == "r1"
    assert got.cached is True
    assert store.cache_size() == 1
    [(k, stored_req, stored)] = list(store.iter_cache())
    assert k == key and stored_req == req and stored.texts == comp.texts
    store.close()
    # persisted across instances
    again = RunStore(tmp_path / "store.sqlite")
    assert again.cache_get(key) is not None
    again.close()


def test_cache_key_distinguishes_every_input() -> None:
    b = {"backend": "fake", "base_url": "http://x/v1"}
    base = RunStore.cache_key(b, _req())
    variants = [
        RunStore.cache_key({"backend": "fake", "base_url": "http://y/v1"}, _req()),
        RunStore.cache_key({"backend": "other", "base_url": "http://x/v1"}, _req()),
        RunStore.cache_key(b, _req("ho")),
        RunStore.cache_key(b, _req(temperature=0.7)),
        RunStore.cache_key(b, _req(n=2)),
        RunStore.cache_key(b, _req(seed=1)),
        RunStore.cache_key(b, _req(sample_index=1)),
        RunStore.cache_key(b, _req().model_copy(update={"model": "m2"})),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # metadata is bookkeeping, not input
    tagged = _req().model_copy(update={"metadata": {"pair": "p1"}})
    assert RunStore.cache_key(b, tagged) == base
    assert RunStore.cache_key(b, _req()) == base  # stable


def test_state_and_stages(tmp_path: Path) -> None:
    with RunStore(tmp_path / "s.sqlite") as store:
        assert store.get_state("job", "none") == "none"
        store.set_state("job", {"id": "ft-1", "iteration": 2})
        assert store.get_state("job") == {"id": "ft-1", "iteration": 2}
        assert not store.stage_done(1, "baseline")
        store.mark_stage(1, "baseline", {"in": 10, "ok": 9, "api_error": 1})
        store.mark_stage(1, "worse", {"in": 9, "ok": 8, "parse_error": 1})
        store.mark_stage(2, "baseline", {"in": 10, "ok": 10})
        assert store.stage_done(1, "baseline") and not store.stage_done(2, "worse")
        assert store.stage_counts(1) == {
            "baseline": {"in": 10, "ok": 9, "api_error": 1},
            "worse": {"in": 9, "ok": 8, "parse_error": 1},
        }
        assert list(store.all_stage_counts()) == [1, 2]
        store.unmark_stage(1, "worse")
        assert not store.stage_done(1, "worse")


_WRITER = textwrap.dedent(
    """
    import sys
    from ste_core.records import ChatRequest, Completion
    from ste_core.engine.store import RunStore
    store = RunStore(sys.argv[1])
    i = 0
    while True:
        req = ChatRequest.of("m", [{"role": "user", "content": f"q{i}"}])
        store.cache_put(RunStore.cache_key({"backend": "b"}, req), Completion(texts=(f"a{i}",)))
        store.set_state("last", i)
        print(i, flush=True)
        i += 1
    """
)


def test_data_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    last = -1
    deadline = time.monotonic() + 15
    while last < 200 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        last = int(line)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, no cleanup, no close
    proc.wait()
    assert last >= 200, "writer did not get going"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = RunStore(path)
    # every write reported as done before the kill is there
    assert store.cache_size() >= last + 1
    assert store.get_state("last") >= last
    for i in (0, last // 2, last):
        req = ChatRequest.of("m", [{"role": "user", "content": f"q{i}"}])
        got = store.cache_get(RunStore.cache_key({"backend": "b"}, req))
        assert got is not None and got.texts == (f"a{i}",)
    store.close()


def test_two_connections_share_the_file(tmp_path: Path) -> None:
    a, b = RunStore(tmp_path / "x.sqlite"), RunStore(tmp_path / "x.sqlite")
    a.set_state("k", 1)
    assert b.get_state("k") == 1
    b.set_state("k", 2)
    assert a.get_state("k") == 2
    a.close()
    b.close()
