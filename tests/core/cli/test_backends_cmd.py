"""`ste backends`: the table of registered backends, and `--options` for one backend."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ste_core import ChatRequest, Completion, InferenceBackend, hookimpl, reset_host
from ste_core.cli.app import app
from ste_core.plugins import get_host

# -- ste backends --options -------------------------------------------------------------------

runner = CliRunner()


def test_ste_backends_options_lists_both_kinds_with_their_facts() -> None:
    res = runner.invoke(app, ["backends", "--options", "together"])
    assert res.exit_code == 0, res.output
    inference, finetune = res.output.split("together finetune options:")
    assert inference.startswith("together inference options:")
    assert "  api_key: SecretStr | None, from env TOGETHER_API_KEY; never in a config file" in (
        inference
    )
    assert "  base_url: str | None = null  (changes results)" in inference
    assert "  batch: bool = false\n" in inference
    assert "  prices: dict[str, tuple[float, float]] = {}\n" in inference
    assert '  serving: "auto" | "serverless" | "dedicated" = "auto"\n' in finetune
    assert "batch:" not in finetune


def test_ste_backends_options_as_json() -> None:
    res = runner.invoke(app, ["backends", "--options", "together", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["backend"] == "together" and set(data["options"]) == {"inference", "finetune"}
    rows = {row["name"]: row for row in data["options"]["inference"]}
    assert rows["api_key"] == {
        "name": "api_key",
        "type": "SecretStr | None",
        "default": None,
        "changes_results": False,
        "secret": True,
        "secret_env": "TOGETHER_API_KEY",
        "help": "Together API key",
    }
    assert rows["base_url"]["changes_results"] is True
    assert rows["timeout_s"]["default"] == 120.0 and rows["timeout_s"]["changes_results"] is False


def test_ste_backends_options_of_an_unknown_backend() -> None:
    res = runner.invoke(app, ["backends", "--options", "nope"])
    assert res.exit_code == 2
    assert "No backend named 'nope'" in res.output and "Traceback" not in res.output


def test_a_backend_without_options_says_so(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    class Bare(InferenceBackend):
        async def complete(self, request: ChatRequest) -> Completion:
            return Completion(texts=("x",))

    class Plugin:
        @hookimpl
        def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
            register("bare", inference=Bare)

    monkeypatch.setenv("STE_PLUGINS", "")
    reset_host()
    try:
        get_host().register_plugin(Plugin())
        res = runner.invoke(app, ["backends", "--options", "bare"])
    finally:
        reset_host()
    assert res.exit_code == 0 and res.output.startswith("bare inference options: none\n")


def test_ste_backends_table_keeps_the_brackets_of_the_install_hint(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a, **k: None if n == "trl" else real(n, *a, **k)
    )
    monkeypatch.setenv("COLUMNS", "300")  # one line per cell: rich wraps to the terminal
    res = runner.invoke(app, ["backends"])
    assert res.exit_code == 0, res.output
    assert "pip install 'self-taught-evaluators[local]'" in res.output  # not eaten as markup
