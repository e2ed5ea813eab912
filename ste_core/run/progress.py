"""Progress reporting for pipeline runs: rich progress bars, quiet, or JSON log lines.

The pipeline talks to a `Reporter`; which one is chosen by the CLI flags:

* `RichReporter` (default): one progress bar per stage on stderr (done/total, rate, errors,
  cache hits, elapsed, ETA; a stage of several passes names each pass; a fine-tune shows its
  phase, step/total, loss and price), and the stage's counts in words when it ends. Warnings,
  logged ones included, and info lines print above the bar, never through it.
* `QuietReporter` (`--quiet`): nothing but warnings (on stderr).
* `JsonReporter` (`--log-json`): one JSON object per line (stage_started, progress every few
  seconds, stage_finished with its counts, finetune states, info, warnings) for batch jobs and
  log collectors. Events may gain fields over versions, never lose them.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import IO, Any

from rich.markup import escape
from rich.progress import ProgressColumn, Task, TextColumn
from rich.text import Text

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

    def phase(self, name: str | None = None, total: int | None = None) -> None:
        """A pass of the current stage begins: done goes back to 0 out of `total`; `name` (when
        the stage makes several passes, e.g. "baselines" then "worse responses") labels it."""
        self.progress(0, total)

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
        self,
        iteration: int,
        stage: str,
        counts: dict[str, Any],
        seconds: float,
        *,
        skipped: bool,
        summary: str = "",
    ) -> None:
        """The stage ended (or was done earlier: `skipped`); `counts` are its stored counts,
        `summary` the same in words (`Counts.describe`)."""

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
        # -inf, not 0: time.monotonic() may count from boot, and a machine up for less than
        # `interval_s` would otherwise hold back the first line.
        self._last = -math.inf
        self._stage: tuple[int, str] | None = None
        self._phase: str | None = None
        self._total: int | None = None

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        self._out().write(json.dumps(record, default=str) + "\n")
        self._out().flush()

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        self._stage = (iteration, stage)
        self._phase, self._total = None, total
        self._last = time.monotonic()
        self.emit("stage_started", iteration=iteration, stage=stage, total=total)

    def phase(self, name: str | None = None, total: int | None = None) -> None:
        self._phase, self._total = name, total
        if name is not None:  # a named pass begins: say so now, not at the next throttled line
            self._last = -math.inf
        self.progress(0, total)

    def progress(self, done: int, total: int | None = None, **kw: Any) -> None:
        # A scheduler reading a stream does not know its size; the stage told it before.
        total = total if total is not None else self._total
        now = time.monotonic()
        if now - self._last < self.interval_s and (total is None or done < total):
            return
        self._last = now
        it, st = self._stage or (None, None)
        extra = {"phase": self._phase} if self._phase else {}
        self.emit("progress", iteration=it, stage=st, done=done, total=total, **kw, **extra)

    def finetune_state(self, state: Any) -> None:
        self.emit(
            "finetune",
            job_id=state.job_id,
            status=state.status.value,
            progress=state.progress,
            message=state.message,
            phase=state.phase,
            step=state.step,
            total_steps=state.total_steps,
            loss=state.loss,
            metrics=dict(state.metrics),
            cost_usd=state.cost_usd,
        )

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
        self.emit(
            "stage_finished",
            iteration=iteration,
            stage=stage,
            counts=counts,
            seconds=round(seconds, 3),
            skipped=skipped,
            summary=summary,
        )

    def info(self, message: str) -> None:
        self.emit("info", message=message)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)


class _EtaColumn(ProgressColumn):
    """Time left: the task's own `eta_s` field when it has one (a fine-tune's, from its steps),
    else rich's estimate from the recent rate; blank while unknown."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta_s")
        if eta is None and task.total is not None and not task.finished:
            eta = task.time_remaining
        if eta is None:
            return Text("")
        minutes, seconds = divmod(int(eta + 0.5), 60)
        hours, minutes = divmod(minutes, 60)
        text = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        return Text(f"eta {text}", style="cyan")


class RichReporter(Reporter):
    """Rich progress bars on stderr: one per stage, replaced by its counts in words when it
    ends."""

    def __init__(self, stream: IO[str] | None = None, *, console: Any = None) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.console = console or Console(file=self._out(), stderr=stream is None)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[errors]}"),
            TextColumn("[dim]{task.fields[hits]}"),
            TimeElapsedColumn(),
            _EtaColumn(),
            console=self.console,
            transient=True,
            # Rates over a minute: fine-tune polls and batch results come tens of seconds apart.
            speed_estimate_period=60.0,
        )
        self._task: Any = None
        self._label = ""
        self._started = False
        # The first (time, step) seen of the current fine-tune job, for its ETA.
        self._ft_first: tuple[str, float, int] | None = None
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
        self._label = _label(iteration, stage)
        self._ft_first = None
        self._task = self._progress.add_task(
            _description(self._label), total=total, **_blank_fields()
        )

    def phase(self, name: str | None = None, total: int | None = None) -> None:
        if self._task is None:
            return
        # reset, not update: the rate (and ETA) of one pass says nothing about the next.
        self._progress.reset(
            self._task,
            total=total,
            description=_description(self._label, name),
            **_blank_fields(),
        )

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
            total=total if total is not None else self._current().total,
            rate=f"{rate_per_s:.1f}/s" if rate_per_s else "",
            errors=f"{errors} error{'s' if errors != 1 else ''}" if errors else "",
            hits=f"{cache_hits} cached" if cache_hits else "",
        )

    def finetune_state(self, state: Any) -> None:
        if self._task is None:
            return
        phase = state.phase or state.status.value
        step, total = state.step, state.total_steps
        self._progress.update(
            self._task,
            description=_description(self._label, phase),
            total=total,
            completed=step or 0,
            rate=_training_rate(state),
            errors="",
            hits=f"~${state.cost_usd:.2f}" if state.cost_usd else "",
            eta_s=self._finetune_eta(state.job_id, step, total),
        )

    def _finetune_eta(self, job_id: str, step: int | None, total: int | None) -> float | None:
        """Seconds left at the pace since the first step this session saw of the job."""
        if step is None or not total:
            return None
        now = time.monotonic()
        if self._ft_first is None or self._ft_first[0] != job_id:
            self._ft_first = (job_id, now, step)
            return None
        _, then, first_step = self._ft_first
        if step <= first_step:
            return None
        return (now - then) / (step - first_step) * (total - step)

    def _current(self) -> Task:
        return next(t for t in self._progress.tasks if t.id == self._task)

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
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        label = _label(iteration, stage)
        if not summary:
            summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v not in (0, None))
        if skipped:
            what = f" ({summary})" if summary else ""
            self.console.print(f"[dim]{escape(label)}: done earlier{escape(what)}[/dim]")
            return
        self.console.print(f"[green]✓[/green] {escape(label)} ({seconds:.1f}s): {escape(summary)}")

    # Messages come from providers, configs and option names: never read as rich markup (it
    # would eat "[budget]" or "pip install 'x[local]'").

    def info(self, message: str) -> None:
        # soft_wrap: a path is never cut in two (the terminal wraps the line, copy-paste works)
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._log_handler)
        if self._started:
            self._progress.stop()
            self._started = False


def _blank_fields() -> dict[str, Any]:
    return {"rate": "", "errors": "", "hits": "", "eta_s": None}


def _description(label: str, phase: str | None = None) -> str:
    text = f"{label}: {phase}" if phase else label
    return escape(text)  # a phase may come from a provider ("[queued]" is not markup)


class _ConsoleLogHandler(logging.Handler):
    """Warnings and errors logged by any module, shown as the reporter's warnings."""

    def __init__(self, reporter: RichReporter) -> None:
        super().__init__(level=logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        if _printed_by_its_own_handler(record):
            return  # a library that prints its own logs (huggingface_hub): once is enough
        try:
            self.reporter.warning(record.getMessage())
        except Exception:  # logging must never break the run
            self.handleError(record)


def _printed_by_its_own_handler(record: logging.LogRecord) -> bool:
    """Whether a logger between the record's and the root has handlers of its own."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None and logger is not logging.getLogger():
        if logger.handlers:
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


class Tee(Reporter):
    """Sends every event to several reporters (the console's and the run's status file)."""

    def __init__(self, *reporters: Reporter) -> None:
        super().__init__()
        self.reporters = reporters

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        for r in self.reporters:
            r.stage_started(iteration, stage, total)

    def phase(self, name: str | None = None, total: int | None = None) -> None:
        for r in self.reporters:
            r.phase(name, total)

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
        self,
        iteration: int,
        stage: str,
        counts: dict[str, Any],
        seconds: float,
        *,
        skipped: bool,
        summary: str = "",
    ) -> None:
        for r in self.reporters:
            r.stage_finished(iteration, stage, counts, seconds, skipped=skipped, summary=summary)

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
    """A stage as a person reads it: "eval pairs", "iter 2 training data"."""
    words = stage.replace("_", " ")
    if iteration:
        return f"iter {iteration} {words}"
    return "evaluate seed judge" if stage == "evaluate" else words


def make_reporter(*, quiet: bool = False, log_json: bool = False) -> Reporter:
    """The reporter for the CLI flags: --log-json wins, then --quiet, else progress bars."""
    if log_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    return RichReporter()


def _training_rate(state: Any) -> str:
    """The training figures of a fine-tune bar: the loss, and GRPO's mean reward and KL."""
    parts = [f"loss {state.loss:.4g}"] if state.loss is not None else []
    metrics = getattr(state, "metrics", None) or {}
    parts += [f"{name} {metrics[name]:.3g}" for name in ("reward", "kl") if name in metrics]
    return ", ".join(parts)
