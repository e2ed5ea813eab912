"""ste_core.run.io: the one reader (JSONL, JSON arrays, Parquet) and the atomic JSONL writers."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ste_core.errors import ConfigurationError, DataFileError
from ste_core.run.io import SkippedRow, jsonl_writer, read_rows, write_jsonl


class Row(BaseModel):
    text: str
    n: int = 0


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


MIXED = '{"text": "a"}\n\n{"text": "b", "n": 2}\n{broken\n{"text": "c"}\n'


# -- reading ----------------------------------------------------------------------------------


def test_jsonl_raise_stops_at_the_bad_line_with_its_number(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path / "p.jsonl", MIXED))
    assert next(rows) == {"text": "a"}
    assert (next(rows), rows.line) == ({"text": "b", "n": 2}, 3)  # the blank line 2 counts
    with pytest.raises(DataFileError, match=r"p\.jsonl:4: not valid JSON \(Expecting"):
        next(rows)


def test_jsonl_skip_records_the_bad_line_and_goes_on(tmp_path: Path) -> None:
    rows = read_rows(write(tmp_path / "p.jsonl", MIXED), on_error="skip")
    seen = [(row["text"], rows.line) for row in rows]
    assert seen == [("a", 1), ("b", 3), ("c", 5)]
    assert [s.line for s in rows.skipped] == [4]
    assert rows.skipped[0].reason.startswith("not valid JSON")


def test_rows_are_read_lazily(tmp_path: Path) -> None:
    # Nothing is read before the first row is asked for, and no further than needed.
    rows = read_rows(tmp_path / "later.jsonl")
    write(tmp_path / "later.jsonl", '{"text": "a"}\n{broken\n')
    assert next(rows) == {"text": "a"}


def test_a_line_that_is_not_utf8_is_a_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n')
    with pytest.raises(DataFileError, match=r"p\.jsonl:2: not UTF-8 text"):
        list(read_rows(path))
    with pytest.raises(DataFileError, match=r"p\.jsonl:2: not valid JSON"):
        list(read_rows(path, Row))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"nope\.jsonl: no such file"):
        list(read_rows(tmp_path / "nope.jsonl"))


def test_the_error_is_a_configuration_error() -> None:
    # So `ste run` reports it as one (exit code 2, no traceback).
    assert issubclass(DataFileError, ConfigurationError)


def test_json_array(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", json.dumps([{"text": "a"}, {"text": "b", "n": 1}]))
    rows = read_rows(path, Row)
    assert [(r, rows.line) for r in rows] == [(Row(text="a"), 1), (Row(text="b", n=1), 2)]
    with pytest.raises(DataFileError, match=r"p\.json: a \.json file must hold a list"):
        list(read_rows(write(tmp_path / "p.json", '{"text": "a"}')))
    with pytest.raises(DataFileError, match=r"p\.json: not valid JSON \(.*line 1 column 2"):
        list(read_rows(write(tmp_path / "p.json", "[oops]")))


def test_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "lines.json", '{"text": "a"}\n{"text": "b"}\n')
    assert [r["text"] for r in read_rows(path, format="jsonl")] == ["a", "b"]


def test_parquet_streams_in_batches(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(2500)], "n": range(2500)}), path)
    rows = read_rows(path, Row)
    got = [(r, rows.line) for r in rows]
    assert len(got) == 2500  # more than one batch of 1024
    assert got[-1] == (Row(text="t2499", n=2499), 2500)
    assert next(read_rows(path)) == {"text": "t0", "n": 0}


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = write(tmp_path / "p.parquet", "not parquet at all")
    with pytest.raises(DataFileError, match=r"p\.parquet: not a readable Parquet file"):
        list(read_rows(path))


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "pyarrow":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = write(tmp_path / "p.parquet", "")
    with pytest.raises(DataFileError, match=r"p\.parquet: reading Parquet needs pyarrow") as info:
        list(read_rows(path))
    assert "pip install 'self-taught-evaluators[data]'" in str(info.value)


def test_validation_errors_name_the_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", '{"text": "a"}\n{"n": 1}\n{"text": "c", "n": "many"}\n')
    with pytest.raises(DataFileError, match=r"p\.jsonl:2: text: Field required"):
        list(read_rows(path, Row))
    rows = read_rows(path, Row, on_error="skip")
    assert list(rows) == [Row(text="a")]
    assert rows.skipped == [
        SkippedRow(2, "text: Field required"),
        SkippedRow(3, "n: Input should be a valid integer, unable to parse string as an integer"),
    ]


def test_reject_is_the_callers_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "p.jsonl", '{"text": "a"}\n{"text": ""}\n{"text": "c"}\n')
    rows = read_rows(path, Row, on_error="skip")
    kept = []
    for row in rows:
        if not row.text:
            rows.reject("empty text")
            continue
        kept.append(row.text)
    assert kept == ["a", "c"] and rows.skipped == [SkippedRow(2, "empty text")]
    rows = read_rows(path, Row)
    with pytest.raises(DataFileError, match=r"p\.jsonl:2: text: not an int"):
        for row in rows:
            if not row.text:
                rows.reject(ValueError("text: not an int"))


# -- writing ----------------------------------------------------------------------------------


def test_byte_format_of_records_and_dicts(tmp_path: Path) -> None:
    # Records compact (model_dump_json), dicts with json.dumps' default separators; both keep
    # non-ASCII text as is. The run's output files are compared byte for byte across versions.
    path = tmp_path / "out.jsonl"
    assert write_jsonl(path, [Row(text="café", n=1), {"text": "café", "n": [1, 2]}]) == 2
    expected = '{"text":"café","n":1}\n{"text": "café", "n": [1, 2]}\n'
    assert path.read_bytes() == expected.encode("utf-8")


def test_writer_leaves_no_partial_file_when_the_writing_code_raises(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"old": 1}])
    with pytest.raises(RuntimeError, match="boom"), jsonl_writer(path) as w:
        w.write({"new": 1})
        raise RuntimeError("boom")
    assert path.read_text() == '{"old": 1}\n'  # the previous version, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]

    def rows() -> Any:
        yield {"new": 1}
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_jsonl(tmp_path / "fresh.jsonl", rows())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
