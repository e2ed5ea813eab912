"""Records of one model call: the request, the provider's answer, and the scheduler's outcome."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from ste_core.records._base import Record

__all__ = ["ChatRequest", "Completion", "Message", "Outcome", "SamplingParams", "Usage"]


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


class Outcome(Record):
    """What the scheduler yields for one request: an answer, or the error that ended it.

    A transport failure (after the scheduler's retries) is `api_error`; whether the answer parses
    is for the stage to decide, so a provider fault is never mistaken for a model's bad output.
    """

    index: int = Field(description="position of the request in the input stream")
    request: ChatRequest
    status: Literal["ok", "api_error"]
    completion: Completion | None = None
    error: str | None = None
    error_type: str | None = Field(None, description='e.g. "RateLimitError"')
    attempts: int = 1
    cached: bool = False
    _exception: BaseException | None = PrivateAttr(default=None)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def texts(self) -> tuple[str, ...]:
        return self.completion.texts if self.completion is not None else ()

    @property
    def exception(self) -> BaseException | None:
        """The exception behind an api_error (not serialised)."""
        return self._exception
