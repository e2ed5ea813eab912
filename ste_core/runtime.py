"""The resources of one open run: directory, store, manifest, budget, backends, schedulers.

`RunContext.open` creates (or re-opens) the run directory and everything the steps share;
`aclose` releases what it opened. Steps (`ste_core.steps`) take a `RunContext` and use only what
it holds, so the order of the loop (`ste_core.pipeline`) and the work of a stage stay apart.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ste_core.backends import FineTuneBackend, InferenceBackend
from ste_core.budget import Budget
from ste_core.config import Config
from ste_core.errors import ConfigurationError, SteError
from ste_core.plugins import get_finetune_backend, get_host, get_inference_backend
from ste_core.progress import Reporter
from ste_core.records import ModelRef
from ste_core.rundir import Manifest, RunDir, package_versions
from ste_core.scheduler import Limits, Scheduler
from ste_core.store import RunStore

if TYPE_CHECKING:
    from ste_prompts import Template

__all__ = ["RunContext"]

_RESULT_SETTINGS = "config/result_settings"


@dataclass
class RunContext:
    """Everything the steps of an open run share. Build it with `RunContext.open`."""

    config: Config
    rundir: RunDir
    reporter: Reporter
    store: RunStore
    manifest: Manifest
    budget: Budget
    closed: bool = field(default=False, init=False)
    # Role schedulers by backend setup; see `scheduler`.
    _schedulers: dict[str, Scheduler] = field(default_factory=dict, init=False, repr=False)
    _backends: list[InferenceBackend] = field(default_factory=list, init=False, repr=False)
    # Schedulers of served fine-tuned judges: they count toward stage usage while they live.
    _temporary: list[Scheduler] = field(default_factory=list, init=False, repr=False)
    _finetune: FineTuneBackend | None = field(default=None, init=False, repr=False)
    _templates: dict[str, Template] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(
        cls, config: Config, rundir: RunDir, reporter: Reporter, *, fresh: bool = False
    ) -> RunContext:
        """Create (or re-open) the run directory, store, manifest and budget.

        Refuses a config whose result-changing settings differ from the ones the run started
        with (its cached answers and files would mix two experiments)."""
        if fresh:
            rundir.wipe()
        rundir.create()
        store = RunStore(rundir.store_path)
        try:
            _check_result_settings(config, store)
            rundir.write_config(config.model_dump_toml())
            manifest = _start_session(config, Manifest(rundir.manifest_path))
        except BaseException:
            store.close()
            raise
        b = config.budget
        budget = Budget(
            b.max_cost_usd,
            b.max_requests,
            input_per_million=b.input_per_million,
            output_per_million=b.output_per_million,
            # Spending of earlier sessions counts: a resumed run has one budget, not one each.
            spent_usd=manifest.spent_usd,
            requests=manifest.requests,
        )
        return cls(config, rundir, reporter, store, manifest, budget)

    async def aclose(self) -> None:
        """Close backends and the store (the run directory stays as it is). Idempotent."""
        if self.closed:
            return
        for backend in self._backends:
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

    def end_session(self, status: str) -> None:
        """Record the run's (and this session's) final status in the manifest."""
        m = self.manifest.data
        m["status"] = status
        m["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if m["sessions"]:
            m["sessions"][-1].update(finished=m["finished"], status=status)
        self.manifest.save()

    # -- templates and backends ---------------------------------------------------------------

    def template(self, name: str) -> Template:
        """The prompt template `name` (loaded once per run)."""
        if name not in self._templates:
            try:
                self._templates[name] = get_host().template(name)
            except Exception as exc:  # TemplateError names the file / the known names
                raise ConfigurationError(f"template {name!r}: {exc}") from exc
        return self._templates[name]

    def new_scheduler(self, backend: InferenceBackend, limits: Limits) -> Scheduler:
        """A scheduler over `backend` that caches in the run's store and charges its budget."""
        return Scheduler(
            backend,
            limits=limits,
            store=self.store,
            budget=self.budget,
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
            backend = get_inference_backend(section.backend, **dict(section.options))
            self._backends.append(backend)
            self._schedulers[key] = self.new_scheduler(backend, section.limits)
        return self._schedulers[key]

    @contextlib.asynccontextmanager
    async def temporary_scheduler(
        self,
        backend_name: str,
        options: dict[str, Any],
        limits: Limits,
        wrap: Callable[[InferenceBackend], InferenceBackend],
    ) -> AsyncIterator[Scheduler]:
        """A scheduler over a new backend (`wrap`ped) that lives only for the block: its usage
        counts in `schedulers()` meanwhile, and the backend is closed on exit."""
        inner = get_inference_backend(backend_name, **options)
        try:
            scheduler = self.new_scheduler(wrap(inner), limits)
            self._temporary.append(scheduler)
            try:
                yield scheduler
            finally:
                self._temporary.remove(scheduler)
        finally:
            with contextlib.suppress(Exception):
                await inner.aclose()

    def schedulers(self) -> list[Scheduler]:
        """Every live scheduler (role ones and served judges'), for usage accounting."""
        return [*self._schedulers.values(), *self._temporary]

    def finetune_backend(self) -> FineTuneBackend:
        """The fine-tune backend of [finetune] (created on first use)."""
        if self._finetune is None:
            self._finetune = get_finetune_backend(
                self.config.finetune.backend, **dict(self.config.finetune.options)
            )
        return self._finetune

    def model_ref(self, iteration: int) -> ModelRef:
        """The fine-tuned model M_iteration, as its finetune stage stored it."""
        data = self.store.get_state(f"model/{iteration}")
        if data is None:
            raise SteError(
                f"no fine-tuned model for iteration {iteration} (its finetune stage is not done)"
            )
        return ModelRef.model_validate(data)


def _check_result_settings(config: Config, store: RunStore) -> None:
    previous = store.get_state(_RESULT_SETTINGS)
    if previous is None:
        store.set_state(_RESULT_SETTINGS, config.result_settings())
        return
    changed = config.changed_settings(previous)
    if changed:
        raise ConfigurationError(
            f"the config changed since run '{config.run.name}' started, in keys that change "
            f"results: {', '.join(changed[:12])}{' ...' if len(changed) > 12 else ''}. "
            "Re-run with --fresh to start over, or give the run another run.name. "
            "(run.iterations, budget and limits may change freely.)"
        )


def _start_session(config: Config, manifest: Manifest) -> Manifest:
    m = manifest.data
    m["name"] = config.run.name
    m["seed"] = config.run.seed
    m["config_fingerprint"] = config.fingerprint()
    m["status"] = "running"
    m["models"].setdefault("generator", config.generator.model)
    m["models"].setdefault("judge_seed", config.judge.model)
    m["sessions"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "running"})
    m["versions"] = package_versions(_backend_distributions(config, m["backends"]))
    manifest.save()
    return manifest


def _backend_distributions(config: Config, backends: dict[str, Any]) -> list[str]:
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
        backends[role] = {
            "backend": name,
            "distribution": info.distribution,
            "version": info.version,
        }
        if info.distribution:
            dists.append(info.distribution)
    return dists
