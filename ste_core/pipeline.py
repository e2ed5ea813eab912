"""The Self-Taught Evaluator loop: a generic runner over the plan of stages.

    from ste_core import Pipeline, run

    result = run("examples/together-small.toml")          # blocking, like `ste run`
    pipeline = Pipeline.from_config("my.toml")            # or, in a notebook:
    await pipeline.run()
    await pipeline.stage("baseline", iteration=1)         # one stage
    for pair in pipeline.pairs(1): ...                     # typed records back
    pipeline.metrics()                                     # {iteration: IterationMetrics}

The plan (`ste_core.stages.STAGES`) says what runs; this module says how any plan runs:

- **Schedule.** Run-scope stages at iteration 0, then iterations 1..K, stages in plan order; a
  stage that runs once per judge runs for M_0 at iteration 0 and for M_i after iteration i's
  stages. Then a step that calls a judge waits until just before the next step that calls the
  same judge, when nothing in between needs it: M_i's evaluation moves next to iteration i+1's
  judging, so the two share one serving session (one dedicated endpoint, not two).
- **Each step.** A finished step is skipped; one whose prerequisites are not done is refused;
  otherwise it runs, its usage is counted, and it is marked done in the store with its counts
  (last: a crash before that re-runs it, from the cache), and `stage_finished` fires.
- **Judges.** Adjacent steps that call the same judge share one session: the seed judge, or a
  fine-tuned one served for the block and torn down after it, also on error or Ctrl-C.

Every stage is idempotent and every model call goes through a Scheduler with the run's store as
cache, so re-running after a crash repeats no answered call. `ste run --plan CONFIG` prints the
schedule of a config and what is already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ste_core.config import Config, load_config
from ste_core.engine.budget import Budget
from ste_core.engine.store import RunStore
from ste_core.errors import BudgetExceeded, ConfigurationError, SteError
from ste_core.hookspecs import IterationEvent, RunEvent, StageEvent
from ste_core.plugins import fire_event
from ste_core.records import (
    Drop,
    Instruction,
    IterationMetrics,
    Judgement,
    ModelRef,
    ResponsePair,
    RunManifest,
)
from ste_core.run.context import RunContext
from ste_core.run.exports import write_summary
from ste_core.run.io import read_rows
from ste_core.run.progress import Reporter, Tee
from ste_core.run.recovery import reap_left_open
from ste_core.run.rundir import RunDir
from ste_core.run.serving import Judge, judge_session
from ste_core.run.status import LiveStatus
from ste_core.stages import STAGES, Stage, Step, stage_named
from ste_core.stages.judge import read_judgements

__all__ = [
    "Pipeline",
    "PlannedStep",
    "RunResult",
    "judge_groups",
    "prerequisites",
    "run",
    "schedule",
]

#: how long a graceful stop lets the requests in flight finish
STOP_GRACE_S = 15.0


@dataclass
class RunResult:
    """What `Pipeline.run` returns."""

    run_dir: Path
    status: str
    metrics: dict[int, IterationMetrics] = field(default_factory=dict)
    models: dict[int, ModelRef] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    """One stage at one iteration, in the order the run takes them."""

    stage: Stage[Any]
    iteration: int

    @property
    def judge(self) -> int | None:
        """The index j of the judge M_j this step calls (None: no judge)."""
        return self.stage.judge_of(self.iteration)

    @property
    def key(self) -> tuple[str, int]:
        return (self.stage.name, self.iteration)


def prerequisites(
    stage: Stage[Any], iteration: int, config: Config, plan: Sequence[Stage[Any]] = STAGES
) -> list[tuple[str, int]]:
    """The (stage, iteration) steps that must be done before `stage` runs at `iteration`: a
    needed run-scope stage at iteration 0, any other at the same iteration; a need on a stage
    that is disabled, or does not run at that iteration, does not apply."""
    out = []
    for name in stage.needs:
        needed = stage_named(name, tuple(plan))
        at = 0 if needed.scope == "run" else iteration
        if needed.active(config, at, max(at, 1)):
            out.append((needed.name, at))
    return out


def schedule(
    config: Config, iterations: int, plan: Sequence[Stage[Any]] = STAGES
) -> list[PlannedStep]:
    """Every step of a run of `iterations` training iterations, in the order they run (see the
    module docstring)."""
    steps = [
        PlannedStep(stage, i)
        for i in range(iterations + 1)
        for stage in plan
        if stage.active(config, i, iterations)
    ]
    # From the end backwards, so that a step joins its partner after the partner has joined its
    # own: M_i's evaluation and benchmarks both end up next to iteration i+1's judging.
    for i in reversed(range(len(steps))):
        step = steps[i]
        if step.judge is None:
            continue
        later = range(i + 1, len(steps))
        partner = next((k for k in later if steps[k].judge == step.judge), None)
        if partner is None or partner == i + 1:
            continue
        between = steps[i + 1 : partner]
        if not any(step.key in prerequisites(b.stage, b.iteration, config, plan) for b in between):
            steps.insert(partner - 1, steps.pop(i))
    return steps


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


class Pipeline:
    """One run of the method, configured by a `Config`. See the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        fresh: bool = False,
        reporter: Reporter | None = None,
        plan: Sequence[Stage[Any]] = STAGES,
    ) -> None:
        self.config = config
        self.plan = tuple(plan)
        self.rundir = RunDir(config.run_dir)
        # Besides the console's, every run keeps status.json current for `ste status`.
        self._live = LiveStatus(self.rundir.root)
        self.reporter: Reporter = Tee(reporter or Reporter(), self._live)
        self._fresh = fresh
        # The open run; kept (closed) after `aclose` so `store`/`manifest` stay inspectable.
        self._ctx: RunContext | None = None
        # The task inside `run()`, for `stop()`; and the task that cancels it after a stop.
        self._running: asyncio.Task[Any] | None = None
        self._stopper: asyncio.Future[None] | None = None

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
    def manifest(self) -> RunManifest | None:
        """The run's manifest (None before `open`)."""
        return self._ctx.manifest if self._ctx else None

    @property
    def budget(self) -> Budget | None:
        """The run's budget, with the spending of earlier sessions (None before `open`)."""
        return self._ctx.budget if self._ctx else None

    # -- opening and closing ----------------------------------------------------------------------

    def open(self) -> None:
        """Create (or re-open) the run directory, store, manifest and budget. Idempotent."""
        self._context()

    def _context(self) -> RunContext:
        if self._ctx is None or self._ctx.closed:
            self._ctx = RunContext.open(
                self.config, self.rundir, self.reporter, fresh=self._fresh, plan=self.plan
            )
        return self._ctx

    async def aclose(self) -> None:
        """Close backends and the store (the run directory stays as it is)."""
        if self._ctx is not None:
            await self._ctx.aclose()

    # -- running --------------------------------------------------------------------------------

    def run_sync(self, *, iterations: int | None = None) -> RunResult:
        """`run()` in a fresh event loop (scripts; in a notebook use `await pipeline.run()`).

        Ctrl-C and SIGTERM stop gracefully (`stop`): nothing new is sent, the requests in flight
        finish and are kept, then the run stops as if cancelled (endpoints torn down, state
        saved). A second Ctrl-C stops at once."""

        async def main() -> RunResult:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.stop)
            return await self.run(iterations=iterations)

        return asyncio.run(main())

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the running `run()` gracefully: send nothing more, let the requests in flight
        finish (their answers are cached, so a resumed run asks none of them again), then
        cancel it; after `grace_s` it is cancelled anyway. A second call cancels at once."""
        task, ctx = self._running, self._ctx
        if task is None or task.done():
            return
        if ctx is None or ctx.gate.closed:
            task.cancel()
            return
        in_flight = ctx.gate.in_flight
        self.reporter.warning(
            f"stopping: {in_flight} request(s) in flight may finish (at most {grace_s:.0f} s) "
            "and are kept; nothing new is sent. Press Ctrl-C again to stop at once."
        )
        ctx.gate.close()

        async def cancel_when_drained() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.gate.drained(), grace_s)
            task.cancel()

        self._stopper = asyncio.ensure_future(cancel_when_drained())

    async def run(self, *, iterations: int | None = None) -> RunResult:
        """Run (or resume) the whole loop; returns the metrics of every evaluated judge.

        The preflight comes first, before the run directory is touched: a backend that cannot
        be built (a missing key, say) stops it there; an estimate over the budget is a warning
        (the budget stops the run exactly where it runs out)."""
        self._running = asyncio.current_task()
        k = iterations if iterations is not None else self.config.run.iterations
        await self._preflight(k)
        ctx = self._context()
        status = "failed"
        try:
            steps = schedule(self.config, k, self.plan)
            await reap_left_open(ctx, keep=self._served_next(ctx, steps))
            for group in judge_groups(steps):
                await self._run_group(ctx, group, steps)
            await reap_left_open(ctx, kinds=("endpoint", "batch"))
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
        except BudgetExceeded:
            status = "stopped_at_budget"  # not a failure: raise the limit and re-run to go on
            raise
        finally:
            self._finish(ctx, status)
            await self.aclose()

    async def _preflight(self, iterations: int) -> None:
        from ste_core.run.preflight import preflight

        # --fresh: the run directory is about to be wiped, so nothing in it counts.
        fresh = self._fresh and self._ctx is None
        with contextlib.nullcontext(None) if fresh else self._reading_store() as store:
            checked = await preflight(
                self.config, store=store, iterations=iterations, plan=self.plan
            )
        if checked.problems:
            raise ConfigurationError(
                "preflight: nothing was sent.\n" + "\n".join(f"  {p}" for p in checked.problems)
            )
        estimate = checked.estimate
        assert estimate is not None
        self.reporter.info(estimate.summary())
        for line in estimate.over_budget():
            self.reporter.warning(
                f"budget: {line}. The run starts anyway and stops where the budget runs out; "
                "`ste run --check` shows the estimate per stage."
            )

    @staticmethod
    def _served_next(ctx: RunContext, steps: list[PlannedStep]) -> set[str]:
        """The fine-tuned model the next unfinished step calls (an endpoint a dead session left
        serving it is reused rather than torn down and created again)."""
        for s in steps:
            if ctx.store.stage_done(s.iteration, s.stage.name):
                continue
            if s.judge:  # M_j, j >= 1
                with contextlib.suppress(SteError):
                    return {ctx.model_ref(s.judge).model}
            return set()
        return set()

    async def stage(self, name: str, iteration: int = 0, *, force: bool = False) -> dict[str, int]:
        """Run one stage (its prerequisites must be done); `force` re-runs a finished one (cached
        calls are not repeated). Returns the stage's counts."""
        stage = stage_named(name, self.plan)
        if iteration not in stage.iterations(max(iteration, 1)):
            if stage.scope == "run":
                raise ConfigurationError(f"stage {name!r} is run-level: use iteration 0")
            raise ConfigurationError(f"stage {name!r} needs an iteration >= 1")
        if not stage.enabled(self.config):
            raise ConfigurationError(
                f"stage {name!r} runs only when {stage.enabled_when}; this config switches it off"
            )
        if not stage.at(self.config, iteration):
            raise ConfigurationError(
                f"stage {name!r} does not run at iteration {iteration} with this config: it runs "
                f"{stage.at_when}"
            )
        ctx = self._context()
        if force:
            ctx.store.unmark_stage(iteration, name)
        steps = schedule(self.config, max(self.config.run.iterations, iteration), self.plan)
        await self._run_group(ctx, [PlannedStep(stage, iteration)], steps)
        return ctx.store.stage_counts(iteration).get(name, {})

    async def _run_group(
        self, ctx: RunContext, group: list[PlannedStep], steps: list[PlannedStep]
    ) -> None:
        """Steps that call the same judge (or none), in one judge session when any must run."""
        j = group[0].judge
        if j is None or all(ctx.store.stage_done(s.iteration, s.stage.name) for s in group):
            for s in group:
                await self._run_step(ctx, s, None, steps)
            return
        async with judge_session(ctx, j) as judge:
            for s in group:
                await self._run_step(ctx, s, judge, steps)

    async def _run_step(
        self, ctx: RunContext, step: PlannedStep, judge: Judge | None, steps: list[PlannedStep]
    ) -> None:
        """Skip a finished step; else run it, mark it with its counts, fire `stage_finished`."""
        store, (name, i) = ctx.store, step.key
        if store.stage_done(i, name):
            done = store.stage_counts(i).get(name, {})
            summary = step.stage.counts.from_flat(done).describe()
            self.reporter.stage_finished(i, name, done, 0.0, skipped=True, summary=summary)
            return
        for needed, at in prerequisites(step.stage, i, self.config, self.plan):
            if not store.stage_done(at, needed):
                raise SteError(
                    f"stage {name!r} (iteration {i}) needs stage {needed!r} "
                    f"(iteration {at}) first; run the pipeline or that stage"
                )
        before = ctx.usage_snapshot()
        started = time.monotonic()
        self.reporter.stage_started(i, name, None)
        typed = await step.stage.run(Step(ctx, i, judge))
        counts = typed.flat()
        seconds = time.monotonic() - started
        usage = ctx.usage_since(before)
        ctx.manifest.add_usage(name, usage)
        ctx.manifest.record_stage(i, name, seconds)
        ctx.save_manifest()
        # Marked last: a crash before this line re-runs the stage (from the cache) next time.
        store.mark_stage(i, name, counts, usage.model_copy(update={"seconds": round(seconds, 3)}))
        self.reporter.stage_finished(
            i, name, counts, seconds, skipped=False, summary=typed.describe()
        )
        fire_event(
            "stage_finished",
            StageEvent(
                run_name=self.config.run.name,
                iteration=i,
                stage=name,
                counts=counts,
                metrics=usage.model_dump(exclude={"seconds"}),
                seconds=seconds,
            ),
        )
        if all(store.stage_done(s.iteration, s.stage.name) for s in steps if s.iteration == i):
            self._iteration_finished(ctx, i)

    def _iteration_finished(self, ctx: RunContext, i: int) -> None:
        metrics = ctx.store.metrics().get(i)
        fire_event(
            "iteration_finished",
            IterationEvent(
                run_name=self.config.run.name,
                iteration=i,
                judge_model=metrics.judge_model if metrics else "",
                metrics=metrics.headline() if metrics else {},
            ),
        )
        self._write_reports(ctx.store)

    def _finish(self, ctx: RunContext, status: str) -> None:
        ctx.end_session(status)
        self._live.close()
        self._write_reports(ctx.store)
        metrics = ctx.store.metrics()
        fire_event(
            "run_finished",
            RunEvent(
                run_name=self.config.run.name,
                run_dir=str(self.rundir.root),
                status=status,
                metrics={str(i): m.headline() for i, m in metrics.items()},
            ),
        )

    def _write_reports(self, store: RunStore) -> None:
        """summary.md and report.md/html/png, after every evaluated judge and at the end of a
        session (so a crashed run has a report, and a finished one shows its final status)."""
        write_summary(self.config, self.rundir, store.metrics())
        try:
            from ste_core.evaluation.report import write_report
        except ImportError:  # the evaluation package is optional for the loop itself
            return
        try:
            write_report([self.rundir.root])
        except Exception as exc:  # a report problem must never stop a paid-for run
            self.reporter.warning(f"report: could not write report.md/html ({exc!r})")

    # -- reading results (also after the run, from its directory) ----------------------------------

    def pairs(self, iteration: int) -> Iterator[ResponsePair]:
        """The training pairs of an iteration (iteration 0: the frozen eval pairs)."""
        path = (
            self.rundir.eval_pairs_path
            if iteration == 0
            else self.rundir.iter_file(iteration, "pairs.jsonl")
        )
        return read_rows(path, ResponsePair)

    def eval_pairs(self) -> Iterator[ResponsePair]:
        """The frozen eval pairs every judge is scored on."""
        return read_rows(self.rundir.eval_pairs_path, ResponsePair)

    def judgements(self, iteration: int) -> Iterator[Judgement | Drop]:
        """The annotating judgements of an iteration (by M_{iteration-1})."""
        return read_judgements(self.rundir.iter_file(iteration, "judgements.jsonl"))

    def eval_judgements(self, iteration: int) -> Iterator[Judgement | Drop]:
        """The eval judgements of judge M_iteration (0 = the seed judge)."""
        return read_judgements(self.rundir.iter_file(iteration, "eval.jsonl"))

    def instructions(self, split: str = "train") -> Iterator[Instruction]:
        """Instructions after loading: split = "all", "train" or "eval"."""
        name = {"all": "instructions", "train": "train", "eval": "eval"}[split]
        return read_rows(self.rundir.data(name), Instruction)

    def metrics(self) -> dict[int, IterationMetrics]:
        """Evaluation metrics of every evaluated judge, by iteration (0 = the seed judge)."""
        with self._reading_store() as store:
            return {} if store is None else store.metrics()

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
            return {} if store is None else store.stage_counts(iteration)

    @contextlib.contextmanager
    def _reading_store(self) -> Iterator[RunStore | None]:
        """The open store, or (after the run) the run's store opened just for reading."""
        if self._ctx is not None and not self._ctx.closed:
            yield self._ctx.store
            return
        if not self.rundir.store_path.exists():
            yield None
            return
        store = RunStore.open_read_only(self.rundir.store_path)
        try:
            yield store
        finally:
            store.close()


def judge_groups(steps: list[PlannedStep]) -> Iterator[list[PlannedStep]]:
    """Runs of adjacent steps that call the same judge; a step calling none is a group alone."""
    group: list[PlannedStep] = []
    for step in steps:
        if group and (step.judge is None or step.judge != group[-1].judge):
            yield group
            group = []
        group.append(step)
    if group:
        yield group


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
