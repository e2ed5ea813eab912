"""Typed records that flow one way through the pipeline.

Every stage reads records of one kind and writes records of the next; all are pydantic models so
they validate on the way in, serialise to JSONL for the run directory, and read back unchanged.
Records are frozen: a stage derives new records, it never edits old ones.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def content_hash(*parts: Any) -> str:
    """A stable sha256 over JSON-serialisable parts (used for ids, splits and cache keys)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


class Instruction(Record):
    """One unlabelled user instruction. `id` is a content hash: same text, same id."""

    id: str
    text: str
    source: str | None = None
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> Instruction:
        return cls(id=content_hash(text)[:16], text=text, **kwargs)


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


class Message(Record):
    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(Record):
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    n: int = Field(1, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] = ()


class ChatRequest(Record):
    """One chat completion call: messages plus sampling parameters.

    `sample_index` distinguishes the k-th of several independent calls with otherwise identical
    parameters (the core repeats a request when a backend cannot do n>1); it is part of the cache
    key so that k separate samples are never collapsed into one cached answer.
    """

    model: str
    messages: tuple[Message, ...]
    params: SamplingParams = SamplingParams()
    sample_index: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @classmethod
    def of(
        cls, model: str, messages: list[dict[str, str]] | list[Message], **params: Any
    ) -> ChatRequest:
        msgs = tuple(m if isinstance(m, Message) else Message.model_validate(m) for m in messages)
        sample_index = params.pop("sample_index", 0)
        return cls(
            model=model, messages=msgs, params=SamplingParams(**params), sample_index=sample_index
        )

    def with_params(self, **changes: Any) -> ChatRequest:
        return self.model_copy(update={"params": self.params.model_copy(update=changes)})


class Usage(Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Completion(Record):
    """What a backend returns for one ChatRequest: n texts (one per choice)."""

    texts: tuple[str, ...]
    finish_reasons: tuple[str | None, ...] = ()
    usage: Usage = Usage()
    request_id: str | None = None
    model: str | None = None
    latency_s: float = 0.0
    cost_usd: float | None = None
    cached: bool = False

    @model_validator(mode="after")
    def _reasons_match_texts(self) -> Completion:
        if self.finish_reasons and len(self.finish_reasons) != len(self.texts):
            raise ValueError("finish_reasons must have one entry per text")
        return self


# --------------------------------------------------------------------------------------------
# The method's records
# --------------------------------------------------------------------------------------------


class Order(StrEnum):
    """Which response the judge saw first. AB: the better response is shown as A."""

    AB = "AB"
    BA = "BA"

    @property
    def correct_verdict(self) -> Literal["A", "B"]:
        return "A" if self is Order.AB else "B"


Verdict = Literal["A", "B", "tie"]


class ResponsePair(Record):
    """An instruction with a known-better (`chosen`) and known-worse (`rejected`) response.

    For synthetic pairs, `rejected` answers `modified_instruction`; for labelled benchmarks
    (RewardBench, user files) `modified_instruction` is None and `subset` names the source.
    """

    id: str
    instruction: str
    chosen: str
    rejected: str
    modified_instruction: str | None = None
    subset: str | None = None
    instruction_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _responses_differ(self) -> ResponsePair:
        if self.chosen.strip() == self.rejected.strip():
            raise ValueError(f"pair {self.id}: chosen and rejected responses are identical")
        return self

    def shown(self, order: Order) -> tuple[str, str]:
        """(response_a, response_b) as the judge sees them in `order`."""
        return (self.chosen, self.rejected) if order is Order.AB else (self.rejected, self.chosen)


class Judgement(Record):
    """One sampled judge output for a pair shown in one order."""

    pair_id: str
    order: Order
    sample_index: int
    text: str
    verdict: Verdict | None
    judge_model: str
    template: str
    parse_reason: str = ""
    usage: Usage = Usage()

    @property
    def correct(self) -> bool:
        return self.verdict == self.order.correct_verdict

    @property
    def picked_chosen(self) -> float:
        """1 if the judge picked the better response, 0 if the worse, 0.5 for tie or no verdict."""
        if self.verdict in ("A", "B"):
            return 1.0 if self.correct else 0.0
        return 0.5


class SFTExample(Record):
    """Input = judge prompt messages, target = a kept (correct) judgement."""

    messages: tuple[Message, ...]
    completion: str
    pair_id: str
    order: Order


class DPOExample(Record):
    """Same prompt; chosen = a correct judgement, rejected = a wrong / tie / unparsable one."""

    messages: tuple[Message, ...]
    chosen: str
    rejected: str
    pair_id: str
    order: Order


TrainingExample = SFTExample | DPOExample


# --------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------


class FineTuneMethod(StrEnum):
    SFT = "sft"
    DPO = "dpo"


class LoRAConfig(Record):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] | Literal["all-linear"] = "all-linear"


class FineTuneSpec(Record):
    """Everything a fine-tune backend needs to start a job, provider-neutral.

    `options` carries provider-specific knobs (e.g. Together's W&B project or hardware); backends
    document which keys they read and reject unknown ones.
    """

    base_model: str
    method: FineTuneMethod = FineTuneMethod.SFT
    from_model: str | None = Field(
        None, description="Continue from this fine-tuned model (init_from='previous')."
    )
    lora: LoRAConfig | None = LoRAConfig()
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int | Literal["max"] = 8
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=16)
    dpo_beta: float = Field(0.1, gt=0)
    suffix: str | None = Field(None, max_length=40)
    seed: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ModelRef(Record):
    """A model a backend can run: a provider model name, an endpoint, or a local adapter path.

    `inference_backend` names the backend that can serve it (the fine-tune backend's own choice);
    `options` are extra inference-backend options it needs (e.g. a dedicated endpoint's base URL).
    """

    model: str
    inference_backend: str | None = None
    base_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class FineTuneJobState(Record):
    job_id: str
    status: JobStatus
    provider_status: str | None = None
    message: str | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    events: tuple[str, ...] = ()
    model: ModelRef | None = None
    cost_usd: float | None = None
