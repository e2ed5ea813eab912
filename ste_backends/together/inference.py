"""TogetherInference: chat completions through the official `together` SDK (3.x, async client)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

from ste_core.backends import BatchItem, InferenceBackend, InferenceCapabilities
from ste_core.errors import TransientProviderError
from ste_core.records import ChatRequest, Completion, Resource, Usage

from .client import PROVIDER, api_key, make_client
from .errors import map_error
from .options import TogetherInferenceOptions
from .pricing import PriceBook, cost_of

#: Seconds `aclose` waits for batch cancels still in flight.
CANCEL_GRACE_S = 10.0


#: Where the SDK sends chat completions: under an overridden base URL, else Together's inference
#: host (together 3.x, resources/chat/completions.py).
CHAT_PATH = "/v1/chat/completions"
DEFAULT_CHAT_URL = "https://api-inference.together.ai/v1/chat/completions"


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

    Options: `TogetherInferenceOptions` (`ste backends --options together` lists them). The API
    key comes from env TOGETHER_API_KEY (or the `api_key` keyword in code) and goes into the SDK
    client only.
    """

    name: ClassVar[str] = PROVIDER
    Options = TogetherInferenceOptions
    options: TogetherInferenceOptions
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(
        max_n=None, batch=False, suggested_concurrency=16
    )
    requires: ClassVar[tuple[str, ...]] = ("together",)

    def __init__(self, options: TogetherInferenceOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        # Instance-level capabilities: batch support depends on the option.
        self.capabilities = InferenceCapabilities(  # type: ignore[misc]
            max_n=None, batch=self.options.batch, suggested_concurrency=self.options.concurrency
        )
        self._prices = PriceBook(self.options.prices, lookup=self.options.price_lookup)
        api_key(self.options)  # a missing key is said now, not at the first request
        self._announced = 0
        self._sdk: Any = None

    def expect_concurrency(self, requests_in_flight: int) -> None:
        self._announced += requests_in_flight

    @property
    def _client(self) -> Any:
        """The SDK client, made on first use: its pool is sized to the concurrency the
        scheduler announced by then (`expect_concurrency`)."""
        if self._sdk is None:
            connections = max(self.options.concurrency, self._announced)
            self._sdk = make_client(self.options, connections=connections)
        return self._sdk

    async def aclose(self) -> None:
        # A batch cancel still on its way must reach Together before the client goes.
        await self.resources.settle(CANCEL_GRACE_S)
        if self._sdk is not None:
            await self._sdk.close()

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion; SDK errors become the core's typed errors."""
        import httpx  # the SDK's own dependency: loaded with it, never at plugin import

        started = time.perf_counter()
        try:
            # Posted as it is: the SDK's create() would validate and transform the body again,
            # about 1 ms of CPU a request (the client's largest cost at hundreds of requests a
            # second), for a body that is plain JSON already. Errors are the SDK's all the same.
            raw = await self._client.post(
                CHAT_PATH if self.options.base_url else DEFAULT_CHAT_URL,
                body=chat_body(request),
                cast_to=httpx.Response,
            )
            body = raw.json()
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
        if not self.options.batch:
            async for item in super().complete_many(requests, concurrency=concurrency):
                yield item
            return
        from .batch import run_batches

        async for item in run_batches(self, list(requests)):
            yield item

    async def _price(self, model: str) -> Any:
        return await self._prices.price(self._client, model)

    async def resource_state(self, resource: Resource) -> str | None:
        """A batch job's status at Together (None: no batch was created for it)."""
        if resource.kind != "batch":
            return await super().resource_state(resource)
        from .batch import find_batch

        job = await find_batch(self, resource)
        return None if job is None else str(job.status)

    async def reap(self, resource: Resource) -> str:
        """Cancel a batch job still running and end its ledger entry."""
        if resource.kind != "batch":
            return await super().reap(resource)
        from .batch import TERMINAL, cancel_batch, find_batch

        job = await find_batch(self, resource)
        if job is None:
            self.resources.end(resource, cost_usd=None)
            return "no batch was created for it"
        if (job.status or "") in TERMINAL:
            self.resources.end(resource, cost_usd=None)
            return f"it had already ended ({job.status}); its results were not used"
        if not await cancel_batch(self, resource, job.id):
            raise TransientProviderError(f"could not cancel batch {job.id}", provider=PROVIDER)
        return "cancelled"
