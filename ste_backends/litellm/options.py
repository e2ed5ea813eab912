"""The options of LiteLLMInference (the `[judge.options]` / `[generator.options]` tables).

Importing this module does not import litellm: the config loader validates options with this
class before a run starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr, field_validator

from ste_backends.openai.wire import OWNED_FIELDS
from ste_core.backends import BackendOptions, option, secret

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


class LiteLLMOptions(BackendOptions):
    api_base: str | None = option(
        None,
        changes_results=True,
        help="server URL (e.g. a vLLM server for hosted_vllm/...); default: litellm's for the "
        "model's provider",
    )
    api_key_env: str | None = option(
        None,
        changes_results=False,
        help="environment variable whose value is passed as api_key (default: none; litellm "
        "reads the provider's usual variable itself)",
    )
    api_key: SecretStr | None = secret(
        env_option="api_key_env", help="the key (read from the variable api_key_env names)"
    )
    extra_kwargs: dict[str, Any] = option(
        default_factory=dict,
        changes_results=True,
        help="more keyword arguments for litellm.acompletion (e.g. {top_k = 40}, "
        "{aws_region_name = 'us-east-1'}); may not set what ste owns",
    )
    timeout: float = option(600.0, gt=0, changes_results=False, help="seconds per request")
    concurrency: int = option(
        16, ge=1, changes_results=False, help="suggested number of requests in flight"
    )
    max_n: int | Literal["auto"] = option(
        "auto",
        changes_results=False,
        help="'auto': litellm's table says whether the model's provider takes n; an integer "
        "overrides it (1: always separate requests)",
    )
    supports_seed: bool | Literal["auto"] = option(
        "auto",
        changes_results=True,
        help="'auto': send the seed where litellm's table says the provider takes one; true or "
        "false overrides it",
    )
    model: str | None = option(
        None,
        changes_results=False,
        help="when set, capabilities describe this model (requests may still name any model)",
    )

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    @field_validator("max_n")
    @classmethod
    def _max_n(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'auto' or >= 1")
        return value

    @field_validator("extra_kwargs")
    @classmethod
    def _not_owned(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = OWNED_KWARGS & set(value)
        if clash:
            raise ValueError(
                f"may not set {', '.join(sorted(clash))}: use the dedicated options or the "
                "request's sampling parameters"
            )
        return value
