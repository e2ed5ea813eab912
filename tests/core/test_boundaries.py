"""House rules that keep the architecture honest: import boundaries and a fast CLI start."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {
    "ste_backends",
    "together",
    "openai",
    "litellm",
    "torch",
    "transformers",
    "trl",
    "peft",
    "anthropic",
    "vllm",
}
HEAVY = ["torch", "transformers", "litellm", "trl", "peft", "together", "openai"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value).split(".")[0])
    return found


def route_registrations(path: Path) -> int:
    """How many fake provider routes `path` registers (calls of a `.route(...)` method)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return sum(
        isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "route"
        for node in ast.walk(tree)
    )


def test_ste_core_never_imports_backends_or_provider_sdks() -> None:
    offenders = {}
    for path in sorted((ROOT / "ste_core").rglob("*.py")):
        bad = imported_modules(path) & FORBIDDEN_IN_CORE
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}, f"ste_core must reach backends only through entry points: {offenders}"


def test_the_boundary_check_catches_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ste_backends.together import plugin\n    import torch\n")
    assert imported_modules(bad) >= {"ste_backends", "torch"}
    replica = tmp_path / "replica.py"
    replica.write_text("def register(p):\n    p.route('GET', r'/v1/files', 'files')(print)\n")
    assert route_registrations(replica) == 1


def test_ste_core_fake_provider_has_no_provider_routes() -> None:
    """A provider's replica (Together's files and fine-tunes, OpenAI's batches) lives with its
    backend, in ste_backends/<provider>/fake.py. In ste_core only the generic server registers
    routes, the OpenAI-compatible chat and model list, and building it loads no provider module."""
    registering = {
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "ste_core").rglob("*.py"))
        if route_registrations(path)
    }
    assert registering == {"ste_core/testing/fake_provider/server.py"}
    loaded = _modules_after(
        "from ste_core.testing.fake_provider import FakeProvider\n"
        "import ste_core.testing.fake_provider.__main__\n"
        "routes = {(r.method, r.pattern.pattern) for r in FakeProvider()._routes}\n"
        "assert routes == {('POST', '/v1/chat/completions'), ('GET', '/v1/models')}, routes"
    )
    assert not {m.split(".")[0] for m in loaded} & FORBIDDEN_IN_CORE


def test_ste_prompts_uses_only_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names) | {"ste_prompts"}
    offenders = {}
    for path in sorted((ROOT / "ste_prompts").rglob("*.py")):
        extra = imported_modules(path) - stdlib
        if extra:
            offenders[str(path.relative_to(ROOT))] = sorted(extra)
    assert offenders == {}


def _modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_and_backends_listing_import_no_heavy_sdk() -> None:
    help_code = (
        "import sys; from ste_core.cli.app import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    )
    listing_code = "from ste_core.plugins import list_backends\nlist_backends()"
    for code in (help_code, listing_code):
        loaded = set(_modules_after(code))
        assert not loaded & set(HEAVY), f"{code!r} imported {sorted(loaded & set(HEAVY))}"
