"""End to end: `ste run` with the verifiable-answer recipe, alone and mixed with instructions.

The problems are the bundled examples/data/problems.jsonl. The fake provider's scripted model is
given their answer key, so it solves each problem right with the generator's accuracy
(`fake-acc60`: 0.6) and wrong otherwise, and as a judge it knows which solution is right (and
picks it with the judge's accuracy); the run must turn the solutions into pairs of a right and a
wrong one, count the problems without one, and train and score a judge on such pairs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ste_backends.openai.fake import OpenAIFake
from ste_backends.together.fake import TogetherFake
from ste_core.answers import check_numeric
from ste_core.config import dumps_toml
from ste_core.records import Drop, ResponsePair
from ste_core.stages.mix import mix_sizes
from ste_core.testing.fake_provider import FakeProvider, ScriptedModel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = ROOT / "examples" / "data" / "problems.jsonl"
INSTRUCTIONS = ROOT / "examples" / "data" / "instructions.jsonl"
STE = [str(Path(sys.executable).with_name("ste"))]


def _answers() -> dict[str, str]:
    rows = [json.loads(line) for line in PROBLEMS.read_text("utf-8").splitlines()]
    return {row["question"]: row["answer"] for row in rows}


@pytest.fixture
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    # Both fakes know the answers: the together fake serves the fine-tuned judge.
    with (
        OpenAIFake(latency_s=0.002, model=ScriptedModel(answers=_answers())) as oa,
        TogetherFake(model=ScriptedModel(answers=_answers())) as tg,
    ):
        yield oa, tg
        assert oa.errors == [] and tg.errors == []


def _config(tmp: Path, oa: FakeProvider, tg: FakeProvider, data: dict[str, Any]) -> Path:
    openai = {"backend": "openai", "options": {"base_url": oa.url + "/v1"}}
    lim = {"concurrency": 4, "backoff_initial_s": 0.01, "backoff_max_s": 0.1}
    cfg = {
        "run": {"name": "recipes", "output_dir": str(tmp / "runs"), "iterations": 1, "seed": 1},
        "data": data,
        "generator": {**openai, "model": "fake-acc60", "limits": lim},
        "judge": {**openai, "model": "fake-acc70", "samples_per_order": 3, "limits": lim},
        "finetune": {
            "backend": "together",
            "base_model": "fake-acc70",
            "poll_interval_s": 0.05,
            "options": {"base_url": tg.url},
            "inference_options": {"base_url": tg.url},
        },
        "evaluation": {"eval_size": 6},
    }
    path = tmp / "config.toml"
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    return path


def _run(config: Path) -> tuple[Path, dict[tuple[int, str], dict[str, int]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STE_", "TOGETHER_"))}
    env["TOGETHER_API_KEY"] = "fake-together-key"
    proc = subprocess.run(
        [*STE, "run", str(config), "--log-json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=config.parent,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    funnel = {
        (e["iteration"], e["stage"]): e["counts"]
        for e in events
        if e["event"] == "stage_finished" and not e["skipped"]
    }
    return config.parent / "runs" / "recipes", funnel


def _pairs(path: Path) -> list[ResponsePair]:
    return [ResponsePair.model_validate_json(ln) for ln in path.read_text().splitlines()]


def _assert_right_versus_wrong(pairs: list[ResponsePair], answers: dict[str, str]) -> None:
    for p in pairs:
        assert p.recipe == "verifiable"
        reference = answers[p.instruction]
        assert p.metadata["reference"] == reference
        assert check_numeric(p.chosen, reference).status == "correct"
        assert check_numeric(p.rejected, reference).status == "incorrect"


def test_the_verifiable_recipe_trains_a_judge_on_right_versus_wrong_solutions(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    data = {"path": str(PROBLEMS), "recipe": "verifiable", "samples_per_problem": 4}
    run, funnel = _run(_config(tmp_path, oa, tg, data))
    answers = _answers()

    # No baseline or worse response: the pairs are solutions, each a right and a wrong one.
    assert (1, "baseline") not in funnel and (1, "worse") not in funnel
    assert not (run / "iter_1" / "baselines.jsonl").exists()
    pairs = _pairs(run / "iter_1" / "pairs.jsonl")
    _assert_right_versus_wrong(pairs, answers)
    eval_pairs = _pairs(run / "eval_pairs.jsonl")
    _assert_right_versus_wrong(eval_pairs, answers)
    assert not {p.instruction for p in pairs} & {p.instruction for p in eval_pairs}

    # Every training problem is a pair or a counted drop; the fake's 0.6 gives both kinds.
    solve = funnel[(1, "solve")]
    train = sum(1 for _ in (run / "data" / "train.jsonl").open())
    assert solve["problems"] == train == len(answers) - 6
    drops = [
        Drop.model_validate_json(ln)
        for ln in (run / "iter_1" / "solve_drops.jsonl").read_text().splitlines()
    ]
    assert solve["pairs"] == len(pairs) > 0
    assert solve["pairs"] + len(drops) == train
    assert {d.reason for d in drops} <= {"no_correct_solution", "no_incorrect_solution"}
    assert solve["solutions"] == 4 * train
    assert solve["correct"] > 0 and solve["incorrect"] > 0
    assert solve["correct"] + solve["incorrect"] + solve["unparseable"] == solve["solutions"]

    # The judge was trained on them and scored on the verifiable eval pairs.
    assert funnel[(1, "judge")]["failures"] == 0
    metrics = {i: json.loads((run / f"iter_{i}" / "metrics.json").read_text()) for i in (0, 1)}
    assert metrics[1]["judge_model"].endswith("it1-ft1")
    assert metrics[1]["funnel"]["pairs"] == len(pairs)
    # The fine-tuned judge (the fake's accuracy rises a step) is no worse on the same pairs.
    assert metrics[1]["eval"]["accuracy"] >= metrics[0]["eval"]["accuracy"]


def test_the_mixed_recipe_keeps_the_ratio_of_problem_pairs(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    data = {
        "path": str(INSTRUCTIONS),
        "recipe": "mixed",
        "verifiable_ratio": 0.25,
        "samples_per_problem": 4,
        "problems": {"path": str(PROBLEMS)},
    }
    run, funnel = _run(_config(tmp_path, oa, tg, data))
    it1 = run / "iter_1"
    made = {
        "instructions": _pairs(it1 / "instruction_pairs.jsonl"),
        "verifiable": _pairs(it1 / "verifiable_pairs.jsonl"),
    }
    assert {p.recipe for p in made["instructions"]} == {"instructions"}
    _assert_right_versus_wrong(made["verifiable"], _answers())

    kept = _pairs(it1 / "pairs.jsonl")
    by_recipe = {r: [p for p in kept if p.recipe == r] for r in made}
    want = mix_sizes(len(made["instructions"]), len(made["verifiable"]), 0.25)
    assert (len(by_recipe["instructions"]), len(by_recipe["verifiable"])) == want
    assert 0.15 <= len(by_recipe["verifiable"]) / len(kept) <= 0.35
    for recipe, pairs in by_recipe.items():
        assert {p.id for p in pairs} <= {p.id for p in made[recipe]}
    mix = funnel[(1, "mix")]
    assert mix["kept_instructions"] + mix["kept_verifiable"] == len(kept)
    assert mix["over_ratio"] == len(made["instructions"]) + len(made["verifiable"]) - len(kept)
    # The judge judged exactly the mixed pairs.
    judged = {json.loads(ln)["pair_id"] for ln in (it1 / "judgements.jsonl").open()}
    assert judged == {p.id for p in kept}

    # Eval pairs follow each held-out item's recipe: both kinds, all of them.
    eval_pairs = _pairs(run / "eval_pairs.jsonl")
    assert {p.recipe for p in eval_pairs} <= {"instructions", "verifiable"}
    counts = funnel[(0, "eval_pairs")]
    assert counts["pairs"] == len(eval_pairs)
