"""Instruction loading (ste_core.stages.load): formats, fields, drops."""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from ste_core import hub
from ste_core.config import DataConfig
from ste_core.errors import ConfigurationError, MissingDependencyError
from ste_core.records import Instruction
from ste_core.stages.load import LoadReport, load_instructions, normalise_text

ROWS = [
    {"instruction": "Write a haiku about rain."},
    {"instruction": "  Write a haiku   about rain.  \r\n"},  # inner spaces kept: not a dup
    {"instruction": "Write a haiku about rain."},  # duplicate
    {"instruction": "   \n\t "},  # empty
    {"instruction": "x" * 50},  # too long (max_chars 40)
    {"prompt": "no instruction column here"},  # falls back to `prompt`
    {"other": 1},  # missing field
    {"instruction": "Sum 2 and 3.\n\n\n\nShow work."},
]


def _cfg(path: Path, **kw: Any) -> DataConfig:
    return DataConfig(path=str(path), max_chars=40, **kw)


def _load(cfg: DataConfig) -> tuple[list[Instruction], LoadReport]:
    report = LoadReport()
    return list(load_instructions(cfg, report)), report


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_normalise_text() -> None:
    assert normalise_text("  a  b \r\nc\u00a0d\u200b  \n\n\n\ne ") == "a  b\nc d\n\ne"
    assert normalise_text("def f():\n    return 1   \n") == "def f():\n    return 1"
    assert normalise_text("e\u0301") == "\u00e9"  # NFC


def test_jsonl_drops_are_counted_by_reason(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "in.jsonl", ROWS)
    with path.open("a") as fh:
        fh.write("{not json\n")
    insts, report = _load(_cfg(path))
    texts = [i.text for i in insts]
    assert texts == [
        "Write a haiku about rain.",
        "Write a haiku   about rain.",
        "no instruction column here",
        "Sum 2 and 3.\n\nShow work.",
    ]
    assert report.counts().flat() == {
        "read": 9,
        "kept": 4,
        "problems": 0,
        "dropped_bad_row": 1,
        "dropped_missing_field": 1,
        "dropped_empty": 1,
        "dropped_too_long": 1,
        "dropped_duplicate": 1,
        "dropped_missing_answer": 0,
    }
    assert report.examples["bad_row"].endswith(":9")
    assert all(i.id == Instruction.from_text(i.text).id for i in insts)


def test_a_bad_line_counts_where_it_is(tmp_path: Path) -> None:
    # In file order: it is read, and counts towards data.limit, like the rows around it.
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "one"}\n\n{broken\n{"text": "two"}\n{"text": "three"}\n')
    insts, report = _load(_cfg(path, limit=3))
    assert [i.text for i in insts] == ["one", "two"]
    assert (report.read, report.dropped["bad_row"]) == (3, 1)
    assert report.examples["bad_row"] == "in.jsonl:3"


def test_csv_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["question", "x"])
        w.writeheader()
        for i in range(5):
            w.writerow({"question": f"Question number {i}?", "x": i})
    insts, report = _load(_cfg(path, text_field="question", limit=3))
    assert [i.text for i in insts] == [f"Question number {i}?" for i in range(3)]
    assert report.read == 3


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"item {i}" for i in range(2500)]}), path)
    insts, report = _load(_cfg(path))
    assert len(insts) == 2500 and report.kept == 2500
    assert insts[-1].text == "item 2499"


def test_wildchat_conversation_first_user_turn(tmp_path: Path) -> None:
    rows = [
        {
            "conversation": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "First question?"},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": "Follow-up"},
            ]
        },
        {"conversation": [{"role": "assistant", "content": "only the bot"}]},
    ]
    path = _jsonl(tmp_path / "wc.jsonl", rows)
    insts, report = _load(_cfg(path, conversation_field="conversation"))
    assert [i.text for i in insts] == ["First question?"]
    assert report.dropped["missing_field"] == 1
    # Auto-detection finds the chat column too.
    insts, _ = _load(_cfg(path))
    assert [i.text for i in insts] == ["First question?"]


def test_disk_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"instruction": ["a?", "b?"]})})
    dd.save_to_disk(str(tmp_path / "ds"))
    insts, _ = _load(_cfg(tmp_path / "ds"))
    assert [i.text for i in insts] == ["a?", "b?"]
    with pytest.raises(ConfigurationError, match=r"data\.split: got 'test'"):
        _load(_cfg(tmp_path / "ds", split="test"))


def test_wrong_field_is_a_configuration_error_naming_the_columns(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "in.jsonl", [{"query": "a"}, {"query": "b"}])
    with pytest.raises(ConfigurationError, match=r"first row has columns: query"):
        _load(_cfg(path))


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        _load(_cfg(tmp_path / "nope.jsonl"))
    (tmp_path / "x.dat").write_text("")
    with pytest.raises(ConfigurationError, match=r"set data\.format"):
        _load(_cfg(tmp_path / "x.dat"))


def test_hub_without_datasets_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_datasets(name: str, *a: Any, **kw: Any) -> Any:
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(MissingDependencyError, match=r"self-taught-evaluators\[data\]"):
        list(load_instructions(DataConfig(dataset="allenai/WildChat-1M")))


@pytest.mark.parametrize("when", ["opening", "streaming"])
def test_an_unreachable_hub_is_one_message_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)  # the probe passes; datasets fails

    def rows() -> Any:
        yield {"text": "first"}
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)")

    def load_dataset(*args: Any, **kwargs: Any) -> Any:
        if when == "opening":
            raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)")
        return rows()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(ConfigurationError) as err:
        list(load_instructions(DataConfig(dataset="x/y", text_field="text")))
    message = str(err.value)
    assert message.startswith("data.dataset: could not read 'x/y' from the Hugging Face Hub")
    assert "HF_HUB_OFFLINE=1" in message and "hf download --repo-type dataset x/y" in message
    assert "data.path" in message


def test_an_unreachable_hub_fails_before_datasets_retries(
    monkeypatch: pytest.MonkeyPatch, unreachable_hub: str
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("asked the Hub"))
    with pytest.raises(ConfigurationError) as err:
        list(load_instructions(DataConfig(dataset="x/y", text_field="text")))
    assert f"{unreachable_hub} cannot be reached" in str(err.value)
    assert "hf download --repo-type dataset x/y" in str(err.value)


# -- problems with reference answers (data.recipe verifiable / mixed) --------------------------


def test_problems_keep_their_answer_and_a_row_without_one_is_a_counted_drop(
    tmp_path: Path,
) -> None:
    path = _jsonl(
        tmp_path / "p.jsonl",
        [
            {"question": "What is 2 + 2?", "answer": "4"},
            {"question": "How many legs has a spider?", "answer": 8},  # a JSON number
            {"question": "What is 1/2 of 9?", "answer": 4.5},
            {"question": "No answer here?"},
            {"question": "Blank answer?", "answer": "  "},
            {"question": "A boolean is no answer?", "answer": True},
        ],
    )
    items, report = _load(DataConfig(path=str(path), recipe="verifiable"))
    assert [(i.text, i.answer) for i in items] == [
        ("What is 2 + 2?", "4"),
        ("How many legs has a spider?", "8"),
        ("What is 1/2 of 9?", "4.5"),
    ]
    counts = report.counts()
    assert (counts.kept, counts.problems, counts.dropped["missing_answer"]) == (3, 3, 3)
    # An instruction is written as before: no answer key at all.
    assert "answer" not in Instruction.from_text("x").model_dump()


def test_a_wrong_answer_column_is_one_error_naming_the_columns(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"question": "What is 2 + 2?", "solution": "4"}])
    with pytest.raises(ConfigurationError) as err:
        _load(DataConfig(path=str(path), recipe="verifiable"))
    message = str(err.value)
    assert "data.answer_field = 'answer'" in message and "question, solution" in message
    items, _ = _load(DataConfig(path=str(path), recipe="verifiable", answer_field="solution"))
    assert items[0].answer == "4"


def test_the_mixed_pool_is_instructions_then_problems_deduplicated_across_both(
    tmp_path: Path,
) -> None:
    instructions = _jsonl(
        tmp_path / "i.jsonl",
        [{"instruction": "Write a haiku.", "answer": "ignored"}, {"instruction": "What is 2+2?"}],
    )
    problems = _jsonl(
        tmp_path / "p.csv.jsonl",
        [{"problem": "What is 2+2?", "answer": "4"}, {"problem": "What is 3+3?", "answer": "6"}],
    )
    cfg = DataConfig(
        path=str(instructions),
        recipe="mixed",
        verifiable_ratio=0.5,
        problems={"path": str(problems), "text_field": "problem"},
    )
    items, report = _load(cfg)
    assert [(i.text, i.answer) for i in items] == [
        ("Write a haiku.", None),  # an instruction's answer column is not read
        ("What is 2+2?", None),
        ("What is 3+3?", "6"),
    ]
    assert report.counts().dropped["duplicate"] == 1 and report.problems == 1
