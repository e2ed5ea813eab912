"""The two interfaces the core talks to: InferenceBackend and FineTuneBackend, and their options.

A backend is a class registered by a plugin (see `ste_core.plugins`). Its options (the `options`
table of the config section that selects it) are declared as a `BackendOptions` model on the
class, `Options`, so that a config can be checked before a run starts, `ste backends --options`
can list them, and `describe()` (what enters request cache keys) is derived from the options
that change results instead of being written by hand:

    class MyOptions(BackendOptions):
        base_url: str = option("https://api.example.com", changes_results=True, help="...")
        timeout_s: float = option(60.0, gt=0, changes_results=False, help="...")
        api_key: SecretStr | None = secret(env="EXAMPLE_API_KEY", help="...")

    class MyInference(InferenceBackend):
        Options = MyOptions

    MyInference(timeout_s=5).options.timeout_s  # validated; a bad value is a ConfigurationError

Backends must import their provider SDK lazily (inside `__init__` or methods, never at module
import), so listing backends, validating options or showing `ste --help` never pays for torch or
litellm; the host checks `requires` before constructing one and names the pip extra when
something is missing.

Capabilities are declared, not guessed: the core reads them to decide how to call a backend
(e.g. it repeats a request n times when `max_n` is 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticUndefined, to_jsonable_python

from ste_core.errors import ConfigurationError, SteError
from ste_core.records import (
    ChatRequest,
    Completion,
    DPOExample,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    GRPOExample,
    ModelRef,
    Resource,
    SFTExample,
)
from ste_core.resources import Resources
from ste_core.validation import problems

# Keys of a field's `json_schema_extra` set by `option()` / `secret()`.
_CHANGES_RESULTS = "changes_results"
_SECRET_ENV = "secret_env"
_SECRET_ENV_OPTION = "secret_env_option"


def option(
    default: Any = PydanticUndefined, *, changes_results: bool, help: str, **field: Any
) -> Any:
    """Declare one backend option (a pydantic field; `field` takes `Field`'s keywords: `gt`,
    `ge`, `le`, `default_factory`, ...).

    `changes_results`: whether two runs that differ only in this option can get different answers.
    True for what decides the answer (the model, the server, request fields that reach the model
    such as extra body fields, anything sampling depends on); those options enter `describe()`
    and so the request cache key. False for how an answer is obtained (timeouts, poll intervals,
    concurrency hints, serving mode, deployment settings, a Batch API that returns the same
    outputs, price tables). Getting it wrong either serves cached answers from another setup
    (True forgotten) or throws away a valid cache (True where it is not needed).
    """
    return Field(
        default, description=help, json_schema_extra={_CHANGES_RESULTS: changes_results}, **field
    )


def secret(*, env: str | None = None, env_option: str | None = None, help: str) -> Any:
    """Declare a secret option (type `SecretStr | None`): a key or token.

    Filled from the environment variable `env`, or from the one named by the option
    `env_option` (e.g. `api_key_env`), when not given. Config files may not set it (the config
    loader refuses it, naming the variable); code may pass it. Never result-changing, never in
    `describe()`, never in a repr, a dump or an error message.
    """
    extra: dict[str, Any] = {_CHANGES_RESULTS: False}
    if env is not None:
        extra[_SECRET_ENV] = env
    if env_option is not None:
        extra[_SECRET_ENV_OPTION] = env_option
    return Field(None, description=help, repr=False, exclude=True, json_schema_extra=extra)


@dataclass(frozen=True)
class OptionInfo:
    """One option as `ste backends --options` shows it."""

    name: str
    type: str
    default: Any
    changes_results: bool
    secret: bool
    #: the environment variable a secret is read from by default (None: not a secret, or none)
    secret_env: str | None
    help: str


class BackendOptions(BaseModel):
    """Base of a backend's options: frozen, unknown keys refused, every field declared with
    `option()` or `secret()` (checked when a subclass is created)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra
            if not isinstance(extra, dict) or not isinstance(extra.get(_CHANGES_RESULTS), bool):
                raise TypeError(
                    f"{cls.__qualname__}.{name} is declared without option() or secret(): every "
                    "backend option must say whether it changes results, e.g. "
                    f"{name}: float = option(30.0, changes_results=False, help='...')"
                )
            if cls._is_secret(name) and field.annotation != SecretStr | None:
                raise TypeError(
                    f"{cls.__qualname__}.{name} is a secret() and must be typed "
                    "`SecretStr | None`, so that its value is never printed"
                )
            option_name = extra.get(_SECRET_ENV_OPTION)
            if option_name is not None and option_name not in cls.model_fields:
                raise TypeError(
                    f"{cls.__qualname__}.{name}: env_option names {option_name!r}, which is not "
                    "an option of this class"
                )

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_environment(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        for name in cls.secret_names():
            env = cls.secret_env(name, data)
            if filled.get(name) is None and env and os.environ.get(env):
                filled[name] = os.environ[env]
        return filled

    # -- what the options are ----------------------------------------------------------------

    @classmethod
    def _extra(cls, name: str) -> dict[str, Any]:
        extra = cls.model_fields[name].json_schema_extra
        return extra if isinstance(extra, dict) else {}

    @classmethod
    def _is_secret(cls, name: str) -> bool:
        extra = cls._extra(name)
        return _SECRET_ENV in extra or _SECRET_ENV_OPTION in extra

    @classmethod
    def secret_names(cls) -> list[str]:
        """The options that are secrets (environment only; config files may not set them)."""
        return [name for name in cls.model_fields if cls._is_secret(name)]

    @classmethod
    def secret_env(cls, name: str, values: Mapping[str, Any] | None = None) -> str | None:
        """The environment variable the secret `name` is read from, given the raw option
        `values` (they may rename it through the secret's `env_option`); None when it has none."""
        extra = cls._extra(name)
        option_name = extra.get(_SECRET_ENV_OPTION)
        if option_name is not None:
            given = (values or {}).get(option_name)
            return given if given is not None else cls.model_fields[option_name].default
        return extra.get(_SECRET_ENV)

    @classmethod
    def result_option_names(cls) -> list[str]:
        """The options declared with `changes_results=True`."""
        return [name for name in cls.model_fields if cls._extra(name)[_CHANGES_RESULTS]]

    @classmethod
    def option_infos(cls) -> list[OptionInfo]:
        """Every option with its type, default, result relevance, secret variable and help."""
        infos = []
        for name, field in cls.model_fields.items():
            secret = cls._is_secret(name)
            infos.append(
                OptionInfo(
                    name=name,
                    type=_type_name(field.annotation),
                    default=to_jsonable_python(field.get_default(call_default_factory=True)),
                    changes_results=cls._extra(name)[_CHANGES_RESULTS],
                    secret=secret,
                    secret_env=cls.secret_env(name) if secret else None,
                    help=field.description or "",
                )
            )
        return infos

    # -- validation ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, backend: str, where: str = "") -> Self:
        """Validate raw option values (a config's options table, constructor keywords).

        Raises ConfigurationError with one line per problem, naming the backend, the key (under
        `where`, e.g. "judge.options") and the value given (never a secret's), and for an
        unknown key the allowed ones.
        """
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            secrets = set(cls.secret_names())

            def conceal(err: ErrorDetails) -> bool:
                # A secret's own error, or one about the whole table (whose input holds it).
                return not err["loc"] or err["loc"][0] in secrets

            prefix = f"{where}." if where else ""
            lines = [
                f"{key} ({backend} option): {problem}"
                for key, problem in problems(exc, cls, prefix=prefix, conceal=conceal)
            ]
            raise ConfigurationError("\n".join(lines)) from None

    # -- identity ------------------------------------------------------------------------------

    def effective(self) -> dict[str, Any]:
        """Every option except secrets, as JSON, with the value the backend really uses.

        Override it where an option is resolved later than validation (a provider default the
        SDK picks, say), so that `describe()` shows the server that is actually called: two
        setups that reach different servers must never share cache entries.
        """
        return self.model_dump(mode="json")

    def result_options(self) -> dict[str, Any]:
        """The result-changing options with their effective values (the body of `describe()`)."""
        effective = self.effective()
        return {name: effective[name] for name in self.result_option_names()}


def _type_name(annotation: Any) -> str:
    """`str | None`, `"auto" | "dedicated"`, `dict[str, float]`: a type as a user reads it."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is Annotated:  # e.g. FilePath: a Path with a check
        return _type_name(args[0])
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return str(getattr(annotation, "__name__", annotation))


class InferenceCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_n: int | None = Field(
        None, description="Most choices one request may ask for; None = no limit, 1 = no n>1."
    )
    batch: bool = Field(
        False,
        description="complete_many does real batching (a local GPU batch or a provider Batch API)",
    )
    suggested_concurrency: int = Field(16, ge=1)


class FineTuneCapabilities(BaseModel):
    model_config = ConfigDict(frozen=True)

    methods: frozenset[FineTuneMethod] = frozenset({FineTuneMethod.SFT})
    continue_from_previous: bool = Field(
        False, description="can start a job from an earlier fine-tuned model (init_from=previous)"
    )
    lora: bool = True
    full: bool = False
    outlives_interrupt: bool = Field(
        True,
        description="a job keeps running when ste is interrupted (a hosted job); False for a "
        "local worker that Ctrl-C stops too",
    )


@dataclass(frozen=True)
class FineTuneOutlook:
    """What a fine-tune job and the serving of its model will take, known before any request
    (for the preflight's estimate of a whole run; see `FineTuneBackend.outlook`)."""

    #: USD per job; None: unknown until the provider prices the job's training file
    job_cost_usd: float | None = None
    #: whether serving the fine-tuned model creates a dedicated endpoint (billed by the hour);
    #: None: decided only when serving (e.g. Together's `serving = "auto"`)
    dedicated_endpoint: bool | None = None


class BatchItem(BaseModel):
    """One answer from `complete_many`: the index of its request and a completion or an error."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    index: int
    completion: Completion | None = None
    error: SteError | None = None


class _Backend:
    """What both kinds share: a name, options, the extra that installs their dependencies, and
    `requires`."""

    #: Name the backend is registered under (set by the plugin host on registration).
    name: ClassVar[str] = ""
    #: Importable modules the backend needs; checked before construction.
    requires: ClassVar[tuple[str, ...]] = ()
    #: The pip extra that installs `requires`, named in the error when something is missing.
    extra: ClassVar[str | None] = None
    #: The options this backend takes (the base: none).
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    options: BackendOptions
    _resources: Resources | None = None

    def __init__(self, options: BackendOptions | None = None, /, **values: Any) -> None:
        """Take validated `options` (an instance of `Options`) or raw option `values`."""
        if options is None:
            options = self.Options.parse(values, backend=self.name or type(self).__name__)
        elif values:
            raise TypeError(
                f"{type(self).__name__} takes either a {self.Options.__qualname__} instance or "
                "option keywords, not both"
            )
        elif not isinstance(options, self.Options):
            raise TypeError(
                f"{type(self).__name__} takes {self.Options.__qualname__}, "
                f"not {type(options).__qualname__}"
            )
        self.options = options

    def describe(self) -> dict[str, Any]:
        """What identifies this backend's answers: its name and every result-changing option
        with its effective value. Enters request cache keys and the manifest; never a secret."""
        return {"backend": self.name, **self.options.result_options()}

    # -- paid resources: endpoints, batch jobs ----------------------------------------------------

    @property
    def resources(self) -> Resources:
        """Where this backend records the endpoints and batch jobs it creates, before the call
        that creates them returns (see `ste_core.resources`): the run's ledger inside a run
        (the run sets it), in memory for a backend used alone."""
        if self._resources is None:
            self._resources = Resources(self.name)
        return self._resources

    @resources.setter
    def resources(self, value: Resources) -> None:
        self._resources = value

    async def resource_state(self, resource: Resource) -> str | None:
        """The provider's state of `resource` (one this backend created; it may come from a
        session that died), or None when it no longer exists. Override it in a backend that
        creates resources; the default knows none and says so."""
        raise NotImplementedError(f"backend {self.name!r} creates no {resource.kind} resources")

    async def reap(self, resource: Resource) -> str:
        """Tear `resource` down at the provider (stop and delete an endpoint, cancel a batch
        job) and end it in `resources`; return what was done, for the user. Called for what a
        dead session left open and is not reused, and by `ste cleanup --yes`."""
        raise NotImplementedError(f"backend {self.name!r} creates no {resource.kind} resources")

    async def aclose(self) -> None:
        """Release clients, connections or GPU memory."""

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class InferenceBackend(_Backend, ABC):
    """Async chat completion."""

    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities()

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """Run one request; raise a `ste_core.errors` type on failure, never return partial junk."""

    def expect_concurrency(self, requests_in_flight: int) -> None:
        """A scheduler over this backend will have up to this many requests in flight (told
        when it is made; several schedulers over one backend add up): an HTTP backend sizes its
        connection pool to the total, so that the pool never caps the configured concurrency.
        The default does nothing."""

    async def complete_many(
        self, requests: Sequence[ChatRequest], *, concurrency: int | None = None
    ) -> AsyncIterator[BatchItem]:
        """Run many requests; yield results as they finish, in any order.

        The default is bounded-concurrency calls to `complete`; backends with real batching (a local
        model on a GPU, a provider Batch API) override it. Errors are yielded per item, not raised,
        so one failure does not lose the rest.
        """
        limit = asyncio.Semaphore(concurrency or self.capabilities.suggested_concurrency)

        async def one(i: int, req: ChatRequest) -> BatchItem:
            async with limit:
                try:
                    return BatchItem(index=i, completion=await self.complete(req))
                except SteError as exc:
                    return BatchItem(index=i, error=exc)

        tasks = [asyncio.ensure_future(one(i, r)) for i, r in enumerate(requests)]
        try:
            for fut in asyncio.as_completed(tasks):
                yield await fut
        finally:
            for t in tasks:
                t.cancel()


class FineTuneBackend(_Backend, ABC):
    """Train a judge from SFT/DPO examples and make the result callable."""

    capabilities: ClassVar[FineTuneCapabilities] = FineTuneCapabilities()

    @abstractmethod
    def write_training_file(
        self,
        examples: Iterable[SFTExample] | Iterable[DPOExample] | Iterable[GRPOExample],
        method: FineTuneMethod,
        path: Path,
    ) -> int:
        """Write examples to `path` in the provider's own format; return how many were written."""

    async def estimate_cost(self, spec: FineTuneSpec, training_file: Path) -> float | None:
        """USD the job is expected to cost, or None when the provider gives no estimate."""
        return None

    def outlook(self, spec: FineTuneSpec) -> FineTuneOutlook:
        """A job's cost and how its model is served, as far as they are known without sending
        anything and before its training file exists (`ste run --check`). The default knows
        neither; a backend with a price table, free local training or a fixed serving mode says
        so here. `estimate_cost` is the exact estimate, once the training file exists."""
        return FineTuneOutlook()

    @abstractmethod
    async def submit(self, spec: FineTuneSpec, training_file: Path) -> FineTuneJobState:
        """Upload what is needed and start the job; return its first state (with the job id)."""

    @abstractmethod
    async def poll(self, job_id: str) -> FineTuneJobState:
        """Current state; `events` holds the provider's log lines, `model` is set on success."""

    async def find_job(self, spec: FineTuneSpec, *, created_after: datetime) -> str | None:
        """The id of a job for `spec` that the provider created at or after `created_after`.

        Called when a run was killed inside `submit`: the provider may have created the job
        although its id never reached the run store. Finding it lets the resumed run re-attach
        instead of paying for a second job. Return None when there is no such job, or when the
        provider cannot list jobs (the default): the run then submits again, with a warning.
        """
        return None

    @abstractmethod
    async def cancel(self, job_id: str) -> FineTuneJobState:
        """Ask the provider to stop the job."""

    async def resource_state(self, resource: Resource) -> str | None:
        """A fine-tune job's status while it runs (None once it ended, or when it never got an
        id); a backend that creates other resources (endpoints) overrides this and calls it for
        `finetune_job`."""
        if resource.kind != "finetune_job":
            return await super().resource_state(resource)
        if resource.provider_id is None:
            return None
        state = await self.poll(resource.provider_id)
        return None if state.status.terminal else state.status.value

    async def reap(self, resource: Resource) -> str:
        """Cancel a fine-tune job left running (see `resource_state`)."""
        if resource.kind != "finetune_job":
            return await super().reap(resource)
        if resource.provider_id is not None:
            await self.cancel(resource.provider_id)
        self.resources.end(resource, cost_usd=0.0)
        return "cancelled" if resource.provider_id else "closed (it was never created)"

    def serve(self, model: ModelRef) -> contextlib.AbstractAsyncContextManager[ModelRef]:
        """Make `model` callable for inference for the duration of the `async with` block.

        Returns the reference to use for inference (e.g. a dedicated endpoint's name). Whatever it
        set up is torn down on exit, including on error and cancellation. The default assumes the
        model is callable as it is.
        """
        return _already_served(model)


@contextlib.asynccontextmanager
async def _already_served(model: ModelRef) -> AsyncIterator[ModelRef]:
    yield model
