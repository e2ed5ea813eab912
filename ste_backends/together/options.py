"""The options of TogetherInference and TogetherFineTune (the config's `options` tables).

Importing this module imports no SDK: the config loader validates options with these classes
before a run starts.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import FilePath, SecretStr, ValidationInfo, field_validator

from ste_core.backends import BackendOptions, option, secret

DEFAULT_BASE_URL = "https://api.together.ai"
API_KEY_ENV = "TOGETHER_API_KEY"
PROJECT_ENV = "TOGETHER_PROJECT_ID"
BASE_URL_ENV = "TOGETHER_BASE_URL"


def normalise_base_url(url: str) -> str:
    """SDK 3.x paths carry `/v1` themselves; accept the 1.x habit of a base URL ending in /v1."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


class TogetherOptions(BackendOptions):
    """Where and how to reach Together; both backends take these."""

    api_key: SecretStr | None = secret(env=API_KEY_ENV, help="Together API key")
    base_url: str | None = option(
        None,
        validate_default=True,
        changes_results=True,
        help="API base URL without /v1 (a trailing /v1 is removed); default env "
        f"{BASE_URL_ENV}, else Together's own hosts (chat then goes to the inference host)",
    )
    project_id: str | None = option(
        None,
        validate_default=True,
        changes_results=False,
        help=f"Together project (default env {PROJECT_ENV}); only dedicated endpoints need it",
    )
    timeout_s: float = option(120.0, gt=0, changes_results=False, help="per-request timeout (s)")
    http_transport: Literal["aiohttp", "httpx"] = option(
        "aiohttp",
        changes_results=False,
        help="HTTP transport of the SDK client: aiohttp (the SDK's DefaultAioHttpClient; keeps "
        "hundreds of requests in flight on little CPU) or httpx (the SDK's default)",
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        value = value if value is not None else os.environ.get(BASE_URL_ENV) or None
        return normalise_base_url(value) if value else None

    @field_validator("project_id")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        return value or os.environ.get(PROJECT_ENV) or None

    def effective(self) -> dict[str, Any]:
        # No base URL means the SDK's own hosts; name them, so that a run against a proxy or a
        # fake server never shares cache entries with one against Together.
        return {**super().effective(), "base_url": self.base_url or DEFAULT_BASE_URL}


class TogetherInferenceOptions(TogetherOptions):
    batch: bool = option(
        False,
        changes_results=False,
        help="run complete_many through the Batch API (about half price, hours of latency)",
    )
    batch_poll_interval_s: float = option(
        30.0, gt=0, changes_results=False, help="seconds between batch status polls"
    )
    batch_timeout_s: float = option(
        86400.0,
        gt=0,
        changes_results=False,
        help="cancel a batch that has not finished after this many seconds",
    )
    batch_max_requests: int = option(
        50000,
        ge=1,
        le=50000,
        changes_results=False,
        help="requests per batch job, at most Together's 50,000; larger inputs (or input files "
        "over Together's 100 MB) are split into several jobs",
    )
    batch_discount: float = option(
        0.5,
        ge=0,
        changes_results=False,
        help="price factor of Batch API usage against the serverless price, used when the price "
        "data has no batch price; default: Together's published 50% discount "
        "(https://docs.together.ai/docs/inference/batch/overview, 'up to 50% off serverless "
        "rates'; some models are not discounted: set 1.0 for those)",
    )
    cancel_on_interrupt: bool = option(
        False,
        changes_results=False,
        help="cancel a running batch when the run is interrupted; false: leave it running and "
        "let the resumed run collect its results (paid once)",
    )
    prices: dict[str, tuple[float, float]] = option(
        default_factory=dict,
        changes_results=False,
        help="known prices: {model = [usd_per_M_input, usd_per_M_output]} "
        "(or {input = ..., output = ...})",
    )
    price_lookup: bool = option(
        True,
        changes_results=False,
        help="look a model's serverless price up in Together's catalog, once per model",
    )
    concurrency: int = option(
        16, ge=1, changes_results=False, help="suggested concurrency for the scheduler"
    )

    @field_validator("prices", mode="before")
    @classmethod
    def _price_pairs(cls, value: Any) -> Any:
        """A price is [input, output] or, as a config file may write it, {input=.., output=..}."""
        if not isinstance(value, dict):
            return value
        pairs = {}
        for model, price in value.items():
            if isinstance(price, dict) and price.keys() == {"input", "output"}:
                price = (price["input"], price["output"])
            if not isinstance(price, list | tuple) or len(price) != 2:
                raise ValueError(
                    f"the price of {model!r} must be [input, output] USD per million tokens "
                    "or {input = ..., output = ...}"
                )
            pairs[model] = price
        return pairs


ENDPOINT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class TogetherFineTuneOptions(TogetherOptions):
    max_cost_usd: float | None = option(
        None,
        ge=0,
        changes_results=False,
        help="refuse to submit a job whose price estimate (from Together) exceeds this, or that "
        "Together gives no estimate for; a second guard after the core's budget check",
    )
    validation_file: FilePath | None = option(
        None,
        changes_results=False,
        help="a held-out file in Together's training format (as write_training_file writes it), "
        "uploaded with every job and evaluated n_evals times (job option, default 1); "
        "a relative path in a config file is read from the config file's directory",
    )
    serving: Literal["auto", "serverless", "dedicated"] = option(
        "auto",
        changes_results=False,
        help="how a fine-tuned model is served: serverless where Together serves it "
        "('auto' checks), else a dedicated endpoint created for the evaluation",
    )
    hardware: str | None = option(
        None,
        changes_results=False,
        help="dedicated endpoint hardware, e.g. '1xnvidia-h100-80gb'; needed (or "
        "deployment_config) when Together lists several configs for the model",
    )
    deployment_config: str | None = option(
        None,
        changes_results=False,
        help="the dedicated endpoint's config revision (cr_... or projects/<p>/configs/<id>); "
        "needed when several configs remain for the model after `hardware`",
    )
    min_replicas: int = option(1, ge=1, changes_results=False, help="endpoint autoscaling floor")
    max_replicas: int = option(
        1, ge=1, changes_results=False, help="endpoint autoscaling ceiling (>= min_replicas)"
    )
    auto_shutdown_minutes: int = option(
        60,
        changes_results=False,
        help="stop the endpoint after this many idle minutes: 0 (off) or 30-1440; the safety "
        "net if the process is killed outright",
    )
    endpoint_name: str | None = option(
        None,
        changes_results=False,
        help="name of the endpoint to create: lowercase letters, digits and '-', at most 63 "
        "(default ste-<model>-<random>)",
    )
    endpoint_ready_timeout_s: float = option(
        1800.0,
        gt=0,
        changes_results=False,
        help="give up (and delete the endpoint) if it is not READY after this many seconds",
    )
    endpoint_poll_interval_s: float = option(
        10.0, gt=0, changes_results=False, help="seconds between endpoint readiness polls"
    )
    endpoint_usd_per_hour: float | None = option(
        None,
        gt=0,
        changes_results=False,
        help="the endpoint's price in USD per hour per replica, counted by the budget when "
        "Together's hardware list gives none (an explicit deployment_config, say); with "
        "budget.max_cost_usd set, an endpoint of unknown price is not created without it",
    )
    keep_endpoint: bool = option(
        False, changes_results=False, help="leave the endpoint running after serving"
    )
    probe_serverless: bool = option(
        True,
        changes_results=False,
        help="in 'auto' mode, confirm serverless serving with a 1-token call",
    )

    @field_validator("max_replicas")
    @classmethod
    def _replicas(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise ValueError(f"must be >= min_replicas ({low})")
        return value

    @field_validator("auto_shutdown_minutes")
    @classmethod
    def _shutdown(cls, value: int) -> int:
        if value and not 30 <= value <= 1440:
            raise ValueError("must be 0 (off) or between 30 and 1440")
        return value

    @field_validator("endpoint_name")
    @classmethod
    def _endpoint_name(cls, value: str | None) -> str | None:
        if value is not None and not ENDPOINT_NAME.fullmatch(value):
            raise ValueError("may use lowercase letters, digits and '-' only (at most 63)")
        return value
