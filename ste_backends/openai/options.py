"""The options of OpenAIInference (the `[judge.options]` / `[generator.options]` tables).

Importing this module imports no SDK: the config loader validates options with this class before
a run starts.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import SecretStr, field_validator

from ste_backends.openai.wire import OWNED_FIELDS
from ste_core.backends import BackendOptions, option, secret

OPENAI_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"


class OpenAIOptions(BackendOptions):
    base_url: str = option(
        None,
        validate_default=True,
        changes_results=True,
        help=f"server URL ending in /v1; default env {BASE_URL_ENV}, else {OPENAI_BASE_URL}",
    )
    api_key_env: str = option(
        "OPENAI_API_KEY",
        changes_results=False,
        help="environment variable holding the key; servers other than api.openai.com get a "
        "placeholder key when it is unset",
    )
    api_key: SecretStr | None = secret(
        env_option="api_key_env", help="the key (read from the variable api_key_env names)"
    )
    headers: dict[str, str] = option(
        default_factory=dict,
        changes_results=False,
        help="extra HTTP headers sent with every request (e.g. OpenAI-Organization)",
    )
    timeout: float = option(600.0, gt=0, changes_results=False, help="seconds per HTTP request")
    http_transport: Literal["aiohttp", "httpx"] = option(
        "aiohttp",
        changes_results=False,
        help="HTTP transport of the SDK client: aiohttp (the SDK's DefaultAioHttpClient; keeps "
        "hundreds of requests in flight on little CPU) or httpx (the SDK's default)",
    )
    concurrency: int = option(
        16, ge=1, changes_results=False, help="suggested number of requests in flight"
    )
    max_n: int | None = option(
        None,
        ge=1,
        changes_results=False,
        help="most choices per request; unset = no limit (OpenAI, vLLM), 1 = the server has no n",
    )
    supports_seed: bool = option(
        True,
        changes_results=True,
        help="send the request's seed; false for a server that rejects it",
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = option(
        "max_tokens",
        changes_results=False,
        help="max_tokens (every compatible server) or max_completion_tokens (OpenAI's "
        "reasoning models require it)",
    )
    extra_body: dict[str, Any] = option(
        default_factory=dict,
        changes_results=True,
        help="extra JSON fields for every request (e.g. vLLM's top_k); may not set the fields "
        "ste owns (model, messages, sampling parameters, max tokens)",
    )
    batch: bool = option(
        False,
        changes_results=False,
        help="run complete_many through the Batch API (OpenAI; about half price, up to 24 h)",
    )
    batch_poll_interval: float = option(
        30.0, ge=0, changes_results=False, help="seconds between batch status polls"
    )
    batch_max_requests: int = option(
        50_000,
        ge=1,
        le=50_000,
        changes_results=False,
        help="most lines per batch input file, at most OpenAI's 50,000 (files are also split "
        "under OpenAI's 200 MB)",
    )
    cancel_on_interrupt: bool = option(
        False,
        changes_results=False,
        help="cancel a running batch when the run is interrupted; false: leave it running and "
        "let the resumed run collect its results (paid once)",
    )
    batch_metadata: dict[str, str] = option(
        default_factory=dict,
        changes_results=False,
        help="string key/values attached to each batch",
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url(cls, value: Any) -> Any:
        # Resolved here, not in the backend, so that describe() names the server really called.
        value = value if value is not None else os.environ.get(BASE_URL_ENV) or OPENAI_BASE_URL
        return value.rstrip("/") if isinstance(value, str) else value

    @field_validator("extra_body")
    @classmethod
    def _not_owned(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = OWNED_FIELDS & set(value)
        if clash:
            raise ValueError(
                f"may not set {', '.join(sorted(clash))}: these come from the request's "
                "sampling parameters"
            )
        return value
