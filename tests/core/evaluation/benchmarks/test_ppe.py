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
    assert res.headline_name == "pairwise accuracy (ties excluded)"
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


def correctness(qid: str, model: str, scores: list[Any], pairs: list[list[int]]) -> dict[str, Any]:
    """A row laid out as the hub's correctness sets are: one row per (question, model)."""
    row: dict[str, Any] = {"question_id": qid, "model_name": model, "prompt": f"q {qid}",
                           "scores": scores, "sampled_conflict_pairs": pairs,
                           "mean_score": sum(scores) / len(scores), "category": "math"}  # fmt: skip
    row.update({f"response_{k + 1}": f"{model} answer {k} to {qid}" for k in range(len(scores))})
    return row


def test_a_question_answered_by_several_models_keeps_each_models_pairs(tmp_path: Path) -> None:
    # The hub's sets have 4 rows per question_id (one per model_name) with boolean scores; a
    # repeated pair ([0, 1] then [1, 0]) is one comparison, judged and counted once.
    rows = [
        correctness("q1", "gpt-4o-mini", [True, False, True], [[0, 1], [1, 0], [1, 2]]),
        correctness("q1", "llama-3-8b", [False, True, False], [[0, 1], [0, 2]]),
    ]
    loaded = get_benchmark("ppe").load(write(tmp_path / "PPE-MATH-Best-of-K.jsonl", rows))
    assert [(p.id, p.chosen, p.subset) for p in loaded.pairs] == [
        ("q1:gpt-4o-mini:0>1", "gpt-4o-mini answer 0 to q1", "math"),
        ("q1:gpt-4o-mini:2>1", "gpt-4o-mini answer 2 to q1", "math"),
        ("q1:llama-3-8b:1>0", "llama-3-8b answer 1 to q1", "math"),
    ]
    assert loaded.data.repeated == 1
    records = [r for p in loaded.pairs for r in picks(p.id, "chosen", "chosen")]
    res = get_benchmark("ppe").score(loaded, records)
    assert res.headline == 1.0 and res.n_items == 3
    assert any("1 conflict pair(s) repeating" in w for w in res.warnings)
    assert "correctness_mean_of_sets" not in res.extra  # one set: the overall says it all


def test_sets_are_named_as_the_hub_names_them_and_averaged_unweighted(tmp_path: Path) -> None:
    # A folder holding two hub snapshots, each with a generically named shard: the set comes
    # from the snapshot's name, not from the shard's (nor from a "ppe-" higher up the path).
    def snapshot(name: str, rows: list[dict[str, Any]]) -> None:
        data = tmp_path / "ppe-data" / "hub" / f"datasets--lmarena-ai--PPE-{name}-Best-of-K"
        data = data / "snapshots"
        data = data / "0a1b" / "data"
        data.mkdir(parents=True)
        write(data / "train-00000-of-00001.jsonl", rows)

    snapshot("MATH", [correctness("m1", "x", [1, 0, 0], [[0, 1], [0, 2]])])
    snapshot("GPQA", [correctness("g1", "x", [0, 1], [[0, 1]])])
    loaded = get_benchmark("ppe").load(tmp_path / "ppe-data" / "hub")
    assert [(p.id, p.subset) for p in loaded.pairs] == [
        ("g1:x:1>0", "gpqa"),
        ("m1:x:0>1", "math"),
        ("m1:x:0>2", "math"),
    ]
    # gpqa 1 of 1 right, math 1 of 2: pooled 2/3, mean of the two sets (1 + 0.5) / 2 = 0.75.
    records = picks("g1:x:1>0", "chosen", "chosen") + picks("m1:x:0>1", "chosen", "chosen")
    records += picks("m1:x:0>2", "chosen", "rejected")
    res = get_benchmark("ppe").score(loaded, records, seed=3)
    assert res.headline == pytest.approx(2 / 3)
    assert res.headline_name == "pairwise accuracy (correct vs incorrect responses)"
    assert res.figures["math"].value == 0.5 and res.figures["gpqa"].value == 1.0
    mean = res.extra["correctness_mean_of_sets"]
    assert mean.value == pytest.approx(0.75) and mean.n == 3
    assert mean.ci is not None and mean.ci[0] <= 0.75 <= mean.ci[1]
    # A set whose every request failed is named, not silently left out of the mean.
    records = picks("m1:x:0>1", "chosen", "chosen") + picks("m1:x:0>2", "chosen", "chosen")
    records += [fail("g1:x:1>0", AB), fail("g1:x:1>0", BA)]
    res = get_benchmark("ppe").score(loaded, records, max_error_rate=0.5)
    assert res.extra["correctness_mean_of_sets"].value == 1.0
    assert res.extra["correctness_mean_of_sets"].errors == 1
    assert any("without a scored comparison: gpqa" in w for w in res.warnings)


def test_a_frozen_copy_names_the_sets_as_the_original_does(tmp_path: Path) -> None:
    # The loop copies official rows into the run directory before scoring; the copy keeps
    # each row's file, so the sets keep their names (not the copy's).
    from ste_core.evaluation.benchmarks import read_official_rows
    from ste_core.evaluation.benchmarks.base import ORIGIN_KEY

    src_dir = tmp_path / "sets"
    src_dir.mkdir()
    write(src_dir / "mbpp_plus.jsonl", [correctness("b1", "x", [1, 0], [[0, 1]])])
    write(src_dir / "ifeval.jsonl", [correctness("i1", "x", [0, 1], [[1, 0]])])
    original = get_benchmark("ppe").load(src_dir)
    copy = write(tmp_path / "bench_ppe.rows.jsonl", list(read_official_rows(src_dir).frozen()))
    frozen = get_benchmark("ppe").load(copy)
    assert [(p.id, p.subset) for p in frozen.pairs] == [(p.id, p.subset) for p in original.pairs]
    assert {p.subset for p in frozen.pairs} == {"mbpp_plus", "ifeval"}
    # The origin is taken out of the row: nothing downstream sees it as a column.
    assert all(ORIGIN_KEY not in row for _, row in read_official_rows(copy).rows)


def test_scores_that_are_not_numbers_are_a_bad_row(tmp_path: Path) -> None:
    row = correctness("q1", "x", [1, 0], [[0, 1]])
    row["scores"] = ["yes", "no"]
    with pytest.raises(DataFileError, match="'scores' must be numbers or booleans"):
        get_benchmark("ppe").load(write(tmp_path / "p.jsonl", [row]))


def test_reads_the_hubs_parquet_with_nested_pair_lists(tmp_path: Path) -> None:
    # The hub ships Parquet: scores list<bool>, sampled_conflict_pairs list<list<int64>>.
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [
        correctness("q7", "claude-3-haiku", [False, True, True], [[0, 1], [2, 0]]),
        correctness("q7", "gemma-2-9b", [True, False, False], [[0, 2]]),
    ]
    shard = tmp_path / "PPE-MBPP-Plus-Best-of-K" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), shard)
    loaded = get_benchmark("ppe").load(tmp_path / "PPE-MBPP-Plus-Best-of-K")
    assert [(p.id, p.subset) for p in loaded.pairs] == [
        ("q7:claude-3-haiku:1>0", "mbpp-plus"),
        ("q7:claude-3-haiku:2>0", "mbpp-plus"),
        ("q7:gemma-2-9b:0>2", "mbpp-plus"),
    ]
