"""Progress reporting for pipeline runs: rich progress bars, quiet, or JSON log lines.

The pipeline talks to a `Reporter`; which one is chosen by the CLI flags:

* `RichReporter` (default): one progress bar per stage (done/total, rate, errors, cache hits) on
  stderr, and a one-line funnel when a stage ends.
* `QuietReporter` (`--quiet`): nothing but warnings (on stderr).
* `JsonReporter` (`--log-json`): one JSON object per line (stage_started, progress every few
  seconds, stage_finished with its counts, finetune states, warnings) for batch jobs and log
  collectors.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from rich.markup import escape

__all__ = [
    "JsonReporter",
    "QuietReporter",
    "Reporter",
    "RichReporter",
    "Tee",
    "make_reporter",
]


class Reporter:
    """The interface (and the quiet implementation: only warnings are shown)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        pass

    def progress(
        self,
        done: int,
        total: int | None = None,
        *,
        errors: int = 0,
        cache_hits: int = 0,
        rate_per_s: float = 0.0,
    ) -> None:
        pass

    def scheduler_event(self, event: Any) -> None:
        """Adapter for `Scheduler(on_event=...)` (a SchedulerEvent)."""
        self.progress(
            event.done,
            event.total,
            errors=event.errors,
            cache_hits=event.cache_hits,
            rate_per_s=event.rate_per_s,
        )

    def finetune_state(self, state: Any) -> None:
        pass

    def stage_finished(
        self, iteration: int, stage: str, counts: dict[str, Any], seconds: float, *, skipped: bool
    ) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=self._out(), flush=True)

    def close(self) -> None:
        pass


QuietReporter = Reporter


class JsonReporter(Reporter):
    """JSON lines: `{"ts": ..., "event": ..., ...}`; progress at most every `interval_s`."""

    def __init__(self, stream: IO[str] | None = None, *, interval_s: float = 5.0) -> None:
        super().__init__(stream or sys.stdout)
        self.interval_s = interval_s
        self._last = 0.0
        self._stage: tuple[int, str] | None = None

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        self._out().write(json.dumps(record, default=str) + "\n")
        self._out().flush()

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        self._stage = (iteration, stage)
        self._last = time.monotonic()
        self.emit("stage_started", iteration=iteration, stage=stage, total=total)

    def progress(self, done: int, total: int | None = None, **kw: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s and (total is None or done < total):
            return
        self._last = now
        it, st = self._stage or (None, None)
        self.emit("progress", iteration=it, stage=st, done=done, total=total, **kw)

    def finetune_state(self, state: Any) -> None:
        self.emit(
            "finetune",
            job_id=state.job_id,
            status=state.status.value,
            progress=state.progress,
            message=state.message,
        )

    def stage_finished(
        self, iteration: int, stage: str, counts: dict[str, Any], seconds: float, *, skipped: bool
    ) -> None:
        self.emit(
            "stage_finished",
            iteration=iteration,
            stage=stage,
            counts=counts,
            seconds=round(seconds, 3),
            skipped=skipped,
        )

    def info(self, message: str) -> None:
        self.emit("info", message=message)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)


class RichReporter(Reporter):
    """Rich progress bars on stderr: one per stage, replaced by a funnel line when it ends."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(file=self._out(), stderr=stream is None)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[errors]}"),
            TextColumn("[dim]{task.fields[hits]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task: Any = None
        self._started = False
        # Log records go above the live bars, not through them (a raw stderr write while the
        # bars are live leaves half-drawn bars behind).
        self._log_handler = _ConsoleLogHandler(self)
        logging.getLogger().addHandler(self._log_handler)

    def _ensure(self) -> None:
        if not self._started:
            self._progress.start()
            self._started = True

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        self._ensure()
        if self._task is not None:
            self._progress.remove_task(self._task)
        label = _label(iteration, stage)
        self._task = self._progress.add_task(label, total=total, rate="", errors="", hits="")

    def progress(
        self,
        done: int,
        total: int | None = None,
        *,
        errors: int = 0,
        cache_hits: int = 0,
        rate_per_s: float = 0.0,
    ) -> None:
        if self._task is None:
            return
        self._progress.update(
            self._task,
            completed=done,
            total=total if total is not None else self._progress.tasks[-1].total,
            rate=f"{rate_per_s:.1f}/s" if rate_per_s else "",
            errors=f"{errors} errors" if errors else "",
            hits=f"{cache_hits} cached" if cache_hits else "",
        )

    def finetune_state(self, state: Any) -> None:
        if self._task is None:
            return
        pct = state.progress
        self._progress.update(
            self._task,
            total=1.0,
            completed=pct or 0.0,
            rate=state.status.value,
            errors="",
            hits=state.job_id,
        )

    def stage_finished(
        self, iteration: int, stage: str, counts: dict[str, Any], seconds: float, *, skipped: bool
    ) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        label = _label(iteration, stage)
        if skipped:
            self.console.print(f"[dim]{label}: done earlier[/dim]")
            return
        funnel = ", ".join(f"{k} {v}" for k, v in counts.items() if v not in (0, None))
        self.console.print(f"[green]✓[/green] {label} ({seconds:.1f}s): {escape(funnel)}")

    # Messages come from providers, configs and option names: never read as rich markup (it
    # would eat "[budget]" or "pip install 'x[local]'").

    def info(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._log_handler)
        if self._started:
            self._progress.stop()
            self._started = False


class _ConsoleLogHandler(logging.Handler):
    """Warnings and errors logged by any module, shown as the reporter's warnings."""

    def __init__(self, reporter: RichReporter) -> None:
        super().__init__(level=logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.warning(record.getMessage())
        except Exception:  # logging must never break the run
            self.handleError(record)


class Tee(Reporter):
    """Sends every event to several reporters (the console's and the run's status file)."""

    def __init__(self, *reporters: Reporter) -> None:
        super().__init__()
        self.reporters = reporters

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        for r in self.reporters:
            r.stage_started(iteration, stage, total)

    def progress(self, done: int, total: int | None = None, **kw: Any) -> None:
        for r in self.reporters:
            r.progress(done, total, **kw)

    def scheduler_event(self, event: Any) -> None:
        for r in self.reporters:
            r.scheduler_event(event)

    def finetune_state(self, state: Any) -> None:
        for r in self.reporters:
            r.finetune_state(state)

    def stage_finished(
        self, iteration: int, stage: str, counts: dict[str, Any], seconds: float, *, skipped: bool
    ) -> None:
        for r in self.reporters:
            r.stage_finished(iteration, stage, counts, seconds, skipped=skipped)

    def info(self, message: str) -> None:
        for r in self.reporters:
            r.info(message)

    def warning(self, message: str) -> None:
        for r in self.reporters:
            r.warning(message)

    def close(self) -> None:
        for r in self.reporters:
            r.close()


def _label(iteration: int, stage: str) -> str:
    if iteration:
        return f"iter {iteration} {stage}"
    return "evaluate seed judge" if stage == "evaluate" else stage


def make_reporter(*, quiet: bool = False, log_json: bool = False) -> Reporter:
    """The reporter for the CLI flags: --log-json wins, then --quiet, else progress bars."""
    if log_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    return RichReporter()
