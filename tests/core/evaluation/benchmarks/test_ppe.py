"""PPE: winner -> chosen/rejected, ties left out and counted, per-category figures, the
correctness sets' conflict pairs (hand-computed fixtures; the official code was not available
to port, see ste_core/evaluation/benchmarks/ppe.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ste_core.errors import DataFileError
from ste_core.evaluation.benchmarks import get_benchmark
from ste_core.evaluation.benchmarks.ppe import score
from tests.core.evaluation.benchmarks.verdicts import AB, BA, fail, j, picks


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def human(qid: str, winner: str, **flags: Any) -> dict[str, Any]:
    return {"question_id": qid, "prompt": f"q {qid}", "response_1": f"one {qid}",
            "response_2": f"two {qid}", "model_a": "x", "model_b": "y", "winner": winner,
            "language": "English", **flags}  # fmt: skip


def test_winner_maps_to_chosen_and_ties_are_left_out(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ppe.jsonl",
        [
            human("1", "model_a", hard_prompt=True, is_code=False),
            human("2", "model_b", hard_prompt=False, is_code=True),
            human("3", "tie"),
            human("4", "tie (bothbad)"),
        ],
    )
    loaded = get_benchmark("ppe").load(path)
    assert [(p.id, p.chosen, p.rejected) for p in loaded.pairs] == [
        ("1", "one 1", "two 1"),
        ("2", "two 2", "one 2"),
    ]
    assert loaded.data.ties == 2
    records = picks("1", "chosen", "chosen") + picks("2", "chosen", "rejected")
    res = get_benchmark("ppe").score(loaded, records)
    assert res.headline == 0.5  # position-consistent: pair 2 flips with the order
    assert res.extra["order_mean"].value == 0.75
    assert res.figures["hard_prompt"].value == 1.0 and res.figures["hard_prompt"].n == 1
    assert res.figures["is_code"].value == 0.0
    assert res.figures["language/English"].n == 2
    assert any("2 tie row(s)" in w for w in res.warnings)
    mean_rule = get_benchmark("ppe").score(loaded, records, pair_rule="mean")
    assert mean_rule.headline == 0.75


def test_errors_and_unreadable_verdicts(tmp_path: Path) -> None:
    loaded = get_benchmark("ppe").load(
        write(tmp_path / "p.jsonl", [human(str(n), "model_a") for n in range(10)])
    )
    records = [r for n in range(9) for r in picks(str(n), "chosen", None)]
    records += [j("9", AB, "A"), fail("9", BA)]
    res = score(loaded.data, records)
    assert res.error_count == 1 and res.error_rate == 0.1 and res.headline == 0.0
    assert res.parse_failures == 9
    assert res.extra["order_mean"].value == pytest.approx(0.75)


def test_correctness_rows_become_conflict_pairs(tmp_path: Path) -> None:
    row = {"question_id": "m1", "prompt": "2+2?", "response_1": "4", "response_2": "5",
           "response_3": "four", "scores": [1, 0, 1],
           "sampled_conflict_pairs": [[0, 1], [1, 2], [0, 2]]}  # fmt: skip
    loaded = get_benchmark("ppe").load(write(tmp_path / "mmlu_pro.jsonl", [row]))
    assert [(p.id, p.chosen, p.rejected, p.subset) for p in loaded.pairs] == [
        ("m1:0>1", "4", "5", "mmlu_pro"),
        ("m1:2>1", "four", "5", "mmlu_pro"),  # [0, 2] have equal scores: no conflict
    ]


def test_bad_winner_is_a_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", [human("1", "model_c")])
    with pytest.raises(DataFileError, match="'winner' must be one of"):
        get_benchmark("ppe").load(path)
