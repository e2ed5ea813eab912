"""What a run is doing, readable from another terminal: `status.json` and `ste status` / `ste runs`.

A running session keeps `RUN_DIR/status.json` up to date (`LiveStatus`, a reporter the pipeline
always adds): its pid, the stage it is in and that stage's progress, at most once a second and
atomically (a reader never sees half a file). Everything else `ste status` shows comes from the
run store, opened read-only (the run may be live): the stages done, the budget used (the
ledger), what is open at a provider, and each judge's accuracy.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ste_core.engine.store import RunStore
from ste_core.records import IterationMetrics, Resource, RunManifest
from ste_core.run.progress import Reporter

__all__ = ["LiveStatus", "RunStatus", "read_status"]

STATUS_FILE = "status.json"
#: at most one write per this many seconds while a stage progresses
WRITE_INTERVAL_S = 0.25


class LiveStatus(Reporter):
    """Writes the session's current stage and progress to `status.json` in the run directory."""

    def __init__(self, run_dir: Path, *, clock: Any = time.time) -> None:
        super().__init__()
        self.path = Path(run_dir) / STATUS_FILE
        self._clock = clock
        self._state: dict[str, Any] = {"pid": os.getpid(), "stage": None}
        self._written = 0.0

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        self._state.update(
            stage=stage,
            iteration=iteration,
            done=0,
            total=total,
            errors=0,
            rate_per_s=0.0,
            started=self._clock(),
            finetune=None,
            phase=None,
        )
        self._write(force=True)

    def phase(self, name: str | None = None, total: int | None = None) -> None:
        self._state.update(phase=name, done=0, total=total, errors=0, rate_per_s=0.0)
        self._write(force=True)

    def progress(
        self,
        done: int,
        total: int | None = None,
        *,
        errors: int = 0,
        cache_hits: int = 0,
        rate_per_s: float = 0.0,
    ) -> None:
        self._state.update(
            done=done,
            # A scheduler reading a stream does not know its size; the stage told it before.
            total=total if total is not None else self._state.get("total"),
            errors=errors,
            cache_hits=cache_hits,
            rate_per_s=round(rate_per_s, 2),
        )
        self._write()

    def finetune_state(self, state: Any) -> None:
        self._state["finetune"] = {
            "job_id": state.job_id,
            "status": state.status.value,
            "progress": state.progress,
            "phase": state.phase,
            "step": state.step,
            "total_steps": state.total_steps,
            "loss": state.loss,
            "metrics": dict(state.metrics),
            "cost_usd": state.cost_usd,
        }
        self._write()

    def stage_finished(
        self,
        iteration: int,
        stage: str,
        counts: dict[str, Any],
        seconds: float,
        *,
        skipped: bool,
        summary: str = "",
    ) -> None:
        self._state.update(stage=None, phase=None, last_finished=f"{stage}@{iteration}")
        self._write(force=True)

    def warning(self, message: str) -> None:
        self._state["last_warning"] = message
        self._write()

    def close(self) -> None:
        self._state["stage"] = None
        self._state["closed"] = True
        self._write(force=True)

    def _write(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._written < WRITE_INTERVAL_S:
            return
        self._written = now
        self._state["updated"] = now
        if not self.path.parent.is_dir():
            return  # before the run directory exists (or after --fresh wiped it)
        tmp = self.path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(self._state, default=str), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a status file must never stop a run


@dataclass
class RunStatus:
    """Everything `ste status` shows of one run directory."""

    root: Path
    manifest: RunManifest | None
    stages_done: int
    live: dict[str, Any] | None
    #: the session's process is alive (None: not known, e.g. no status file)
    alive: bool | None
    requests: int
    spent_usd: float
    open_resources: list[Resource]
    metrics: dict[int, IterationMetrics] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """The manifest's status, corrected: a 'running' run whose process is gone was killed."""
        status = self.manifest.status if self.manifest else "not started"
        if status == "running" and self.alive is False:
            return "killed (its process is gone; run the same command to resume)"
        return status

    def best(self) -> IterationMetrics | None:
        """The judge with the highest eval accuracy (among those that have one)."""
        scored = [m for m in self.metrics.values() if m.eval.accuracy is not None]
        return max(scored, key=lambda m: m.eval.accuracy or 0.0, default=None)


def read_status(run_dir: Path) -> RunStatus:
    """The status of the run in `run_dir` (FileNotFoundError when it is not a run directory)."""
    root = Path(run_dir)
    store_path = root / "store.sqlite"
    with RunStore.open_read_only(store_path) as store:
        manifest = store.manifest()
        done = sum(len(stages) for stages in store.all_stage_counts().values())
        requests, spent = store.ledger_totals()
        open_resources = store.resources(open_only=True)
        now = time.time()
        spent += sum(r.accrued_usd(now) or 0.0 for r in open_resources if r.usd_per_hour)
        metrics = store.metrics()
    live = _read_live(root / STATUS_FILE)
    alive = _alive(live["pid"]) if live and "pid" in live and not live.get("closed") else None
    if live and live.get("closed"):
        alive = False
    return RunStatus(
        root=root,
        manifest=manifest,
        stages_done=done,
        live=live,
        alive=alive,
        requests=requests,
        spent_usd=spent,
        open_resources=open_resources,
        metrics=metrics,
    )


def _read_live(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: Any) -> bool | None:
    """Whether process `pid` exists on this machine (None: cannot tell)."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return None
    return True
