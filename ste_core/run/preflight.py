"""The preflight: what a run needs, and what the rest of it will take, before its first paid call.

`preflight(config, store=...)` checks, sending nothing:

- **Backends.** Every backend the config uses is constructed from its options: the generator's,
  the judge's, the fine-tune backend and the one that calls a fine-tuned judge. That proves the
  options valid, the SDK installed and the credentials present (a missing key is an error naming
  the variable to set). With `probe=True`, each inference model also gets a 1-token request (a
  paid request each; it is not recorded in the run).
- **The plan estimate.** Per step of the schedule (every iteration): the requests still to make
  (a request already in the run's cache is not counted, so a resumed run's estimate is what
  remains), their prompt and completion tokens (`ste_core.engine.budget`'s chars/4 heuristic),
  the fine-tune jobs, and the serving sessions of fine-tuned judges. A step whose inputs exist is
  estimated from them, exactly: the stage's own requests, split like the scheduler splits them,
  looked up in the cache. A step whose inputs an earlier step makes is estimated from the config
  and the instructions (the data file is read and split as the `load` and `split` stages would,
  without writing anything): one item per instruction where the stage may drop some, generated
  texts as long as `max_tokens` (or `budget.expected_completion_tokens`). Those figures are upper
  bounds and say so. Retries are not counted.
- **The budget.** The estimate plus what the run spent so far, against `max_requests` and
  `max_cost_usd` (priced from `[budget]`; without prices the cost is "unpriced").

A stage says how to estimate itself: its `Stage.estimate(planner, iteration)` returns a `Work`,
built with the `Planner` here (its inputs, the requests it would send). `Pipeline.run` runs the
preflight before opening the run (a problem stops it; an estimate over the budget is a warning: the
budget stops the run exactly); `ste run --check` runs only the preflight and prints it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from ste_core.backends import FineTuneBackend, FineTuneOutlook, InferenceBackend
from ste_core.config import Config
from ste_core.engine.budget import estimate_request_tokens
from ste_core.engine.scheduler import Scheduler
from ste_core.engine.store import RunStore
from ste_core.errors import ConfigurationError, SteError
from ste_core.plugins import (
    get_finetune_backend,
    get_host,
    get_inference_backend,
    get_template,
)
from ste_core.records import (
    Baseline,
    ChatRequest,
    Instruction,
    Message,
    ModelRef,
    ResponsePair,
    SamplingParams,
)
from ste_core.run.io import read_rows
from ste_core.run.rundir import RunDir

if TYPE_CHECKING:
    from ste_core.config.schema import SamplingConfig
    from ste_core.stages.base import Stage
    from ste_prompts import Template

__all__ = ["PlanEstimate", "Planner", "Preflight", "Source", "StepEstimate", "Work", "preflight"]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


# --------------------------------------------------------------------------------------------
# What a step will take
# --------------------------------------------------------------------------------------------


@dataclass
class Work:
    """What one step (or several, added up) still has to do.

    `requests` is None when it cannot be known before an earlier step runs (`note` says why).
    `upper_bound`: the figures assume no item is dropped on the way and every answer is as long
    as `max_tokens` allows."""

    requests: int | None = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upper_bound: bool = False
    finetune_jobs: int = 0
    #: USD of those jobs; None when a job's cost is unknown before it is priced
    finetune_cost_usd: float | None = 0.0
    note: str = ""

    @classmethod
    def unknown(cls, why: str) -> Work:
        return cls(requests=None, note=why)

    def __add__(self, other: Work) -> Work:
        def plus(a: Any, b: Any) -> Any:
            return None if a is None or b is None else a + b

        return Work(
            requests=plus(self.requests, other.requests),
            cached=self.cached + other.cached,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            upper_bound=self.upper_bound or other.upper_bound,
            finetune_jobs=self.finetune_jobs + other.finetune_jobs,
            finetune_cost_usd=plus(self.finetune_cost_usd, other.finetune_cost_usd),
            note="; ".join(n for n in (self.note, other.note) if n),
        )

    def cost_usd(self, input_per_million: float | None, output_per_million: float | None) -> float:
        """The requests' cost at these prices (fine-tune jobs not included)."""
        return (
            self.prompt_tokens * (input_per_million or 0.0)
            + self.completion_tokens * (output_per_million or 0.0)
        ) / 1_000_000


@dataclass(frozen=True)
class Source(Generic[T]):
    """A stage's input, read lazily (`read()` may be called more than once); `exact` is False when
    it stands in for items an earlier step has not made yet (an upper bound of them)."""

    read: Callable[[], Iterator[T]]
    exact: bool = True


# --------------------------------------------------------------------------------------------
# The planner a stage estimates itself with
# --------------------------------------------------------------------------------------------


class Planner:
    """What a stage's `estimate` may use: the config, the run directory (read only), the store
    (read only; None for a run not started), its inputs, and `requests` to count what it would
    send. A step done in the store is not asked."""

    def __init__(
        self,
        config: Config,
        store: RunStore | None,
        inference: dict[str, InferenceBackend],
        finetune: FineTuneBackend | None,
    ) -> None:
        self.config = config
        self.rundir = RunDir(config.run_dir)
        self.store = store
        self.problems: list[str] = []
        self._inference = inference
        self._finetune = finetune
        self._splitters: dict[int, Scheduler] = {}
        self._served: dict[int, InferenceBackend] = {}
        self._asked: set[str] = set()
        self._templates: dict[str, Template] = {}
        self._split: tuple[Source[Instruction], Source[Instruction]] | None = None

    # -- run state ------------------------------------------------------------------------------

    def done(self, stage: str, iteration: int) -> bool:
        return self.store is not None and self.store.stage_done(iteration, stage)

    def state(self, key: str) -> Any:
        return None if self.store is None else self.store.get_state(key)

    def template(self, name: str) -> Template:
        if name not in self._templates:
            self._templates[name] = get_template(name)
        return self._templates[name]

    def outlook(self, iteration: int) -> FineTuneOutlook:
        """The fine-tune backend's outlook for iteration `iteration`'s job."""
        if self._finetune is None:
            return FineTuneOutlook()
        return self._finetune.outlook(self.config.finetune_spec(iteration, None))

    # -- inputs ----------------------------------------------------------------------------------

    def rows(self, path: Path, cls: type[M]) -> Source[M] | None:
        """The rows of a file an earlier step wrote (whole or not at all), or None before then."""
        if not path.exists():
            return None
        return Source(lambda: read_rows(path, cls))

    def instructions(self, which: str) -> Source[Instruction] | None:
        """The instructions `which` = "loaded" (after `load`), "train" or "eval" (after `split`):
        from the run directory once written, else read and split from [data] as those stages
        would (exact, unless a [filter] still has to pick its subset); None when they cannot be
        known without downloading (a hub dataset without data.limit)."""
        data = self.rundir.data
        if which == "loaded":
            if data("instructions").exists():
                return self.rows(data("instructions"), Instruction)
            return self._loaded()
        if data("train").exists():  # split writes eval then train
            return self.rows(data(which), Instruction)
        if self._split is None:
            pool = self._pool()
            if pool is None:
                return None
            self._split = self._split_pool(pool)
        return self._split[0] if which == "eval" else self._split[1]

    def _loaded(self) -> Source[Instruction] | None:
        from ste_core.stages.load import load_instructions

        d = self.config.data
        if d.dataset is None:
            return Source(lambda: load_instructions(d))
        if d.limit is None:
            return None
        # A hub dataset is not downloaded before its run: `limit` stand-ins as long as allowed.
        n, width = d.limit, d.max_chars
        return Source(
            lambda: (Instruction.from_text(f"{k:09d}" + "x" * max(0, width - 9)) for k in range(n)),
            exact=False,
        )

    def _pool(self) -> Source[Instruction] | None:
        """What `split` splits: the [filter]'s subset once classified, else (a superset of it)
        the loaded instructions."""
        data = self.rundir.data
        if self.config.filter.enabled and data("filtered").exists():
            return self.rows(data("filtered"), Instruction)
        loaded = self.instructions("loaded")
        if loaded is None or not self.config.filter.enabled:
            return loaded
        return Source(loaded.read, exact=False)

    def _split_pool(
        self, pool: Source[Instruction]
    ) -> tuple[Source[Instruction], Source[Instruction]]:
        from ste_core.stages.load import normalise_text
        from ste_core.stages.split import split_instructions

        cfg = self.config
        eval_size, exclude = cfg.evaluation.eval_size, set()
        if cfg.evaluation.pairs_path:
            eval_size = 0
            exclude = {
                Instruction.from_text(normalise_text(p.instruction)).id
                for p in self.reused_eval_pairs()
            }
        split = split_instructions(
            pool.read,
            eval_size=eval_size,
            train_size=cfg.data.train_size,
            seed=cfg.run.seed,
            exclude_ids=exclude,
        )
        return Source(lambda: iter(split.eval), pool.exact), Source(split.train, pool.exact)

    def reused_eval_pairs(self) -> list[ResponsePair]:
        from ste_core.evaluation.pairs_io import read_pairs

        path = self.config.evaluation.pairs_path
        assert path is not None
        return read_pairs(path, on_error="skip").pairs

    def placeholder(self, params: SamplingConfig, letter: str = "x") -> str:
        """A generated text as long as an answer under `params` may be (in estimated tokens)."""
        tokens = params.max_tokens
        expected = self.config.budget.expected_completion_tokens
        if expected is not None:
            tokens = min(tokens, expected)
        return letter * (4 * tokens)

    def projected_baselines(self, instructions: Source[Instruction]) -> Source[Baseline]:
        """A baseline for every instruction (none dropped), as long as the generator may write."""
        text = self.placeholder(self.config.generator.params)
        return Source(
            lambda: (
                Baseline(instruction_id=i.id, instruction=i.text, response=text)
                for i in instructions.read()
            ),
            exact=False,
        )

    def projected_pairs(self, instructions: Source[Instruction]) -> Source[ResponsePair]:
        """A pair for every instruction (none dropped), both responses as long as allowed."""
        params = self.config.generator.params
        chosen, rejected = self.placeholder(params, "x"), self.placeholder(params, "y")
        return Source(
            lambda: (
                ResponsePair(id=i.id, instruction=i.text, chosen=chosen, rejected=rejected)
                for i in instructions.read()
            ),
            exact=False,
        )

    # -- models ----------------------------------------------------------------------------------

    def judge_model(self, j: int) -> str:
        """The model name the requests of judge M_j carry (a stand-in before M_j exists)."""
        if j == 0:
            return self.config.judge.model
        ref = self.state(f"model/{j}")
        return ModelRef.model_validate(ref).model if ref else f"<fine-tuned judge M_{j}>"

    def _backend(self, who: str | int) -> InferenceBackend:
        """The backend the requests of `who` go to: "generator", or judge M_j (int)."""
        if who == "generator":
            return self._inference["generator"]
        if who == 0:
            return self._inference["judge"]
        assert isinstance(who, int)
        if who not in self._served:
            self._served[who] = self._inference["serving"]
            ref = self.state(f"model/{who}")
            if ref:
                # Built as the judge session builds it, so the cache keys are the same.
                options = ModelRef.model_validate(ref).options
                with contextlib.suppress(SteError, TypeError, ValueError):
                    self._served[who] = _serving_backend(self.config, options)
        return self._served[who]

    # -- counting requests --------------------------------------------------------------------

    def requests(
        self,
        key: str,
        who: str | int,
        build: Callable[[], Iterable[ChatRequest]],
        *,
        upper_bound: bool = False,
    ) -> Work:
        """What the requests `build()` makes would still cost, sent to `who` ("generator", or
        judge M_j as its index): split as the scheduler splits them, less those in the cache.

        `key` names the set of requests: a set already counted earlier in the plan (the baselines
        of every iteration are the same requests as the first iteration's) counts nothing."""
        if key in self._asked:
            return Work(note="repeats an earlier step's requests: cached")
        self._asked.add(key)
        backend = self._backend(who)
        splitter = self._splitters.setdefault(id(backend), Scheduler(backend))
        facts = backend.describe()
        expected = self.config.budget.expected_completion_tokens
        work = Work(upper_bound=upper_bound)
        count = 0
        for request in build():
            for sub in splitter.split(request):
                if self._cached(facts, sub):
                    work.cached += 1
                    continue
                est = estimate_request_tokens([sub], expected_completion_tokens=expected)
                count += 1
                work.prompt_tokens += est.prompt_tokens
                work.completion_tokens += est.completion_tokens
        work.requests = count
        return work

    def _cached(self, facts: dict[str, Any], request: ChatRequest) -> bool:
        if self.store is None:
            return False
        return self.store.cache_get(RunStore.cache_key(facts, request)) is not None


# --------------------------------------------------------------------------------------------
# The whole plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepEstimate:
    stage: str
    iteration: int
    done: bool
    work: Work


@dataclass
class PlanEstimate:
    """The estimate of every step of a run, with the totals and the budget comparison."""

    steps: list[StepEstimate]
    config: Config
    #: judge serving sessions still to open for fine-tuned judges (one per block of adjacent
    #: steps that call the same judge)
    serving_sessions: int = 0
    #: whether each is a dedicated endpoint (None: decided when serving)
    dedicated_endpoints: bool | None = False
    #: what the run has spent so far (its ledger)
    spent_requests: int = 0
    spent_usd: float = 0.0

    @property
    def total(self) -> Work:
        out = Work()
        for s in self.steps:
            out = out + Work(**{**s.work.__dict__, "note": ""})
        return out

    @property
    def priced(self) -> bool:
        b = self.config.budget
        return b.input_per_million is not None or b.output_per_million is not None

    def cost_usd(self, work: Work) -> float | None:
        """The cost of `work`'s requests at the [budget] prices (None: unpriced)."""
        b = self.config.budget
        return work.cost_usd(b.input_per_million, b.output_per_million) if self.priced else None

    def over_budget(self) -> list[str]:
        """A line per budget limit the estimate (plus what was spent) goes over."""
        b, total, out = self.config.budget, self.total, []
        bound = "at most " if total.upper_bound else ""
        requests, limit = total.requests, b.max_requests
        if limit is not None and requests is not None and self.spent_requests + requests > limit:
            out.append(
                f"the plan needs {bound}{requests} more requests (plus {self.spent_requests} "
                f"made so far), over budget.max_requests = {limit}"
            )
        cost = self.cost_usd(total)
        if b.max_cost_usd is not None and cost is not None:
            cost += total.finetune_cost_usd or 0.0
            if self.spent_usd + cost > b.max_cost_usd:
                out.append(
                    f"the plan needs {bound}${cost:.4f} more (plus ${self.spent_usd:.4f} spent "
                    f"so far), over budget.max_cost_usd = ${b.max_cost_usd:.4f}"
                )
        return out

    def notes(self) -> list[str]:
        """What the figures leave out or cannot know."""
        total, out = self.total, []
        if total.upper_bound:
            out.append(
                "figures marked ≤ are upper bounds: they come before the step's inputs exist "
                "(no item dropped, every answer as long as max_tokens allows)"
            )
        if not self.priced:
            out.append(
                "unpriced: set [budget] input_per_million and output_per_million to estimate "
                "the cost of the requests"
            )
        if total.finetune_jobs and total.finetune_cost_usd is None:
            out.append(
                "fine-tune cost unknown: the provider prices a job from its training file, "
                "which the run has not made yet"
            )
        if self.serving_sessions:
            kind = {
                True: "dedicated endpoint sessions (billed by the hour; hours unknown)",
                False: "serving sessions without a dedicated endpoint",
                None: "serving sessions, each a dedicated endpoint (billed by the hour; hours "
                "unknown) unless the model is served serverless (decided when serving)",
            }[self.dedicated_endpoints]
            out.append(f"{self.serving_sessions} fine-tuned judge {kind}")
        out.append("retries are not counted; the budget counts every attempt and stops the run")
        return out

    def summary(self) -> str:
        """One line: requests, tokens, cost, jobs."""
        total = self.total
        bound = "≤" if total.upper_bound else ""
        requests = "unknown" if total.requests is None else f"{bound}{total.requests}"
        cost = self.cost_usd(total)
        money = "unpriced" if cost is None else f"{bound}${cost:.4f}"
        jobs = ""
        if total.finetune_jobs:
            ft = total.finetune_cost_usd
            jobs = f", {total.finetune_jobs} fine-tune job(s) " + (
                "(cost unknown)" if ft is None else f"(${ft:.4f})"
            )
        if self.serving_sessions:
            jobs += f", {self.serving_sessions} fine-tuned judge serving session(s)"
        return (
            f"estimate of what the run still needs: {requests} requests, "
            f"{bound}{total.prompt_tokens + total.completion_tokens} tokens, {money}{jobs}"
        )


@dataclass
class Preflight:
    """`problems`: what stops the run before it starts (each line names the key or variable to
    fix); `estimate`: None when a problem left nothing to estimate with."""

    problems: list[str] = field(default_factory=list)
    estimate: PlanEstimate | None = None


async def preflight(
    config: Config,
    *,
    store: RunStore | None,
    iterations: int | None = None,
    plan: Sequence[Stage[Any]] | None = None,
    probe: bool = False,
) -> Preflight:
    """Check the backends (and, with `probe`, the models) of `config` and estimate what the run
    of `iterations` (default: run.iterations) still needs. `store`: the run's store, opened read
    only or not (None: the run has not started). Sends nothing unless `probe`."""
    from ste_core.stages import STAGES

    result = Preflight()
    inference, finetune = _build_backends(config, result.problems)
    k = iterations if iterations is not None else config.run.iterations
    try:
        if finetune is not None:
            result.problems += _method_problems(config, finetune, k)
        if result.problems:
            return result
        if probe:
            await _probe(config, inference, result.problems)
        planner = Planner(config, store, inference, finetune)
        try:
            result.estimate = _estimate(planner, k, tuple(plan or STAGES))
        except ConfigurationError as exc:
            planner.problems.append(str(exc))
        result.problems += planner.problems
        return result
    finally:
        for backend in {id(b): b for b in inference.values()}.values():
            with contextlib.suppress(Exception):
                await backend.aclose()
        if finetune is not None:
            with contextlib.suppress(Exception):
                await finetune.aclose()


def _estimate(planner: Planner, k: int, plan: tuple[Stage[Any], ...]) -> PlanEstimate:
    from ste_core.pipeline import judge_groups, schedule

    config = planner.config
    steps = schedule(config, k, plan)
    out = PlanEstimate([], config)
    for step in steps:
        name, i = step.key
        done = planner.done(name, i)
        work = Work()
        if not done and step.stage.estimate is not None:
            work = step.stage.estimate(planner, i)
        out.steps.append(StepEstimate(name, i, done, work))
    for group in judge_groups(steps):
        j = group[0].judge
        if j and not all(planner.done(s.stage.name, s.iteration) for s in group):
            out.serving_sessions += 1
            out.dedicated_endpoints = planner.outlook(j).dedicated_endpoint
    if planner.store is not None:
        out.spent_requests, out.spent_usd = planner.store.ledger_totals()
    return out


# --------------------------------------------------------------------------------------------
# Backends and models
# --------------------------------------------------------------------------------------------


def _serving_backend(config: Config, served_options: dict[str, Any]) -> InferenceBackend:
    """The inference backend a fine-tuned judge is called through, as `judge_session` builds it
    (the fine-tune backend's own inference when it has one, else the judge's backend)."""
    info = get_host().backends.get(config.finetune.backend)
    name = config.finetune.backend if info and info.inference else config.judge.backend
    own = dict(config.judge.options) if name == config.judge.backend else {}
    options = {**own, **config.finetune.inference_options, **served_options}
    return get_inference_backend(name, **options)


def _build_backends(
    config: Config, problems: list[str]
) -> tuple[dict[str, InferenceBackend], FineTuneBackend | None]:
    """Construct every backend the config uses (nothing is sent); a problem line for each that
    cannot be: bad options, a missing package, a missing credential."""
    inference: dict[str, InferenceBackend] = {}
    built: dict[str, InferenceBackend] = {}
    for role, section in (("generator", config.generator), ("judge", config.judge)):
        setup = json.dumps([section.backend, section.options], sort_keys=True, default=str)
        try:
            if setup not in built:
                built[setup] = get_inference_backend(section.backend, **dict(section.options))
            inference[role] = built[setup]
        except Exception as exc:
            problems.append(f"{role}.backend {section.backend!r}: {_message(exc)}")
    try:
        inference["serving"] = _serving_backend(config, {})
    except Exception as exc:
        problems.append(f"finetune.inference_options (calling a fine-tuned judge): {_message(exc)}")
    finetune = None
    try:
        finetune = get_finetune_backend(config.finetune.backend, **dict(config.finetune.options))
    except Exception as exc:
        problems.append(f"finetune.backend {config.finetune.backend!r}: {_message(exc)}")
    return inference, finetune


def _method_problems(config: Config, finetune: FineTuneBackend, iterations: int) -> list[str]:
    """A problem line for each fine-tune method the run's iterations use that the backend does
    not train (GRPO on a hosted API without it, say), before anything is paid for."""
    used = sorted({config.finetune.method_at(i) for i in range(1, iterations + 1)})
    known = ", ".join(sorted(m.value for m in finetune.capabilities.methods))
    return [
        f"finetune.method {method.value!r}: backend '{finetune.name}' trains only {known}; "
        "choose one of those, or a backend that trains it (`ste backends` lists each one's "
        "methods)"
        for method in used
        if method not in finetune.capabilities.methods
    ]


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _probe(
    config: Config, inference: dict[str, InferenceBackend], problems: list[str]
) -> None:
    """One 1-token request per distinct (backend, model) of the generator and the judge."""
    seen: set[tuple[int, str]] = set()
    for role, section in (("generator", config.generator), ("judge", config.judge)):
        backend = inference[role]
        if (id(backend), section.model) in seen:
            continue
        seen.add((id(backend), section.model))
        request = ChatRequest(
            model=section.model,
            messages=(Message(role="user", content="Reply with one word."),),
            params=SamplingParams(temperature=0.0, max_tokens=1),
        )
        try:
            await backend.complete(request)
        except Exception as exc:
            problems.append(
                f"{role}.model {section.model!r} did not answer a 1-token probe: {_message(exc)}"
            )
