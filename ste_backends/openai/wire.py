"""OpenAI chat-completions wire format: ChatRequest -> request body, response body -> Completion.

Kept free of the SDK so the same code serves the live path (a JSON body from the SDK's raw
response), the Batch API (a body inside an output-file line) and litellm (a ModelResponse turned
into a dict). Parsing is deliberately tolerant of what OpenAI-compatible servers leave out or add
(vLLM, SGLang, Ollama, llama.cpp, LM Studio): only what ste needs is required, and a body without
it raises MalformedResponseError (a retryable transport-level failure, never a parse failure of
the model's text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ste_backends.openai.errors import MalformedResponseError
from ste_core.records import ChatRequest, Completion, Usage

#: Request fields ste sets itself; `extra_body` may not override them (it would desynchronise the
#: request from its cache key).
OWNED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "n",
        "seed",
        "stop",
        "max_tokens",
        "max_completion_tokens",
        "stream",
    }
)


def chat_body(
    request: ChatRequest,
    *,
    max_tokens_field: str = "max_tokens",
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a /v1/chat/completions call for `request` (n included only when > 1)."""
    p = request.params
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "temperature": p.temperature,
        "top_p": p.top_p,
        max_tokens_field: p.max_tokens,
    }
    if p.n > 1:
        body["n"] = p.n
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop)
    if extra_body:
        body.update(extra_body)
    return body


def completion_from_body(
    data: Any,
    *,
    provider: str,
    request_id: str | None = None,
    latency_s: float = 0.0,
    cost_usd: float | None = None,
) -> Completion:
    """Turn a chat-completion response body (a dict) into a Completion.

    `request_id` wins over the body's `id` (the `x-request-id` header is what OpenAI support asks
    for); the body's `id` is used when no header was sent, as local servers do.
    """
    if not isinstance(data, Mapping):
        raise MalformedResponseError(
            f"expected a JSON object, got {type(data).__name__}: {str(data)[:200]!r}",
            provider=provider,
            request_id=request_id,
        )
    if "error" in data and data.get("error") and not data.get("choices"):
        raise MalformedResponseError(
            f"2xx response carries an error: {str(data['error'])[:300]}",
            provider=provider,
            request_id=request_id,
        )
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedResponseError(
            f"response has no choices: {str(data)[:300]!r}",
            provider=provider,
            request_id=request_id,
        )
    ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, Mapping) else 0)
    texts: list[str] = []
    reasons: list[str | None] = []
    for choice in ordered:
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if not isinstance(message, Mapping):
            raise MalformedResponseError(
                f"choice without a message: {str(choice)[:200]!r}",
                provider=provider,
                request_id=request_id,
            )
        content = message.get("content")
        if content is None:
            # No text (a refusal, or a reasoning model that ran out of tokens): the finish
            # reason tells which; the judge's parser then reports an unparsable verdict.
            content = message.get("refusal") or ""
        elif isinstance(content, list):  # content parts, as some servers send
            content = "".join(
                str(part.get("text", "")) for part in content if isinstance(part, Mapping)
            )
        texts.append(str(content))
        reason = choice.get("finish_reason")
        reasons.append(None if reason is None else str(reason))
    return Completion(
        texts=tuple(texts),
        finish_reasons=tuple(reasons),
        usage=usage_from_body(data.get("usage")),
        request_id=request_id or (str(data["id"]) if data.get("id") else None),
        model=str(data["model"]) if data.get("model") else None,
        latency_s=latency_s,
        cost_usd=cost_usd,
    )


def usage_from_body(usage: Any) -> Usage:
    """Token usage; servers that report none (some local ones) give zeros."""
    if not isinstance(usage, Mapping):
        return Usage()
    return Usage(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
    )


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0
