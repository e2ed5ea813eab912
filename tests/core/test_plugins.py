"""The plugin host: entry-point discovery, isolation of broken plugins, registry lookups."""

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
from ste_core.plugins import PluginHost, PluginWarning, fire_event

BUILTINS = {"together", "openai", "litellm", "local"}


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


async def test_default_complete_many_yields_every_item_and_errors_per_item() -> None:
    from ste_core import TransientProviderError

    class Flaky(InferenceBackend):
        async def complete(self, request: ChatRequest) -> Completion:
            if request.sample_index % 2:
                raise TransientProviderError("odd ones fail")
            return Completion(texts=(str(request.sample_index),))

    reqs = [
        ChatRequest.of("m", [{"role": "user", "content": "x"}], sample_index=i) for i in range(7)
    ]
    items = [item async for item in Flaky().complete_many(reqs, concurrency=3)]
    assert sorted(i.index for i in items) == list(range(7))
    assert {i.index for i in items if i.error} == {1, 3, 5}
    assert all(i.completion.texts == (str(i.index),) for i in items if i.completion)


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
