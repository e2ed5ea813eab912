"""The plugin host (ste_core.plugins): entry-point discovery, isolation of broken plugins,
registry lookups, event hooks, and validating a config's backend options table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

from ste_core import (
    BackendOptions,
    ChatRequest,
    Completion,
    ConfigurationError,
    InferenceBackend,
    InferenceCapabilities,
    MissingDependencyError,
    StageEvent,
    UnknownBackendError,
    get_host,
    hookimpl,
    option,
    reset_host,
)
from ste_core.plugins import (
    PluginHost,
    PluginWarning,
    finetune_options,
    fire_event,
    inference_options,
    secret_options,
)

BUILTINS = {"together", "openai", "litellm", "local"}
KEY = "sk-unit-test-secret-4711"


def make_distribution(root: Path, dist: str, module: str, source: str, ep_name: str) -> None:
    """A minimal installed distribution on disk: a module plus a .dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[ste]\n{ep_name} = {module}\n")


def run_python(
    code: str, extra_path: Path | None = None, **env: str
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    if extra_path is not None:
        full_env["PYTHONPATH"] = str(extra_path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


GOOD_PLUGIN = """
from ste_core import hookimpl, InferenceBackend, Completion

class Echo(InferenceBackend):
    async def complete(self, request):
        return Completion(texts=(request.messages[-1].content,))

@hookimpl
def register_backends(register):
    register("echo", inference=Echo)
"""

BROKEN_PLUGIN = """
raise RuntimeError("this plugin is broken on purpose")
"""

DUPLICATE_PLUGIN = """
from ste_core import hookimpl, InferenceBackend, Completion

class OtherEcho(InferenceBackend):
    async def complete(self, request):
        return Completion(texts=("other",))

@hookimpl
def register_backends(register):
    register("echo", inference=OtherEcho)
    register("other-echo", inference=OtherEcho)
"""

LIST_CODE = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from ste_core.plugins import get_host
    host = get_host()
print(json.dumps({
    "backends": {b.name: [b.distribution, b.version, b.plugin] for b in host.backends.values()},
    "warnings": [str(w.message) for w in caught],
}))
"""


def test_entry_point_plugins_are_discovered_with_their_distribution(tmp_path: Path) -> None:
    make_distribution(tmp_path, "ste-good-plugin", "ste_good_plugin", GOOD_PLUGIN, "good")
    out = run_python(LIST_CODE, tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["backends"]["echo"] == ["ste-good-plugin", "1.2.3", "good"]


def test_broken_and_duplicate_plugins_warn_and_the_rest_keep_working(tmp_path: Path) -> None:
    make_distribution(tmp_path, "ste-good-plugin", "ste_good_plugin", GOOD_PLUGIN, "good")
    make_distribution(tmp_path, "ste-broken-plugin", "ste_broken_plugin", BROKEN_PLUGIN, "broken")
    make_distribution(tmp_path, "ste-dup-plugin", "ste_dup_plugin", DUPLICATE_PLUGIN, "zdup")
    out = run_python(LIST_CODE, tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    warnings = "\n".join(data["warnings"])
    assert "ste-broken-plugin" in warnings and "broken on purpose" in warnings
    assert (
        "ste-dup-plugin" in warnings and "'echo'" in warnings and "already registered" in warnings
    )
    # The first registration of 'echo' is kept; the duplicate plugin's other backend still counts.
    assert data["backends"]["echo"][0] == "ste-good-plugin"
    assert data["backends"]["other-echo"][0] == "ste-dup-plugin"


def test_ste_plugins_env_restricts_loading(tmp_path: Path) -> None:
    make_distribution(tmp_path, "ste-good-plugin", "ste_good_plugin", GOOD_PLUGIN, "good")
    make_distribution(tmp_path, "ste-broken-plugin", "ste_broken_plugin", BROKEN_PLUGIN, "broken")
    out = run_python(LIST_CODE, tmp_path, STE_PLUGINS="good")
    data = json.loads(out.stdout)
    assert set(data["backends"]) == {"echo"}
    assert data["warnings"] == []
    out = run_python(LIST_CODE, tmp_path, STE_PLUGINS="")
    assert json.loads(out.stdout)["backends"] == {}


def test_builtin_backends_come_from_our_own_entry_points() -> None:
    out = run_python(LIST_CODE)
    data = json.loads(out.stdout)
    found = {name: d for name, d in data["backends"].items() if name in BUILTINS}
    assert set(found) == BUILTINS, data["warnings"]
    for dist, version, plugin in found.values():
        assert dist == "self-taught-evaluators" and version
        assert plugin in BUILTINS


class NeedsMissingSdk(InferenceBackend):
    requires: ClassVar[tuple[str, ...]] = ("surely_not_an_installed_module_xyz",)
    extra = "nosuchextra"

    async def complete(self, request: ChatRequest) -> Completion:
        raise AssertionError("never constructed")


class Fixed(InferenceBackend):
    class Options(BackendOptions):
        text: str = option("fixed", changes_results=True, help="the answer to everything")

    options: Options
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(max_n=1)

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion(texts=(self.options.text,))


class DirectPlugin:
    @hookimpl
    def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
        register("needs-missing", inference=NeedsMissingSdk)
        register("fixed", inference=Fixed)


def test_missing_extra_raises_only_when_used_and_names_the_pip_command() -> None:
    host = PluginHost()
    host.register_plugin(DirectPlugin())
    info = host.backend("needs-missing")  # listing is fine
    assert info.missing == ["surely_not_an_installed_module_xyz"]
    with pytest.raises(
        MissingDependencyError, match=r"pip install 'self-taught-evaluators\[nosuchextra\]'"
    ):
        host.inference_backend("needs-missing")


async def test_lookup_by_name_builds_the_backend_with_options() -> None:
    host = PluginHost()
    host.register_plugin(DirectPlugin())
    backend = host.inference_backend("fixed", text="hello")
    done = await backend.complete(ChatRequest.of("m", [{"role": "user", "content": "hi"}]))
    assert done.texts == ("hello",)
    assert backend.name == "fixed"
    with pytest.raises(UnknownBackendError, match="Registered backends: fixed, needs-missing"):
        host.inference_backend("nope")
    with pytest.raises(ConfigurationError, match="does not fine-tune"):
        host.finetune_backend("fixed")


def test_registering_something_that_is_not_a_backend_is_a_plugin_warning() -> None:
    class Bad:
        @hookimpl
        def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
            register("bad", inference=dict)

    host = PluginHost()
    with pytest.warns(PluginWarning, match="is not a InferenceBackend"):
        host.register_plugin(Bad())
    assert "bad" not in host.backends


# -- entry points loaded by the host itself ------------------------------------------------------


@dataclass
class FakeDist:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    """What the host reads of an importlib.metadata entry point."""

    name: str
    dist: FakeDist
    module: object

    def load(self) -> object:
        return self.module


def plugin_module(name: str, **backends: type[InferenceBackend]) -> ModuleType:
    module = ModuleType(name)

    @hookimpl
    def register_backends(register) -> None:  # type: ignore[no-untyped-def]
        for backend_name, cls in backends.items():
            register(backend_name.replace("_", "-"), inference=cls)

    module.register_backends = register_backends  # type: ignore[attr-defined]
    return module


class Ours(Fixed):
    pass


class Impostor(Fixed):
    pass


def test_a_third_party_entry_point_named_like_a_builtin_never_replaces_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    own = FakeDist("self-taught-evaluators", "0.1.0")
    evil = FakeDist("aaa-ste-impostor", "9.9")
    eps = [  # the impostor comes first, as it might on sys.path
        FakeEntryPoint("together", evil, plugin_module("impostor", together=Impostor, extra=Fixed)),
        FakeEntryPoint("together", own, plugin_module("ours", together=Ours)),
    ]
    monkeypatch.setattr(
        "ste_core.plugins.entry_points", lambda group: eps if group == "ste" else []
    )
    host = PluginHost()
    with pytest.warns(PluginWarning) as caught:
        host.load_entry_points()
        host._collect()
    together = host.backend("together")
    assert together.inference is Ours
    assert (together.distribution, together.version, together.plugin) == (
        "self-taught-evaluators",
        "0.1.0",
        "together",
    )
    # The impostor's other backend still registers, under its own plugin name and distribution.
    extra = host.backend("extra")
    assert (extra.distribution, extra.version, extra.plugin) == (
        "aaa-ste-impostor",
        "9.9",
        "aaa-ste-impostor:together",
    )
    [warning] = [str(w.message) for w in caught]
    assert "aaa-ste-impostor" in warning and "registers backend 'together'" in warning


# -- event hooks -----------------------------------------------------------------------------


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[object] = []

    @hookimpl
    def stage_finished(self, event: StageEvent) -> None:
        if self.fail:
            raise RuntimeError("this plugin's dashboard is down")
        self.events.append(event)


def test_a_failing_event_hook_does_not_stop_the_other_plugins(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STE_PLUGINS", "")
    reset_host()
    try:
        broken, first, second = Recorder(fail=True), Recorder(), Recorder()
        host = get_host()
        host.register_plugin(first, name="first")
        host.register_plugin(broken, name="broken")
        host.register_plugin(second, name="second")
        event = StageEvent(run_name="r", iteration=1, stage="judge")
        with pytest.warns(PluginWarning, match="plugin 'broken' .* failed in stage_finished"):
            fire_event("stage_finished", event)
    finally:
        reset_host()
    assert first.events == [event] and second.events == [event]


def test_fire_event_takes_only_event_hooks() -> None:
    with pytest.raises(ValueError, match="not an event hook"):
        PluginHost().fire_event(
            "register_backends", StageEvent(run_name="r", iteration=1, stage="s")
        )


# -- validating a config's options table, and the secrets it names ----------------------------


def test_an_unknown_option_names_the_allowed_keys() -> None:
    with pytest.raises(ConfigurationError) as info:
        inference_options("together", {"bacth": True}, where="judge.options")
    message = str(info.value)
    assert message.startswith(
        'judge.options.bacth (together option): unknown key (did you mean "batch"?); allowed keys:'
    )
    assert "batch, batch_poll_interval_s" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no pydantic trace


def test_wrong_types_and_ranges_name_the_key_and_the_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        finetune_options(
            "together",
            {"min_replicas": 0, "keep_endpoint": "perhaps", "serving": "cheap"},
            where="finetune.options",
        )
    lines = str(info.value).splitlines()
    assert lines == [
        "finetune.options.serving (together option): got \"cheap\"; must be one of 'auto', "
        "'serverless' or 'dedicated'",
        "finetune.options.min_replicas (together option): got 0; must be >= 1",
        'finetune.options.keep_endpoint (together option): got "perhaps"; must be true or false',
    ]


def test_validating_needs_no_construction_and_returns_the_options() -> None:
    opts = inference_options("openai", {"base_url": "http://127.0.0.1:9/v1/", "max_n": 1})
    assert type(opts).__name__ == "OpenAIOptions" and opts.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(UnknownBackendError, match="No backend named 'nope'"):
        inference_options("nope", {})
    with pytest.raises(ConfigurationError, match="'openai' does not fine-tune"):
        finetune_options("openai", {})


def test_validating_options_imports_no_sdk() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from ste_core.plugins import finetune_options, inference_options
        for name in ("together", "openai", "litellm", "local"):
            inference_options(name, {})
        for name in ("together", "local"):
            finetune_options(name, {})
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = {"together", "openai", "litellm", "torch", "transformers", "trl"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_secret_options_name_the_variable_to_set() -> None:
    assert secret_options("together", "inference") == {"api_key": "TOGETHER_API_KEY"}
    assert secret_options("together", "finetune") == {"api_key": "TOGETHER_API_KEY"}
    assert secret_options("openai", "inference") == {"api_key": "OPENAI_API_KEY"}
    # api_key_env in the same table renames it; litellm has no variable unless told one.
    assert secret_options("openai", "inference", {"api_key_env": "VLLM_KEY"}) == {
        "api_key": "VLLM_KEY"
    }
    assert secret_options("litellm", "inference") == {"api_key": None}
    assert secret_options("local", "inference") == {}


def test_a_secret_named_by_another_option_is_read_from_that_variable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VLLM_KEY", KEY)
    opts = inference_options("openai", {"api_key_env": "VLLM_KEY"})
    assert opts.api_key is not None and opts.api_key.get_secret_value() == KEY  # type: ignore[attr-defined]
