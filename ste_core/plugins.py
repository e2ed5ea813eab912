"""The plugin host: discovers plugins through the `ste` entry-point group and keeps a registry.

Built-in backends are found exactly like third-party ones: through entry-point metadata, ours
(distribution `self-taught-evaluators`) loaded first, so that a third-party plugin can never take
the name of a built-in backend. Loading is lazy (the first call that needs the registry) and
isolated: a plugin that fails to import, registers a name that is taken, or fails in an event
hook gives a warning naming its distribution and the rest keep working.

Backend options are validated here, against the backend class's `Options`, without constructing
the backend or importing its SDK: `inference_options()` / `finetune_options()` are what the
config loader calls before a run starts.

`STE_PLUGINS=together,myplugin` restricts loading to those entry-point names (empty string: load
none, useful for tests).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Literal

import pluggy
from pydantic import BaseModel

from ste_core.backends import BackendOptions, FineTuneBackend, InferenceBackend
from ste_core.errors import ConfigurationError, MissingDependencyError, UnknownBackendError
from ste_core.hookspecs import (
    Hookspecs,
    RegisterAnswerCheckers,
    RegisterBackends,
    RegisterTemplates,
)
from ste_core.validation import did_you_mean

if TYPE_CHECKING:
    import typer

    from ste_core.answers import AnswerChecker

ENTRY_POINT_GROUP = "ste"
OWN_DISTRIBUTION = "self-taught-evaluators"
EVENT_HOOKS = ("stage_finished", "iteration_finished", "run_finished")

Kind = Literal["inference", "finetune"]


class PluginWarning(UserWarning):
    pass


@dataclass
class BackendInfo:
    """What the registry knows about one backend name."""

    name: str
    inference: type[InferenceBackend] | None = None
    finetune: type[FineTuneBackend] | None = None
    plugin: str = "<direct>"
    distribution: str | None = None
    version: str | None = None

    @property
    def kinds(self) -> list[Kind]:
        kinds: tuple[Kind, ...] = ("inference", "finetune")
        return [k for k in kinds if getattr(self, k) is not None]

    @property
    def missing(self) -> list[str]:
        """Required modules that are not importable (checked without importing them)."""
        needed: list[str] = []
        for cls in (self.inference, self.finetune):
            if cls is not None:
                needed += [m for m in cls.requires if m not in needed]
        return [m for m in needed if importlib.util.find_spec(m) is None]

    @property
    def extra(self) -> str | None:
        for cls in (self.inference, self.finetune):
            if cls is not None and cls.extra:
                return cls.extra
        return None

    def cls(self, kind: Kind) -> type[InferenceBackend] | type[FineTuneBackend]:
        """The backend class of `kind`, or a ConfigurationError naming the kinds it offers."""
        found = self.inference if kind == "inference" else self.finetune
        if found is None:
            does = "do inference" if kind == "inference" else "fine-tune"
            raise ConfigurationError(
                f"Backend '{self.name}' does not {does} (it offers: {', '.join(self.kinds)})."
            )
        return found

    def options(self, kind: Kind, values: Mapping[str, Any], *, where: str = "") -> BackendOptions:
        """`values` validated against the `kind` class's Options (see `inference_options`).
        Nothing is constructed and no SDK is imported."""
        return self.cls(kind).Options.parse(values, backend=self.name, where=where)

    def build(
        self, kind: Kind, options: BackendOptions | None, values: Mapping[str, Any]
    ) -> InferenceBackend | FineTuneBackend:
        """The `kind` backend, from an Options instance or raw option values (validated first,
        so that a bad option is reported even when the SDK is not installed)."""
        cls = self.cls(kind)
        if options is None:
            options, values = self.options(kind, values), {}
        _check_installed(self)
        return cls(options, **values)


@dataclass
class PluginHost:
    """A pluggy PluginManager plus the registries its hooks fill."""

    pm: pluggy.PluginManager = field(default_factory=lambda: _new_manager())
    backends: dict[str, BackendInfo] = field(default_factory=dict)
    templates: dict[str, Any] = field(default_factory=dict)
    template_owner: dict[str, str] = field(default_factory=dict)
    #: answer checkers by name (`data.checker`), and who registered each
    checkers: dict[str, AnswerChecker] = field(default_factory=dict)
    checker_owner: dict[str, str] = field(default_factory=dict)
    load_errors: list[str] = field(default_factory=list)
    _order: list[str] = field(default_factory=list)
    #: plugin name -> (distribution, version), for entry-point plugins
    _origins: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    # -- loading ---------------------------------------------------------------------------

    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Load every `ste` entry point (or only the named ones), each in isolation.

        Ours first, then the others by name and distribution: when two plugins claim a backend
        name the first registration wins, and that must be ours, whatever the order of sys.path
        (pluggy's own loader takes entry points in sys.path order, and skips an entry point
        whose name is taken without a word). Each plugin is registered under a unique name and
        its distribution recorded, for the warnings and `ste backends`.
        """
        eps = sorted(
            entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (
                ep.dist is None or ep.dist.name != OWN_DISTRIBUTION,
                ep.name,
                ep.dist.name if ep.dist else "",
            ),
        )
        for ep in eps:
            if only is not None and ep.name not in only:
                continue
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            pname = ep.name if self.pm.get_plugin(ep.name) is None else f"{dist}:{ep.name}"
            try:
                self.pm.register(ep.load(), name=pname)
            except Exception as exc:  # a plugin can fail in any way at import
                self._warn(
                    f"plugin '{ep.name}' from {dist or 'an unknown distribution'} failed to load "
                    f"and was skipped: {exc!r}"
                )
                continue
            self._order.append(pname)
            self._origins[pname] = (dist, version)

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object directly (tests, notebooks) and collect its registrations."""
        self.pm.register(plugin, name=name)
        self._order.append(self.pm.get_name(plugin) or "")
        self._collect(only=plugin)

    def _collect(self, only: object | None = None) -> None:
        """Call the registration hooks, one implementation at a time, so that each registration is
        attributed to its plugin's distribution and one failing plugin cannot stop the others."""
        makers: dict[str, Callable[[str, str | None, str | None], Any]] = {
            "register_backends": self._backend_registrar,
            "register_templates": self._template_registrar,
            "register_answer_checkers": self._checker_registrar,
        }
        for hookname, make in makers.items():
            for impl in self._impls(hookname):
                if only is not None and impl.plugin is not only:
                    continue
                dist, version = self._origins.get(impl.plugin_name, (None, None))
                failure = self._call(impl, hookname, register=make(impl.plugin_name, dist, version))
                if failure:
                    self._warn(failure)

    def add_commands(self, cli: typer.Typer) -> None:
        """Let each plugin add commands to the CLI app `cli` (`register_commands`), one plugin at
        a time: a command or group whose name is taken (built in, or an earlier plugin's) is
        taken back with a warning naming the plugin, so no plugin can replace `ste run`; a
        plugin that fails gives a warning and keeps none of its commands."""
        lists: tuple[list[Any], list[Any]] = (cli.registered_commands, cli.registered_groups)
        for impl in self._impls("register_commands"):
            taken = {_cli_name(info) for found in lists for info in found}
            sizes = [len(found) for found in lists]
            failure = self._call(impl, "register_commands", cli=cli)
            added = [found[size:] for found, size in zip(lists, sizes, strict=True)]
            for found, size in zip(lists, sizes, strict=True):
                del found[size:]
            if failure:
                self._warn(failure)
                continue
            dist, _ = self._origins.get(impl.plugin_name, (None, None))
            for found, new in zip(lists, added, strict=True):
                for info in new:
                    name = _cli_name(info)
                    if name in taken:
                        self._warn(
                            f"plugin '{impl.plugin_name}' ({dist or 'no distribution'}) adds the "
                            f"command `ste {name}`, which already exists; keeping the first."
                        )
                        continue
                    found.append(info)
                    taken.add(name)

    def fire_event(self, hook_name: str, event: BaseModel) -> None:
        """Call every implementation of the event hook `hook_name` with `event`; one that
        raises gives a PluginWarning naming its plugin and the others are still called."""
        if hook_name not in EVENT_HOOKS:
            raise ValueError(f"{hook_name!r} is not an event hook ({', '.join(EVENT_HOOKS)})")
        for impl in self._impls(hook_name):
            failure = self._call(impl, hook_name, event=event)
            if failure:
                warnings.warn(failure, PluginWarning, stacklevel=3)

    def _impls(self, hookname: str) -> list[pluggy.HookImpl]:
        """The implementations of `hookname`, in the order their plugins were loaded."""
        rank = {name: i for i, name in enumerate(self._order)}
        impls = getattr(self.pm.hook, hookname).get_hookimpls()
        return sorted(impls, key=lambda i: rank.get(i.plugin_name, len(rank)))

    def _call(self, impl: pluggy.HookImpl, hookname: str, **kwargs: Any) -> str | None:
        """Call one implementation; return what went wrong, naming the plugin, or None."""
        try:
            # pluggy lets an implementation take only some of the hook's arguments.
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception as exc:
            dist, _ = self._origins.get(impl.plugin_name, (None, None))
            return (
                f"plugin '{impl.plugin_name}' ({dist or 'no distribution'}) failed in "
                f"{hookname}: {exc!r}"
            )
        return None

    def _backend_registrar(
        self, pname: str, dist: str | None, version: str | None
    ) -> RegisterBackends:
        def register(
            name: str,
            inference: type[InferenceBackend] | None = None,
            finetune: type[FineTuneBackend] | None = None,
        ) -> None:
            if inference is None and finetune is None:
                raise TypeError(f"register('{name}') needs an inference and/or finetune class")
            for cls, base in ((inference, InferenceBackend), (finetune, FineTuneBackend)):
                if cls is not None and not (isinstance(cls, type) and issubclass(cls, base)):
                    raise TypeError(f"{cls!r} registered as '{name}' is not a {base.__name__}")
            if name in self.backends:
                taken = self.backends[name]
                self._warn(
                    f"plugin '{pname}' ({dist or 'no distribution'}) registers backend '{name}', "
                    f"which '{taken.plugin}' ({taken.distribution}) already registered; "
                    "keeping the first."
                )
                return
            for cls in (inference, finetune):
                if cls is not None and not cls.name:
                    cls.name = name
            self.backends[name] = BackendInfo(name, inference, finetune, pname, dist, version)

        return register

    def _template_registrar(
        self, pname: str, dist: str | None, version: str | None
    ) -> RegisterTemplates:
        def register(template: Any) -> None:
            import ste_prompts  # standard library only; cheap

            if not isinstance(template, ste_prompts.Template):
                template = ste_prompts.load_template(template)
            if template.name in self.templates:
                self._warn(
                    f"plugin '{pname}' ({dist or 'no distribution'}) registers template "
                    f"'{template.name}', which is already registered; keeping the first."
                )
                return
            self.templates[template.name] = template
            self.template_owner[template.name] = dist or pname

        return register

    def _checker_registrar(
        self, pname: str, dist: str | None, version: str | None
    ) -> RegisterAnswerCheckers:
        def register(name: str, checker: AnswerChecker) -> None:
            if not callable(checker):
                raise TypeError(f"answer checker {name!r} must be a function (solution, reference)")
            if name in self.checkers:
                self._warn(
                    f"plugin '{pname}' ({dist or 'no distribution'}) registers answer checker "
                    f"'{name}', which {self.checker_owner[name]} already registered; keeping "
                    "the first."
                )
                return
            self.checkers[name] = checker
            self.checker_owner[name] = dist or pname

        return register

    def _warn(self, message: str) -> None:
        self.load_errors.append(message)
        warnings.warn(message, PluginWarning, stacklevel=3)

    # -- lookup ----------------------------------------------------------------------------

    def backend(self, name: str) -> BackendInfo:
        try:
            return self.backends[name]
        except KeyError:
            known = ", ".join(sorted(self.backends)) or "none"
            hint = did_you_mean(name, self.backends)
            raise UnknownBackendError(
                f"No backend named '{name}'{hint}. Registered backends: {known}. Run `ste "
                "backends` to see them, or install the plugin that provides it."
            ) from None

    def inference_backend(
        self, name: str, options: BackendOptions | None = None, /, **values: Any
    ) -> InferenceBackend:
        """Construct inference backend `name` from an Options instance or option values."""
        backend = self.backend(name).build("inference", options, values)
        assert isinstance(backend, InferenceBackend)
        return backend

    def finetune_backend(
        self, name: str, options: BackendOptions | None = None, /, **values: Any
    ) -> FineTuneBackend:
        """Construct fine-tune backend `name` from an Options instance or option values."""
        backend = self.backend(name).build("finetune", options, values)
        assert isinstance(backend, FineTuneBackend)
        return backend

    def answer_checker(self, name: str) -> AnswerChecker:
        """The answer checker registered as `name`; a ConfigurationError naming the others."""
        try:
            return self.checkers[name]
        except KeyError:
            known = ", ".join(sorted(self.checkers)) or "none"
            raise ConfigurationError(
                f"data.checker: no answer checker named {name!r}"
                f"{did_you_mean(name, self.checkers)}. Registered checkers: {known}. Install the "
                "plugin that provides it, or pick one of those."
            ) from None

    def template(self, name_or_path: str) -> Any:
        import ste_prompts

        if name_or_path in self.templates:
            return self.templates[name_or_path]
        return ste_prompts.get_template(name_or_path)


def _cli_name(info: Any) -> str:
    """The name a typer CommandInfo (or TyperInfo, for a group) has on the command line."""
    from typer.main import get_command_name

    if info.name:  # typer's "not given" placeholder is falsy
        return str(info.name)
    group = getattr(info, "typer_instance", None)
    if group is not None:
        return str(group.info.name or "")
    return get_command_name(info.callback.__name__)


def _check_installed(info: BackendInfo) -> None:
    missing = info.missing
    if missing:
        raise MissingDependencyError(info.name, info.extra or info.name, missing)


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("ste")
    pm.add_hookspecs(Hookspecs)
    return pm


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get("STE_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


_host: PluginHost | None = None
_lock = threading.Lock()


def get_host() -> PluginHost:
    """The process-wide plugin host, loaded on first use."""
    global _host
    with _lock:
        if _host is None:
            host = PluginHost()
            import ste_prompts

            for template in ste_prompts.builtin_templates().values():
                host.templates[template.name] = template
                host.template_owner[template.name] = OWN_DISTRIBUTION
            from ste_core.answers import BUILTIN_CHECKERS

            for name, checker in BUILTIN_CHECKERS.items():
                host.checkers[name] = checker
                host.checker_owner[name] = OWN_DISTRIBUTION
            host.load_entry_points(_allowed_plugins())
            host._collect()
            _host = host
        return _host


def reset_host() -> None:
    """Forget loaded plugins (tests; or after installing a plugin in a running notebook)."""
    global _host
    with _lock:
        _host = None


def get_template(name_or_path: str) -> Any:
    """A prompt template by name (built-in or a plugin's) or by file path, for a run: an unknown
    one is a ConfigurationError naming the known ones (and the closest)."""
    try:
        return get_host().template(name_or_path)
    except Exception as exc:  # TemplateError names the file / the known names
        raise ConfigurationError(f"template {name_or_path!r}: {exc}") from exc


def get_answer_checker(name: str) -> AnswerChecker:
    """The answer checker `name` (built-in or a plugin's); an unknown name is a
    ConfigurationError listing the registered ones."""
    return get_host().answer_checker(name)


def get_inference_backend(
    name: str, options: BackendOptions | None = None, /, **values: Any
) -> InferenceBackend:
    """Construct the inference backend registered as `name`, from its Options or option values."""
    return get_host().inference_backend(name, options, **values)


def get_finetune_backend(
    name: str, options: BackendOptions | None = None, /, **values: Any
) -> FineTuneBackend:
    """Construct the fine-tune backend registered as `name`, from its Options or option values."""
    return get_host().finetune_backend(name, options, **values)


def inference_options(name: str, values: Mapping[str, Any], *, where: str = "") -> BackendOptions:
    """Validate the options table `values` of inference backend `name` (for the config loader,
    before any stage runs). Constructs nothing and imports no SDK.

    Raises ConfigurationError with one line per problem, each naming the key under `where`
    (e.g. "judge.options"), the value given and what is allowed (for an unknown key: the allowed
    keys); UnknownBackendError for an unknown backend.
    """
    return get_host().backend(name).options("inference", values, where=where)


def finetune_options(name: str, values: Mapping[str, Any], *, where: str = "") -> BackendOptions:
    """Validate the options table `values` of fine-tune backend `name`; see inference_options."""
    return get_host().backend(name).options("finetune", values, where=where)


def secret_options(
    name: str, kind: Kind, values: Mapping[str, Any] | None = None
) -> dict[str, str | None]:
    """The secret options of backend `name` (`kind`), each with the environment variable it is
    read from given the options table `values` (which may rename it, e.g. `api_key_env`); None
    where the backend names no variable. A config file must not set any of them."""
    options_cls = get_host().backend(name).cls(kind).Options
    return {secret: options_cls.secret_env(secret, values) for secret in options_cls.secret_names()}


def fire_event(hook_name: str, event: BaseModel) -> None:
    """Call every plugin's `hook_name` event hook (stage_finished, iteration_finished,
    run_finished) with `event`, each in isolation: a failing one gives a PluginWarning naming
    the plugin, and the others still get the event."""
    get_host().fire_event(hook_name, event)


def list_backends() -> list[BackendInfo]:
    return sorted(get_host().backends.values(), key=lambda b: b.name)
