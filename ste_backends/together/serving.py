"""Serving a fine-tuned model on Together: serverless when Together hosts it, else a dedicated
endpoint that lives exactly as long as the `async with` block, recorded in the run's ledger.

Dedicated endpoints are project-scoped in SDK 3.x: an *endpoint* (a stable, inference-addressable
name) holds *deployments* (model + config revision + autoscaling). The lifecycle here follows the
SDK's own `endpoints deploy` command: resolve the model resource and a config, create the
endpoint, create the deployment, route the endpoint's traffic to it, wait for READY; on exit
unroute, delete the deployment, delete the endpoint.

Every endpoint is a ledger entry (`resources`, see ste_core.resources), written before the create
call: `begin` (name, project, model, config, hardware, hourly price), the provider id right after
the create call, the deployment id, `live` on READY, `end` with its cost once deleted. A process
killed anywhere in between leaves the entry open, and the next session finds it: `serve()` of
the same model reuses the endpoint (creating the deployment or the route it may still lack);
any other one is torn down (`reap_endpoint`). An entry killed before the create call returned has
no provider id: the endpoint is looked up by its recorded name.

Teardown runs on success, on error and on cancellation (Ctrl-C): it is shielded from a second
cancellation, because an endpoint left running costs money by the hour. A teardown that fails
leaves the entry open (for the next session or `ste cleanup`); `auto_shutdown_minutes` (the
deployment's inactive timeout) is the last safety net.

Choosing a config follows the SDK CLI too: an explicit `deployment_config` is used as given; a
LoRA adapter needs a config whose `adapter_mode` is fixed or dynamic; several candidates are a
refusal naming them (the CLI prompts or fails), unless `hardware` tells them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ste_core.engine.retry import RetryPolicy
from ste_core.engine.shield import to_the_end
from ste_core.errors import (
    ConfigurationError,
    PermanentProviderError,
    ProviderError,
    SteError,
    TransientProviderError,
)
from ste_core.records import ModelRef, Resource
from ste_core.resources import Resources

from .client import PROVIDER
from .errors import map_error
from .options import PROJECT_ENV, TogetherFineTuneOptions

log = logging.getLogger(__name__)
T = TypeVar("T")

MODEL_PATH = re.compile(r"^projects/([^/]+)/models/([^/]+)")
CONFIG_PATH = re.compile(r"^projects/([^/]+)/configs/([^/]+)$")
READY = "DEPLOYMENT_STATE_READY"
FAILED_STATES = ("DEPLOYMENT_STATE_FAILED", "DEPLOYMENT_STATE_STOPPED")
#: how long teardown may hold up a run that is stopping (its deletes retry a few poll intervals)
TEARDOWN_TIMEOUT_S = 600.0
#: `resource_state` of an endpoint that holds no deployment (killed before it was created)
NO_DEPLOYMENT = "NO_DEPLOYMENT"
#: adapter modes of a config that can serve a LoRA adapter (the SDK CLI's `select_lora_config`)
ADAPTER_MODES = frozenset({"fixed", "dynamic"})
#: What to set, appended to every error serving raises.
HINT = (
    "To choose how fine-tuned judges are served, set the finetune option `serving` "
    "('serverless' or 'dedicated'); for a dedicated endpoint, `deployment_config` (a config id) "
    "or `hardware`."
)

#: Receives one dict per serving step (decided, endpoint_created, waiting, ready, deleted, ...).
ProgressCallback = Callable[[dict[str, Any]], None]


@contextlib.asynccontextmanager
async def serve_model(
    client: Any,
    model: ModelRef,
    options: TogetherFineTuneOptions,
    resources: Resources,
    *,
    progress: ProgressCallback | None = None,
) -> AsyncIterator[ModelRef]:
    """Yield the ModelRef to call; tear down whatever was created on the way out."""
    mode: str = options.serving
    if mode == "auto":
        mode = await _hinted(decide_mode(client, model, options, resources))
    _emit(progress, phase="decided", mode=mode, model=model.model)
    if mode == "serverless":
        yield model.model_copy(
            update={
                "inference_backend": model.inference_backend or PROVIDER,
                "metadata": {**model.metadata, "serving": "serverless"},
            }
        )
        return
    endpoint = DedicatedEndpoint(client, model, options, resources, progress)
    try:
        served = await _hinted(endpoint.start())
        yield served
    finally:
        try:
            await to_the_end(endpoint.stop(), timeout_s=TEARDOWN_TIMEOUT_S)
        except Exception as exc:  # left open in the ledger: the next session or `ste cleanup`
            log.error("endpoint teardown failed: %r", exc)


async def _hinted(step: Awaitable[T]) -> T:
    """Await `step`; a serving error it raises says which options to set."""
    try:
        return await step
    except (ProviderError, ConfigurationError) as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        if "`serving`" not in message:
            exc.args = (f"{message} {HINT}", *exc.args[1:])
        raise


async def decide_mode(
    client: Any, model: ModelRef, options: TogetherFineTuneOptions, resources: Resources
) -> str:
    """'serverless' when Together serves this model serverless, else 'dedicated'.

    Full fine-tunes are never served serverless. A LoRA adapter is, when its base model is in
    Together's serverless catalog with a dynamic-adapter deployment profile; with
    `probe_serverless` a 1-token call then confirms it (a 4xx from that call means dedicated).
    When the catalog cannot be read, the 1-token call decides alone (with a warning).
    """
    if str(model.metadata.get("training_type") or "").lower() == "full":
        return "dedicated"
    hosted: bool | None = None
    if model.base_model:
        try:
            hosted = await _base_serves_adapters(client, model.base_model)
        except SteError as exc:
            _warn(
                resources,
                f"Together's model catalog could not be read ({exc}); trying {model.model} "
                "serverless with a 1-token call, else a dedicated endpoint. Set the finetune "
                "option `serving` to 'serverless' or 'dedicated' to skip this check.",
            )
        if hosted is False:
            return "dedicated"
    if not options.probe_serverless and (hosted or not model.base_model):
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
        async for entry in client.models.list_supported(search=base_model):
            if entry.name != base_model:
                continue
            serverless = "PRODUCT_SERVERLESS" in (entry.products or [])
            dynamic = any(
                getattr(p, "adapter_mode", None) == "ADAPTER_MODE_DYNAMIC"
                for p in entry.deployment_profiles or []
            )
            return serverless and dynamic
    except Exception as exc:
        raise map_error(exc, what=f"catalog lookup of {base_model}") from exc
    return False


# -- what a session left open --------------------------------------------------------------------


@dataclass
class Found:
    """An endpoint of a ledger entry, as it is at Together now."""

    resource: Resource
    project_id: str
    endpoint: Any
    #: its deployment (the recorded one, else the first it holds) and that deployment's state
    deployment_id: str | None
    state: str


async def locate(client: Any, resources: Resources, resource: Resource) -> Found | None:
    """The endpoint of `resource` at Together, or None when it no longer exists (or was never
    created: an entry without provider id whose recorded name no endpoint has)."""
    project = str(resource.detail.get("project_id") or await project_id_of(client))
    if resource.provider_id is None:
        name = str(resource.detail.get("name") or "")
        try:
            endpoint_id = await _endpoint_named(client, project, name)
        except Exception as exc:
            raise map_error(exc, what=f"listing endpoints to find {name}") from exc
        if endpoint_id is None:
            return None
        resource = resources.update(resource, provider_id=endpoint_id)
    assert resource.provider_id is not None
    try:
        endpoint = await client.endpoints.retrieve(resource.provider_id, project_id=project)
    except Exception as exc:
        if getattr(exc, "status_code", None) == 404:
            return None
        raise map_error(exc, what=f"looking up {resource.label()}") from exc
    deployments = list(getattr(endpoint, "deployments", None) or [])
    recorded = resource.detail.get("deployment_id")
    chosen = next((d for d in deployments if d.id == recorded), None) or next(
        iter(deployments), None
    )
    if chosen is None:
        return Found(resource, project, endpoint, None, NO_DEPLOYMENT)
    if chosen.id != recorded:
        resource = resources.update(resource, detail={"deployment_id": chosen.id})
    return Found(resource, project, endpoint, chosen.id, str(chosen.state))


async def _endpoint_named(client: Any, project: str, name: str) -> str | None:
    """The id of the project's endpoint called `name` (every page read)."""
    async for endpoint in client.endpoints.list(project_id=project):
        if _bare(endpoint.name) == _bare(name):
            return str(endpoint.id)
    return None


def _bare(name: str | None) -> str:
    """An endpoint's name without the project slug Together puts before it."""
    return (name or "").rsplit("/", 1)[-1]


async def reap_endpoint(
    client: Any, resources: Resources, resource: Resource, *, retry_interval_s: float
) -> str:
    """Tear the endpoint of `resource` down (every deployment it holds, then itself) and end
    the entry with its cost; return what was done. Raises when it could not be deleted (the
    entry stays open)."""
    found = await locate(client, resources, resource)
    if found is None:
        current = resources.end(resource, cost_usd=0.0 if resource.provider_id is None else None)
        if resource.provider_id is None:
            return "it was never created at Together"
        return f"it no longer exists at Together{_cost_text(current.cost_usd)}"
    deployments = [d.id for d in getattr(found.endpoint, "deployments", None) or []]
    errors = await teardown(
        client, found.project_id, found.endpoint.id, deployments, retry_interval_s
    )
    if errors:
        raise TransientProviderError(
            f"{found.resource.label()} could not be deleted: {'; '.join(errors)}",
            provider=PROVIDER,
        )
    ended = resources.end(found.resource)
    return _deleted_text(ended)


def _deleted_text(resource: Resource) -> str:
    return f"deleted after {_duration(resource.uptime_s())}{_cost_text(resource.cost_usd)}"


def _cost_text(cost: float | None) -> str:
    return f", about ${cost:.2f}" if cost else ""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


async def teardown(
    client: Any, project: str, endpoint_id: str, deployment_ids: list[str], interval_s: float
) -> list[str]:
    """Unroute, delete the deployments, delete the endpoint; return what failed (each step is
    tried regardless of the others)."""
    errors: list[str] = []
    if deployment_ids:
        with contextlib.suppress(Exception):
            await client.endpoints.update(
                endpoint_id, project_id=project, traffic_split=[], update_mask="trafficSplit"
            )
    for deployment_id in deployment_ids:
        try:
            await client.endpoints.deployments.delete(
                deployment_id, endpoint_id=endpoint_id, project_id=project
            )
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:
                errors.append(f"deployment delete: {map_error(exc)}")

    async def delete() -> None:
        try:
            await client.endpoints.delete(endpoint_id, project_id=project)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status == 404:
                return  # already gone
            error = map_error(exc)
            if status in (400, 409, 412):
                # The deployment may still be stopping; the endpoint can go once it is gone.
                raise TransientProviderError(str(error), status=status) from exc
            raise error from exc

    # Four retries a poll interval apart. A fixed wait, not a doubling one: a conflict clears as
    # soon as the deployment is gone (seconds), and the user may be waiting on this teardown
    # after a Ctrl-C.
    retry = RetryPolicy(max_retries=4, initial_s=interval_s, max_s=interval_s)
    try:
        await retry.call(f"deleting endpoint {endpoint_id}", delete)
    except SteError as exc:
        errors.append(f"endpoint delete: {exc}")
    return errors


async def project_id_of(client: Any) -> str:
    """The project dedicated endpoints live in: the client's, else the API key's."""
    project = getattr(client, "project_id", None)
    if project:
        return str(project)
    try:
        who = await client.whoami()
    except Exception as exc:
        raise map_error(exc, what="whoami (to find the project for the endpoint)") from exc
    found = getattr(getattr(who, "project", None), "id", None)
    if not found:
        raise ConfigurationError(
            "Dedicated endpoints on Together are project-scoped and this API key is not a "
            f"project key: set {PROJECT_ENV} (or the backend option project_id)."
        )
    return str(found)


# -- one endpoint --------------------------------------------------------------------------------


class DedicatedEndpoint:
    """One endpoint + deployment serving one model: `start()` creates it (or takes over the one
    a dead session left for the same model), `stop()` deletes it."""

    def __init__(
        self,
        client: Any,
        model: ModelRef,
        options: TogetherFineTuneOptions,
        resources: Resources,
        progress: ProgressCallback | None,
    ) -> None:
        self.client, self.model, self.options = client, model, options
        self.resources, self.progress = resources, progress
        self.resource: Resource | None = None
        self.project_id: str | None = None
        self.endpoint: Any = None
        self.deployment_id: str | None = None
        self.routed = False
        self.reused = False
        self.ready_after_s: float | None = None
        self._catalog_items: list[Any] | None = None

    # -- start ---------------------------------------------------------------------------

    async def start(self) -> ModelRef:
        try:
            await self._take_over_left_open()
            if self.resource is None:
                await self._create()
            if self.deployment_id is None:
                await self._deploy()
            if not self.routed:
                await self._route()
            await self._wait_ready()
        except SteError:
            raise
        except Exception as exc:
            raise map_error(exc, what="dedicated endpoint setup") from exc
        return self._served()

    @property
    def name(self) -> str:
        return str(getattr(self.endpoint, "name", None) or self._detail("name") or "")

    def _detail(self, key: str) -> Any:
        return self.resource.detail.get(key) if self.resource is not None else None

    async def _take_over_left_open(self) -> None:
        """Reuse the endpoint a dead session left serving this model; end the entries whose
        endpoint is gone; tear down one whose deployment failed (or a second one)."""
        for left in self.resources.open("endpoint"):
            if left.key != self.model.model:
                continue
            found = await locate(self.client, self.resources, left)
            if found is None:
                self.resources.end(left, cost_usd=0.0 if left.provider_id is None else None)
                log.info("%s left open by an earlier session no longer exists", left.label())
                continue
            if self.resource is not None or found.state in FAILED_STATES:
                what = await reap_endpoint(
                    self.client,
                    self.resources,
                    found.resource,
                    retry_interval_s=self.options.endpoint_poll_interval_s,
                )
                self._notify(f"Together endpoint {_bare(found.endpoint.name)}: {what}.")
                continue
            self._adopt(found)

    def _adopt(self, found: Found) -> None:
        self.resource, self.project_id = found.resource, found.project_id
        self.endpoint = found.endpoint
        self.deployment_id = found.deployment_id
        self.routed = any(
            getattr(t, "deployment_id", None) == found.deployment_id
            and float(getattr(t, "weight", 0) or 0) > 0
            for t in getattr(found.endpoint, "traffic_split", None) or []
        )
        self.reused = True
        spent = found.resource.accrued_usd()
        self._notify(
            f"Reusing Together endpoint {_bare(self.name)} for {self.model.model}, left by an "
            f"earlier session (up {_duration(found.resource.uptime_s())}"
            f"{_cost_text(spent)} so far; {found.state})."
        )
        _emit(self.progress, phase="reused", endpoint=self.name, state=found.state)

    async def _create(self) -> None:
        self.project_id = await project_id_of(self.client)
        model_path = await self._model_path()
        config_path, hardware, cents = await self._config_path(model_path)
        name = self.options.endpoint_name or _endpoint_name(self.model.model)
        per_hour = self._per_hour(cents)
        if per_hour is None and self.resources.cost_limited:
            raise ConfigurationError(
                f"Together's hardware list gives no price for the endpoint that would serve "
                f"{self.model.model} ({hardware or 'config ' + config_path}), so "
                f"budget.max_cost_usd could not count what it costs. Set the price in the "
                f"fine-tune options (endpoint_usd_per_hour = USD per hour per replica), or "
                f"choose listed hardware (`together endpoints hardware`), and run the same "
                f"command again; nothing was created."
            )
        self.resource = self.resources.begin(
            "endpoint",
            key=self.model.model,
            detail={
                "name": name,
                "project_id": self.project_id,
                "model_path": model_path,
                "config": config_path,
                "hardware": hardware,
            },
            usd_per_hour=per_hour,
        )
        price = (
            f"${per_hour:.2f}/h"
            if per_hour is not None
            else "price unknown: its cost is not counted; set endpoint_usd_per_hour to count it"
        )
        self._notify(
            f"Creating Together endpoint {name} for {self.model.model} on "
            f"{hardware or 'the hardware of ' + config_path} ({price})."
        )
        self.endpoint = await self.client.endpoints.create(
            name=name, visibility="VISIBILITY_PRIVATE", project_id=self.project_id
        )
        self.resource = self.resources.update(self.resource, provider_id=self.endpoint.id)
        _emit(self.progress, phase="endpoint_created", endpoint=self.endpoint.name)

    def _per_hour(self, cents_per_replica: int | None) -> float | None:
        """USD per hour at the autoscaling floor: Together's listed price, else the user's."""
        if cents_per_replica is not None:
            per_replica: float | None = cents_per_replica / 100.0
        else:
            per_replica = self.options.endpoint_usd_per_hour
        return None if per_replica is None else per_replica * self.options.min_replicas

    async def _deploy(self) -> None:
        assert self.resource is not None
        autoscaling = {
            "min_replicas": self.options.min_replicas,
            "max_replicas": self.options.max_replicas,
        }
        extra = (
            {"inactive_timeout": self.options.auto_shutdown_minutes}
            if self.options.auto_shutdown_minutes
            else {}
        )
        deployment = await self.client.endpoints.deployments.create(
            self.endpoint.id,
            project_id=self.project_id,
            name="judge",
            model=self._detail("model_path"),
            config=self._detail("config"),
            autoscaling=autoscaling,
            **extra,
        )
        self.deployment_id = deployment.id
        self.resource = self.resources.update(
            self.resource, detail={"deployment_id": deployment.id}
        )

    async def _route(self) -> None:
        self.endpoint = await self.client.endpoints.update(
            self.endpoint.id,
            project_id=self.project_id,
            traffic_split=[{"deployment_id": self.deployment_id, "weight": 1}],
            update_mask="trafficSplit",
            etag=self.endpoint.etag,
        )
        self.routed = True

    def _served(self) -> ModelRef:
        assert self.resource is not None
        return ModelRef(
            model=self.name,
            inference_backend=self.model.inference_backend or PROVIDER,
            base_model=self.model.base_model,
            options={},
            metadata={
                **self.model.metadata,
                "serving": "dedicated",
                "fine_tuned_model": self.model.model,
                "endpoint_id": self.endpoint.id,
                "endpoint_name": self.name,
                "deployment_id": self.deployment_id,
                "hardware": self._detail("hardware"),
                "usd_per_hour": self.resource.usd_per_hour,
                "min_replicas": self.options.min_replicas,
                "max_replicas": self.options.max_replicas,
                "ledger_entry": self.resource.entry,
                "reused": self.reused,
                "ready_after_s": self.ready_after_s,
            },
        )

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

    async def _config_path(self, model_path: str) -> tuple[str, str | None, int | None]:
        """(config path, its hardware, its price in cents per hour per replica); hardware and
        price are None when unknown (an explicit config missing from the listed ones)."""
        match = MODEL_PATH.match(model_path)
        assert match is not None
        model = await self.client.models.retrieve(match.group(2), project_id=match.group(1))
        configs = [
            c
            async for c in self.client.models.configs.list(
                project_id=self.project_id, **_reference_filter(model, model_path)
            )
        ]
        catalog = await self._catalog()
        chosen = select_config(
            configs,
            model=self.model.model,
            adapter=_is_adapter(model, self.model),
            hardware=self.options.hardware,
            explicit=self.options.deployment_config,
            catalog=catalog,
        )
        if chosen is None:
            explicit = str(self.options.deployment_config)
            if CONFIG_PATH.match(explicit):
                return explicit, None, None
            return f"projects/{self.project_id}/configs/{explicit}", None, None
        hardware = _hardware_of(chosen)
        return (
            f"projects/{chosen.project_id}/configs/{chosen.id}",
            hardware,
            _price_of(catalog, hardware),
        )

    async def _catalog(self) -> list[Any]:
        """The hardware catalog (GPU types and hourly prices), fetched once."""
        if self._catalog_items is None:
            try:
                self._catalog_items = list((await self.client.endpoints.hardware.list()).data or [])
            except Exception as exc:  # pricing is informative; never block a deploy on it
                log.warning("hardware catalog unavailable: %s", map_error(exc))
                self._catalog_items = []
        return self._catalog_items

    async def _wait_ready(self) -> None:
        assert self.resource is not None
        waiting_since = time.monotonic()

        async def retrieve() -> Any:
            try:
                return await self.client.endpoints.deployments.retrieve(
                    self.deployment_id, endpoint_id=self.endpoint.id, project_id=self.project_id
                )
            except Exception as exc:
                raise map_error(exc, what="endpoint readiness poll") from exc

        # The endpoint is billed while we wait: five failed polls in a row (about five minutes
        # from the default interval) give up, and the caller deletes it.
        retry = RetryPolicy.polling(self.options.endpoint_poll_interval_s, max_retries=5)
        while True:
            dep = await retry.call(f"polling endpoint {self.name}", retrieve)
            state = dep.status.state
            elapsed = time.monotonic() - waiting_since
            _emit(
                self.progress,
                phase="waiting",
                state=state,
                message=dep.status.message,
                elapsed_s=elapsed,
            )
            if state == READY:
                await self._ready(dep)
                return
            if state in FAILED_STATES:
                raise PermanentProviderError(
                    f"dedicated endpoint {self.name} ended {state}: "
                    f"{dep.status.message or 'no message'}",
                    provider=PROVIDER,
                )
            if elapsed > self.options.endpoint_ready_timeout_s:
                raise TransientProviderError(
                    f"dedicated endpoint {self.name} was not READY after "
                    f"{self.options.endpoint_ready_timeout_s:.0f}s "
                    f"(last state {state}: {dep.status.message}); "
                    "it is being deleted. Raise endpoint_ready_timeout_s or try other hardware.",
                    provider=PROVIDER,
                )
            await asyncio.sleep(self.options.endpoint_poll_interval_s)

    async def _ready(self, deployment: Any) -> None:
        assert self.resource is not None
        price: float | None = None
        hardware = self._detail("hardware") or getattr(deployment, "hardware", None)
        if self.resource.usd_per_hour is None and hardware:
            price = self._per_hour(_price_of(await self._catalog(), hardware))
        self.resource = self.resources.update(
            self.resource, state="live", detail={"hardware": hardware}, usd_per_hour=price
        )
        self.ready_after_s = round(self.resource.uptime_s(), 3)
        self._notify(
            f"Together endpoint {_bare(self.name)} is ready after {self.ready_after_s:.0f} s."
        )
        _emit(self.progress, phase="ready", endpoint=self.name, after_s=self.ready_after_s)

    # -- stop ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Unroute, delete the deployment, delete the endpoint, and end its ledger entry with its
        cost; when that fails, the entry stays open (the next session or `ste cleanup` reaps it)."""
        if self.resource is None:
            return
        if self.options.keep_endpoint and self.endpoint is not None:
            self.resources.end(self.resource)
            rate = self.resource.usd_per_hour
            billing = f" (${rate:.2f}/h)" if rate else ""
            self._notify(
                f"Together endpoint {_bare(self.name)} is left running (keep_endpoint) and keeps "
                f"billing{billing} beyond this run, uncounted: delete it with "
                f"`together endpoints rm {self.endpoint.id}`."
            )
            _emit(self.progress, phase="kept", endpoint=self.name)
            return
        if self.endpoint is None or self.deployment_id is None:
            # The create call (or the deployment's) did not answer: what exists is found anew.
            try:
                what = await reap_endpoint(
                    self.client,
                    self.resources,
                    self.resource,
                    retry_interval_s=self.options.endpoint_poll_interval_s,
                )
            except SteError as exc:
                self._teardown_failed(str(exc))
                return
            self._notify(f"Together endpoint {_bare(self.name)}: {what}.")
            _emit(self.progress, phase="deleted", endpoint=self.name, errors=[])
            return
        assert self.project_id is not None
        errors = await teardown(
            self.client,
            self.project_id,
            self.endpoint.id,
            [self.deployment_id],
            self.options.endpoint_poll_interval_s,
        )
        if errors:
            self._teardown_failed("; ".join(errors))
        else:
            ended = self.resources.end(self.resource)
            self._notify(f"Together endpoint {_bare(self.name)} {_deleted_text(ended)}.")
        _emit(self.progress, phase="deleted", endpoint=self.name, errors=errors)

    def _teardown_failed(self, error: str) -> None:
        ident = getattr(self.endpoint, "id", None) or self.name
        message = (
            f"Could not fully delete Together endpoint {self.name} ({error}). It stays in the "
            "run's ledger: the next `ste run` of this run or `ste cleanup` deletes it, or delete "
            f"it by hand: `together endpoints rm {ident}`. It stops by itself after "
            f"{self.options.auto_shutdown_minutes or 'no'} idle minutes."
        )
        log.error("%s", message)
        self.resources.notify(message)

    def _notify(self, message: str) -> None:
        log.info("%s", message)
        self.resources.notify(message)


# -- choosing a config ---------------------------------------------------------------------------


def _reference_filter(model: Any, model_path: str) -> dict[str, str]:
    """The configs list's filter for `model`: its base model's resource name (`reference_model`;
    the model itself when it has no base); the deprecated `reference_model_id` only for a model
    that names its base by id alone."""
    base = getattr(model, "base_model", None)
    if base:
        return {"reference_model": str(base)}
    base_id = getattr(model, "base_model_id", None)
    if base_id:
        return {"reference_model_id": str(base_id)}
    own = MODEL_PATH.match(model_path)
    assert own is not None
    return {"reference_model": f"projects/{own.group(1)}/models/{own.group(2)}"}


def _is_adapter(model: Any, ref: ModelRef) -> bool:
    """A LoRA adapter: by its registry weights, else by the fine-tune job's training type."""
    weights = getattr(getattr(model, "weights", None), "type", None)
    lora = str(ref.metadata.get("training_type") or "").lower() == "lora"
    return str(weights) == "WEIGHTS_TYPE_ADAPTER" or lora


def select_config(
    configs: list[Any],
    *,
    model: str,
    adapter: bool,
    hardware: str | None,
    explicit: str | None,
    catalog: list[Any],
) -> Any | None:
    """The config to deploy `model` with, as the SDK CLI picks it; None means `explicit` as
    given (not among the listed configs: the API checks it). Never a guess: several candidates
    are a ConfigurationError naming them."""
    if explicit:
        chosen = next((c for c in configs if _config_matches(c, explicit)), None)
        if chosen is not None and adapter and _adapter_mode(chosen) not in ADAPTER_MODES:
            raise ConfigurationError(
                f"deployment_config {explicit} has adapter_mode "
                f"{_adapter_mode(chosen) or 'disabled'} and cannot serve the LoRA adapter "
                f"{model}. Configs that can: "
                f"{_choices([c for c in configs if _adapter_mode(c) in ADAPTER_MODES], catalog)}."
            )
        return chosen
    pool = configs
    if adapter:
        pool = [c for c in configs if _adapter_mode(c) in ADAPTER_MODES]
        if not pool:
            raise ConfigurationError(
                f"No Together config can serve the LoRA adapter {model} (adapter_mode fixed or "
                f"dynamic); its base model's configs: {_choices(configs, catalog)}. Set "
                "`deployment_config` to a config that can, or serve it serverless."
            )
    if hardware:
        on_hardware = [c for c in pool if _same_hardware(_hardware_of(c), hardware)]
        if not on_hardware:
            have = ", ".join(sorted({str(_hardware_of(c)) for c in pool})) or "none"
            raise ConfigurationError(
                f"No Together deployment config for {model} on hardware {hardware}. "
                f"Available hardware: {have}. Set `hardware` to one of them or "
                "`deployment_config` explicitly."
            )
        pool = on_hardware
    if not pool:
        raise ConfigurationError(f"Together lists no deployment config for {model}.")
    if len(pool) > 1:
        tell = "`deployment_config`" if hardware else "`hardware` or `deployment_config`"
        raise ConfigurationError(
            f"{model} can be deployed with several Together configs: {_choices(pool, catalog)}. "
            f"ste does not guess which one to pay for: set the finetune option {tell} to one of "
            "them."
        )
    return pool[0]


def _choices(configs: list[Any], catalog: list[Any]) -> str:
    def one(config: Any) -> str:
        hw = _hardware_of(config)
        cents = _price_of(catalog, hw)
        price = f", ${cents / 100:.2f}/h" if cents is not None else ""
        mode = _adapter_mode(config)
        adapters = f", adapter_mode {mode}" if mode else ""
        return f"{config.id} ({hw or 'hardware unknown'}{price}{adapters})"

    return "; ".join(one(c) for c in configs) or "none"


def _config_matches(config: Any, wanted: str) -> bool:
    ident = getattr(config, "id", None)
    if not ident:
        return False
    return wanted == ident or wanted.endswith(f"/configs/{ident}")


def _adapter_mode(config: Any) -> str | None:
    """`fixed`, `dynamic`, `disabled` or None (unset: no LoRA), from the config's `adapter_mode`
    selector or an `adapterMode` field, as the SDK CLI reads it."""
    values = {s.key: s.value for s in getattr(config, "selectors", None) or []}
    raw = values.get("adapter_mode") or values.get("adapterMode")
    if not raw:
        extra = getattr(config, "model_extra", None) or {}
        raw = extra.get("adapterMode") or extra.get("adapter_mode")
    if not isinstance(raw, str) or not raw.strip():
        return None
    mode = raw.strip().lower().removeprefix("adapter_mode_")
    return mode if mode in {"fixed", "dynamic", "disabled", "unspecified"} else None


def _warn(resources: Resources, message: str) -> None:
    log.warning("%s", message)
    resources.notify(message)


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
