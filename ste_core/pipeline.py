"""The Self-Taught Evaluator loop: the library behind `ste run`.

    from ste_core.pipeline import Pipeline, run

    result = run("examples/together-small.toml")          # blocking, like `ste run`
    pipeline = Pipeline.from_config("my.toml")            # or, in a notebook:
    await pipeline.run()
    await pipeline.stage("baseline", iteration=1)         # one stage
    for pair in pipeline.pairs(1): ...                     # typed records back
    pipeline.metrics()                                     # {iteration: IterationMetrics}

Stages (iteration 0 holds the run-level ones and the seed judge's evaluation):

    0: load -> classify (if [filter] enabled) -> split -> eval_pairs -> evaluate (seed judge M0)
    i: baseline -> worse -> judge (by M_{i-1}) -> select -> training_data -> finetune (M_i)
       -> evaluate (M_i, on the same frozen eval pairs)

Every stage is idempotent: it writes its files atomically, then marks itself done in the store
with its funnel counts; a finished stage is skipped on the next run. Every model call goes through
a Scheduler with the run's store as cache, so re-running after a crash repeats no answered call.
A fine-tuned judge is served (`FineTuneBackend.serve`) for exactly the stages that need it: its
evaluation and the next iteration's judging; the endpoint is torn down afterwards, also on error
or Ctrl-C.

Where the code lives:

- this module: the order of the stages, skipping finished ones, events, the public API;
- `ste_core.runtime.RunContext`: the open run's store, manifest, budget, backends, schedulers;
- `ste_core.judges`: the judge of a stage, and serving a fine-tuned one;
- `ste_core.steps.*`: one function per stage (read inputs, call `ste_core.stages`, write files);
- `ste_core.run_metrics`: usage, funnel, metrics.json, summary.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ste_core.budget import Budget
from ste_core.config import Config, load_config
from ste_core.errors import ConfigurationError, SteError
from ste_core.hookspecs import IterationEvent, RunEvent, StageEvent
from ste_core.judges import Judge, judge_session
from ste_core.progress import Reporter
from ste_core.records import Instruction, Judgement, ModelRef, ResponsePair
from ste_core.run_metrics import (
    IterationMetrics,
    headline,
    read_metrics,
    read_metrics_raw,
    usage_since,
    usage_snapshot,
    write_summary,
)
from ste_core.rundir import Manifest, RunDir, read_jsonl
from ste_core.runtime import RunContext
from ste_core.stages.judge import JudgeFailure
from ste_core.steps import (
    ALL_STAGES,
    EVALUATE,
    ITERATION_STAGES,
    RUN_STAGES,
    data,
    evaluation,
    generation,
    judging,
    prerequisites,
    training,
)
from ste_core.steps.judging import read_judgements
from ste_core.store import RunStore

__all__ = [
    "ITERATION_STAGES",
    "RUN_STAGES",
    "IterationMetrics",
    "Pipeline",
    "RunResult",
    "read_judgements",
    "run",
]

Counts = dict[str, int]

# The steps that need only the run (iteration 0) or the run and an iteration. `judge` and
# `evaluate` also need the judge being served, so the loop opens a judge session around them.
_RUN_STEPS: dict[str, Callable[[RunContext], Awaitable[Counts]]] = {
    "load": data.load,
    "classify": data.classify,
    "split": data.split,
    "eval_pairs": generation.eval_pairs,
}
_ITERATION_STEPS: dict[str, Callable[[RunContext, int], Awaitable[Counts]]] = {
    "baseline": generation.baseline,
    "worse": generation.worse,
    "select": training.select,
    "training_data": training.training_data,
    "finetune": training.finetune,
}


@dataclass
class RunResult:
    """What `Pipeline.run` returns."""

    run_dir: Path
    status: str
    metrics: dict[int, IterationMetrics] = field(default_factory=dict)
    models: dict[int, ModelRef] = field(default_factory=dict)


class Pipeline:
    """One run of the method, configured by a `Config`. See the module docstring."""

    def __init__(
        self, config: Config, *, fresh: bool = False, reporter: Reporter | None = None
    ) -> None:
        self.config = config
        self.rundir = RunDir(config.run_dir)
        self.reporter = reporter or Reporter()
        self._fresh = fresh
        # The open run; kept (closed) after `aclose` so `store`/`manifest` stay inspectable.
        self._ctx: RunContext | None = None

    @classmethod
    def from_config(
        cls,
        config: str | Path | Config,
        *,
        fresh: bool = False,
        reporter: Reporter | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Pipeline:
        """A pipeline from a config file path or a `Config` (overrides: dotted keys, files only)."""
        if not isinstance(config, Config):
            config = load_config(config, overrides=overrides)
        elif overrides:
            raise ValueError("overrides apply to config files; edit the Config object instead")
        return cls(config, fresh=fresh, reporter=reporter)

    @property
    def store(self) -> RunStore | None:
        """The run's store (None before `open`; closed after `aclose`)."""
        return self._ctx.store if self._ctx else None

    @property
    def manifest(self) -> Manifest | None:
        """The run's manifest.json (None before `open`)."""
        return self._ctx.manifest if self._ctx else None

    @property
    def budget(self) -> Budget | None:
        """The run's budget, with the spending of earlier sessions (None before `open`)."""
        return self._ctx.budget if self._ctx else None

    # ------------------------------------------------------------------------------------
    # Opening and closing
    # ------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create (or re-open) the run directory, store, manifest and budget. Idempotent."""
        self._context()

    def _context(self) -> RunContext:
        if self._ctx is None or self._ctx.closed:
            self._ctx = RunContext.open(self.config, self.rundir, self.reporter, fresh=self._fresh)
        return self._ctx

    async def aclose(self) -> None:
        """Close backends and the store (the run directory stays as it is)."""
        if self._ctx is not None:
            await self._ctx.aclose()

    # ------------------------------------------------------------------------------------
    # Running
    # ------------------------------------------------------------------------------------

    def run_sync(self, *, iterations: int | None = None) -> RunResult:
        """`run()` in a fresh event loop (scripts; in a notebook use `await pipeline.run()`).
        SIGTERM is treated like Ctrl-C: the current stage stops, endpoints are torn down,
        state is saved."""

        async def main() -> RunResult:
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                assert task is not None
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
            return await self.run(iterations=iterations)

        return asyncio.run(main())

    async def run(self, *, iterations: int | None = None) -> RunResult:
        """Run (or resume) the whole loop; returns the metrics of every evaluated judge."""
        ctx = self._context()
        k = iterations if iterations is not None else self.config.run.iterations
        status = "failed"
        try:
            await self._prepare(ctx)
            for i in range(1, k + 1):
                await self._iteration(ctx, i)
            if not ctx.store.stage_done(k, EVALUATE):
                async with judge_session(ctx, k) as judge:
                    await self._evaluate(ctx, k, judge)
                self._iteration_finished(k)
            status = "succeeded"
            return RunResult(
                run_dir=self.rundir.root,
                status=status,
                metrics=self.metrics(),
                models=self.models(),
            )
        except (asyncio.CancelledError, KeyboardInterrupt):
            status = "interrupted"
            raise
        finally:
            self._finish(ctx, status)
            await self.aclose()

    def _finish(self, ctx: RunContext, status: str) -> None:
        ctx.end_session(status)
        self._write_reports()
        _fire(
            "run_finished",
            RunEvent(
                run_name=self.config.run.name,
                run_dir=str(self.rundir.root),
                status=status,
                metrics={
                    str(i): headline(v) for i, v in read_metrics_raw(self.rundir.root).items()
                },
            ),
        )

    async def _prepare(self, ctx: RunContext) -> None:
        for name, step in _RUN_STEPS.items():
            if name == "classify" and not self.config.filter.enabled:
                continue
            await self._run_stage(ctx, 0, name, partial(step, ctx))

    async def _iteration(self, ctx: RunContext, i: int) -> None:
        st = ctx.store
        await self._run_stage(ctx, i, "baseline", partial(generation.baseline, ctx, i))
        await self._run_stage(ctx, i, "worse", partial(generation.worse, ctx, i))
        if not st.stage_done(i - 1, EVALUATE) or not st.stage_done(i, "judge"):
            # M_{i-1} is served once for its own evaluation and for annotating iteration i.
            async with judge_session(ctx, i - 1) as judge:
                if not st.stage_done(i - 1, EVALUATE):
                    await self._evaluate(ctx, i - 1, judge)
                    self._iteration_finished(i - 1)
                await self._judge(ctx, i, judge)
        for name in ("select", "training_data", "finetune"):
            await self._run_stage(ctx, i, name, partial(_ITERATION_STEPS[name], ctx, i))

    # The two stages that call a judge; the caller holds the judge session open around them.

    async def _judge(self, ctx: RunContext, i: int, judge: Judge) -> Counts:
        return await self._run_stage(ctx, i, "judge", partial(judging.judge, ctx, i, judge))

    async def _evaluate(self, ctx: RunContext, j: int, judge: Judge) -> Counts:
        return await self._run_stage(ctx, j, EVALUATE, partial(evaluation.evaluate, ctx, j, judge))

    async def stage(self, name: str, iteration: int = 0, *, force: bool = False) -> Counts:
        """Run one stage (its inputs must exist); `force` re-runs a finished one (cached calls
        are not repeated). Returns the stage's funnel counts."""
        if name not in ALL_STAGES:
            raise ConfigurationError(f"unknown stage {name!r}; stages: {', '.join(ALL_STAGES)}")
        if name in RUN_STAGES and iteration != 0:
            raise ConfigurationError(f"stage {name!r} is run-level: use iteration 0")
        if name in ITERATION_STAGES and iteration < 1:
            raise ConfigurationError(f"stage {name!r} needs an iteration >= 1")
        if name == "classify" and not self.config.filter.enabled:
            raise ConfigurationError(
                "stage 'classify' does nothing while filter.enabled is false: enable the "
                "category filter in [filter] to run it"
            )
        ctx = self._context()
        if force:
            ctx.store.unmark_stage(iteration, name)
        if name in _RUN_STEPS:
            return await self._run_stage(ctx, iteration, name, partial(_RUN_STEPS[name], ctx))
        if name in _ITERATION_STEPS:
            step = _ITERATION_STEPS[name]
            return await self._run_stage(ctx, iteration, name, partial(step, ctx, iteration))
        judge_of = iteration if name == EVALUATE else iteration - 1
        async with judge_session(ctx, judge_of) as judge:
            if name == EVALUATE:
                counts = await self._evaluate(ctx, iteration, judge)
                self._iteration_finished(iteration)
                return counts
            return await self._judge(ctx, iteration, judge)

    async def _run_stage(
        self, ctx: RunContext, iteration: int, name: str, body: Callable[[], Awaitable[Counts]]
    ) -> Counts:
        """Skip a finished stage; else run it, mark it with its counts, fire `stage_finished`."""
        store = ctx.store
        if store.stage_done(iteration, name):
            finished: dict[str, Counts] = store.stage_counts(iteration)  # type: ignore[assignment]
            done = finished.get(name, {})
            self.reporter.stage_finished(iteration, name, done, 0.0, skipped=True)
            return done
        for it, needed in prerequisites(name, iteration, filter_enabled=self.config.filter.enabled):
            if not store.stage_done(it, needed):
                raise SteError(
                    f"stage {name!r} (iteration {iteration}) needs stage {needed!r} "
                    f"(iteration {it}) first; run the pipeline or that stage"
                )
        before = usage_snapshot(ctx.schedulers())
        started = time.monotonic()
        self.reporter.stage_started(iteration, name, None)
        counts = await body()
        seconds = time.monotonic() - started
        usage = usage_since(before, ctx.schedulers())
        store.set_state(f"stage_usage/{iteration}/{name}", {**usage, "seconds": round(seconds, 3)})
        ctx.manifest.add_usage(name, usage)
        ctx.manifest.record_stage(iteration, name, seconds)
        ctx.manifest.save()
        # Marked last: a crash before this line re-runs the stage (from the cache) next time.
        store.mark_stage(iteration, name, counts)
        self.reporter.stage_finished(iteration, name, counts, seconds, skipped=False)
        _fire(
            "stage_finished",
            StageEvent(
                run_name=self.config.run.name,
                iteration=iteration,
                stage=name,
                counts=counts,
                metrics=dict(usage),
                seconds=seconds,
            ),
        )
        return counts

    def _iteration_finished(self, j: int) -> None:
        metrics = read_metrics_raw(self.rundir.root).get(j, {})
        _fire(
            "iteration_finished",
            IterationEvent(
                run_name=self.config.run.name,
                iteration=j,
                judge_model=str(metrics.get("judge_model", "")),
                metrics=headline(metrics),
            ),
        )
        self._write_reports()

    def _write_reports(self) -> None:
        """summary.md and report.md/html/png, after every evaluated judge and at the end of a
        session (so a crashed run has a report, and a finished one shows its final status)."""
        write_summary(self.config, self.rundir)
        try:
            from ste_core.evaluation.report import write_report
        except ImportError:  # the evaluation package is optional for the loop itself
            return
        try:
            write_report([self.rundir.root])
        except Exception as exc:  # a report problem must never stop a paid-for run
            self.reporter.warning(f"report: could not write report.md/html ({exc!r})")

    # ------------------------------------------------------------------------------------
    # Reading results (also after the run, from its directory)
    # ------------------------------------------------------------------------------------

    def pairs(self, iteration: int) -> Iterator[ResponsePair]:
        """The training pairs of an iteration (iteration 0: the frozen eval pairs)."""
        path = (
            self.rundir.eval_pairs_path
            if iteration == 0
            else self.rundir.iter_file(iteration, "pairs.jsonl")
        )
        return read_jsonl(path, ResponsePair)

    def eval_pairs(self) -> Iterator[ResponsePair]:
        """The frozen eval pairs every judge is scored on."""
        return read_jsonl(self.rundir.eval_pairs_path, ResponsePair)

    def judgements(self, iteration: int) -> Iterator[Judgement | JudgeFailure]:
        """The annotating judgements of an iteration (by M_{iteration-1})."""
        return read_judgements(self.rundir.iter_file(iteration, "judgements.jsonl"))

    def eval_judgements(self, iteration: int) -> Iterator[Judgement | JudgeFailure]:
        """The eval judgements of judge M_iteration (0 = the seed judge)."""
        return read_judgements(self.rundir.iter_file(iteration, "eval.jsonl"))

    def instructions(self, split: str = "train") -> Iterator[Instruction]:
        """Instructions after loading: split = "all", "train" or "eval"."""
        name = {"all": "instructions", "train": "train", "eval": "eval"}[split]
        return read_jsonl(self.rundir.data(name), Instruction)

    def metrics(self) -> dict[int, IterationMetrics]:
        """Evaluation metrics of every evaluated judge, by iteration (0 = the seed judge)."""
        return read_metrics(self.rundir.root)

    def models(self) -> dict[int, ModelRef]:
        """The fine-tuned model of every finished iteration."""
        out: dict[int, ModelRef] = {}
        with self._reading_store() as store:
            if store is None:
                return out
            i = 1
            while (data := store.get_state(f"model/{i}")) is not None:
                out[i] = ModelRef.model_validate(data)
                i += 1
        return out

    def funnel(self, iteration: int) -> dict[str, dict[str, int]]:
        """Counts of every finished stage of an iteration (from the store)."""
        with self._reading_store() as store:
            return {} if store is None else store.stage_counts(iteration)  # type: ignore[return-value]

    @contextlib.contextmanager
    def _reading_store(self) -> Iterator[RunStore | None]:
        """The open store, or (after the run) the run's store opened just for reading."""
        if self._ctx is not None and not self._ctx.closed:
            yield self._ctx.store
            return
        if not self.rundir.store_path.exists():
            yield None
            return
        store = RunStore(self.rundir.store_path)
        try:
            yield store
        finally:
            store.close()


def _fire(hook_name: str, event: Any) -> None:
    """Call an event hook; a failing plugin gives a warning, never stops the run."""
    from ste_core.plugins import PluginWarning, hook

    try:
        getattr(hook(), hook_name)(event=event)
    except Exception as exc:
        warnings.warn(f"a plugin's {hook_name} hook failed: {exc!r}", PluginWarning, stacklevel=2)


def run(
    config: str | Path | Config,
    *,
    fresh: bool = False,
    iterations: int | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run (or resume) the loop for `config` and block until it ends (`ste run` in Python)."""
    return Pipeline.from_config(config, fresh=fresh, reporter=reporter).run_sync(
        iterations=iterations
    )
