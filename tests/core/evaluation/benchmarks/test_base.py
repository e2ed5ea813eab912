"""What the benchmark scorers share: official files in every form, the two-order rules, the
error-rate gate and figure intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ste_core.errors import DataFileError
from ste_core.evaluation.benchmarks import read_official_rows
from ste_core.evaluation.benchmarks.base import error_gate, figure, two_order_score
from ste_core.records import Order


def test_reads_jsonl_json_and_a_folder_of_data_files(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n', encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps([{"x": 3}]), encoding="utf-8")
    assert [r["x"] for _, r in read_official_rows(tmp_path / "a.jsonl").rows] == [1, 2]
    assert [r["x"] for _, r in read_official_rows(tmp_path).rows] == [1, 2, 3]


def test_bad_rows_are_skipped_and_reported(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n[1]\nnot json\n', encoding="utf-8")
    src = read_official_rows(tmp_path / "a.jsonl", on_error="skip")
    assert len(src.rows) == 1 and [s.line for s in src.skipped] == [2, 3]


def test_missing_paths_and_empty_folders_say_so(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_official_rows(tmp_path / "nope.jsonl")
    with pytest.raises(DataFileError, match="without data files"):
        read_official_rows(tmp_path)


def test_reads_a_datasets_save_to_disk_folder(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from datasets import Dataset

    Dataset.from_list([{"x": 1}, {"x": 2}]).save_to_disk(str(tmp_path / "ds"))
    assert [r["x"] for _, r in read_official_rows(tmp_path / "ds").rows] == [1, 2]


@pytest.mark.parametrize(
    ("ab", "ba", "mean", "consistent", "counter"),
    [
        ("A", "B", 1.0, 1.0, 1.0),  # right in both orders
        ("A", "A", 0.5, 0.0, 0.0),  # always the first shown: right once, wrong once
        ("A", "tie", 0.75, 0.0, 1.0),
        ("A", None, 0.75, 0.0, 1.0),
        ("B", "A", 0.0, 0.0, 0.0),
        (None, None, 0.5, 0.0, 0.0),
    ],
)
def test_two_order_rules(
    ab: str | None, ba: str | None, mean: float, consistent: float, counter: float
) -> None:
    v = {Order.AB: ab, Order.BA: ba}
    assert two_order_score(v, "mean") == mean
    assert two_order_score(v, "consistent") == consistent
    assert two_order_score(v, "counter") == counter


def test_error_gate() -> None:
    assert error_gate(100, 5, 5, 0.10) == (0.10, None)
    rate, why = error_gate(100, 6, 5, 0.10)
    assert rate == 0.11 and why is not None and "6 failed requests, 5 without output" in why
    with pytest.raises(ValueError):
        error_gate(10, 0, 0, 1.5)


def test_figure_intervals() -> None:
    binary = figure([1, 0, 1, 1])
    assert binary.value == 0.75 and binary.ci is not None and binary.ci[0] < 0.75 < binary.ci[1]
    fractional = figure([0.25, 1, 0.5, 0], n_resamples=200)
    assert fractional.value == pytest.approx(0.4375) and fractional.ci is not None
    assert figure([], errors=2).value is None
