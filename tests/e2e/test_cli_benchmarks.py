"""`ste evaluate FILE --benchmark NAME` and `ste score FILE OUTPUTS --benchmark NAME` through the
real openai backend against the local fake provider (127.0.0.1), on small files in each
benchmark's official format. The fake judge knows the better response and is right with the
probability in its model name, so the headline must land near it; the written outputs must
re-score to the identical result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ste_core.cli.app import app
from ste_core.plugins import reset_host
from ste_core.testing import fake_provider

pytestmark = pytest.mark.e2e

TOPICS = ["volcano", "tides", "bread", "chess", "orbits", "glaciers", "bees", "tea", "rust", "jazz"]


def good(i: int) -> str:
    t = TOPICS[i % 10]
    return f"Here is how {t} number {i} works, explained to a child."


def bad(i: int, k: int) -> str:
    return f"Some facts about {TOPICS[(i + 3 + k) % 10]} for adults, part {k}."


def question(i: int) -> str:
    return f"Explain {TOPICS[i % 10]} number {i} to a child"


def rewardbench2_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, subset in enumerate(["Factuality", "Precise IF", "Math", "Safety", "Focus"] * 6):
        rows.append({"id": str(i), "prompt": question(i), "chosen": [good(i)],
                     "rejected": [bad(i, k) for k in range(3)], "num_correct": 1,
                     "subset": subset})  # fmt: skip
    for p in range(4):
        i = 100 + p
        rows.append(
            {
                "id": f"ref:{p}",
                "prompt": question(i),
                "chosen": [good(i)],
                "rejected": [bad(i, 0), bad(i, 1)],
                "num_correct": 1,
                "subset": "Ties",
            }
        )
        rows.append(
            {
                "id": f"tied:{p}",
                "prompt": question(i),
                "chosen": [good(i), good(i).replace("Here is", "This is")],
                "rejected": [bad(i, 0), bad(i, 1)],
                "num_correct": 2,
                "subset": "Ties",
            }
        )
    return rows  # fmt: skip


def judgebench_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(30):
        a_better = i % 2 == 0
        rows.append({"pair_id": f"p{i}", "original_id": i,
                     "source": ["mmlu-pro-law", "livebench-math", "livecodebench"][i % 3],
                     "question": question(i), "response_model": "m",
                     "response_A": good(i) if a_better else bad(i, 0),
                     "response_B": bad(i, 0) if a_better else good(i),
                     "label": "A>B" if a_better else "B>A"})  # fmt: skip
    return rows


def rmbench_rows() -> list[dict[str, Any]]:
    domains = ["chat", "code", "math", "safety-refuse", "safety-response"]
    return [
        {"id": i, "prompt": question(i), "domain": domains[i % 5],
         "chosen": [good(i), good(i) + " In detail.", "**" + good(i) + "**"],
         "rejected": [bad(i, 0), bad(i, 1), bad(i, 2)]}
        for i in range(10)
    ]  # fmt: skip


def ppe_rows() -> list[dict[str, Any]]:
    rows = []
    for i in range(30):
        winner = ["model_a", "model_b", "tie"][i % 3]
        first, second = (good(i), bad(i, 0)) if winner == "model_a" else (bad(i, 0), good(i))
        rows.append({"question_id": f"q{i}", "prompt": question(i), "response_1": first,
                     "response_2": second, "winner": winner, "model_a": "x", "model_b": "y",
                     "language": "English", "hard_prompt": i % 2 == 0})  # fmt: skip
    return rows


CASES = {
    "rewardbench2": (rewardbench2_rows, []),
    "rewardbench2-ratings": (rewardbench2_rows, ["--mode", "ratings"]),
    "judgebench": (judgebench_rows, []),
    "rmbench": (rmbench_rows, []),
    "ppe": (ppe_rows, []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_then_score_a_published_benchmark(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STE_PLUGINS", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")
    reset_host()
    name = case.split("-")[0]
    make_rows, flags = CASES[case]
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows()), encoding="utf-8")
    out = tmp_path / "out"
    try:
        with fake_provider.FakeProvider() as fake:
            res = CliRunner().invoke(
                app,
                ["evaluate", str(data), "--benchmark", name, "--backend", "openai",
                 "--model", "judge-acc90", "--template", "judge_short",
                 "-o", f"base_url={fake.url}/v1", "--out", str(out), "--json", *flags],
            )  # fmt: skip
            assert fake.errors == []
        rescored = CliRunner().invoke(
            app,
            ["score", str(data), str(out / "outputs.jsonl"), "--benchmark", name, "--json",
             *flags],
        )  # fmt: skip
    finally:
        reset_host()  # last: the CLI builds the host, which must not outlive STE_PLUGINS
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["result"]
    assert r["benchmark"] == name and r["error_count"] == 0 and r["missing_count"] == 0
    assert r["refused"] is None and r["comparability"] and r["rule_version"]
    lo, hi = r["headline_ci"]
    assert lo <= r["headline"] <= hi
    assert r["headline"] > 0.5, r  # a judge right 90% of the time
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.stdout)["result"] == r


def test_score_text_output_and_bad_benchmark_name(tmp_path: Path) -> None:
    data = tmp_path / "jb.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in judgebench_rows()[:2]), encoding="utf-8")
    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text(
        "".join(
            json.dumps({"pair_id": pid, "order": order, "text": "[[A]]"}) + "\n"
            for pid in ("p0", "p1")
            for order in ("AB", "BA")
        ),
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["score", str(data), str(outputs), "--benchmark", "judgebench"])
    assert res.exit_code == 0, res.output
    assert "judgebench: accuracy" in res.stdout and "= 0.0" in res.stdout
    assert "comparable:" in res.stdout
    bad = CliRunner().invoke(app, ["score", str(data), str(outputs), "--benchmark", "nope"])
    assert bad.exit_code == 2 and "--benchmark must be one of" in bad.output
    flag = CliRunner().invoke(
        app, ["score", str(data), str(outputs), "--benchmark", "judgebench", "--mode", "ratings"]
    )
    assert (
        flag.exit_code == 2 and "--mode applies to rewardbench2, not to judgebench" in flag.output
    )
    wrong = CliRunner().invoke(app, ["score", str(data), str(outputs), "--benchmark", "rmbench"])
    assert wrong.exit_code == 2 and str(data.resolve()) in wrong.output
    assert "Traceback" not in wrong.output
