"""The resources of one open run: directory, store, manifest, budget, backends, schedulers.

`RunContext.open` creates (or re-opens) the run directory and everything the stages share;
`aclose` releases what it opened. A stage gets everything it uses from the context (through its
`Step`), so the order of the loop (`ste_core.pipeline`) and the work of a stage stay apart.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ste_core.backends import FineTuneBackend, InferenceBackend
from ste_core.config import Config, pinned_options
from ste_core.engine.budget import Budget, estimate_request_tokens
from ste_core.engine.gate import Gate
from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.engine.store import RunStore
from ste_core.errors import ConfigurationError, DataFileError, SteError
from ste_core.plugins import (
    get_finetune_backend,
    get_host,
    get_inference_backend,
    get_template,
)
from ste_core.records import (
    BackendOrigin,
    ChatRequest,
    Funnel,
    IterationMetrics,
    ModelRef,
    ResponsePair,
    RunManifest,
    StageUsage,
)
from ste_core.resources import LedgerResources, Resources
from ste_core.run.exports import export_manifest, export_metrics, read_version_1_exports
from ste_core.run.progress import Reporter
from ste_core.run.rundir import RunDir, package_versions

if TYPE_CHECKING:
    from ste_core.stages.base import Stage
    from ste_prompts import Template

__all__ = ["RunContext", "UsageSnapshot"]

log = logging.getLogger(__name__)

_RESULT_SETTINGS = "config/result_settings"

# id(scheduler) -> its running totals at one moment.
UsageSnapshot = dict[int, StageUsage]


@dataclass
class RunContext:
    """Everything the stages of an open run share. Build it with `RunContext.open`."""

    config: Config
    rundir: RunDir
    reporter: Reporter
    store: RunStore
    manifest: RunManifest
    budget: Budget
    #: the stages being run (their counts records make each iteration's funnel)
    plan: Sequence[Stage[Any]] = ()
    #: closed by a graceful stop: no new request goes out, those in flight finish
    gate: Gate = field(default_factory=Gate)
    closed: bool = field(default=False, init=False)
    # Role schedulers by backend setup; see `scheduler`.
    _schedulers: dict[str, Scheduler] = field(default_factory=dict, init=False, repr=False)
    # Inference backends by (name, options): one per setup for the whole run, so that every
    # stage (and every served judge on the same provider) shares its client's connections.
    _backends: dict[str, InferenceBackend] = field(default_factory=dict, init=False, repr=False)
    # Schedulers of served fine-tuned judges: they count toward stage usage while they live.
    _temporary: list[Scheduler] = field(default_factory=list, init=False, repr=False)
    _finetune: FineTuneBackend | None = field(default=None, init=False, repr=False)
    _templates: dict[str, Template] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(
        cls,
        config: Config,
        rundir: RunDir,
        reporter: Reporter,
        *,
        fresh: bool = False,
        plan: Sequence[Stage[Any]] = (),
    ) -> RunContext:
        """Create (or re-open) the run directory, store, manifest and budget.

        Refuses a config whose result-changing settings differ from the ones the run started
        with (its cached answers and files would mix two experiments)."""
        if fresh:
            rundir.wipe()
        rundir.create()
        store = RunStore(rundir.store_path)
        try:
            _adopt_version_1_exports(store, rundir)
            _check_result_settings(config, store)
            rundir.write_config(config.model_dump_toml())
            manifest = _start_session(config, store.manifest() or RunManifest())
            store.save_manifest(manifest)
            export_manifest(rundir, manifest)
        except BaseException:
            store.close()
            raise
        return cls(
            config, rundir, reporter, store, manifest, _budget(config, store, manifest), plan
        )

    async def aclose(self) -> None:
        """Close backends and the store (the run directory stays as it is). Idempotent."""
        if self.closed:
            return
        for backend in self._backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()
        self._backends.clear()
        self._schedulers.clear()
        if self._finetune is not None:
            with contextlib.suppress(Exception):
                await self._finetune.aclose()
            self._finetune = None
        self.store.close()
        self.closed = True

    # -- run state ------------------------------------------------------------------------------

    def save_manifest(self) -> None:
        """Store the manifest and export manifest.json."""
        self.store.save_manifest(self.manifest)
        export_manifest(self.rundir, self.manifest)

    def end_session(self, status: str) -> None:
        """Record the run's (and this session's) final status in the manifest."""
        self.manifest.end_session(status)
        self.save_manifest()

    def save_metrics(self, metrics: IterationMetrics) -> None:
        """Store a judge's metrics and export its metrics.json."""
        self.store.put_metrics(metrics)
        export_metrics(self.rundir, metrics)

    def funnel(self, iteration: int) -> Funnel:
        """The funnel of `iteration`: what each of its finished stages adds, in plan order."""
        done = self.store.stage_counts(iteration)
        return Funnel.merge(
            stage.counts.from_flat(done[stage.name]).funnel()
            for stage in self.plan
            if stage.name in done
        )

    def model_ref(self, iteration: int) -> ModelRef:
        """The fine-tuned model M_iteration, as its finetune stage stored it."""
        data = self.store.get_state(f"model/{iteration}")
        if data is None:
            raise SteError(
                f"no fine-tuned model for iteration {iteration} (its finetune stage is not done)"
            )
        return ModelRef.model_validate(data)

    # -- templates and backends ---------------------------------------------------------------

    def template(self, name: str) -> Template:
        """The prompt template `name` (loaded once per run)."""
        if name not in self._templates:
            self._templates[name] = get_template(name)
        return self._templates[name]

    def new_scheduler(self, backend: InferenceBackend, limits: Limits) -> Scheduler:
        """A scheduler over `backend` that caches in the run's store and charges its budget."""
        return Scheduler(
            backend,
            limits=limits,
            store=self.store,
            budget=self.budget,
            gate=self.gate,
            on_event=self.reporter.scheduler_event,
        )

    def scheduler(self, role: Literal["generator", "judge"]) -> Scheduler:
        """The scheduler of `generator` or `judge` (shared when both use the same backend setup,
        so rate limits of one provider account are enforced once)."""
        section = self.config.generator if role == "generator" else self.config.judge
        key = json.dumps(
            [section.backend, section.options, section.limits.model_dump()],
            sort_keys=True,
            default=str,
        )
        if key not in self._schedulers:
            backend = self.inference_backend(section.backend, dict(section.options), role)
            self._schedulers[key] = self.new_scheduler(backend, section.limits)
        return self._schedulers[key]

    def inference_backend(
        self, name: str, options: dict[str, Any], section: str
    ) -> InferenceBackend:
        """The run's backend `name` with `options` (made once: one client, one connection pool
        for every stage that uses this setup)."""
        key = json.dumps([name, options], sort_keys=True, default=str)
        if key not in self._backends:
            backend = get_inference_backend(name, **options)
            backend.resources = self.resources_of(backend, section)
            self._backends[key] = backend
        return self._backends[key]

    @contextlib.asynccontextmanager
    async def temporary_scheduler(
        self,
        backend_name: str,
        options: dict[str, Any],
        limits: Limits,
        wrap: Callable[[InferenceBackend], InferenceBackend],
    ) -> AsyncIterator[Scheduler]:
        """A scheduler over the run's backend for this setup (`wrap`ped) that lives only for the
        block: its usage counts in `schedulers()` meanwhile."""
        inner = self.inference_backend(backend_name, options, "finetune")
        scheduler = self.new_scheduler(wrap(inner), limits)
        self._temporary.append(scheduler)
        try:
            yield scheduler
        finally:
            self._temporary.remove(scheduler)

    def schedulers(self) -> list[Scheduler]:
        """Every live scheduler (role ones and served judges'), for usage accounting."""
        return [*self._schedulers.values(), *self._temporary]

    def finetune_backend(self) -> FineTuneBackend:
        """The fine-tune backend of [finetune] (created on first use)."""
        if self._finetune is None:
            self._finetune = get_finetune_backend(
                self.config.finetune.backend, **dict(self.config.finetune.options)
            )
            self._finetune.resources = self.resources_of(self._finetune, "finetune")
        return self._finetune

    def resources_of(self, backend: InferenceBackend | FineTuneBackend, section: str) -> Resources:
        """The run's ledger as `backend` (of config section `section`) records its endpoints
        and batch jobs in, charged to the run's budget, its notices on the console."""
        return LedgerResources(
            self.store, self.budget, backend.name, section, notify=self.reporter.info
        )

    # -- what a stage used ----------------------------------------------------------------------

    def usage_snapshot(self) -> UsageSnapshot:
        """The running totals of every live scheduler (by identity: a shared one counts once)."""
        out = {}
        for s in {id(s): s for s in self.schedulers()}.values():
            st = s.stats
            out[id(s)] = StageUsage(
                requests=st.requests,
                cache_hits=st.cache_hits,
                prompt_tokens=st.usage.prompt_tokens,
                completion_tokens=st.usage.completion_tokens,
                cost_usd=st.cost_usd,
            )
        return out

    def usage_since(self, before: UsageSnapshot) -> StageUsage:
        """What all schedulers used since `before` (a scheduler new since then counts whole)."""
        total = StageUsage()
        for sid, now in self.usage_snapshot().items():
            prev = before.get(sid, StageUsage())
            total = total + StageUsage(
                requests=now.requests - prev.requests,
                cache_hits=now.cache_hits - prev.cache_hits,
                prompt_tokens=now.prompt_tokens - prev.prompt_tokens,
                completion_tokens=now.completion_tokens - prev.completion_tokens,
                cost_usd=now.cost_usd - prev.cost_usd,
            )
        return total

    def check_budget(
        self, scheduler: Scheduler, requests: Iterable[ChatRequest], what: str
    ) -> None:
        """Estimate what the uncached requests of a stage would cost; stop before starting it if
        that would go over the budget (the scheduler still checks before every single call)."""
        b = self.budget
        if b.max_cost_usd is None and b.max_requests is None:
            return
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

    def read_pairs_file(self, path: str, key: str) -> list[ResponsePair]:
        """Pairs from a user's file (reused eval pairs, a benchmark); bad rows are skipped with a
        warning that names the first one. `key` is the config key that named the file."""
        from ste_core.evaluation.pairs_io import read_pairs

        try:
            pf = read_pairs(path, on_error="skip")
        except DataFileError as exc:
            raise ConfigurationError(f"{key}: {exc}") from exc
        if pf.skipped:
            self.reporter.warning(
                f"{path}: {len(pf.skipped)} bad row(s) skipped (first: line "
                f"{pf.skipped[0].line}: {pf.skipped[0].reason})"
            )
        return pf.pairs


def _budget(config: Config, store: RunStore, manifest: RunManifest) -> Budget:
    """The run's one budget: every request any session of it sent and every fine-tune job it
    started (the ledger, so what a session killed midway had under way counts too)."""
    requests, spent = store.ledger_totals()
    if requests == 0 and manifest.usage.requests:
        # A run begun before the ledger existed: what its finished stages and jobs cost.
        entry = store.ledger_reserve("carried_over", requests=manifest.usage.requests)
        store.ledger_settle(entry, cost_usd=manifest.cost_usd.total)
        requests, spent = store.ledger_totals()
    b = config.budget
    return Budget(
        b.max_cost_usd,
        b.max_requests,
        input_per_million=b.input_per_million,
        output_per_million=b.output_per_million,
        expected_completion_tokens=b.expected_completion_tokens,
        spent_usd=spent,
        requests=requests,
        ledger=store,
    )


def _check_result_settings(config: Config, store: RunStore) -> None:
    pinned = pinned_options(config)
    previous = store.get_state(_RESULT_SETTINGS)
    if previous is None:
        store.set_state(_RESULT_SETTINGS, config.result_settings(pinned))
        return
    changed = config.changed_settings(previous, pinned)
    if changed:
        now = config.result_settings(pinned)
        shown = [_was_now(k, previous, now) for k in changed[:12]]
        raise ConfigurationError(
            f"the config changed since run '{config.run.name}' started, in keys that change "
            f"results: {'; '.join(shown)}{' ...' if len(changed) > 12 else ''}. "
            "Set them back to resume (a default that moved in a newer ste version counts: set "
            "the old value explicitly), re-run with --fresh to start over, or give the run "
            "another run.name. "
            "(run.iterations, budget, limits and the backend options that do not change "
            "results may change freely; `ste backends --options NAME` says which those are.)"
        )


def _was_now(key: str, before: dict[str, Any], now: dict[str, Any]) -> str:
    def shown(settings: dict[str, Any]) -> str:
        return json.dumps(settings[key]) if key in settings else "unset"

    return f"{key} (was {shown(before)}, now {shown(now)})"


def _start_session(config: Config, manifest: RunManifest) -> RunManifest:
    manifest.name = config.run.name
    manifest.seed = config.run.seed
    manifest.config_fingerprint = config.fingerprint(pinned_options(config))
    manifest.models.setdefault("generator", config.generator.model)
    manifest.models.setdefault("judge_seed", config.judge.model)
    manifest.start_session()
    manifest.versions = package_versions(_backend_distributions(config, manifest.backends))
    return manifest


def _backend_distributions(config: Config, backends: dict[str, BackendOrigin]) -> list[str]:
    """Record which distribution provides each role's backend (into the manifest's `backends`);
    return the distributions, so their versions are recorded too."""
    host = get_host()
    dists: list[str] = []
    for role, name in (
        ("generator", config.generator.backend),
        ("judge", config.judge.backend),
        ("finetune", config.finetune.backend),
    ):
        info = host.backends.get(name)
        if info is None:
            continue
        backends[role] = BackendOrigin(
            backend=name, distribution=info.distribution, version=info.version
        )
        if info.distribution:
            dists.append(info.distribution)
    return dists


def _adopt_version_1_exports(store: RunStore, rundir: RunDir) -> None:
    """A run started by ste 0.1 kept its manifest and metrics in manifest.json / metrics.json and
    the usage of each stage in `state`; bring them into the store once, so the resumed run keeps
    its spending (the budget), its earlier judges' metrics and its history."""
    if store.manifest() is not None or not rundir.manifest_path.exists():
        return
    notes: list[str] = []
    manifest, metrics = read_version_1_exports(rundir, notes)
    for note in notes:
        log.warning("a run of an earlier version: %s", note)
    if manifest is not None:
        store.save_manifest(manifest)
    for m in metrics.values():
        store.put_metrics(m)
    for iteration, stages in store.all_stage_counts().items():
        for name, counts in stages.items():
            usage = store.get_state(f"stage_usage/{iteration}/{name}")
            if usage is not None:
                store.mark_stage(iteration, name, counts, StageUsage.model_validate(usage))
                store.delete_state(f"stage_usage/{iteration}/{name}")
