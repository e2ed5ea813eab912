"""Serving a fine-tuned model on Together: serverless when Together hosts it, else a dedicated
endpoint that lives exactly as long as the `async with` block.

Dedicated endpoints are project-scoped in SDK 3.x: an *endpoint* (a stable, inference-addressable
name) holds *deployments* (model + config revision + autoscaling). The lifecycle here follows the
SDK's own `endpoints deploy` command: resolve the model resource and a certified config, create the
endpoint, create the deployment, route the endpoint's traffic to it, wait for READY; on exit
unroute, delete the deployment, delete the endpoint.

Teardown runs on success, on error and on cancellation (Ctrl-C): it is shielded from a second
cancellation, because an endpoint left running costs money by the hour. `auto_shutdown_minutes`
(the deployment's inactive timeout) is the last safety net if the process is killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from ste_core.engine.retry import RetryPolicy
from ste_core.errors import (
    ConfigurationError,
    PermanentProviderError,
    SteError,
    TransientProviderError,
)
from ste_core.records import ModelRef

from .client import PROVIDER
from .errors import map_error
from .options import PROJECT_ENV, TogetherFineTuneOptions

log = logging.getLogger(__name__)

MODEL_PATH = re.compile(r"^projects/([^/]+)/models/([^/]+)")
CONFIG_PATH = re.compile(r"^projects/([^/]+)/configs/([^/]+)$")
READY = "DEPLOYMENT_STATE_READY"
FAILED_STATES = ("DEPLOYMENT_STATE_FAILED", "DEPLOYMENT_STATE_STOPPED")

#: Receives one dict per serving step (decided, endpoint_created, ready, kept, deleted).
ProgressCallback = Callable[[dict[str, Any]], None]


@contextlib.asynccontextmanager
async def serve_model(
    client: Any,
    model: ModelRef,
    options: TogetherFineTuneOptions,
    record_usage: Callable[[dict[str, Any]], None],
    *,
    progress: ProgressCallback | None = None,
) -> AsyncIterator[ModelRef]:
    """Yield the ModelRef to call; tear down whatever was created on the way out."""
    mode: str = options.serving
    if mode == "auto":
        mode = await decide_mode(client, model, options)
    _emit(progress, phase="decided", mode=mode, model=model.model)
    if mode == "serverless":
        yield model.model_copy(
            update={
                "inference_backend": model.inference_backend or PROVIDER,
                "metadata": {**model.metadata, "serving": "serverless"},
            }
        )
        return
    endpoint = DedicatedEndpoint(client, model, options, progress)
    try:
        served = await endpoint.start()
        yield served
    finally:
        await _uncancellable(endpoint.stop())
        if endpoint.endpoint is not None:
            record_usage(endpoint.usage())


async def decide_mode(client: Any, model: ModelRef, options: TogetherFineTuneOptions) -> str:
    """'serverless' when Together serves this model serverless, else 'dedicated'.

    Full fine-tunes are never served serverless. A LoRA adapter is, when its base model is in
    Together's serverless catalog with a dynamic-adapter deployment profile; with
    `probe_serverless` a 1-token call then confirms it (a 4xx from that call means dedicated).
    """
    if str(model.metadata.get("training_type") or "").lower() == "full":
        return "dedicated"
    if model.base_model and not await _base_serves_adapters(client, model.base_model):
        return "dedicated"
    if not options.probe_serverless:
        return "serverless" if model.base_model else "dedicated"
    try:
        await client.chat.completions.create(
            model=model.model,
            messages=[{"role": "user", "content": "ping"}],
            max_tokens=1,
            temperature=0.0,
        )
    except Exception as exc:
        err = map_error(exc, what=f"serverless probe of {model.model}")
        if isinstance(err, PermanentProviderError):
            log.info("serverless probe refused (%s); using a dedicated endpoint", err)
            return "dedicated"
        raise err from exc
    return "serverless"


async def _base_serves_adapters(client: Any, base_model: str) -> bool:
    try:
        page = await client.models.list_supported(search=base_model, limit=20)
    except Exception as exc:
        raise map_error(exc, what=f"catalog lookup of {base_model}") from exc
    for entry in getattr(page, "data", None) or []:
        if entry.name != base_model:
            continue
        serverless = "PRODUCT_SERVERLESS" in (entry.products or [])
        dynamic = any(
            getattr(p, "adapter_mode", None) == "ADAPTER_MODE_DYNAMIC"
            for p in entry.deployment_profiles or []
        )
        return serverless and dynamic
    return False


class DedicatedEndpoint:
    """One endpoint + deployment for one model; `start()` creates, `stop()` deletes."""

    def __init__(
        self,
        client: Any,
        model: ModelRef,
        options: TogetherFineTuneOptions,
        progress: ProgressCallback | None,
    ) -> None:
        self.client, self.model, self.options, self.progress = client, model, options, progress
        self.project_id: str | None = None
        self.endpoint: Any = None
        self.deployment: Any = None
        self.hardware: str | None = None
        self.price_cents_per_hour: int | None = None
        self.created_wall: str | None = None
        self.created_at: float | None = None
        self.ready_at: float | None = None
        self.stopped_at: float | None = None
        self.teardown_error: str | None = None
        self._catalog_items: list[Any] | None = None

    # -- start ---------------------------------------------------------------------------

    async def start(self) -> ModelRef:
        try:
            self.project_id = await self._project_id()
            model_path = await self._model_path()
            config_path = await self._config_path(model_path)
            name = self.options.endpoint_name or _endpoint_name(self.model.model)
            self.endpoint = await self.client.endpoints.create(
                name=name, visibility="VISIBILITY_PRIVATE", project_id=self.project_id
            )
            self.created_at = time.monotonic()
            self.created_wall = datetime.now(UTC).isoformat(timespec="seconds")
            _emit(self.progress, phase="endpoint_created", endpoint=self.endpoint.name)
            autoscaling = {
                "min_replicas": self.options.min_replicas,
                "max_replicas": self.options.max_replicas,
            }
            extra = (
                {"inactive_timeout": self.options.auto_shutdown_minutes}
                if self.options.auto_shutdown_minutes
                else {}
            )
            self.deployment = await self.client.endpoints.deployments.create(
                self.endpoint.id,
                project_id=self.project_id,
                name="judge",
                model=model_path,
                config=config_path,
                autoscaling=autoscaling,
                **extra,
            )
            self.endpoint = await self.client.endpoints.update(
                self.endpoint.id,
                project_id=self.project_id,
                traffic_split=[{"deployment_id": self.deployment.id, "weight": 1}],
                update_mask="trafficSplit",
                etag=self.endpoint.etag,
            )
            await self._wait_ready()
        except SteError:
            raise
        except Exception as exc:
            raise map_error(exc, what="dedicated endpoint setup") from exc
        price = self._price_per_hour()
        return ModelRef(
            model=self.endpoint.name,
            inference_backend=self.model.inference_backend or PROVIDER,
            base_model=self.model.base_model,
            options={},
            metadata={
                **self.model.metadata,
                "serving": "dedicated",
                "fine_tuned_model": self.model.model,
                "endpoint_id": self.endpoint.id,
                "endpoint_name": self.endpoint.name,
                "deployment_id": self.deployment.id,
                "hardware": self.hardware,
                "price_usd_per_hour_per_replica": price,
                "min_replicas": self.options.min_replicas,
                "max_replicas": self.options.max_replicas,
                "created_at": self.created_wall,
                "ready_after_s": round((self.ready_at or 0) - (self.created_at or 0), 3),
            },
        )

    async def _project_id(self) -> str:
        project = getattr(self.client, "project_id", None)
        if project:
            return str(project)
        try:
            who = await self.client.whoami()
        except Exception as exc:
            raise map_error(exc, what="whoami (to find the project for the endpoint)") from exc
        found = getattr(getattr(who, "project", None), "id", None)
        if not found:
            raise ConfigurationError(
                "Dedicated endpoints on Together are project-scoped and this API key is not a "
                f"project key: set {PROJECT_ENV} (or the backend option project_id)."
            )
        return str(found)

    async def _model_path(self) -> str:
        meta = self.model.metadata
        if MODEL_PATH.match(self.model.model):
            return self.model.model
        object_id = meta.get("model_object_id") or meta.get("adapter_object_id")
        if not object_id and meta.get("job_id"):
            job = await self.client.fine_tuning.retrieve(meta["job_id"])
            object_id = getattr(job, "api_model_object_id", None) or getattr(
                job, "adapter_object_id", None
            )
        if not object_id:
            raise ConfigurationError(
                f"Cannot deploy {self.model.model}: it carries no Together model registry id "
                "(model_object_id / job_id). Deploy models produced by a Together fine-tune job, "
                "or pass the model as projects/<project>/models/<id>."
            )
        return f"projects/{self.project_id}/models/{object_id}"

    async def _config_path(self, model_path: str) -> str:
        explicit = self.options.deployment_config
        if explicit:
            if CONFIG_PATH.match(explicit):
                return explicit
            return f"projects/{self.project_id}/configs/{explicit}"
        match = MODEL_PATH.match(model_path)
        assert match is not None
        model = await self.client.models.retrieve(match.group(2), project_id=match.group(1))
        reference = getattr(model, "base_model_id", None) or model.id
        configs = list(
            (
                await self.client.models.configs.list(
                    reference_model_id=reference, project_id=self.project_id
                )
            ).data
            or []
        )
        catalog = await self._catalog()
        candidates = []
        for cfg in configs:
            hw = _hardware_of(cfg)
            if self.options.hardware and not _same_hardware(hw, self.options.hardware):
                continue
            cents = _price_of(catalog, hw)
            candidates.append((cents if cents is not None else 10**9, cfg.id, cfg, hw))
        if not candidates:
            have = ", ".join(sorted({str(_hardware_of(c)) for c in configs})) or "none"
            want = f" on hardware {self.options.hardware}" if self.options.hardware else ""
            raise ConfigurationError(
                f"No certified Together deployment config for {self.model.model}{want}. "
                f"Available hardware: {have}. Set `hardware` to one of them or "
                "`deployment_config` explicitly."
            )
        candidates.sort(key=lambda c: (c[0], c[1]))
        cents, _, cfg, hw = candidates[0]
        self.hardware = hw
        self.price_cents_per_hour = cents if cents != 10**9 else None
        return f"projects/{cfg.project_id}/configs/{cfg.id}"

    async def _catalog(self) -> list[Any]:
        """The hardware catalog (GPU types and hourly prices), fetched once."""
        if self._catalog_items is None:
            try:
                self._catalog_items = list((await self.client.endpoints.hardware.list()).data or [])
            except Exception as exc:  # pricing is informative; never block a deploy on it
                log.warning("hardware catalog unavailable: %s", map_error(exc))
                self._catalog_items = []
        return self._catalog_items

    def _price_per_hour(self) -> float | None:
        if self.price_cents_per_hour is None:
            return None
        return self.price_cents_per_hour / 100.0

    async def _wait_ready(self) -> None:
        assert self.created_at is not None

        async def retrieve() -> Any:
            try:
                return await self.client.endpoints.deployments.retrieve(
                    self.deployment.id, endpoint_id=self.endpoint.id, project_id=self.project_id
                )
            except Exception as exc:
                raise map_error(exc, what="endpoint readiness poll") from exc

        # The endpoint is billed while we wait: five failed polls in a row (about five minutes
        # from the default interval) give up, and the caller deletes it.
        retry = RetryPolicy.polling(self.options.endpoint_poll_interval_s, max_retries=5)
        while True:
            dep = await retry.call(f"polling endpoint {self.endpoint.name}", retrieve)
            state = dep.status.state
            elapsed = time.monotonic() - self.created_at
            _emit(
                self.progress,
                phase="waiting",
                state=state,
                message=dep.status.message,
                elapsed_s=elapsed,
            )
            if state == READY:
                self.ready_at = time.monotonic()
                self.hardware = self.hardware or getattr(dep, "hardware", None)
                if self.price_cents_per_hour is None:
                    self.price_cents_per_hour = _price_of(await self._catalog(), self.hardware)
                return
            if state in FAILED_STATES:
                raise PermanentProviderError(
                    f"dedicated endpoint {self.endpoint.name} ended {state}: "
                    f"{dep.status.message or 'no message'}",
                    provider=PROVIDER,
                )
            if elapsed > self.options.endpoint_ready_timeout_s:
                raise TransientProviderError(
                    f"dedicated endpoint {self.endpoint.name} was not READY after "
                    f"{self.options.endpoint_ready_timeout_s:.0f}s "
                    f"(last state {state}: {dep.status.message}); "
                    "it is being deleted. Raise endpoint_ready_timeout_s or try other hardware.",
                    provider=PROVIDER,
                )
            await asyncio.sleep(self.options.endpoint_poll_interval_s)

    # -- stop ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Unroute, delete the deployment, delete the endpoint (each step best-effort + logged)."""
        if self.endpoint is None:
            return
        self.stopped_at = time.monotonic()
        if self.options.keep_endpoint:
            _emit(self.progress, phase="kept", endpoint=self.endpoint.name)
            return
        errors: list[str] = []
        if self.deployment is not None:
            with contextlib.suppress(Exception):
                await self.client.endpoints.update(
                    self.endpoint.id,
                    project_id=self.project_id,
                    traffic_split=[],
                    update_mask="trafficSplit",
                )
            try:
                await self.client.endpoints.deployments.delete(
                    self.deployment.id, endpoint_id=self.endpoint.id, project_id=self.project_id
                )
            except Exception as exc:
                if getattr(exc, "status_code", None) != 404:
                    errors.append(f"deployment delete: {map_error(exc)}")
        # Four retries a poll interval apart. A fixed wait, not a doubling one: a conflict clears
        # as soon as the deployment is gone (seconds), and the user may be waiting on this
        # teardown after a Ctrl-C.
        interval = self.options.endpoint_poll_interval_s
        retry = RetryPolicy(max_retries=4, initial_s=interval, max_s=interval)
        try:
            await retry.call(f"deleting endpoint {self.endpoint.name}", self._delete_endpoint)
        except SteError as exc:
            errors.append(f"endpoint delete: {exc}")
        if errors:
            self.teardown_error = "; ".join(errors)
            log.error(
                "Could not fully delete Together endpoint %s (%s). Delete it by hand: "
                "`together endpoints rm %s` - it stops by itself after %s idle minutes.",
                self.endpoint.name,
                self.teardown_error,
                self.endpoint.id,
                self.options.auto_shutdown_minutes or "no",
            )
        _emit(self.progress, phase="deleted", endpoint=self.endpoint.name, errors=errors)

    async def _delete_endpoint(self) -> None:
        try:
            await self.client.endpoints.delete(self.endpoint.id, project_id=self.project_id)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status == 404:
                return  # already gone
            error = map_error(exc)
            if status in (400, 409, 412):
                # The deployment may still be stopping; the endpoint can go once it is gone.
                raise TransientProviderError(str(error), status=status) from exc
            raise error from exc

    def usage(self) -> dict[str, Any]:
        """Uptime and cost of the endpoint, for the run manifest."""
        uptime = None
        if self.created_at is not None:
            uptime = (self.stopped_at or time.monotonic()) - self.created_at
        price = self._price_per_hour()

        def cost(replicas: int) -> float | None:
            if price is None or uptime is None:
                return None
            return price * replicas * uptime / 3600.0

        return {
            "endpoint_id": getattr(self.endpoint, "id", None),
            "endpoint_name": getattr(self.endpoint, "name", None),
            "deployment_id": getattr(self.deployment, "id", None),
            "model": self.model.model,
            "hardware": self.hardware,
            "price_usd_per_hour_per_replica": price,
            "min_replicas": self.options.min_replicas,
            "max_replicas": self.options.max_replicas,
            "created_at": self.created_wall,
            "uptime_s": round(uptime, 3) if uptime is not None else None,
            "cost_usd_min": cost(self.options.min_replicas),
            "cost_usd_max": cost(self.options.max_replicas),
            "kept": self.options.keep_endpoint,
            "deleted": self.endpoint is not None
            and not self.options.keep_endpoint
            and self.teardown_error is None,
            "teardown_error": self.teardown_error,
        }


async def _uncancellable(coro: Any) -> None:
    """Run teardown to completion even if the caller is cancelled again meanwhile."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break
    if not task.cancelled() and task.exception() is not None:
        log.error("endpoint teardown failed: %r", task.exception())
    if cancelled:
        raise asyncio.CancelledError


def _emit(progress: ProgressCallback | None, **event: Any) -> None:
    log.info("together serve: %s", event)
    if progress is not None:
        with contextlib.suppress(Exception):
            progress(event)


def _endpoint_name(model: str) -> str:
    tail = re.sub(r"[^a-z0-9]+", "-", model.rsplit("/", 1)[-1].lower()).strip("-")[:40]
    return f"ste-{tail or 'judge'}-{secrets.token_hex(3)}"


def _hardware_of(config: Any) -> str | None:
    """`{count}x{type}` from a config's accelerator selectors (the SDK CLI's convention)."""
    values = {s.key: s.value for s in getattr(config, "selectors", None) or []}
    kind, count = values.get("accelerator_type"), values.get("accelerator_count")
    return f"{count}x{kind}" if kind and count else None


def _normal_hw(hw: str) -> str:
    return hw.lower().replace("_", "-").replace("x-", "x").replace("nvidia-", "")


def _same_hardware(a: str | None, b: str) -> bool:
    return a is not None and _normal_hw(a) == _normal_hw(b)


def _price_of(catalog: list[Any], hardware: str | None) -> int | None:
    if hardware is None:
        return None
    for item in catalog:
        if (
            _same_hardware(getattr(item, "name", None), hardware)
            or getattr(item, "id", None) == hardware
        ):
            return int(item.price_cents_per_hour)
    return None
