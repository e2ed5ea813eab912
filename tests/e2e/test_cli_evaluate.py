"""`ste evaluate` through the real openai backend against the local fake provider (127.0.0.1).

The fake judge picks the better response with probability = the accuracy in its model name
(seeded), so the measured accuracy must land near it; an inverted order mapping would give ~20%.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ste_core.cli.app import app
from ste_core.plugins import reset_host
from ste_core.testing import fake_provider

pytestmark = pytest.mark.e2e


TOPICS = ["volcano", "tides", "bread", "chess", "orbits", "glaciers", "bees", "tea", "rust", "jazz"]


def test_evaluate_with_openai_backend_on_fake_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STE_PLUGINS", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")
    reset_host()
    pairs = tmp_path / "user.jsonl"
    rows = []
    for i in range(60):
        topic, other = TOPICS[i % 10], TOPICS[(i + 5) % 10]
        rows.append(
            {
                "id": f"u{i}",
                "instruction": f"Explain {topic} number {i} to a child",
                "chosen": f"Here is how {topic} number {i} works, explained to a child.",
                "rejected": f"Some facts about {other} for adults.",
            }
        )
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    try:
        with fake_provider.FakeProvider() as fake:
            res = CliRunner().invoke(
                app,
                [
                    "evaluate",
                    str(pairs),
                    "--backend",
                    "openai",
                    "--model",
                    "judge-acc80",
                    "--template",
                    "judge_short",
                    "-o",
                    f"base_url={fake.url}/v1",
                    "--out",
                    str(tmp_path / "out"),
                    "--json",
                ],
            )
            assert fake.errors == []
    finally:
        reset_host()
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)["score"]
    assert s["n_items"] == 60 and s["n_judgements"] == 120 and s["error_count"] == 0
    assert s["ci_low"] <= 0.8 <= s["ci_high"]
    assert s["accuracy"] > 0.6
    # the written judgements re-score identically
    res2 = CliRunner().invoke(
        app, ["score", str(pairs), str(tmp_path / "out" / "judgements.jsonl"), "--json"]
    )
    reset_host()  # the CLI built a host under STE_PLUGINS=openai: later tests need their own
    assert res2.exit_code == 0, res2.output
    assert json.loads(res2.stdout)["score"] == s
