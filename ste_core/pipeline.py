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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ste_core.backends import FineTuneBackend, InferenceBackend
from ste_core.budget import Budget, estimate_request_tokens
from ste_core.config import Config, load_config
from ste_core.data import LoadReport, load_instructions, normalise_text, split_instructions
from ste_core.errors import ConfigurationError, SteError
from ste_core.hookspecs import IterationEvent, RunEvent, StageEvent
from ste_core.progress import Reporter
from ste_core.records import ChatRequest, Instruction, Judgement, ModelRef, ResponsePair
from ste_core.rundir import (
    Manifest,
    RunDir,
    count_lines,
    jsonl_writer,
    package_versions,
    read_jsonl,
)
from ste_core.scheduler import Scheduler
from ste_core.stages.classify import (
    ClassifyFailure,
    category_counts,
    classify_instructions,
    pick_balanced,
    quotas,
)
from ste_core.stages.finetune import ServedModelBackend, run_finetune
from ste_core.stages.generate import (
    Baseline,
    GenerationDrop,
    baseline_request,
    generate_baselines,
    generate_worse,
    worse_request,
)
from ste_core.stages.judge import JudgeFailure, judge_pairs, judge_request, orders_for
from ste_core.stages.ordering import in_input_order
from ste_core.stages.select import Kept, select
from ste_core.stages.training_data import build_examples

log = logging.getLogger(__name__)

__all__ = [
    "ITERATION_STAGES",
    "RUN_STAGES",
    "IterationMetrics",
    "Pipeline",
    "RunResult",
    "read_judgements",
    "run",
]

RUN_STAGES = ("load", "classify", "split", "eval_pairs")
ITERATION_STAGES = ("baseline", "worse", "judge", "select", "training_data", "finetune")
EVALUATE = "evaluate"
ALL_STAGES = (*RUN_STAGES, *ITERATION_STAGES, EVALUATE)


class IterationMetrics(BaseModel):
    """metrics.json of one iteration (0 = the seed judge), as typed objects."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    iteration: int
    judge_model: str
    eval: Any  # ste_core.evaluation.EvalScore
    benchmarks: dict[str, Any] = Field(default_factory=dict)
    paired: dict[str, Any] = Field(default_factory=dict)
    funnel: dict[str, Any] = Field(default_factory=dict)


@dataclass
class RunResult:
    """What `Pipeline.run` returns."""

    run_dir: Path
    status: str
    metrics: dict[int, IterationMetrics] = field(default_factory=dict)
    models: dict[int, ModelRef] = field(default_factory=dict)


@dataclass
class _Judge:
    """The judge of one stage: the scheduler to call it through and the model name to ask for."""

    iteration: int  # 0 = the seed judge M0
    model: str
    scheduler: Scheduler
    role: str


def read_judgements(path: Path) -> Iterator[Judgement | JudgeFailure]:
    """Stream a judgements JSONL file (rows of Judgement, or JudgeFailure with error_type)."""
    for row in read_jsonl(path):
        if "error_type" in row and "text" not in row:
            yield JudgeFailure.model_validate(row)
        else:
            yield Judgement.model_validate(row)


def _judgement_row(rec: Judgement | JudgeFailure) -> dict[str, Any]:
    # Same shape as ste_core.evaluation.pairs_io.judgement_row (`ste score` reads these files).
    return rec.model_dump(mode="json")


class Pipeline:
    """One run of the method, configured by a `Config`. See the module docstring."""

    def __init__(
        self, config: Config, *, fresh: bool = False, reporter: Reporter | None = None
    ) -> None:
        self.config = config
        self.rundir = RunDir(config.run_dir)
        self.reporter = reporter or Reporter()
        self._fresh = fresh
        self._opened = False
        self.store: Any = None
        self.manifest: Manifest | None = None
        self.budget: Budget | None = None
        self._schedulers: dict[str, Scheduler] = {}
        self._backends: list[InferenceBackend] = []
        self._snapshots: dict[int, dict[str, float]] = {}
        self._ft: FineTuneBackend | None = None
        self._templates: dict[str, Any] = {}
        # Schedulers of served fine-tuned judges (live only inside a judge session).
        self._extra_schedulers: list[Scheduler] = []

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

    # ------------------------------------------------------------------------------------
    # Opening and closing
    # ------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create (or re-open) the run directory, store, manifest and budget. Idempotent."""
        if self._opened:
            return
        from ste_core.store import RunStore

        cfg = self.config
        if self._fresh:
            self.rundir.wipe()
        self.rundir.create()
        self.store = RunStore(self.rundir.store_path)
        previous = self.store.get_state("config/result_settings")
        if previous is not None:
            changed = cfg.changed_settings(previous)
            if changed:
                self.store.close()
                raise ConfigurationError(
                    f"the config changed since run '{cfg.run.name}' started, in keys that change "
                    f"results: {', '.join(changed[:12])}{' ...' if len(changed) > 12 else ''}. "
                    "Re-run with --fresh to start over, or give the run another run.name. "
                    "(run.iterations, budget and limits may change freely.)"
                )
        else:
            self.store.set_state("config/result_settings", cfg.result_settings())
        self.rundir.write_config(cfg.model_dump_toml())
        self.manifest = Manifest(self.rundir.manifest_path)
        m = self.manifest.data
        m["name"] = cfg.run.name
        m["seed"] = cfg.run.seed
        m["config_fingerprint"] = cfg.fingerprint()
        m["status"] = "running"
        m["models"].setdefault("generator", cfg.generator.model)
        m["models"].setdefault("judge_seed", cfg.judge.model)
        m["sessions"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running"})
        m["versions"] = package_versions(self._backend_distributions())
        self.manifest.save()
        b = cfg.budget
        self.budget = Budget(
            b.max_cost_usd,
            b.max_requests,
            input_per_million=b.input_per_million,
            output_per_million=b.output_per_million,
            spent_usd=self.manifest.spent_usd,
            requests=self.manifest.requests,
        )
        self._opened = True

    def _backend_distributions(self) -> list[str]:
        from ste_core.plugins import get_host

        host = get_host()
        dists: list[str] = []
        backends = self.manifest.data["backends"] if self.manifest else {}
        for role, name in (
            ("generator", self.config.generator.backend),
            ("judge", self.config.judge.backend),
            ("finetune", self.config.finetune.backend),
        ):
            info = host.backends.get(name)
            if info is None:
                continue
            backends[role] = {
                "backend": name,
                "distribution": info.distribution,
                "version": info.version,
            }
            if info.distribution:
                dists.append(info.distribution)
        return dists

    async def aclose(self) -> None:
        """Close backends and the store (the run directory stays as it is)."""
        for backend in self._backends:
            with contextlib.suppress(Exception):
                await backend.aclose()
        self._backends.clear()
        self._schedulers.clear()
        if self._ft is not None:
            with contextlib.suppress(Exception):
                await self._ft.aclose()
            self._ft = None
        if self.store is not None:
            self.store.close()
        self._opened = False

    # ------------------------------------------------------------------------------------
    # Backends, schedulers, templates
    # ------------------------------------------------------------------------------------

    def _template(self, name: str) -> Any:
        if name not in self._templates:
            from ste_core.plugins import get_host

            try:
                self._templates[name] = get_host().template(name)
            except Exception as exc:  # TemplateError names the file / the known names
                raise ConfigurationError(f"template {name!r}: {exc}") from exc
        return self._templates[name]

    def _make_backend(self, name: str, options: dict[str, Any]) -> InferenceBackend:
        from ste_core.plugins import get_inference_backend

        backend = get_inference_backend(name, **options)
        self._backends.append(backend)
        return backend

    def _new_scheduler(self, backend: InferenceBackend, limits: Any) -> Scheduler:
        return Scheduler(
            backend,
            limits=limits,
            store=self.store,
            budget=self.budget,
            on_event=self.reporter.scheduler_event,
        )

    def _scheduler(self, role: str) -> Scheduler:
        """The scheduler of `generator` or `judge` (shared when both use the same backend setup,
        so rate limits of one provider account are enforced once)."""
        section = self.config.generator if role == "generator" else self.config.judge
        key = json.dumps(
            [section.backend, section.options, section.limits.model_dump()],
            sort_keys=True,
            default=str,
        )
        if key not in self._schedulers:
            backend = self._make_backend(section.backend, dict(section.options))
            self._schedulers[key] = self._new_scheduler(backend, section.limits)
        return self._schedulers[key]

    def _finetune_backend(self) -> FineTuneBackend:
        if self._ft is None:
            from ste_core.plugins import get_finetune_backend

            self._ft = get_finetune_backend(
                self.config.finetune.backend, **dict(self.config.finetune.options)
            )
        return self._ft

    def _usage_snapshot(self) -> dict[int, dict[str, float]]:
        out = {}
        for s in {id(s): s for s in self._all_schedulers()}.values():
            st = s.stats
            out[id(s)] = {
                "requests": st.requests,
                "cache_hits": st.cache_hits,
                "prompt_tokens": st.usage.prompt_tokens,
                "completion_tokens": st.usage.completion_tokens,
                "cost_usd": st.cost_usd,
            }
        return out

    def _all_schedulers(self) -> list[Scheduler]:
        return list(self._schedulers.values()) + list(self._extra_schedulers)

    def _usage_delta(self, before: dict[int, dict[str, float]]) -> dict[str, float]:
        after = self._usage_snapshot()
        total: dict[str, float] = {
            "requests": 0,
            "cache_hits": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
        }
        for sid, now in after.items():
            prev = before.get(sid, {})
            for k in total:
                total[k] += now[k] - prev.get(k, 0)
        return total

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
        self.open()
        k = iterations if iterations is not None else self.config.run.iterations
        status = "failed"
        try:
            await self._prepare()
            for i in range(1, k + 1):
                await self._iteration(i)
            if not self.store.stage_done(k, EVALUATE):
                async with self._judge_session(k) as judge:
                    await self._run_stage(k, EVALUATE, lambda: self._evaluate(k, judge))
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
            self._finish(status)
            await self.aclose()

    def _finish(self, status: str) -> None:
        if self.manifest is None:
            return
        m = self.manifest.data
        m["status"] = status
        m["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if m["sessions"]:
            m["sessions"][-1].update(finished=m["finished"], status=status)
        self.manifest.save()
        self._write_summary()
        _fire(
            "run_finished",
            RunEvent(
                run_name=self.config.run.name,
                run_dir=str(self.rundir.root),
                status=status,
                metrics={str(i): _headline(v) for i, v in self._metrics_raw().items()},
            ),
        )

    async def _prepare(self) -> None:
        await self._run_stage(0, "load", self._load)
        if self.config.filter.enabled:
            await self._run_stage(0, "classify", self._classify)
        await self._run_stage(0, "split", self._split)
        await self._run_stage(0, "eval_pairs", self._eval_pairs)

    async def _iteration(self, i: int) -> None:
        st = self.store
        await self._run_stage(i, "baseline", lambda: self._baseline(i))
        await self._run_stage(i, "worse", lambda: self._worse(i))
        if not st.stage_done(i - 1, EVALUATE) or not st.stage_done(i, "judge"):
            # M_{i-1} is served once for its own evaluation and for annotating iteration i.
            async with self._judge_session(i - 1) as judge:
                if not st.stage_done(i - 1, EVALUATE):
                    await self._run_stage(i - 1, EVALUATE, lambda: self._evaluate(i - 1, judge))
                    self._iteration_finished(i - 1)
                await self._run_stage(i, "judge", lambda: self._judge(i, judge))
        await self._run_stage(i, "select", lambda: self._select(i))
        await self._run_stage(i, "training_data", lambda: self._training_data(i))
        await self._run_stage(i, "finetune", lambda: self._finetune(i))

    async def stage(self, name: str, iteration: int = 0, *, force: bool = False) -> dict[str, int]:
        """Run one stage (its inputs must exist); `force` re-runs a finished one (cached calls
        are not repeated). Returns the stage's funnel counts."""
        if name not in ALL_STAGES:
            raise ConfigurationError(f"unknown stage {name!r}; stages: {', '.join(ALL_STAGES)}")
        if name in RUN_STAGES and iteration != 0:
            raise ConfigurationError(f"stage {name!r} is run-level: use iteration 0")
        if name in ITERATION_STAGES and iteration < 1:
            raise ConfigurationError(f"stage {name!r} needs an iteration >= 1")
        self.open()
        if force:
            self.store.unmark_stage(iteration, name)
        simple: dict[str, Callable[[], Any]] = {
            "load": self._load,
            "classify": self._classify,
            "split": self._split,
            "eval_pairs": self._eval_pairs,
            "baseline": lambda: self._baseline(iteration),
            "worse": lambda: self._worse(iteration),
            "select": lambda: self._select(iteration),
            "training_data": lambda: self._training_data(iteration),
            "finetune": lambda: self._finetune(iteration),
        }
        if name in simple:
            return await self._run_stage(iteration, name, simple[name])
        judge_of = iteration if name == EVALUATE else iteration - 1
        async with self._judge_session(judge_of) as judge:
            if name == EVALUATE:
                counts = await self._run_stage(
                    iteration, name, lambda: self._evaluate(iteration, judge)
                )
                self._iteration_finished(iteration)
                return counts
            return await self._run_stage(iteration, name, lambda: self._judge(iteration, judge))

    async def _run_stage(
        self, iteration: int, name: str, body: Callable[[], Any]
    ) -> dict[str, int]:
        """Skip a finished stage; else run it, mark it with its counts, fire `stage_finished`."""
        if self.store.stage_done(iteration, name):
            done: dict[str, int] = self.store.stage_counts(iteration).get(name, {})
            self.reporter.stage_finished(iteration, name, done, 0.0, skipped=True)
            return done
        self._require_inputs(iteration, name)
        before = self._usage_snapshot()
        started = time.monotonic()
        self.reporter.stage_started(iteration, name, None)
        counts: dict[str, int] = await body()
        seconds = time.monotonic() - started
        usage = self._usage_delta(before)
        self.store.set_state(
            f"stage_usage/{iteration}/{name}", {**usage, "seconds": round(seconds, 3)}
        )
        assert self.manifest is not None
        self.manifest.add_usage(name, usage)
        self.manifest.record_stage(iteration, name, seconds)
        self.manifest.save()
        self.store.mark_stage(iteration, name, counts)
        self.reporter.stage_finished(iteration, name, counts, seconds, skipped=False)
        _fire(
            "stage_finished",
            StageEvent(
                run_name=self.config.run.name,
                iteration=iteration,
                stage=name,
                counts=counts,
                metrics={k: v for k, v in usage.items()},
                seconds=seconds,
            ),
        )
        return counts

    _NEEDS: dict[str, tuple[tuple[int, str], ...]] = {  # noqa: RUF012 - (iteration offset, stage)
        "classify": ((0, "load"),),
        "split": ((0, "load"),),
        "eval_pairs": ((0, "split"),),
        "baseline": ((0, "split"),),
        "worse": ((1, "baseline"),),
        "judge": ((1, "worse"),),
        "select": ((1, "judge"),),
        "training_data": ((1, "select"),),
        "finetune": ((1, "training_data"),),
    }

    def _require_inputs(self, iteration: int, name: str) -> None:
        needs = list(self._NEEDS.get(name, ()))
        if name == "split" and self.config.filter.enabled:
            needs.append((0, "classify"))
        if name == EVALUATE:
            needs = [(0, "eval_pairs")]
            if iteration > 0:
                needs.append((1, "finetune"))
        for offset, stage in needs:
            it = iteration if offset else 0
            if not self.store.stage_done(it, stage):
                raise SteError(
                    f"stage {name!r} (iteration {iteration}) needs stage {stage!r} "
                    f"(iteration {it}) first; run the pipeline or that stage"
                )

    # ------------------------------------------------------------------------------------
    # Budget
    # ------------------------------------------------------------------------------------

    def _precheck(self, scheduler: Scheduler, requests: Iterable[ChatRequest], what: str) -> None:
        """Estimate what the uncached requests of a stage would cost; stop before starting it if
        that would go over the budget."""
        b = self.budget
        if b is None or (b.max_cost_usd is None and b.max_requests is None):
            return
        from ste_core.store import RunStore

        facts = scheduler.backend.describe()

        def uncached() -> Iterator[ChatRequest]:
            for req in requests:
                for sub in scheduler.split(req):
                    if self.store.cache_get(RunStore.cache_key(facts, sub)) is None:
                        yield sub

        est = estimate_request_tokens(
            uncached(), expected_completion_tokens=self.config.budget.expected_completion_tokens
        )
        cost = 0.0
        if b.input_per_million is not None or b.output_per_million is not None:
            cost = est.cost_usd(b.input_per_million or 0.0, b.output_per_million or 0.0)
        elif b.max_cost_usd is not None and est.requests:
            self.reporter.warning(
                f"{what}: no prices in [budget] (input_per_million, output_per_million): the "
                "cost of this stage cannot be estimated in advance; charges still count."
            )
        log.info(
            "%s: %d uncached requests, ~%d tokens, ~$%.4f",
            what,
            est.requests,
            est.total_tokens,
            cost,
        )
        b.check(estimated_cost_usd=cost, estimated_requests=est.requests)

    # ------------------------------------------------------------------------------------
    # Run-level stages
    # ------------------------------------------------------------------------------------

    async def _load(self) -> dict[str, int]:
        report = LoadReport()
        out = self.rundir.data("instructions")
        with jsonl_writer(out) as w:
            for inst in load_instructions(self.config.data, report):
                w.write(inst)
                if report.kept % 1000 == 0:
                    self.reporter.progress(report.kept)
                    await asyncio.sleep(0)
        counts = report.counts()
        for reason, where in report.examples.items():
            self.reporter.warning(
                f"load: dropped {report.dropped[reason]} row(s) as {reason} (first: {where})"
            )
        if report.kept == 0:
            raise ConfigurationError(
                f"data: no instructions left after loading ({counts}); check data.path, the "
                "field settings and data.max_chars"
            )
        return counts

    async def _classify(self) -> dict[str, int]:
        cfg = self.config
        f = cfg.filter
        scheduler = self._scheduler("generator")
        template = self._template(f.template)
        model = f.model or cfg.generator.model
        params = cfg.generator.params.to_params().model_copy(
            update={"temperature": 0.0, "top_p": 1.0, "max_tokens": f.max_tokens}
        )
        source = self.rundir.data("instructions")

        def instructions() -> Iterator[Instruction]:
            return read_jsonl(source, Instruction)

        descriptions = f.category_descriptions
        from ste_core.stages.classify import classify_request

        categories_text = None
        if descriptions is not None:
            from ste_prompts import format_categories

            categories_text = format_categories(descriptions)
        self._precheck(
            scheduler,
            (
                classify_request(
                    i,
                    model=model,
                    template=template,
                    categories_text=categories_text,
                    params=params,
                )
                for i in instructions()
            ),
            "classify",
        )
        counts = {"instructions": 0, "classified": 0, "api_errors": 0, "parse_errors": 0}
        total = count_lines(source)
        self.reporter.progress(0, total)
        results = classify_instructions(
            scheduler,
            instructions(),
            model=model,
            template=template,
            params=params,
            categories=descriptions,
        )
        ordered = in_input_order(
            results,
            (i.id for i in instructions()),
            lambda r: r.instruction_id if isinstance(r, ClassifyFailure) else r.id,
        )
        with (
            jsonl_writer(self.rundir.data("classified")) as w,
            jsonl_writer(self.rundir.data("classify_failures")) as wf,
        ):
            async for r in ordered:
                counts["instructions"] += 1
                if isinstance(r, ClassifyFailure):
                    counts["api_errors" if r.status == "api_error" else "parse_errors"] += 1
                    wf.write(r)
                else:
                    counts["classified"] += 1
                    w.write(r)
        classified = self.rundir.data("classified")
        per_category = category_counts(read_jsonl(classified, Instruction), f.difficulties)
        wanted = quotas(per_category, f.categories, per_category=f.per_category, balance=f.balance)
        kept = 0
        with jsonl_writer(self.rundir.data("filtered")) as w:
            for inst in pick_balanced(
                read_jsonl(classified, Instruction),
                wanted,
                seed=cfg.run.seed,
                difficulties=f.difficulties,
            ):
                w.write(inst)
                kept += 1
        for c, n in sorted(per_category.items()):
            counts[f"category_{c}"] = n
        absent = [c for c in f.categories if per_category.get(c, 0) == 0]
        if absent:
            self.reporter.warning(
                f"filter: no instruction was classified as {', '.join(absent)}; the balanced "
                "subset uses the other chosen categories"
            )
        counts["kept"] = kept
        if kept == 0:
            raise ConfigurationError(
                f"filter: no instruction of the categories {f.categories} was found "
                f"(classified: {dict(per_category)}); change filter.categories or disable "
                "the filter"
            )
        return counts

    async def _split(self) -> dict[str, int]:
        cfg = self.config
        pool = self.rundir.data("filtered" if cfg.filter.enabled else "instructions")
        exclude: set[str] = set()
        eval_size = cfg.evaluation.eval_size
        if cfg.evaluation.pairs_path:
            # Reused eval pairs: their instructions must not leak into training.
            eval_size = 0
            for p in self._read_external_pairs(cfg.evaluation.pairs_path):
                exclude.add(Instruction.from_text(normalise_text(p.instruction)).id)
        split = split_instructions(
            lambda: read_jsonl(pool, Instruction),
            eval_size=eval_size,
            train_size=cfg.data.train_size,
            seed=cfg.run.seed,
            exclude_ids=exclude,
        )
        with jsonl_writer(self.rundir.data("eval")) as w:
            for inst in split.eval:
                w.write(inst)
        n_train = 0
        with jsonl_writer(self.rundir.data("train")) as w:
            for inst in split.train():
                w.write(inst)
                n_train += 1
        pool_size = count_lines(pool)
        if eval_size and len(split.eval) < eval_size:
            self.reporter.warning(
                f"split: only {len(split.eval)} eval instructions (evaluation.eval_size = "
                f"{eval_size}); the pool has {pool_size}"
            )
        if n_train == 0:
            raise ConfigurationError(
                f"split: no training instructions left: the pool has {pool_size}, of which "
                f"{len(split.eval)} went to eval and {split.excluded} were excluded (they are in "
                "the reused eval pairs). Add instructions or lower evaluation.eval_size."
            )
        self.store.set_state(
            "split",
            {"eval_ids": [i.id for i in split.eval], "train": n_train, "seed": cfg.run.seed},
        )
        return {
            "pool": pool_size,
            "eval": len(split.eval),
            "train": n_train,
            "excluded_eval_overlap": split.excluded,
        }

    def _read_external_pairs(self, path: str) -> list[ResponsePair]:
        from ste_core.evaluation.pairs_io import DataFileError, read_pairs

        try:
            pf = read_pairs(path, on_error="skip")
        except DataFileError as exc:
            raise ConfigurationError(f"evaluation.pairs_path: {exc}") from exc
        if pf.skipped:
            self.reporter.warning(
                f"{path}: {len(pf.skipped)} bad row(s) skipped (first: line "
                f"{pf.skipped[0].line}: {pf.skipped[0].reason})"
            )
        return pf.pairs

    async def _eval_pairs(self) -> dict[str, int]:
        cfg = self.config
        if cfg.evaluation.pairs_path:
            pairs = self._read_external_pairs(cfg.evaluation.pairs_path)
            with jsonl_writer(self.rundir.eval_pairs_path) as w:
                for p in pairs:
                    w.write(p)
            return {"pairs": len(pairs), "reused": 1}
        data = self.rundir.data_dir
        b = await self._generate_baselines(
            self.rundir.data("eval"),
            data / "eval_baselines.jsonl",
            data / "eval_drops.jsonl",
            "eval baselines",
        )
        w_counts = await self._generate_worse(
            data / "eval_baselines.jsonl",
            self.rundir.eval_pairs_path,
            data / "eval_worse_drops.jsonl",
            "eval worse",
        )
        counts = {f"baseline_{k}": v for k, v in b.items()}
        counts.update({f"worse_{k}": v for k, v in w_counts.items()})
        counts["pairs"] = w_counts["pairs"]
        if counts["pairs"] == 0:
            raise SteError(
                "eval_pairs: no eval pair survived generation; see data/eval_*drops.jsonl"
            )
        return counts

    # ------------------------------------------------------------------------------------
    # Generation (shared by eval pairs and each iteration's training pairs)
    # ------------------------------------------------------------------------------------

    async def _generate_baselines(
        self, source: Path, out: Path, drops_out: Path, what: str
    ) -> dict[str, int]:
        cfg = self.config
        scheduler = self._scheduler("generator")
        params = cfg.generator.params.to_params()
        model = cfg.generator.model

        def instructions() -> Iterator[Instruction]:
            return read_jsonl(source, Instruction)

        self._precheck(
            scheduler,
            (baseline_request(i, model=model, params=params) for i in instructions()),
            what,
        )
        self.reporter.progress(0, count_lines(source))
        counts = {"instructions": 0, "baselines": 0}
        ordered = in_input_order(
            generate_baselines(scheduler, instructions(), model=model, params=params),
            (i.id for i in instructions()),
            lambda r: r.instruction_id,
        )
        with jsonl_writer(out) as w, jsonl_writer(drops_out) as wd:
            async for r in ordered:
                counts["instructions"] += 1
                if isinstance(r, GenerationDrop):
                    key = f"dropped_{r.reason}"
                    counts[key] = counts.get(key, 0) + 1
                    wd.write(r)
                else:
                    counts["baselines"] += 1
                    w.write(r)
        return counts

    async def _generate_worse(
        self, source: Path, out: Path, drops_out: Path, what: str
    ) -> dict[str, int]:
        cfg = self.config
        scheduler = self._scheduler("generator")
        params = cfg.generator.params.to_params()
        model = cfg.generator.model
        template = self._template(cfg.generator.worse_template)

        def baselines() -> Iterator[Baseline]:
            return read_jsonl(source, Baseline)

        self._precheck(
            scheduler,
            (worse_request(b, model=model, template=template, params=params) for b in baselines()),
            what,
        )
        self.reporter.progress(0, count_lines(source))
        counts = {"baselines": 0, "pairs": 0}
        ordered = in_input_order(
            generate_worse(scheduler, baselines(), model=model, template=template, params=params),
            (b.instruction_id for b in baselines()),
            lambda r: r.instruction_id,
        )
        with jsonl_writer(out) as w, jsonl_writer(drops_out) as wd:
            async for r in ordered:
                counts["baselines"] += 1
                if isinstance(r, GenerationDrop):
                    key = f"dropped_{r.reason}"
                    counts[key] = counts.get(key, 0) + 1
                    wd.write(r)
                else:
                    counts["pairs"] += 1
                    w.write(r)
        return counts

    # ------------------------------------------------------------------------------------
    # Iteration stages
    # ------------------------------------------------------------------------------------

    def _iter_file(self, i: int, name: str) -> Path:
        return self.rundir.iter_file(i, name)

    async def _baseline(self, i: int) -> dict[str, int]:
        return await self._generate_baselines(
            self.rundir.data("train"),
            self._iter_file(i, "baselines.jsonl"),
            self._iter_file(i, "baseline_drops.jsonl"),
            f"iteration {i} baselines",
        )

    async def _worse(self, i: int) -> dict[str, int]:
        counts = await self._generate_worse(
            self._iter_file(i, "baselines.jsonl"),
            self._iter_file(i, "pairs.jsonl"),
            self._iter_file(i, "worse_drops.jsonl"),
            f"iteration {i} worse responses",
        )
        if counts["pairs"] == 0:
            raise SteError(
                f"iteration {i}: no pair survived generation ({counts}); see "
                f"{self._iter_file(i, 'worse_drops.jsonl')}"
            )
        return counts

    async def _judge_records(
        self,
        judge: _Judge,
        pairs_path: Path,
        out: Path,
        *,
        template: Any,
        params: Any,
        samples: int,
        orders: Any,
        what: str,
    ) -> dict[str, int]:
        """Judge every pair of `pairs_path` with `judge`; write the records in input order."""
        seed = self.config.run.seed

        def pairs() -> Iterator[ResponsePair]:
            return read_jsonl(pairs_path, ResponsePair)

        def requests() -> Iterator[ChatRequest]:
            for p in pairs():
                for o in orders_for(p.id, orders, seed):
                    yield judge_request(
                        p, o, model=judge.model, template=template, params=params, samples=samples
                    )

        self._precheck(judge.scheduler, requests(), what)
        n_orders = 2 if orders == "both" else 1
        self.reporter.progress(0, count_lines(pairs_path) * n_orders)
        counts = {
            "pairs": 0,
            "judgements": 0,
            "failures": 0,
            "verdict_A": 0,
            "verdict_B": 0,
            "tie": 0,
            "no_verdict": 0,
            "correct": 0,
        }
        expected = ((p.id, o) for p in pairs() for o in orders_for(p.id, orders, seed))
        results = judge_pairs(
            judge.scheduler,
            pairs(),
            model=judge.model,
            template=template,
            params=params,
            samples_per_order=samples,
            orders=orders,
            seed=seed,
        )
        ordered = in_input_order(
            results,
            expected,
            lambda r: (r.pair_id, r.order),
            per_key=samples,
            sort=lambda r: r.sample_index,
        )
        counts["pairs"] = count_lines(pairs_path)
        with jsonl_writer(out) as w:
            async for r in ordered:
                w.write(_judgement_row(r))
                if isinstance(r, JudgeFailure):
                    counts["failures"] += 1
                    continue
                counts["judgements"] += 1
                key = {"A": "verdict_A", "B": "verdict_B", "tie": "tie"}.get(
                    r.verdict or "", "no_verdict"
                )
                counts[key] += 1
                counts["correct"] += r.correct
        return counts

    async def _judge(self, i: int, judge: _Judge) -> dict[str, int]:
        cfg = self.config.judge
        counts = await self._judge_records(
            judge,
            self._iter_file(i, "pairs.jsonl"),
            self._iter_file(i, "judgements.jsonl"),
            template=self._template(cfg.template),
            params=cfg.params.to_params(),
            samples=cfg.samples_per_order,
            orders=cfg.orders,
            what=f"iteration {i} judgements",
        )
        if counts["failures"]:
            self.reporter.warning(
                f"iteration {i}: {counts['failures']} judgement(s) failed after retries (API "
                "errors, not verdicts); they are excluded from selection"
            )
        return counts

    async def _select(self, i: int) -> dict[str, int]:
        cfg = self.config
        result = select(
            read_judgements(self._iter_file(i, "judgements.jsonl")),
            seed=cfg.run.seed,
            agreement_threshold=cfg.selection.agreement_threshold,
            balance=cfg.selection.balance_labels,
        )
        with jsonl_writer(self._iter_file(i, "selected.jsonl")) as w:
            for k in result.kept:
                w.write(k)
        return result.counts

    async def _training_data(self, i: int) -> dict[str, int]:
        cfg = self.config
        template = self._template(cfg.judge.template)
        n_sft = n_dpo = 0
        with (
            jsonl_writer(self._iter_file(i, "sft.jsonl")) as ws,
            jsonl_writer(self._iter_file(i, "dpo.jsonl")) as wd,
        ):
            for sft, dpo in build_examples(
                read_jsonl(self._iter_file(i, "pairs.jsonl"), ResponsePair),
                read_judgements(self._iter_file(i, "judgements.jsonl")),
                read_jsonl(self._iter_file(i, "selected.jsonl"), Kept),
                template=template,
                num_pairs=cfg.finetune.dpo_pairs_per_prompt,
                workdir=self.rundir.iter_dir(i),
            ):
                for sft_ex in sft:
                    ws.write(sft_ex)
                n_sft += len(sft)
                for dpo_ex in dpo:
                    wd.write(dpo_ex)
                n_dpo += len(dpo)
                await asyncio.sleep(0)
        method = cfg.finetune.method
        n_examples = n_sft if method.value == "sft" else n_dpo
        if n_examples == 0:
            raise SteError(
                f"iteration {i}: no {method.value.upper()} training examples (sft {n_sft}, dpo "
                f"{n_dpo}); the judge got no pair right, or (DPO) never wrong. See "
                f"{self._iter_file(i, 'judgements.jsonl')} and the funnel counts."
            )
        from ste_core.records import DPOExample, SFTExample

        ft = self._finetune_backend()
        path = self._training_file(i)
        source = self._iter_file(i, f"{method.value}.jsonl")
        model_cls: type[SFTExample] | type[DPOExample] = (
            SFTExample if method.value == "sft" else DPOExample
        )
        tmp = path.with_name(path.name + ".tmp")
        written = ft.write_training_file(read_jsonl(source, model_cls), method, tmp)
        tmp.replace(path)
        return {"sft": n_sft, "dpo": n_dpo, "training_rows": int(written)}

    def _training_file(self, i: int) -> Path:
        cfg = self.config.finetune
        return self._iter_file(i, f"train.{cfg.backend}.{cfg.method.value}.jsonl")

    async def _finetune(self, i: int) -> dict[str, int]:
        cfg = self.config
        from_model = None
        if cfg.finetune.init_from == "previous" and i > 1:
            from_model = self._model_ref(i - 1).model
        spec = cfg.finetune_spec(i, from_model)
        ft = self._finetune_backend()
        assert self.manifest is not None
        manifest = self.manifest

        def submitted(job_id: str) -> None:
            manifest.upsert_job(
                {
                    "iteration": i,
                    "job_id": job_id,
                    "status": "submitted",
                    "base_model": spec.base_model,
                    "from_model": from_model,
                }
            )
            manifest.save()
            self.reporter.info(f"iteration {i}: fine-tune job {job_id} submitted")

        def on_state(state: Any) -> None:
            self.reporter.finetune_state(state)

        result = await run_finetune(
            ft,
            spec,
            self._training_file(i),
            store=self.store,
            state_key=f"finetune/{i}",
            budget=self.budget,
            poll_interval_s=cfg.finetune.poll_interval_s,
            max_wait_s=cfg.finetune.max_wait_s,
            on_state=on_state,
            on_submitted=submitted,
        )
        self.store.set_state(f"model/{i}", result.model.model_dump(mode="json"))
        manifest.upsert_job(
            {
                "iteration": i,
                "job_id": result.job_id,
                "status": "succeeded",
                "model": result.model.model,
                "cost_usd": result.cost_usd,
            }
        )
        manifest.data["models"][f"iter_{i}"] = result.model.model
        if result.cost_usd and not result.resumed:
            manifest.add_cost("finetune", result.cost_usd)
        manifest.save()
        return {
            "training_rows": count_lines(self._training_file(i)),
            "resumed": int(result.resumed),
        }

    def _model_ref(self, i: int) -> ModelRef:
        data = self.store.get_state(f"model/{i}")
        if data is None:
            raise SteError(
                f"no fine-tuned model for iteration {i} (its finetune stage is not done)"
            )
        return ModelRef.model_validate(data)

    # ------------------------------------------------------------------------------------
    # Judges: the seed model, or a served fine-tuned one
    # ------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _judge_session(self, j: int) -> AsyncIterator[_Judge]:
        """The judge M_j: the seed judge (j = 0), or M_j served for the duration of the block."""
        cfg = self.config
        if j == 0:
            yield _Judge(0, cfg.judge.model, self._scheduler("judge"), "judge_seed")
            return
        ref = self._model_ref(j)
        ft = self._finetune_backend()
        started = time.monotonic()
        served_model = ref.model
        try:
            async with ft.serve(ref) as served:
                served_model = served.model
                name = served.inference_backend or cfg.judge.backend
                # The judge's own options only make sense for the judge's own backend; a
                # fine-tune backend that serves through another one (Together serves its
                # fine-tunes itself) gets finetune.inference_options and the ModelRef's options.
                own = dict(cfg.judge.options) if name == cfg.judge.backend else {}
                options = {**own, **cfg.finetune.inference_options, **served.options}
                inner = self._make_backend(name, options)
                # Requests and records name the fine-tuned model itself, not the session's
                # (possibly temporary) endpoint: the cache stays valid across serving sessions.
                backend = ServedModelBackend(inner, stable=ref.model, served=served.model)
                scheduler = self._new_scheduler(backend, cfg.judge.limits)
                self._extra_schedulers = [*self._extra_schedulers, scheduler]
                try:
                    yield _Judge(j, ref.model, scheduler, f"judge_iter_{j}")
                finally:
                    self._extra_schedulers = [
                        s for s in self._extra_schedulers if s is not scheduler
                    ]
                    with contextlib.suppress(Exception):
                        await inner.aclose()
                    if inner in self._backends:
                        self._backends.remove(inner)
        finally:
            if self.manifest is not None:
                self.manifest.data["endpoints"].append(
                    {
                        "iteration": j,
                        "model": ref.model,
                        "served_as": served_model,
                        "seconds": round(time.monotonic() - started, 3),
                    }
                )
                self.manifest.save()

    # ------------------------------------------------------------------------------------
    # Evaluation
    # ------------------------------------------------------------------------------------

    async def _evaluate(self, j: int, judge: _Judge) -> dict[str, int]:
        from ste_core.evaluation import EvalScore, paired_comparison, score_pairs

        cfg = self.config
        ev = cfg.evaluation
        template = self._template(cfg.eval_template)
        params = ev.params.to_params()
        out = self._iter_file(j, "eval.jsonl")
        counts = await self._judge_records(
            judge,
            self.rundir.eval_pairs_path,
            out,
            template=template,
            params=params,
            samples=ev.samples_per_order,
            orders=ev.orders,
            what=f"evaluation of judge {j}",
        )
        pairs = list(read_jsonl(self.rundir.eval_pairs_path, ResponsePair))
        score = score_pairs(
            pairs,
            read_judgements(out),
            mode=ev.orders,
            majority=ev.majority_vote,
            seed=cfg.run.seed,
        )
        benchmarks: dict[str, Any] = {}
        for bench in ev.benchmarks:
            bpairs = self._read_external_pairs(bench.path)[: bench.limit]
            bpath = self._iter_file(j, f"bench_{bench.name}.pairs.jsonl")
            if not bpath.exists():
                with jsonl_writer(bpath) as w:
                    for p in bpairs:
                        w.write(p)
            bout = self._iter_file(j, f"bench_{bench.name}.jsonl")
            bcounts = await self._judge_records(
                judge,
                bpath,
                bout,
                template=template,
                params=params,
                samples=ev.samples_per_order,
                orders=ev.orders,
                what=f"benchmark {bench.name} of judge {j}",
            )
            counts[f"bench_{bench.name}_judgements"] = bcounts["judgements"]
            benchmarks[bench.name] = score_pairs(
                bpairs,
                read_judgements(bout),
                mode=ev.orders,
                majority=ev.majority_vote,
                seed=cfg.run.seed,
            )
        paired: dict[str, Any] = {}
        for label, other in (("vs_previous", j - 1), ("vs_seed", 0)):
            if other < 0 or other == j or label in paired:
                continue
            prev = self._metrics_raw().get(other)
            if prev and prev.get("eval"):
                test = paired_comparison(
                    EvalScore.model_validate(prev["eval"]), score, seed=cfg.run.seed
                )
                paired[label] = {"against_iteration": other, **test.model_dump(mode="json")}
        metrics = {
            "iteration": j,
            "judge_model": judge.model,
            "eval": score.model_dump(mode="json"),
            "benchmarks": {k: v.model_dump(mode="json") for k, v in benchmarks.items()},
            "paired": paired,
            "funnel": self._funnel(j),
            "stages": self._stage_usage(j),
            "finetune": self._finetune_info(j),
        }
        from ste_core.rundir import write_json

        self.rundir.iter_dir(j).mkdir(parents=True, exist_ok=True)
        write_json(self._iter_file(j, "metrics.json"), metrics)
        counts["eval_pairs"] = len(pairs)
        return counts

    def _funnel(self, j: int) -> dict[str, Any]:
        """The iteration's data funnel in the report's shape (+ every stage's counts)."""
        stages: dict[str, dict[str, int]] = self.store.stage_counts(j)  # type: ignore[assignment]
        drops: dict[str, int] = {}
        out: dict[str, Any] = {}
        if j == 0:
            load = stages.get("load", {})
            out["instructions"] = load.get("kept", 0)
            out["eval_instructions"] = stages.get("split", {}).get("eval", 0)
            out["train_instructions"] = stages.get("split", {}).get("train", 0)
            out["pairs"] = stages.get("eval_pairs", {}).get("pairs", 0)
            for k, v in load.items():
                if k.startswith("dropped_") and v:
                    drops[f"load_{k[8:]}"] = v
            for k, v in stages.get("eval_pairs", {}).items():
                if "dropped_" in k and v:
                    drops["eval_" + k.replace("dropped_", "")] = v
        else:
            out["instructions"] = stages.get("baseline", {}).get("instructions", 0)
            out["pairs"] = stages.get("worse", {}).get("pairs", 0)
            judge = stages.get("judge", {})
            out["judged"] = judge.get("judgements", 0)
            out["correct"] = judge.get("correct", 0)
            out["judge_failures"] = judge.get("failures", 0)
            sel = stages.get("select", {})
            out["kept_before_balance"] = sel.get("kept", 0)
            out["balanced_kept"] = sel.get("selected", 0)
            td = stages.get("training_data", {})
            out["sft_examples"] = td.get("sft", 0)
            out["dpo_examples"] = td.get("dpo", 0)
            for stage in ("baseline", "worse"):
                for k, v in stages.get(stage, {}).items():
                    if k.startswith("dropped_") and v:
                        drops[k[8:]] = drops.get(k[8:], 0) + v
            if sel.get("pairs_below_threshold"):
                drops["below_agreement_threshold"] = sel["pairs_below_threshold"]
            if sel.get("dropped_for_balance"):
                drops["label_balance"] = sel["dropped_for_balance"]
        out["drops"] = drops
        return out

    def _stage_usage(self, j: int) -> dict[str, Any]:
        names = (*RUN_STAGES, EVALUATE) if j == 0 else (*ITERATION_STAGES, EVALUATE)
        out = {}
        for name in names:
            data = self.store.get_state(f"stage_usage/{j}/{name}")
            if data is not None:
                out[name] = data
        return out

    def _finetune_info(self, j: int) -> dict[str, Any] | None:
        if j == 0:
            return None
        state = self.store.get_state(f"finetune/{j}") or {}
        ref = self.store.get_state(f"model/{j}") or {}
        return {
            "job_id": state.get("job_id"),
            "status": state.get("status"),
            "model": ref.get("model"),
            "endpoint": (ref.get("options") or {}).get("base_url"),
            "cost_usd": state.get("cost_usd"),
        }

    def _iteration_finished(self, j: int) -> None:
        metrics = self._metrics_raw().get(j, {})
        _fire(
            "iteration_finished",
            IterationEvent(
                run_name=self.config.run.name,
                iteration=j,
                judge_model=str(metrics.get("judge_model", "")),
                metrics=_headline(metrics),
            ),
        )
        self._write_summary()
        try:
            from ste_core.evaluation.report import write_report
        except ImportError:  # the evaluation package is optional for the loop itself
            return
        try:
            write_report([self.rundir.root])
        except Exception as exc:  # a report problem must never stop a paid-for run
            self.reporter.warning(f"report: could not write report.md/html ({exc!r})")

    # ------------------------------------------------------------------------------------
    # Summary and reading results
    # ------------------------------------------------------------------------------------

    def _metrics_raw(self) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        root = self.rundir.root
        if not root.exists():
            return out
        for d in root.glob("iter_*"):
            path = d / "metrics.json"
            if path.exists() and d.name[5:].isdigit():
                out[int(d.name[5:])] = json.loads(path.read_text(encoding="utf-8"))
        return dict(sorted(out.items()))

    def _write_summary(self) -> None:
        rows = self._metrics_raw()
        lines = [
            f"# {self.config.run.name}: judge accuracy per iteration",
            "",
            f"Frozen eval pairs: `eval_pairs.jsonl`; orders: {self.config.evaluation.orders}; "
            f"samples per order: {self.config.evaluation.samples_per_order}"
            + ("; majority vote" if self.config.evaluation.majority_vote else "")
            + ". A missing verdict counts 0.5. Intervals: 95% Wilson.",
            "",
            "| iteration | judge | accuracy | 95% CI | n | position consistency | no verdict "
            "| vs previous |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for j, m in rows.items():
            e = m.get("eval") or {}
            pc = e.get("position_consistency")
            prev = (m.get("paired") or {}).get("vs_previous")
            delta = (
                f"{100 * prev['difference']:+.1f} pts (p={prev['p_value']:.3g})" if prev else "–"
            )
            lines.append(
                f"| {j} | `{m.get('judge_model', '')}` | {100 * e.get('accuracy', 0):.1f}% | "
                f"[{100 * e.get('ci_low', 0):.1f}, {100 * e.get('ci_high', 0):.1f}] | "
                f"{e.get('n_items', 0)} | {'–' if pc is None else f'{100 * pc:.1f}%'} | "
                f"{100 * e.get('no_verdict_rate', 0):.1f}% | {delta} |"
            )
        if not rows:
            lines.append("| – | – | – | – | – | – | – | – |")
        self.rundir.create()
        self.rundir.summary_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def pairs(self, iteration: int) -> Iterator[ResponsePair]:
        """The training pairs of an iteration (iteration 0: the frozen eval pairs)."""
        path = (
            self.rundir.eval_pairs_path
            if iteration == 0
            else self._iter_file(iteration, "pairs.jsonl")
        )
        return read_jsonl(path, ResponsePair)

    def eval_pairs(self) -> Iterator[ResponsePair]:
        """The frozen eval pairs every judge is scored on."""
        return read_jsonl(self.rundir.eval_pairs_path, ResponsePair)

    def judgements(self, iteration: int) -> Iterator[Judgement | JudgeFailure]:
        """The annotating judgements of an iteration (by M_{iteration-1})."""
        return read_judgements(self._iter_file(iteration, "judgements.jsonl"))

    def eval_judgements(self, iteration: int) -> Iterator[Judgement | JudgeFailure]:
        """The eval judgements of judge M_iteration (0 = the seed judge)."""
        return read_judgements(self._iter_file(iteration, "eval.jsonl"))

    def instructions(self, split: str = "train") -> Iterator[Instruction]:
        """Instructions after loading: split = "all", "train" or "eval"."""
        name = {"all": "instructions", "train": "train", "eval": "eval"}[split]
        return read_jsonl(self.rundir.data(name), Instruction)

    def metrics(self) -> dict[int, IterationMetrics]:
        """Evaluation metrics of every evaluated judge, by iteration (0 = the seed judge)."""
        from ste_core.evaluation import EvalScore

        out = {}
        for j, m in self._metrics_raw().items():
            out[j] = IterationMetrics(
                iteration=j,
                judge_model=m.get("judge_model", ""),
                eval=EvalScore.model_validate(m["eval"]),
                benchmarks={
                    k: EvalScore.model_validate(v) for k, v in m.get("benchmarks", {}).items()
                },
                paired=m.get("paired", {}),
                funnel=m.get("funnel", {}),
            )
        return out

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
    def _reading_store(self) -> Iterator[Any]:
        """The open store, or (after the run) the run's store opened just for reading."""
        if self._opened and self.store is not None:
            yield self.store
            return
        if not self.rundir.store_path.exists():
            yield None
            return
        from ste_core.store import RunStore

        store = RunStore(self.rundir.store_path)
        try:
            yield store
        finally:
            store.close()


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    e = metrics.get("eval") or {}
    return {
        k: e.get(k)
        for k in (
            "accuracy",
            "ci_low",
            "ci_high",
            "n_items",
            "position_consistency",
            "no_verdict_rate",
        )
    }


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
