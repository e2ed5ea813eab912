"""`LiteLLMInference`: chat completions through `litellm.acompletion`, for any provider it reaches.

Model names carry the provider as litellm spells it (`together_ai/...`, `anthropic/...`,
`groq/...`, `bedrock/...`, `ollama_chat/...`, `hosted_vllm/...`, `openai/...`); credentials come
from the providers' usual environment variables (ANTHROPIC_API_KEY, TOGETHERAI_API_KEY, ...).

Two promises this backend keeps that litellm alone does not:

- n samples means n samples. `drop_params` is forced off, and for a model whose provider has no
  `n` (litellm's own table: Anthropic, Ollama, Bedrock, ...) or when `max_n` says so, n is made of
  separate requests, each with its own seed offset. A response with fewer choices than asked is
  topped up, never passed on short.
- One retry policy: litellm's retries (`num_retries`, the inner client's `max_retries`) are off;
  its exceptions are mapped to ste's typed errors and the core's scheduler retries.
"""

from __future__ import annotations

import time
from typing import Any

from ste_backends.litellm.loader import load_litellm
from ste_backends.litellm.options import LiteLLMOptions
from ste_backends.openai.errors import map_sdk_error
from ste_backends.openai.fanout import complete_n
from ste_backends.openai.wire import completion_from_body
from ste_core.backends import InferenceBackend, InferenceCapabilities
from ste_core.errors import ConfigurationError, SteError
from ste_core.records import ChatRequest, Completion

AUTH_HINT = (
    "Check the provider's key variable for this model (e.g. ANTHROPIC_API_KEY for anthropic/..., "
    "TOGETHERAI_API_KEY for together_ai/..., GROQ_API_KEY for groq/...), or the api_key_env and "
    "api_base options."
)


class LiteLLMInference(InferenceBackend):
    """Inference through `litellm.acompletion`.

    Options: `LiteLLMOptions` (`ste backends --options litellm` lists them).
    """

    name = "litellm"
    Options = LiteLLMOptions
    options: LiteLLMOptions
    requires = ("litellm",)
    extra = "litellm"
    capabilities = InferenceCapabilities(max_n=None, batch=False)

    def __init__(self, options: LiteLLMOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        opts = self.options
        if opts.api_key is None and opts.api_key_env is not None:
            raise ConfigurationError(
                f"litellm option api_key_env names {opts.api_key_env}, which is not set."
            )
        self._litellm = load_litellm()
        self._traits: dict[str, tuple[int | None, bool]] = {}
        self._warned: set[str] = set()
        # The core plans requests from `capabilities`; with `model` they describe that model.
        max_n = (
            self.traits(opts.model)[0]
            if opts.model
            else (None if opts.max_n == "auto" else opts.max_n)
        )
        self.capabilities = InferenceCapabilities(  # type: ignore[misc]
            max_n=max_n, batch=False, suggested_concurrency=opts.concurrency
        )

    # -- what a model can do ---------------------------------------------------------------

    def traits(self, model: str) -> tuple[int | None, bool]:
        """(max_n, supports_seed) for `model`, from the options or litellm's own knowledge.

        litellm's table (`get_supported_openai_params`) says whether a provider takes `n` and
        `seed`; a model it cannot place gets the safe answer: separate requests, no seed.
        """
        if model not in self._traits:
            params: list[str] | None
            try:
                _, provider, _, _ = self._litellm.get_llm_provider(
                    model, api_base=self.options.api_base
                )
                params = self._litellm.get_supported_openai_params(
                    model=model, custom_llm_provider=provider
                )
            except Exception:  # unknown provider prefix: litellm raises; be conservative
                params = None
            supported = set(params or ())
            option_n, option_seed = self.options.max_n, self.options.supports_seed
            max_n = option_n if option_n != "auto" else (None if "n" in supported else 1)
            seed = option_seed if option_seed != "auto" else "seed" in supported
            self._traits[model] = (max_n, seed)
        return self._traits[model]

    # -- inference -------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion with exactly `request.params.n` texts."""
        max_n, _ = self.traits(request.model)
        return await complete_n(
            request, self._call, max_n=max_n, provider=self.name, warned=self._warned
        )

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        _, seed_ok = self.traits(request.model)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
            "timeout": self.options.timeout,
            "num_retries": 0,
            "max_retries": 0,
            # Never let litellm drop `n` (or anything else) and answer a different question.
            "drop_params": False,
        }
        if p.top_p != 1.0:  # some providers refuse temperature and top_p together
            kwargs["top_p"] = p.top_p
        if p.n > 1:
            kwargs["n"] = p.n
        if p.seed is not None and seed_ok:
            kwargs["seed"] = p.seed
        if p.stop:
            kwargs["stop"] = list(p.stop)
        if self.options.api_base:
            kwargs["api_base"] = self.options.api_base
        if self.options.api_key:
            kwargs["api_key"] = self.options.api_key.get_secret_value()
        kwargs.update(self.options.extra_kwargs)
        return kwargs

    async def _call(self, request: ChatRequest) -> Completion:
        provider = self.name
        started = time.monotonic()
        try:
            response = await self._litellm.acompletion(**self._kwargs(request))
        except Exception as exc:
            raise self._map(exc) from exc
        latency = time.monotonic() - started
        try:
            data = response.model_dump()
        except Exception as exc:  # not a ModelResponse: litellm got something it could not read
            from ste_backends.openai.errors import MalformedResponseError

            raise MalformedResponseError(
                f"litellm returned {type(response).__name__}", provider=provider
            ) from exc
        return completion_from_body(
            data,
            provider=provider,
            request_id=_request_id(response),
            latency_s=latency,
            cost_usd=self._cost(response),
        )

    def _map(self, exc: Exception) -> BaseException:
        """litellm's exceptions subclass the openai SDK's; the same table applies."""
        mapped: SteError | None = map_sdk_error(exc, provider=self.name, auth_hint=AUTH_HINT)
        return exc if mapped is None else mapped

    def _cost(self, response: Any) -> float | None:
        """litellm's own cost for this response, or None when it has no price for the model."""
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        if cost is None:
            try:
                cost = self._litellm.completion_cost(completion_response=response)
            except Exception:  # no price known (local servers, new models): unknown, not zero
                return None
        try:
            value = float(cost)
        except (TypeError, ValueError):
            return None
        return value if value >= 0 else None


def _request_id(response: Any) -> str | None:
    """The provider's request id header if litellm kept it, else the response id."""
    hidden = getattr(response, "_hidden_params", None) or {}
    headers = hidden.get("additional_headers") or {}
    for key in ("llm_provider-x-request-id", "x-request-id", "llm_provider-request-id"):
        if headers.get(key):
            return str(headers[key])
    rid = getattr(response, "id", None)
    return str(rid) if rid else None
