"""The run store: one SQLite file per run directory, the run's only state.

Why SQLite: it is transactional, embedded (stdlib `sqlite3`), safe across processes, and survives
a kill at any moment. The store runs in WAL mode and commits every write on its own, so a killed
run loses at most the requests that were in flight (their answers never reached `cache_put`).
`synchronous=NORMAL` is enough for that guarantee: in WAL mode a committed transaction survives a
process crash; only an OS crash / power cut may lose the last few commits (never corrupt the file).

Tables:

- `cache`: content-addressed completions. The key (`RunStore.cache_key`) hashes the backend's
  `describe()` facts (backend name, base URL, ...), the model, the messages, the sampling params and
  the request's `sample_index`. A completion from an n>1 request is stored whole (all n texts).
- `state`: small JSON values by key (fine-tune job ids, split ids, the config's pinned settings).
- `stages`: which (iteration, stage) finished, with its counts (its part of the funnel) and usage.
- `manifest`: the run's `RunManifest` (one row); `metrics`: each judge's `IterationMetrics`.
  manifest.json and metrics.json are exports of these rows (`ste_core.run.exports`).
- `ledger`: every paid thing. A provider request is written before it is sent (`reserved`, with
  its estimated cost) and updated when it ends (`settled` with its cost and tokens, or
  `released` when it failed); a fine-tune job likewise. A resource that outlives a request (an
  endpoint, a batch job: a `Resource`) is written `creating` before the call that creates it,
  then gets its provider id, goes `live`, and is `ended` with its cost; one with an hourly
  price accrues cost while it is open. The budget of a resumed run is summed from it, so a
  session killed in the middle of a stage still counts: a request left `reserved` may have been
  billed, and counts at its estimate; an endpoint left open goes on accruing until it is ended.

Readers that must never write (a report on a live run) open it with `RunStore.open_read_only`.

No secrets are ever written: the key input is `backend.describe()`, which backends keep free of API
keys (the `InferenceBackend.describe` contract), and the stored request is the `ChatRequest` (model,
messages, params) with no headers. Do not put keys into `describe()` or into `set_state` values.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ste_core.records import (
    ChatRequest,
    Completion,
    IterationMetrics,
    Resource,
    RunManifest,
    StageUsage,
    Usage,
    content_hash,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    completion TEXT NOT NULL,
    request TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    iteration INTEGER NOT NULL,
    stage TEXT NOT NULL,
    counts TEXT NOT NULL,
    finished REAL NOT NULL,
    usage TEXT,
    PRIMARY KEY (iteration, stage)
);
CREATE TABLE IF NOT EXISTS manifest (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    data TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    iteration INTEGER PRIMARY KEY,
    data TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    requests INTEGER NOT NULL,
    estimate_usd REAL NOT NULL,
    cost_usd REAL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    backend TEXT,
    section TEXT,
    key TEXT,
    provider_id TEXT,
    detail TEXT,
    usd_per_hour REAL,
    ready REAL,
    ended REAL
);
"""

#: Columns added to `ledger` after it first shipped (a store written then gains them on open).
_LEDGER_RESOURCE_COLUMNS = {
    "backend": "TEXT",
    "section": "TEXT",
    "key": "TEXT",
    "provider_id": "TEXT",
    "detail": "TEXT",
    "usd_per_hour": "REAL",
    "ready": "REAL",
    "ended": "REAL",
}
_RESOURCE_COLUMNS = (
    "id, kind, backend, section, key, provider_id, state, detail, usd_per_hour, created, ready, "
    "ended, cost_usd, estimate_usd"
)

#: Bump when the cache key recipe changes, so old entries are simply never hit again.
CACHE_KEY_VERSION = 1


class RunStore:
    """Request cache + key/value state + stage markers in one SQLite file.

    Thread-safe (one connection guarded by a lock) and process-safe (SQLite file locking with a
    busy timeout). Every write is its own committed transaction.
    """

    def __init__(
        self, path: Path | str, *, busy_timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self._on_disk = str(path) != ":memory:"
        self.read_only = read_only
        self._lock = threading.RLock()
        if read_only:
            # A URI with mode=ro: this connection can never write, even by mistake.
            target, uri = f"file:{self.path}?mode=ro", True
        else:
            if self._on_disk:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(path), False
        # isolation_level=None: autocommit; each statement is its own transaction (we want
        # commit-per-write), and explicit BEGIN where several statements must be atomic.
        self._conn = sqlite3.connect(
            target,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
            uri=uri,
        )
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if read_only:
            return
        if self._on_disk:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(stages)")}
            if "usage" not in columns:  # a store written by ste 0.1
                self._conn.execute("ALTER TABLE stages ADD COLUMN usage TEXT")
            have = {row[1] for row in self._conn.execute("PRAGMA table_info(ledger)")}
            for column, kind in _LEDGER_RESOURCE_COLUMNS.items():
                if column not in have:
                    self._conn.execute(f"ALTER TABLE ledger ADD COLUMN {column} {kind}")

    @classmethod
    def open_read_only(cls, path: Path | str) -> RunStore:
        """Open an existing store for reading only (reports; the run may be live)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no run store here")
        return cls(path, read_only=True)

    # -- cache -------------------------------------------------------------------------------

    @staticmethod
    def cache_key(backend: Mapping[str, Any] | Any, request: ChatRequest) -> str:
        """The content address of `request` sent to `backend`.

        `backend` is the backend's `describe()` mapping (or a backend object, whose `describe()`
        is called). `request.metadata` is not part of the key (it is bookkeeping, not input).
        """
        facts = backend if isinstance(backend, Mapping) else backend.describe()
        return content_hash(
            CACHE_KEY_VERSION,
            dict(facts),
            request.model,
            [m.model_dump() for m in request.messages],
            request.params.model_dump(mode="json"),
            request.sample_index,
        )

    def cache_get(self, key: str) -> Completion | None:
        """The cached completion for `key` (with `cached=True`), or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT completion FROM cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return Completion.model_validate_json(row[0]).model_copy(update={"cached": True})

    def cache_put(
        self, key: str, completion: Completion, *, request: ChatRequest | None = None
    ) -> None:
        """Store `completion` under `key` (replacing any earlier entry); committed immediately."""
        blob = completion.model_copy(update={"cached": False}).model_dump_json()
        req = request.model_dump_json() if request is not None else None
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO cache (key, completion, request, created) VALUES (?,?,?,?)",
                (key, blob, req, time.time()),
            )

    def cache_size(self) -> int:
        """Number of cached completions."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0])

    def iter_cache(self) -> Iterator[tuple[str, ChatRequest | None, Completion]]:
        """Stream (key, request, completion) for exports and debugging (not loaded whole).

        Reads through its own connection so writers are not blocked and the cursor is not shared.
        """
        conn = sqlite3.connect(str(self.path), timeout=30.0) if self._on_disk else None
        try:
            if conn is None:
                with self._lock:
                    rows = self._conn.execute(
                        "SELECT key, request, completion FROM cache ORDER BY created"
                    ).fetchall()
                source: Any = iter(rows)
            else:
                source = conn.execute("SELECT key, request, completion FROM cache ORDER BY created")
            for key, req, comp in source:
                yield (
                    key,
                    ChatRequest.model_validate_json(req) if req else None,
                    Completion.model_validate_json(comp),
                )
        finally:
            if conn is not None:
                conn.close()

    # -- key/value state ---------------------------------------------------------------------

    def get_state(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`, or `default`."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable `value` under `key`; committed immediately."""
        blob = json.dumps(value, sort_keys=True, ensure_ascii=False)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO state (key, value, updated) VALUES (?,?,?)",
                (key, blob, time.time()),
            )

    def delete_state(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM state WHERE key = ?", (key,))

    # -- stages ----------------------------------------------------------------------------

    def stage_done(self, iteration: int, stage: str) -> bool:
        """True when `mark_stage(iteration, stage, ...)` was recorded."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM stages WHERE iteration = ? AND stage = ?", (iteration, stage)
            ).fetchone()
        return row is not None

    def mark_stage(
        self,
        iteration: int,
        stage: str,
        counts: Mapping[str, int],
        usage: StageUsage | None = None,
    ) -> None:
        """Record that `stage` of `iteration` finished, with its counts and what it used."""
        blob = json.dumps(dict(counts), sort_keys=True)
        used = usage.model_dump_json() if usage is not None else None
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO stages (iteration, stage, counts, finished, usage) "
                "VALUES (?,?,?,?,?)",
                (iteration, stage, blob, time.time(), used),
            )

    def unmark_stage(self, iteration: int, stage: str) -> None:
        """Forget a stage marker (to force a stage to run again)."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM stages WHERE iteration = ? AND stage = ?", (iteration, stage)
            )

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                # Read-only, a store of an earlier version is not migrated: it lacks the newer
                # tables and columns, which then hold nothing.
                if self.read_only:
                    return []
                raise

    def _stage_rows(self, column: str) -> list[tuple[int, str, str | None]]:
        return self._rows(
            f"SELECT iteration, stage, {column} FROM stages ORDER BY iteration, finished"
        )

    def stage_counts(self, iteration: int) -> dict[str, dict[str, int]]:
        """`{stage: counts}` of the finished stages of `iteration`, in the order they finished."""
        return {
            stage: json.loads(c or "{}")
            for it, stage, c in self._stage_rows("counts")
            if it == iteration
        }

    def all_stage_counts(self) -> dict[int, dict[str, dict[str, int]]]:
        """`{iteration: {stage: counts}}` of every finished stage."""
        out: dict[int, dict[str, dict[str, int]]] = {}
        for it, stage, c in self._stage_rows("counts"):
            out.setdefault(int(it), {})[stage] = json.loads(c or "{}")
        return out

    def all_stage_usage(self) -> dict[int, dict[str, StageUsage]]:
        """`{iteration: {stage: usage}}` of every finished stage that recorded usage."""
        out: dict[int, dict[str, StageUsage]] = {}
        for it, stage, u in self._stage_rows("usage"):
            if u is not None:
                out.setdefault(int(it), {})[stage] = StageUsage.model_validate_json(u)
        return out

    def stage_usage(self, iteration: int) -> dict[str, StageUsage]:
        """`{stage: usage}` of the finished stages of `iteration` that recorded usage."""
        return {
            stage: StageUsage.model_validate_json(u)
            for it, stage, u in self._stage_rows("usage")
            if it == iteration and u is not None
        }

    # -- manifest and metrics ------------------------------------------------------------------

    def manifest(self) -> RunManifest | None:
        """The run's manifest (None before the first session saved one)."""
        rows = self._rows("SELECT data FROM manifest WHERE id = 1")
        return RunManifest.model_validate_json(rows[0][0]) if rows else None

    def save_manifest(self, manifest: RunManifest) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO manifest (id, data, updated) VALUES (1, ?, ?)",
                (manifest.model_dump_json(), time.time()),
            )

    def metrics(self) -> dict[int, IterationMetrics]:
        """Every evaluated judge's metrics, by iteration (0 = the seed judge)."""
        rows = self._rows("SELECT iteration, data FROM metrics ORDER BY iteration")
        return {int(it): IterationMetrics.model_validate_json(d) for it, d in rows}

    def put_metrics(self, metrics: IterationMetrics) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO metrics (iteration, data, updated) VALUES (?, ?, ?)",
                (metrics.iteration, metrics.model_dump_json(), time.time()),
            )

    # -- the ledger ----------------------------------------------------------------------------

    def ledger_reserve(
        self, kind: str, *, estimate_usd: float = 0.0, requests: int = 1, key: str | None = None
    ) -> int:
        """A paid thing about to be sent, at its estimated cost; committed before it is sent.
        `key`: the cache key of a request sent in a batch job (see `ledger_open_batched`).
        Returns its ledger id."""
        now = time.time()
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO ledger (kind, state, requests, estimate_usd, created, updated, key) "
                "VALUES (?, 'reserved', ?, ?, ?, ?, ?)",
                (kind, requests, estimate_usd, now, now, key),
            )
            return int(cursor.lastrowid or 0)

    def ledger_open_batched(self) -> list[tuple[int, str, float]]:
        """(id, cache key, estimate) of every request that went out in a batch job and was
        neither answered nor given back: what a killed session left in batches that a resumed
        one re-attaches to."""
        rows = self._rows(
            "SELECT id, key, estimate_usd FROM ledger WHERE kind = 'request' "
            "AND state = 'reserved' AND key IS NOT NULL ORDER BY id"
        )
        return [(int(i), str(k), float(e)) for i, k, e in rows]

    def ledger_settle(self, entry: int, *, cost_usd: float, usage: Usage | None = None) -> None:
        """The thing was answered: its real cost and tokens."""
        u = usage or Usage()
        with self._lock:
            self._conn.execute(
                "UPDATE ledger SET state = 'settled', cost_usd = ?, prompt_tokens = ?, "
                "completion_tokens = ? , updated = ? WHERE id = ?",
                (cost_usd, u.prompt_tokens, u.completion_tokens, time.time(), entry),
            )

    def ledger_release(self, entry: int) -> None:
        """The thing failed before the provider answered: it cost nothing (it still counts as a
        request)."""
        with self._lock:
            self._conn.execute(
                "UPDATE ledger SET state = 'released', cost_usd = 0, updated = ? WHERE id = ?",
                (time.time(), entry),
            )

    def ledger_reserved_estimate(self, entry: int) -> float:
        """The estimate an entry still holds: its estimate while reserved, else 0."""
        rows = self._rows(
            "SELECT estimate_usd FROM ledger WHERE id = ? AND state = 'reserved'", (entry,)
        )
        return float(rows[0][0]) if rows else 0.0

    def ledger_totals(self) -> tuple[int, float]:
        """(requests, USD) over the whole ledger: settled costs, and the estimate of whatever is
        still reserved (sent by a session that died before the answer came back). An open
        resource counts at its estimate here; its hourly accrual is `Budget`'s (see
        `resources`)."""
        rows = self._rows(
            "SELECT COALESCE(SUM(requests), 0), "
            "COALESCE(SUM(CASE WHEN state IN ('reserved', 'creating', 'live') THEN estimate_usd "
            "ELSE COALESCE(cost_usd, 0) END), 0) FROM ledger"
        )
        requests, usd = rows[0] if rows else (0, 0.0)
        return int(requests), float(usd)

    # -- resources (endpoints, batch jobs) ---------------------------------------------------------

    def resource_begin(
        self,
        kind: str,
        *,
        backend: str,
        section: str = "",
        key: str = "",
        detail: Mapping[str, Any] | None = None,
        usd_per_hour: float | None = None,
        estimate_usd: float = 0.0,
    ) -> Resource:
        """A resource about to be created at a provider; committed before the create call."""
        now = time.time()
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO ledger (kind, state, requests, estimate_usd, created, updated, "
                "backend, section, key, detail, usd_per_hour) "
                "VALUES (?, 'creating', 0, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    estimate_usd,
                    now,
                    now,
                    backend,
                    section,
                    key,
                    json.dumps(dict(detail or {}), sort_keys=True),
                    usd_per_hour,
                ),
            )
            entry = int(cursor.lastrowid or 0)
        return self.resource(entry)

    def resource_update(
        self,
        entry: int,
        *,
        provider_id: str | None = None,
        state: str | None = None,
        detail: Mapping[str, Any] | None = None,
        usd_per_hour: float | None = None,
        cost_usd: float | None = None,
        now: float | None = None,
    ) -> Resource:
        """Change what is given (merging `detail` into the stored one); ending it (`state`
        'ended') stamps its end time, going 'live' its ready time: `now`, or the clock's time
        (give it when a cost was priced up to that moment)."""
        current = self.resource(entry)
        merged = {**current.detail, **(detail or {})}
        now = time.time() if now is None else now
        ready = now if state == "live" and current.ready is None else current.ready
        ended = now if state == "ended" and current.ended is None else current.ended
        with self._lock:
            self._conn.execute(
                "UPDATE ledger SET provider_id = ?, state = ?, detail = ?, usd_per_hour = ?, "
                "cost_usd = ?, ready = ?, ended = ?, updated = ? WHERE id = ?",
                (
                    provider_id if provider_id is not None else current.provider_id,
                    state or current.state,
                    json.dumps(merged, sort_keys=True),
                    usd_per_hour if usd_per_hour is not None else current.usd_per_hour,
                    cost_usd if cost_usd is not None else current.cost_usd,
                    ready,
                    ended,
                    now,
                    entry,
                ),
            )
        return self.resource(entry)

    def resource(self, entry: int) -> Resource:
        """The resource of ledger entry `entry` (KeyError when there is none)."""
        rows = self._rows(f"SELECT {_RESOURCE_COLUMNS} FROM ledger WHERE id = ?", (entry,))
        if not rows or rows[0][2] is None:
            raise KeyError(f"ledger entry {entry} is not a resource")
        return _resource(rows[0])

    def resources(
        self, *, kind: str | None = None, backend: str | None = None, open_only: bool = False
    ) -> list[Resource]:
        """The resources in the ledger, oldest first; `open_only`: those not known to be ended."""
        where, params = ["backend IS NOT NULL"], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if backend is not None:
            where.append("backend = ?")
            params.append(backend)
        if open_only:
            where.append("state IN ('creating', 'live')")
        rows = self._rows(
            f"SELECT {_RESOURCE_COLUMNS} FROM ledger WHERE {' AND '.join(where)} ORDER BY id",
            tuple(params),
        )
        return [_resource(row) for row in rows]

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock, contextlib.suppress(sqlite3.ProgrammingError):
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"


def _resource(row: tuple[Any, ...]) -> Resource:
    (
        entry,
        kind,
        backend,
        section,
        key,
        provider_id,
        state,
        detail,
        rate,
        created,
        ready,
        ended,
        cost,
        estimate,
    ) = row
    return Resource(
        entry=int(entry),
        kind=kind,
        backend=backend,
        section=section or "",
        key=key or "",
        provider_id=provider_id,
        state=state,
        detail=json.loads(detail or "{}"),
        usd_per_hour=rate,
        created=created,
        ready=ready,
        ended=ended,
        cost_usd=cost,
        estimate_usd=estimate or 0.0,
    )
