"""`OpenAIInference`: chat completions through the official `openai` SDK's async client.

Works against OpenAI and any OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server,
LM Studio): point `base_url` at it. The SDK's own retries are off (`max_retries=0`): the core's
scheduler is the one retry policy, and it decides from the typed errors this backend raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ste_backends.openai.batch import BatchSettings, run_batches
from ste_backends.openai.errors import map_sdk_error
from ste_backends.openai.fanout import complete_n
from ste_backends.openai.wire import (
    MAX_TOKENS_FIELDS,
    OWNED_FIELDS,
    chat_body,
    completion_from_body,
)
from ste_core.backends import BatchItem, InferenceBackend, InferenceCapabilities
from ste_core.errors import ConfigurationError
from ste_core.records import ChatRequest, Completion

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Sent as the key to servers that need none (vLLM without --api-key, Ollama, llama.cpp, LM
#: Studio): the SDK refuses to start without some key, and a placeholder can never leak a real one.
PLACEHOLDER_KEY = "ste-no-key"

OPTIONS = (
    "base_url",
    "api_key",
    "api_key_env",
    "headers",
    "timeout",
    "concurrency",
    "max_n",
    "supports_seed",
    "max_tokens_field",
    "extra_body",
    "batch",
    "batch_poll_interval",
    "batch_max_requests",
    "batch_metadata",
)


class OpenAIInference(InferenceBackend):
    """Inference through the `openai` SDK against OpenAI or any OpenAI-compatible server.

    Options (the `[judge.options]` / `[generator.options]` table):

    - `base_url`: server URL ending in `/v1`. Default: `OPENAI_BASE_URL`, else OpenAI's.
    - `api_key`: the key itself (prefer `api_key_env`, so no key is written into a config).
    - `api_key_env`: env var holding the key (default `OPENAI_API_KEY`). Servers other than
      api.openai.com get a placeholder key when the variable is unset.
    - `headers`: extra HTTP headers sent with every request.
    - `timeout`: seconds per HTTP request (default 600).
    - `concurrency`: suggested number of requests in flight (default 16).
    - `max_n`: most choices per request; None = no limit (OpenAI, vLLM), 1 = server has no `n`.
    - `supports_seed`: whether to send `seed` (default True).
    - `max_tokens_field`: `max_tokens` (default; every compatible server) or
      `max_completion_tokens` (OpenAI's reasoning models require it).
    - `extra_body`: extra JSON fields for every request (e.g. vLLM's `top_k`).
    - `batch`: use the Batch API for `complete_many` (OpenAI; about half price, up to 24 h).
    - `batch_poll_interval`: seconds between batch status polls (default 30).
    - `batch_max_requests`: most lines per batch input file (default 50000, OpenAI's limit).
    - `batch_metadata`: string key/values attached to each batch.
    """

    requires = ("openai",)
    extra = None  # openai is a core dependency of ste, never missing
    capabilities = InferenceCapabilities(max_n=None, batch=False, supports_seed=True)

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        headers: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        concurrency: int = 16,
        max_n: int | None = None,
        supports_seed: bool = True,
        max_tokens_field: str = "max_tokens",
        extra_body: Mapping[str, Any] | None = None,
        batch: bool = False,
        batch_poll_interval: float = 30.0,
        batch_max_requests: int = 50_000,
        batch_metadata: Mapping[str, str] | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"Unknown option(s) for the openai backend: {', '.join(sorted(unknown))}. "
                f"Allowed: {', '.join(OPTIONS)}."
            )
        if max_n is not None and max_n < 1:
            raise ConfigurationError(f"openai option max_n must be >= 1 or unset, got {max_n}")
        if max_tokens_field not in MAX_TOKENS_FIELDS:
            raise ConfigurationError(
                f"openai option max_tokens_field must be one of {MAX_TOKENS_FIELDS}, "
                f"got {max_tokens_field!r}"
            )
        clash = OWNED_FIELDS & set(extra_body or {})
        if clash:
            raise ConfigurationError(
                f"openai option extra_body may not set {', '.join(sorted(clash))}: these come "
                "from the request's sampling parameters."
            )
        if timeout <= 0 or concurrency < 1 or batch_poll_interval < 0 or batch_max_requests < 1:
            raise ConfigurationError(
                "openai options timeout must be > 0, concurrency >= 1, batch_poll_interval >= 0 "
                "and batch_max_requests >= 1"
            )
        import openai  # noqa: F401 - fail here, at construction, if the extra is missing

        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip(
            "/"
        )
        key = api_key or os.environ.get(api_key_env) or None
        if key is None:
            if _is_openai(self.base_url):
                raise ConfigurationError(
                    f"No API key for {self.base_url}: set {api_key_env} (or the backend option "
                    "api_key_env to the variable that holds it). For a local OpenAI-compatible "
                    "server, set base_url to it, e.g. http://127.0.0.1:8000/v1."
                )
            key = PLACEHOLDER_KEY
        self._api_key = key
        self._api_key_env = api_key_env
        self._headers = dict(headers or {})
        self._timeout = float(timeout)
        self._max_n = max_n
        self._supports_seed = supports_seed
        self._max_tokens_field = max_tokens_field
        self._extra_body = dict(extra_body or {})
        self._batch = batch
        self._batch_settings = BatchSettings(
            poll_interval=float(batch_poll_interval),
            max_requests=int(batch_max_requests),
            metadata={str(k): str(v) for k, v in (batch_metadata or {}).items()},
            max_n=max_n,
        )
        # Per instance: the options decide what this server can do; the core reads
        # `backend.capabilities`. The class attribute above is what `ste backends` shows.
        self.capabilities = InferenceCapabilities(  # type: ignore[misc]
            max_n=max_n,
            batch=batch,
            supports_seed=supports_seed,
            suggested_concurrency=concurrency,
        )
        # Keyed weakly by event loop: a finished loop's client goes with it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._warned: set[str] = set()

    # -- identity --------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Backend name and base URL (enter cache keys and the manifest). Never the key."""
        return {"backend": self.name or "openai", "base_url": self.base_url}

    @property
    def auth_hint(self) -> str:
        if _is_openai(self.base_url):
            return f"Check {self._api_key_env} (the key) and base_url ({self.base_url})."
        return (
            f"Check base_url ({self.base_url}) and the key the server expects "
            f"({self._api_key_env}, or the api_key_env option; vLLM checks --api-key)."
        )

    # -- client ----------------------------------------------------------------------------

    def _client(self) -> Any:
        """The SDK client for the running event loop (an httpx2 pool is bound to its loop, and
        a process may run several loops one after another: tests, notebooks, `asyncio.run`)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            import openai

            client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self._timeout,
                max_retries=0,  # one retry policy: the core's scheduler
                default_headers=self._headers or None,
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await client.close()

    # -- inference -------------------------------------------------------------------------

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        if not self._supports_seed and request.params.seed is not None:
            request = request.with_params(seed=None)
        return chat_body(
            request, max_tokens_field=self._max_tokens_field, extra_body=self._extra_body
        )

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion with `request.params.n` texts (split/topped up as needed)."""
        return await complete_n(
            request,
            self._call,
            max_n=self._max_n,
            provider=self.name or "openai",
            warned=self._warned,
        )

    async def _call(self, request: ChatRequest) -> Completion:
        body = self._body(request)
        known = {k: body.pop(k) for k in list(body) if k in OWNED_FIELDS}
        provider = self.name or "openai"
        started = time.monotonic()
        try:
            raw = await self._client().chat.completions.with_raw_response.create(
                **known, extra_body=body or None
            )
            text = raw.http_response.text
            request_id = raw.headers.get("x-request-id")
            data = json.loads(text)
        except Exception as exc:
            mapped = map_sdk_error(exc, provider=provider, auth_hint=self.auth_hint)
            if mapped is None:
                raise
            raise mapped from exc
        return completion_from_body(
            data,
            provider=provider,
            request_id=request_id,
            latency_s=time.monotonic() - started,
        )

    async def complete_many(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        """Live calls (bounded concurrency) by default; the Batch API with `batch = true`."""
        if not self._batch:
            async for item in super().complete_many(requests, concurrency=concurrency):
                yield item
            return
        async for item in run_batches(
            self._client,
            requests,
            body_for=self._body,
            provider=self.name or "openai",
            auth_hint=self.auth_hint,
            settings=self._batch_settings,
        ):
            yield item


def _is_openai(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host == "api.openai.com" or host.endswith(".openai.com")
