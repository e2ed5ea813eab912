"""Records of a run as a whole: the funnel, usage and cost, the manifest, per-judge metrics.

The run store (`ste_core.engine.store.RunStore`) holds them as typed rows; `manifest.json` and
`iter_N/metrics.json` are exports of these records, written for people and other tools and never
read back as state.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from ste_core.records.scores import BenchmarkResult, EvalScore, PairedTest

__all__ = [
    "BackendOrigin",
    "CostTotals",
    "EndpointRecord",
    "FineTuneInfo",
    "FineTuneJobRecord",
    "Funnel",
    "IterationMetrics",
    "PairedResult",
    "RunManifest",
    "SessionRecord",
    "StageUsage",
    "UsageTotals",
    "now",
]


def now() -> str:
    """The local time as the manifest writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _Part(BaseModel):
    # Lenient on purpose: a run started by an earlier version may have written more fields.
    model_config = ConfigDict(extra="ignore")


class Funnel(_Part):
    """How many items each step of an iteration kept, and what was dropped, by reason.

    Each stage contributes its own fields (see its `Counts.funnel`); a field no stage of the
    iteration sets is left out of the JSON, so iteration 0 (data, eval pairs) and a training
    iteration each show what applies to them.
    """

    instructions: int | None = None
    eval_instructions: int | None = None
    train_instructions: int | None = None
    pairs: int | None = None
    judged: int | None = None
    correct: int | None = None
    judge_failures: int | None = None
    kept_before_balance: int | None = None
    balanced_kept: int | None = None
    sft_examples: int | None = None
    dpo_examples: int | None = None
    grpo_prompts: int | None = None
    drops: dict[str, int] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _omit_unset_steps(self, handler: SerializerFunctionWrapHandler) -> Any:
        return {k: v for k, v in handler(self).items() if v is not None}

    @classmethod
    def merge(cls, parts: Iterable[Funnel]) -> Funnel:
        """One funnel from the stages' parts: later values win, drops add up."""
        values: dict[str, Any] = {}
        drops: dict[str, int] = {}
        for part in parts:
            values.update(
                {k: v for k, v in part if k != "drops" and v is not None}  # type: ignore[misc]
            )
            for reason, n in part.drops.items():
                drops[reason] = drops.get(reason, 0) + n
        return cls(**values, drops=drops)


class UsageTotals(_Part):
    """Provider requests (attempts) and tokens; cache hits cost nothing."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class StageUsage(UsageTotals):
    """What one stage (or all runs of a stage) used: requests, tokens, money, time."""

    cost_usd: float = 0.0
    seconds: float | None = None

    def __add__(self, other: StageUsage) -> StageUsage:
        timed = [s for s in (self.seconds, other.seconds) if s is not None]
        return StageUsage(
            requests=self.requests + other.requests,
            cache_hits=self.cache_hits + other.cache_hits,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
            seconds=round(sum(timed), 3) if timed else None,
        )


class CostTotals(_Part):
    inference: float = 0.0
    finetune: float = 0.0
    #: dedicated endpoints' uptime at their hourly price
    endpoints: float = 0.0
    total: float = 0.0


class BackendOrigin(_Part):
    """Which distribution provided the backend a role used."""

    backend: str
    distribution: str | None = None
    version: str | None = None


class FineTuneJobRecord(_Part):
    iteration: int
    job_id: str
    status: str
    base_model: str | None = None
    from_model: str | None = None
    model: str | None = None
    cost_usd: float | None = None


class EndpointRecord(_Part):
    """One serving session of a fine-tuned judge."""

    iteration: int
    model: str
    served_as: str
    seconds: float
    #: what the dedicated endpoints of the session cost (None: served without one, or unpriced)
    cost_usd: float | None = None


class SessionRecord(_Part):
    """One `ste run` invocation on this run directory."""

    started: str
    finished: str | None = None
    status: str = "running"


class RunManifest(_Part):
    """What a run is and what it used: versions, seed, models, jobs, endpoints, usage, cost.

    Updated in place while a run goes on (it is state, not a record flowing between stages);
    `RunContext.save_manifest` stores it and exports manifest.json.
    """

    name: str = ""
    seed: int | None = None
    status: str = "created"
    started: str = Field(default_factory=now)
    finished: str | None = None
    updated: str | None = None
    config_fingerprint: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    backends: dict[str, BackendOrigin] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    finetune_jobs: list[FineTuneJobRecord] = Field(default_factory=list)
    endpoints: list[EndpointRecord] = Field(default_factory=list)
    usage: UsageTotals = Field(default_factory=UsageTotals)
    usage_by_stage: dict[str, StageUsage] = Field(default_factory=dict)
    cost_usd: CostTotals = Field(default_factory=CostTotals)
    seconds: dict[str, float] = Field(default_factory=lambda: {"total": 0.0})
    sessions: list[SessionRecord] = Field(default_factory=list)

    def add_usage(self, stage: str, delta: StageUsage) -> None:
        """Add a stage's usage to the per-stage and run totals."""
        self.usage_by_stage[stage] = self.usage_by_stage.get(stage, StageUsage()) + delta
        u = self.usage
        self.usage = UsageTotals(
            requests=u.requests + delta.requests,
            cache_hits=u.cache_hits + delta.cache_hits,
            prompt_tokens=u.prompt_tokens + delta.prompt_tokens,
            completion_tokens=u.completion_tokens + delta.completion_tokens,
        )
        self.add_cost("inference", delta.cost_usd)

    def add_cost(self, kind: Literal["inference", "finetune", "endpoints"], usd: float) -> None:
        parts = self.cost_usd.model_dump(exclude={"total"})
        parts[kind] = round(parts[kind] + usd, 6)
        self.cost_usd = CostTotals(**parts, total=round(sum(parts.values()), 6))

    def record_stage(self, iteration: int, stage: str, seconds: float) -> None:
        self.seconds[f"{iteration}/{stage}"] = round(seconds, 3)
        self.seconds["total"] = round(sum(v for k, v in self.seconds.items() if k != "total"), 3)

    def upsert_job(self, job: FineTuneJobRecord) -> None:
        """Add a fine-tune job, or update the one with the same id (fields set now win)."""
        for i, old in enumerate(self.finetune_jobs):
            if old.job_id == job.job_id:
                merged = old.model_dump() | job.model_dump(exclude_unset=True)
                self.finetune_jobs[i] = FineTuneJobRecord(**merged)
                return
        self.finetune_jobs.append(job)

    def start_session(self) -> None:
        # A session still "running" when the next one starts died without a word (kill -9, a
        # power cut): say so, rather than leaving it running for good.
        if self.sessions and self.sessions[-1].status == "running":
            self.sessions[-1] = self.sessions[-1].model_copy(update={"status": "killed"})
        self.status = "running"
        self.sessions.append(SessionRecord(started=now()))

    def end_session(self, status: str) -> None:
        self.status = status
        self.finished = now()
        if self.sessions:
            self.sessions[-1] = self.sessions[-1].model_copy(
                update={"finished": self.finished, "status": status}
            )


class PairedResult(PairedTest):
    """A paired test of this iteration's judge against an earlier one."""

    against_iteration: int


class FineTuneInfo(_Part):
    """The fine-tune job that made an iteration's judge."""

    job_id: str | None = None
    status: str | None = None
    model: str | None = None
    endpoint: str | None = None
    cost_usd: float | None = None
    #: the training metrics the job logged last (GRPO: mean reward per function, KL)
    metrics: dict[str, float] = Field(default_factory=dict)


class IterationMetrics(_Part):
    """Everything measured for one judge (iteration 0 = the seed judge): its score on the frozen
    eval pairs and on each benchmark, paired tests against earlier judges, the iteration's funnel,
    per-stage usage and its fine-tune job."""

    iteration: int
    judge_model: str
    eval: EvalScore
    benchmarks: dict[str, EvalScore] = Field(default_factory=dict)
    #: results on published benchmarks scored by their own rules (`[[evaluation.benchmarks]]`
    #: with benchmark = "rewardbench2" / "judgebench" / "rmbench" / "ppe")
    benchmark_results: dict[str, BenchmarkResult] = Field(default_factory=dict)
    #: score on the validation pairs of `evaluation.select_on` (when it names a file)
    validation: EvalScore | None = None
    paired: dict[str, PairedResult] = Field(default_factory=dict)
    funnel: Funnel = Field(default_factory=Funnel)
    stages: dict[str, StageUsage] = Field(default_factory=dict)
    finetune: FineTuneInfo | None = None

    def headline(self) -> dict[str, Any]:
        """The few eval numbers the event hooks carry."""
        e = self.eval
        return {
            "accuracy": e.accuracy,
            "ci_low": e.ci_low,
            "ci_high": e.ci_high,
            "n_items": e.n_items,
            "error_count": e.error_count,
            "position_consistency": e.position_consistency,
            "no_verdict_rate": e.no_verdict_rate,
        }
