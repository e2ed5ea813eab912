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

import os
import time
from collections.abc import Mapping
from typing import Any, Literal

from ste_backends.litellm.loader import load_litellm
from ste_backends.openai.errors import map_sdk_error
from ste_backends.openai.fanout import complete_n
from ste_backends.openai.wire import OWNED_FIELDS, completion_from_body
from ste_core.backends import InferenceBackend, InferenceCapabilities
from ste_core.errors import ConfigurationError, SteError
from ste_core.records import ChatRequest, Completion

#: kwargs ste sets per request; `extra_kwargs` may not override them: the chat fields of the
#: OpenAI wire format (litellm is given `max_tokens` only, never `max_completion_tokens`) plus
#: litellm's own retry, parameter-dropping and routing knobs.
OWNED_KWARGS = (OWNED_FIELDS - {"max_completion_tokens"}) | {
    "num_retries",
    "max_retries",
    "drop_params",
    "timeout",
    "api_base",
    "api_key",
}

OPTIONS = (
    "api_base",
    "api_key",
    "api_key_env",
    "extra_kwargs",
    "timeout",
    "concurrency",
    "max_n",
    "supports_seed",
    "model",
)

AUTH_HINT = (
    "Check the provider's key variable for this model (e.g. ANTHROPIC_API_KEY for anthropic/..., "
    "TOGETHERAI_API_KEY for together_ai/..., GROQ_API_KEY for groq/...), or the api_key_env and "
    "api_base options."
)


class LiteLLMInference(InferenceBackend):
    """Inference through `litellm.acompletion`.

    Options (the `[judge.options]` / `[generator.options]` table):

    - `api_base`: server URL (e.g. a vLLM server for `hosted_vllm/...`). Default: litellm's.
    - `api_key_env`: env var whose value is passed as `api_key` (default: none; litellm reads
      the provider's usual variable itself).
    - `api_key`: the key itself (discouraged: it would sit in a config file).
    - `extra_kwargs`: more keyword arguments for `litellm.acompletion` (e.g. `{top_k = 40}`,
      `{aws_region_name = "us-east-1"}`).
    - `timeout`: seconds per request (default 600).
    - `concurrency`: suggested number of requests in flight (default 16).
    - `max_n`: "auto" (default: ask litellm whether the model's provider takes `n`), or an
      integer (1 = always separate requests).
    - `supports_seed`: "auto" (default: ask litellm), true or false. Without seed support the
      seed is not sent (litellm would otherwise reject the call).
    - `model`: optional; when given, `capabilities` describe this model (the core reads them to
      plan requests). Requests may still name any model.
    """

    requires = ("litellm",)
    extra = "litellm"
    capabilities = InferenceCapabilities(max_n=None, batch=False, supports_seed=True)

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        extra_kwargs: Mapping[str, Any] | None = None,
        timeout: float = 600.0,
        concurrency: int = 16,
        max_n: int | Literal["auto"] = "auto",
        supports_seed: bool | Literal["auto"] = "auto",
        model: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"Unknown option(s) for the litellm backend: {', '.join(sorted(unknown))}. "
                f"Allowed: {', '.join(OPTIONS)}."
            )
        if max_n != "auto" and (not isinstance(max_n, int) or max_n < 1):
            raise ConfigurationError(f"litellm option max_n must be 'auto' or >= 1, got {max_n!r}")
        if supports_seed not in ("auto", True, False):
            raise ConfigurationError(
                f"litellm option supports_seed must be 'auto', true or false, got {supports_seed!r}"
            )
        clash = OWNED_KWARGS & set(extra_kwargs or {})
        if clash:
            raise ConfigurationError(
                f"litellm option extra_kwargs may not set {', '.join(sorted(clash))}: use the "
                "dedicated options or the request's sampling parameters."
            )
        if timeout <= 0 or concurrency < 1:
            raise ConfigurationError("litellm options timeout must be > 0 and concurrency >= 1")
        if api_key is None and api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ConfigurationError(
                    f"litellm option api_key_env names {api_key_env}, which is not set."
                )
        self._litellm = load_litellm()
        self.api_base = api_base.rstrip("/") if api_base else None
        self._api_key = api_key
        self._extra = dict(extra_kwargs or {})
        self._timeout = float(timeout)
        self._max_n_option = max_n
        self._seed_option = supports_seed
        self._traits: dict[str, tuple[int | None, bool]] = {}
        self._warned: set[str] = set()
        self.model = model
        caps_max_n, caps_seed = (
            self.traits(model)
            if model
            else (
                None if max_n == "auto" else max_n,
                supports_seed if isinstance(supports_seed, bool) else True,
            )
        )
        self.capabilities = InferenceCapabilities(  # type: ignore[misc]
            max_n=caps_max_n,
            batch=False,
            supports_seed=caps_seed,
            suggested_concurrency=concurrency,
        )

    def describe(self) -> dict[str, Any]:
        """Backend name and api_base (enter cache keys and the manifest). Never the key."""
        return {"backend": self.name or "litellm", "api_base": self.api_base}

    # -- what a model can do ---------------------------------------------------------------

    def traits(self, model: str) -> tuple[int | None, bool]:
        """(max_n, supports_seed) for `model`, from the options or litellm's own knowledge.

        litellm's table (`get_supported_openai_params`) says whether a provider takes `n` and
        `seed`; a model it cannot place gets the safe answer: separate requests, no seed.
        """
        if model not in self._traits:
            params: list[str] | None
            try:
                _, provider, _, _ = self._litellm.get_llm_provider(model, api_base=self.api_base)
                params = self._litellm.get_supported_openai_params(
                    model=model, custom_llm_provider=provider
                )
            except Exception:  # unknown provider prefix: litellm raises; be conservative
                params = None
            supported = set(params or ())
            max_n = (
                self._max_n_option
                if self._max_n_option != "auto"
                else (None if "n" in supported else 1)
            )
            seed = self._seed_option if isinstance(self._seed_option, bool) else "seed" in supported
            self._traits[model] = (max_n, seed)  # type: ignore[assignment]
        return self._traits[model]

    # -- inference -------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion with exactly `request.params.n` texts."""
        max_n, _ = self.traits(request.model)
        return await complete_n(
            request, self._call, max_n=max_n, provider=self.name or "litellm", warned=self._warned
        )

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        _, seed_ok = self.traits(request.model)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
            "timeout": self._timeout,
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
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        kwargs.update(self._extra)
        return kwargs

    async def _call(self, request: ChatRequest) -> Completion:
        provider = self.name or "litellm"
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
        mapped: SteError | None = map_sdk_error(
            exc, provider=self.name or "litellm", auth_hint=AUTH_HINT
        )
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
