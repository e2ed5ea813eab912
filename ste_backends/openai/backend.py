"""`OpenAIInference`: chat completions through the official `openai` SDK's async client.

Works against OpenAI and any OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server,
LM Studio): point `base_url` at it. The SDK's own retries are off (`max_retries=0`): the core's
scheduler is the one retry policy, and it decides from the typed errors this backend raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from ste_backends.openai.batch import (
    TERMINAL,
    BatchSettings,
    cancel_batch,
    find_batch,
    run_batches,
)
from ste_backends.openai.errors import map_sdk_error
from ste_backends.openai.fanout import complete_n
from ste_backends.openai.options import OpenAIOptions
from ste_backends.openai.wire import chat_body, completion_from_body
from ste_core.backends import BatchItem, InferenceBackend, InferenceCapabilities
from ste_core.errors import ConfigurationError, TransientProviderError
from ste_core.records import ChatRequest, Completion, Resource

#: Sent as the key to servers that need none (vLLM without --api-key, Ollama, llama.cpp, LM
#: Studio): the SDK refuses to start without some key, and a placeholder can never leak a real one.
PLACEHOLDER_KEY = "ste-no-key"
#: Seconds `aclose` waits for batch cancels still in flight.
CANCEL_GRACE_S = 10.0


class OpenAIInference(InferenceBackend):
    """Inference through the `openai` SDK against OpenAI or any OpenAI-compatible server.

    Options: `OpenAIOptions` (`ste backends --options openai` lists them).
    """

    name = "openai"
    Options = OpenAIOptions
    options: OpenAIOptions
    requires = ("openai",)
    extra = None  # openai is a core dependency of ste, never missing
    capabilities = InferenceCapabilities(max_n=None, batch=False)

    def __init__(self, options: OpenAIOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        import openai  # noqa: F401 - fail here, at construction, if the extra is missing

        opts = self.options
        if opts.api_key is not None:
            key = opts.api_key.get_secret_value()
        elif _is_openai(opts.base_url):
            raise ConfigurationError(
                f"No API key for {opts.base_url}: set {opts.api_key_env} (or the backend option "
                "api_key_env to the variable that holds it). For a local OpenAI-compatible "
                "server, set base_url to it, e.g. http://127.0.0.1:8000/v1."
            )
        else:
            key = PLACEHOLDER_KEY
        self._api_key = key
        self._batch_settings = BatchSettings(
            poll_interval=opts.batch_poll_interval,
            max_requests=opts.batch_max_requests,
            metadata=dict(opts.batch_metadata),
            max_n=opts.max_n,
            cancel_on_interrupt=opts.cancel_on_interrupt,
        )
        # Per instance: the options decide what this server can do; the core reads
        # `backend.capabilities`. The class attribute above is what `ste backends` shows.
        self.capabilities = InferenceCapabilities(  # type: ignore[misc]
            max_n=opts.max_n, batch=opts.batch, suggested_concurrency=opts.concurrency
        )
        # Keyed weakly by event loop: a finished loop's client goes with it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._announced = 0
        self._warned: set[str] = set()

    # -- identity --------------------------------------------------------------------------

    @property
    def auth_hint(self) -> str:
        base_url, key_env = self.options.base_url, self.options.api_key_env
        if _is_openai(base_url):
            return f"Check {key_env} (the key) and base_url ({base_url})."
        return (
            f"Check base_url ({base_url}) and the key the server expects "
            f"({key_env}, or the api_key_env option; vLLM checks --api-key)."
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
                base_url=self.options.base_url,
                timeout=self.options.timeout,
                max_retries=0,  # one retry policy: the core's scheduler
                default_headers=self.options.headers or None,
                http_client=self._http_client(),
            )
            self._clients[loop] = client
        return client

    def expect_concurrency(self, requests_in_flight: int) -> None:
        self._announced += requests_in_flight

    def _http_client(self) -> Any:
        """The SDK's HTTP client, its pool sized to the schedulers' concurrency and every
        connection kept alive (the SDK's default pool, 100 of which 20 kept alive, caps and
        churns the connections of a scheduler with hundreds of requests in flight)."""
        import openai
        from openai._base_client import httpx2

        connections = max(self.options.concurrency, self._announced)
        pool = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
        kind = (
            openai.DefaultAioHttpClient
            if self.options.http_transport == "aiohttp"
            else openai.DefaultAsyncHttpxClient
        )
        return kind(limits=pool, timeout=self.options.timeout)

    async def aclose(self) -> None:
        # A batch cancel still on its way must reach the server before its client goes.
        await self.resources.settle(CANCEL_GRACE_S)
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its loop is gone: nothing left to close
                await client.close()

    # -- inference -------------------------------------------------------------------------

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        if not self.options.supports_seed and request.params.seed is not None:
            request = request.with_params(seed=None)
        return chat_body(
            request,
            max_tokens_field=self.options.max_tokens_field,
            extra_body=self.options.extra_body,
        )

    async def complete(self, request: ChatRequest) -> Completion:
        """One chat completion with `request.params.n` texts (split/topped up as needed)."""
        return await complete_n(
            request,
            self._call,
            max_n=self.options.max_n,
            provider=self.name,
            warned=self._warned,
        )

    async def _call(self, request: ChatRequest) -> Completion:
        from openai._base_client import httpx2  # the SDK's own HTTP library

        body = self._body(request)
        provider = self.name
        started = time.monotonic()
        try:
            # Posted as it is: the SDK's create() would validate and transform the body again
            # (its largest CPU cost per request at hundreds of requests a second) for a body that
            # is plain JSON already; extra_body fields travel in it. Errors are the SDK's.
            raw = await self._client().post("/chat/completions", body=body, cast_to=httpx2.Response)
            request_id = raw.headers.get("x-request-id")
            data = json.loads(raw.text)
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
        if not self.options.batch:
            async for item in super().complete_many(requests, concurrency=concurrency):
                yield item
            return
        async for item in run_batches(
            self._client,
            requests,
            body_for=self._body,
            provider=self.name,
            auth_hint=self.auth_hint,
            settings=self._batch_settings,
            resources=self.resources,
        ):
            yield item

    # -- batch jobs a session left open ------------------------------------------------------

    async def resource_state(self, resource: Resource) -> str | None:
        """A batch's status at the server (None: no batch was created for it)."""
        if resource.kind != "batch":
            return await super().resource_state(resource)
        batch = await self._found(resource)
        return None if batch is None else str(batch.status)

    async def reap(self, resource: Resource) -> str:
        """Cancel a batch still running and end its ledger entry."""
        if resource.kind != "batch":
            return await super().reap(resource)
        batch = await self._found(resource)
        if batch is None:
            self.resources.end(resource, cost_usd=None)
            return "no batch was created for it"
        if batch.status in TERMINAL:
            self.resources.end(resource, cost_usd=None)
            return f"it had already ended ({batch.status}); its results were not used"
        if not await cancel_batch(self._client(), self.resources, resource, batch.id):
            raise TransientProviderError(f"could not cancel batch {batch.id}", provider=self.name)
        return "cancelled"

    async def _found(self, resource: Resource) -> Any:
        try:
            return await find_batch(self._client(), resource)
        except Exception as exc:
            mapped = map_sdk_error(exc, provider=self.name, auth_hint=self.auth_hint)
            if mapped is None:
                raise
            raise mapped from exc


def _is_openai(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host == "api.openai.com" or host.endswith(".openai.com")
