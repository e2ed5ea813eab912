"""TogetherInference: chat completions through the official `together` SDK (3.x, async client)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

from ste_core.backends import BatchItem, InferenceBackend, InferenceCapabilities
from ste_core.errors import ConfigurationError, TransientProviderError
from ste_core.records import ChatRequest, Completion, Usage

from .client import PROVIDER, Connection, make_client
from .errors import map_error
from .pricing import PriceBook, cost_of, parse_prices


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The chat-completions request body (also one Batch API line's `body`).

    Only what the request sets is sent: seed and stop are omitted when unset so the provider's
    defaults apply, and n is always explicit.
    """
    p = request.params
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "n": p.n,
    }
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop)
    return body


def completion_from_body(
    body: Mapping[str, Any], *, request_id: str | None, latency_s: float, requested_n: int
) -> tuple[Completion, Usage]:
    """Build a Completion from a chat-completion JSON body; malformed bodies are transient errors.

    A body whose choices are missing, empty or carry no message text is a provider fault (it is
    retried), never handed to a parser as if the model had written it.
    """
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise TransientProviderError(
            "malformed chat completion: no choices in the response body", provider=PROVIDER
        )
    ordered = sorted(choices, key=lambda c: (c.get("index") or 0) if isinstance(c, dict) else 0)
    texts: list[str] = []
    reasons: list[str | None] = []
    for choice in ordered:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise TransientProviderError(
                "malformed chat completion: a choice has no message content", provider=PROVIDER
            )
        texts.append(content)
        reasons.append(choice.get("finish_reason"))
    if len(texts) != requested_n:
        raise TransientProviderError(
            f"chat completion returned {len(texts)} choices, {requested_n} were requested",
            provider=PROVIDER,
        )
    raw_usage = body.get("usage") or {}
    usage = Usage(
        prompt_tokens=int(raw_usage.get("prompt_tokens") or 0),
        completion_tokens=int(raw_usage.get("completion_tokens") or 0),
    )
    completion = Completion(
        texts=tuple(texts),
        finish_reasons=tuple(reasons),
        usage=usage,
        request_id=request_id or body.get("id"),
        model=body.get("model"),
        latency_s=latency_s,
    )
    return completion, usage


class TogetherInference(InferenceBackend):
    """Chat completions on Together (serverless models, fine-tuned LoRA models, endpoints).

    Options (from the config's backend section, all optional):
      api_key: the key; default from env TOGETHER_API_KEY. Never stored on this object, never
        logged, never in describe().
      base_url: API base URL without /v1 (a trailing /v1 is accepted and removed); default from
        env TOGETHER_BASE_URL, else Together's own hosts (chat then goes to the inference host).
      project_id: Together project (default env TOGETHER_PROJECT_ID); only dedicated endpoints
        need it.
      timeout_s: per-request timeout (default 120).
      batch: use the Batch API for complete_many (about half price, hours of latency).
      batch_poll_interval_s: seconds between batch status polls (default 30).
      batch_timeout_s: give up on a batch after this long, cancelling it (default 86400).
      batch_max_requests: requests per batch job (default 50000; larger inputs are split).
      batch_discount: price factor for Batch API usage (default 0.5).
      prices: {model: [usd_per_M_input, usd_per_M_output]} known prices.
      price_lookup: look prices up in Together's catalog once per model (default True).
      concurrency: suggested concurrency for the scheduler (default 16).
    """

    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(
        max_n=None, batch=False, supports_seed=True, suggested_concurrency=16
    )
    requires: ClassVar[tuple[str, ...]] = ("together",)

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        project_id: str | None = None,
        timeout_s: float | None = None,
        batch: bool = False,
        batch_poll_interval_s: float = 30.0,
        batch_timeout_s: float = 86400.0,
        batch_max_requests: int = 50000,
        batch_discount: float = 0.5,
        prices: Mapping[str, Any] | None = None,
        price_lookup: bool = True,
        concurrency: int = 16,
    ) -> None:
        if batch_poll_interval_s <= 0 or batch_timeout_s <= 0:
            raise ConfigurationError("together: batch_poll_interval_s/batch_timeout_s must be > 0")
        if not 1 <= batch_max_requests <= 50000:
            raise ConfigurationError("together: batch_max_requests must be between 1 and 50000")
        self.connection = Connection.from_options(base_url, project_id, timeout_s)
        self.batch = bool(batch)
        self.batch_poll_interval_s = float(batch_poll_interval_s)
        self.batch_timeout_s = float(batch_timeout_s)
        self.batch_max_requests = int(batch_max_requests)
        self.batch_discount = float(batch_discount)
        # Instance-level capabilities: batch support depends on the option.
        self.capabilities = InferenceCapabilities(  # type: ignore[misc]
            max_n=None, batch=self.batch, supports_seed=True, suggested_concurrency=concurrency
        )
        self._prices = PriceBook(parse_prices(prices), lookup=price_lookup)
        # The key goes into the SDK client and nowhere else.
        self._client = make_client(self.connection, api_key)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name or PROVIDER, **self.connection.describe(), "batch": self.batch}

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion; SDK errors become the core's typed errors."""
        started = time.perf_counter()
        try:
            raw = await self._client.chat.completions.with_raw_response.create(**chat_body(request))
            body = await raw.json()
        except Exception as exc:
            raise map_error(exc, what=f"chat completion with {request.model}") from exc
        if not isinstance(body, dict):
            raise TransientProviderError(
                "malformed chat completion: the body is not a JSON object", provider=PROVIDER
            )
        completion, usage = completion_from_body(
            body,
            request_id=raw.headers.get("x-request-id"),
            latency_s=time.perf_counter() - started,
            requested_n=request.params.n,
        )
        price = await self._prices.price(self._client, request.model)
        return completion.model_copy(update={"cost_usd": cost_of(usage, price)})

    async def complete_many(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        """With batch=True, run the requests through Together's Batch API; else concurrent calls."""
        if not self.batch:
            async for item in super().complete_many(requests, concurrency=concurrency):
                yield item
            return
        from .batch import run_batches

        async for item in run_batches(self, list(requests)):
            yield item

    async def _price(self, model: str) -> Any:
        return await self._prices.price(self._client, model)
