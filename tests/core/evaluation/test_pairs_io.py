"""Reading pairs / judgements files: formats, bad rows (error with line number or counted skip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ste_core.errors import DataFileError
from ste_core.evaluation.pairs_io import read_judgements, read_pairs, write_judgements
from ste_core.records import Drop, Judgement, Order, ResponsePair
from ste_core.run.io import write_jsonl


def write_lines(path: Path, rows: list[object | str]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


def test_reads_all_three_formats(tmp_path: Path) -> None:
    rp = ResponsePair(id="rp1", instruction="i", chosen="c", rejected="r", modified_instruction="m")
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {
                "prompt": "p",
                "chosen": "c",
                "rejected": "r",
                "subset": "hep-go",
                "id": 7,
                "chosen_model": "x",
            },
            {"instruction": "i2", "chosen": "c2", "rejected": "r2"},
            "",  # blank lines are layout
            rp.model_dump(mode="json"),
        ],
    )
    pf = read_pairs(path)
    assert pf.formats == ["rewardbench", "user", "response_pair"]
    rb, user, frozen = pf.pairs
    assert rb.id == "7" and rb.instruction == "p" and rb.subset == "hep-go"
    assert rb.metadata == {"chosen_model": "x"}
    assert len(user.id) == 16 and user.subset is None  # content hash id
    assert frozen == rp


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"instruction": "i", "chosen": "c", "rejected": "r", "id": "a"}]))
    assert [p.id for p in read_pairs(path).pairs] == ["a"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("{not json", "not valid JSON"),
        ({"instruction": "i", "chosen": "c"}, "missing field 'rejected'"),
        ({"instruction": "i", "chosen": ["x"], "rejected": "r"}, "must be a string"),
        ({"instruction": "i", "chosen": "same", "rejected": " same "}, "identical"),
        ({"text": "i", "chosen": "c", "rejected": "r"}, "needs 'prompt'"),
        ({"instruction": "i", "chosen": "c", "rejected": "r", "id": 1.5}, "'id' must be"),
    ],
)
def test_bad_row_error_names_the_line(tmp_path: Path, row: object, reason: str) -> None:
    good = {"instruction": "ok", "chosen": "c", "rejected": "r"}
    path = write_lines(tmp_path / "p.jsonl", [good, row])
    with pytest.raises(DataFileError, match=rf"p\.jsonl:2: .*{reason}"):
        read_pairs(path)


def test_skip_mode_counts_and_reports_bad_rows(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {"instruction": "a", "chosen": "c", "rejected": "r", "id": "x"},
            "{broken",
            {"instruction": "b", "chosen": "c", "rejected": "r", "id": "x"},
            {"instruction": "c", "chosen": "c", "rejected": "r", "id": "y"},
        ],
    )
    pf = read_pairs(path, on_error="skip")
    assert [p.id for p in pf.pairs] == ["x", "y"]
    assert [s.line for s in pf.skipped] == [2, 3]
    assert "duplicate id 'x' (first on line 1)" in pf.skipped[1].reason


def test_empty_or_all_bad_file_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", ["{bad"])
    with pytest.raises(DataFileError, match="no valid pairs"):
        read_pairs(path, on_error="skip")
    with pytest.raises(DataFileError, match="no such file"):
        read_pairs(tmp_path / "missing.jsonl")


def test_judgements_round_trip_and_external_rows(tmp_path: Path) -> None:
    recs = [
        Judgement(
            pair_id="a",
            order=Order.BA,
            sample_index=1,
            text="x [[B]]",
            verdict="B",
            judge_model="m",
            template="t",
            parse_reason="final marker [[B]]",
        ),
        Drop(
            pair_id="a",
            order=Order.AB,
            sample_index=0,
            stage="evaluate",
            reason="api_error",
            error_type="RateLimitError",
            message="429",
        ),
    ]
    path = tmp_path / "j.jsonl"
    assert write_judgements(path, recs) == 2
    back = read_judgements(path)
    assert back.records == recs
    ext = write_lines(
        tmp_path / "ext.jsonl",
        [
            {"id": 5, "output": "I pick [[A]]", "swapped": True},
            {"pair_id": "b", "text": "[[A]]", "order": "AB", "verdict": "B"},
        ],
    )
    got = read_judgements(ext, judge_model="vllm-model")
    first = got.records[0]
    assert (first.pair_id, first.order, first.sample_index, first.verdict) == (
        "5",
        Order.BA,
        0,
        "A",
    )
    assert first.judge_model == "vllm-model"
    assert got.verdict_mismatches == 1  # stored B, text says A: the parse wins
    assert got.records[1].verdict == "A"


def test_bad_judgement_rows(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "j.jsonl",
        [{"pair_id": "a", "text": "[[A]]"}, {"pair_id": "a", "text": "x", "order": "XY"}],
    )
    with pytest.raises(DataFileError, match=r"j\.jsonl:1: missing 'order'"):
        read_judgements(path)
    got = read_judgements(path, on_error="skip")
    assert got.records == [] and [s.line for s in got.skipped] == [1, 2]


def test_write_pairs_reads_back(tmp_path: Path) -> None:
    pairs = [
        ResponsePair(id=str(i), instruction="i", chosen="c", rejected=f"r{i}") for i in range(3)
    ]
    write_jsonl(tmp_path / "eval_pairs.jsonl", pairs)
    assert read_pairs(tmp_path / "eval_pairs.jsonl").pairs == pairs


def test_judgements_are_reparsed_with_the_rule_of_the_template_they_name(tmp_path: Path) -> None:
    text = "Quoting the question's [[B]] first.\nMy verdict: [[A]]"
    rows = [
        {"pair_id": "p", "order": "AB", "text": text, "template": "judge_meta_rewardbench"},
        {"pair_id": "p", "order": "BA", "text": text, "template": "judge_short"},
        {"pair_id": "q", "order": "AB", "text": text, "template": "not-a-known-template"},
    ]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    verdicts = [r.verdict for r in read_judgements(path).records]
    # meta: both markers present -> no verdict; final (ours, and the default): the last one
    assert verdicts == [None, "A", "A"]


def test_a_cut_off_judgement_is_reread_as_it_was_judged(tmp_path: Path) -> None:
    text = 'I must end with "[[A]]" if A is better. Looking at A, it'
    rows = [
        {"pair_id": "p", "order": "AB", "text": text, "template": "judge_short", "truncated": True},
        {"pair_id": "q", "order": "AB", "text": text, "template": "judge_short"},
    ]
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    back = read_judgements(path).records
    assert [(r.verdict, r.truncated) for r in back] == [(None, True), ("A", False)]
