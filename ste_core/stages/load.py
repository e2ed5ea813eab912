"""Stage `load`: read, normalise and de-duplicate the instructions of [data] into
data/instructions.jsonl.

With the verifiable recipe the rows are problems and each must have a reference answer (column
`data.answer_field`; a row without one is dropped as `missing_answer`); with the mixed recipe the
instructions of data.path are followed by the problems of [data.problems], in one pool (an
instruction carries `answer = None`, a problem its answer), de-duplicated across both.

Loading streams rows from JSONL, CSV, Parquet, a `datasets.save_to_disk` directory or a Hugging
Face hub dataset (the last three import pyarrow / datasets lazily and name the extra to install),
takes the instruction text from a plain column or from the first user turn of a chat column
(WildChat's `conversation`), normalises whitespace and drops empty, over-long and duplicate items.
Every dropped row is counted by reason; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ste_core import hub
from ste_core.config import DataConfig
from ste_core.errors import ConfigurationError, MissingDependencyError
from ste_core.records import Funnel, Instruction
from ste_core.run.io import Rows, jsonl_writer, read_rows
from ste_core.stages.base import Counts, Stage, Step, flat_counts

__all__ = [
    "DEFAULT_TEXT_FIELDS",
    "STAGE",
    "LoadCounts",
    "LoadReport",
    "detect_format",
    "extract_answer",
    "extract_text",
    "iter_rows",
    "load_instructions",
    "normalise_text",
]

#: Columns tried in order when `data.text_field` is not given.
DEFAULT_TEXT_FIELDS = ("instruction", "prompt", "text", "question")
#: Chat columns tried when no text column exists.
DEFAULT_CHAT_FIELDS = ("conversation", "messages")

DROP_REASONS = ("bad_row", "missing_field", "empty", "too_long", "duplicate", "missing_answer")


class LoadCounts(Counts):
    """Rows read, instructions kept (of which `problems` have a reference answer), rows dropped
    by reason (`DROP_REASONS`)."""

    labels: ClassVar[Mapping[str, str]] = {
        "read": "rows read",
        "kept": "instructions kept",
        "problems": "of them problems with an answer",
    }

    read: int = 0
    kept: int = 0
    problems: int = 0
    dropped: dict[str, int] = flat_counts("dropped_")

    def funnel(self) -> Funnel:
        drops = {f"load_{reason}": n for reason, n in self.dropped.items() if n}
        return Funnel(instructions=self.kept, drops=drops)


@dataclass
class LoadReport:
    """The loading tally while it runs: counts, plus where each kind of drop first happened."""

    read: int = 0
    kept: int = 0
    problems: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, where)

    def counts(self) -> LoadCounts:
        return LoadCounts(
            read=self.read,
            kept=self.kept,
            problems=self.problems,
            dropped={r: self.dropped.get(r, 0) for r in DROP_REASONS},
        )


# --------------------------------------------------------------------------------------------
# Normalising
# --------------------------------------------------------------------------------------------

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\x0b\x0c]")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalise_text(text: str) -> str:
    """Canonical form of an instruction: NFC, one kind of line break and space, no trailing
    spaces, at most one blank line in a row, stripped ends.

    Leading indentation and single spaces are kept (instructions contain code and tables).
    """
    text = unicodedata.normalize("NFC", text).translate(_ZERO_WIDTH)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ODD_SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text + "\n")
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def detect_format(cfg: DataConfig) -> str:
    """The concrete input format (`jsonl`, `csv`, `parquet`, `disk` or `hub`)."""
    if cfg.format != "auto":
        return cfg.format
    if cfg.dataset is not None:
        return "hub"
    assert cfg.path is not None
    path = Path(cfg.path)
    if path.is_dir():
        return "disk"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ConfigurationError(
        f"data.path: cannot tell the format of {path.name!r} from its suffix; set data.format "
        "to one of jsonl, csv, parquet, disk"
    )


def iter_rows(cfg: DataConfig) -> Iterator[tuple[str, Any]]:
    """(where, row) for every row of the source, lazily; `row` is None for an unreadable line."""
    fmt = detect_format(cfg)
    limit = cfg.limit
    rows = _ROW_READERS[fmt](cfg)
    for n, item in enumerate(rows):
        if limit is not None and n >= limit:
            break
        yield item


def _need_file(cfg: DataConfig) -> Path:
    assert cfg.path is not None
    path = Path(cfg.path)
    if not path.exists():
        raise ConfigurationError(f"data.path: got {str(path)!r}; no such file or directory")
    return path


def _file_rows(cfg: DataConfig) -> Iterator[tuple[str, Any]]:
    """JSONL or Parquet rows. A line that is not JSON comes as None in its place, so it counts
    as read (and towards data.limit) like any other row."""
    path = _need_file(cfg)
    fmt = detect_format(cfg)
    rows = read_rows(path, format="parquet" if fmt == "parquet" else "jsonl", on_error="skip")
    sep = "#" if fmt == "parquet" else ":"  # a Parquet row has a number, not a line
    for row in rows:
        yield from _unreadable(path, rows)
        yield f"{path.name}{sep}{rows.line}", row
    yield from _unreadable(path, rows)


def _unreadable(path: Path, rows: Rows[Any]) -> Iterator[tuple[str, None]]:
    """The lines `rows` skipped since the last call, as (where, None). They are taken off
    `rows.skipped`: the load report counts them instead."""
    while rows.skipped:
        yield f"{path.name}:{rows.skipped.pop(0).line}", None


def _csv_rows(cfg: DataConfig) -> Iterator[tuple[str, Any]]:
    path = _need_file(cfg)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh, delimiter=delimiter), start=2):
            yield f"{path.name}:{i}", row


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("data (datasets)", "data", ["datasets"]) from None
    return datasets


def _disk_rows(cfg: DataConfig) -> Iterator[tuple[str, Any]]:
    path = _need_file(cfg)
    datasets = _import_datasets()
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if cfg.split not in ds:
            raise ConfigurationError(
                f"data.split: got {cfg.split!r}; {path} has splits {', '.join(ds)}"
            )
        ds = ds[cfg.split]
    for i, row in enumerate(ds):
        yield f"{path.name}#{i}", row


def _hub_rows(cfg: DataConfig) -> Iterator[tuple[str, Any]]:
    datasets = _import_datasets()
    assert cfg.dataset is not None
    # A stream needs the Hub; without the probe, datasets retries for 25 s before failing.
    if not hub.offline_by_environment() and not hub.hub_reachable():
        raise ConfigurationError(
            _unreachable(cfg.dataset, f"{hub.hub_endpoint()} cannot be reached")
        )
    try:
        # streaming=True: rows arrive lazily, the dataset is never materialised in memory.
        ds = datasets.load_dataset(cfg.dataset, split=cfg.split, streaming=True)
        for i, row in enumerate(ds):
            yield f"{cfg.dataset}#{i}", row
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise ConfigurationError(_unreachable(cfg.dataset, exc)) from exc
    except Exception as exc:  # datasets' own errors: not found, gated, no such split
        if type(exc).__name__ in (
            "DatasetNotFoundError",
            "GatedRepoError",
            "RepositoryNotFoundError",
        ):
            raise ConfigurationError(
                f"data.dataset: {cfg.dataset!r} on the Hugging Face Hub: {exc}. Check the name "
                "(and, for a gated dataset, that HF_TOKEN is set and has access)."
            ) from exc
        raise


def _unreachable(name: str, exc: BaseException | str) -> str:
    return (
        f"data.dataset: could not read {name!r} from the Hugging Face Hub ({exc}). Without "
        f"network access: download it where there is (`hf download --repo-type dataset {name}`) "
        "and copy the cache here with HF_HUB_OFFLINE=1 set, or export the instructions to a "
        "JSONL or Parquet file (or a `datasets` save_to_disk directory) and give it as data.path."
    )


_ROW_READERS: dict[str, Callable[[DataConfig], Iterator[tuple[str, Any]]]] = {
    "jsonl": _file_rows,
    "csv": _csv_rows,
    "parquet": _file_rows,
    "disk": _disk_rows,
    "hub": _hub_rows,
}


# --------------------------------------------------------------------------------------------
# Text extraction
# --------------------------------------------------------------------------------------------


def _first_user_turn(conversation: Any) -> str | None:
    if isinstance(conversation, str):  # a JSON-encoded list (CSV exports)
        try:
            conversation = json.loads(conversation)
        except json.JSONDecodeError:
            return None
    if not isinstance(conversation, list | tuple):
        return None
    for turn in conversation:
        if isinstance(turn, dict) and turn.get("role") == "user":
            content = turn.get("content")
            return content if isinstance(content, str) else None
    return None


def extract_text(row: Any, cfg: DataConfig) -> str | None:
    """The raw instruction text of a row, or None when the configured field is missing."""
    if not isinstance(row, dict):
        return None
    if cfg.conversation_field:
        return _first_user_turn(row.get(cfg.conversation_field))
    if cfg.text_field:
        value = row.get(cfg.text_field)
        return value if isinstance(value, str) else None
    for name in DEFAULT_TEXT_FIELDS:
        value = row.get(name)
        if isinstance(value, str):
            return value
    for name in DEFAULT_CHAT_FIELDS:
        if name in row:
            return _first_user_turn(row[name])
    return None


def extract_answer(row: Any, answer_field: str) -> str | None:
    """The reference answer of a problem row (a number column is read as its text), or None
    when the row has none."""
    value = row.get(answer_field) if isinstance(row, dict) else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return value.strip() or None if isinstance(value, str) else None


def load_instructions(cfg: DataConfig, report: LoadReport | None = None) -> Iterator[Instruction]:
    """Stream normalised, de-duplicated instructions (and problems, by `data.recipe`: see the
    module docstring); drops are counted in `report`.

    Raises ConfigurationError when nothing could be read from a source because the field is
    wrong (naming the columns the first row has), rather than silently producing an empty run.
    """
    report = report if report is not None else LoadReport()
    seen: set[int] = set()  # 8-byte prefixes of content hashes: small per item
    if cfg.recipe == "verifiable":
        yield from _load_source(cfg, report, seen, answer_field=cfg.answer_field)
        return
    yield from _load_source(cfg, report, seen, answer_field=None)
    if cfg.recipe == "mixed":
        problems = cfg.problems_source()
        yield from _load_source(
            problems, report, seen, answer_field=cfg.answer_field, table="data.problems"
        )


def _load_source(
    cfg: DataConfig,
    report: LoadReport,
    seen: set[int],
    *,
    answer_field: str | None,
    table: str = "data",
) -> Iterator[Instruction]:
    """The rows of one source (the [data]-shaped `table`), each with its reference answer when
    `answer_field` is given."""
    first_keys: list[str] | None = None
    kept_before = report.kept
    missing_before = {r: report.dropped.get(r, 0) for r in ("missing_field", "missing_answer")}
    source = cfg.dataset or (Path(cfg.path).name if cfg.path else None)
    for where, row in iter_rows(cfg):
        report.read += 1
        if row is None:
            report.drop("bad_row", where)
            continue
        if first_keys is None and isinstance(row, dict):
            first_keys = sorted(map(str, row))
        raw = extract_text(row, cfg)
        if raw is None:
            report.drop("missing_field", where)
            continue
        text = normalise_text(raw)
        if not text:
            report.drop("empty", where)
            continue
        if len(text) > cfg.max_chars:
            report.drop("too_long", where)
            continue
        answer = None
        if answer_field is not None:
            answer = extract_answer(row, answer_field)
            if answer is None:
                report.drop("missing_answer", where)
                continue
        inst = Instruction.from_text(text, source=source, answer=answer)
        digest = int(inst.id[:16], 16)
        if digest in seen:
            report.drop("duplicate", where)
            continue
        seen.add(digest)
        report.kept += 1
        report.problems += answer is not None
        yield inst
    if report.kept > kept_before:
        return
    columns = ", ".join(first_keys or []) or "(none)"
    if report.dropped.get("missing_field", 0) > missing_before["missing_field"]:
        wanted = (
            f"{table}.conversation_field = {cfg.conversation_field!r}"
            if cfg.conversation_field
            else f"{table}.text_field = {cfg.text_field!r}"
            if cfg.text_field
            else f"one of the columns {', '.join(DEFAULT_TEXT_FIELDS + DEFAULT_CHAT_FIELDS)}"
        )
        raise ConfigurationError(
            f"{table}: no instruction found in {source}: every row lacks {wanted}. The first "
            f"row has columns: {columns}. Set {table}.text_field (a text column)"
            + (" or data.conversation_field (a chat column)." if table == "data" else ".")
        )
    if report.dropped.get("missing_answer", 0) > missing_before["missing_answer"]:
        raise ConfigurationError(
            f"{table}: no problem in {source} has a reference answer in the column "
            f"data.answer_field = {answer_field!r}. The first row has columns: {columns}. Set "
            "data.answer_field to the column that holds the answers."
        )


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


async def load(step: Step) -> LoadCounts:
    ctx = step.ctx
    report = LoadReport()
    with jsonl_writer(ctx.rundir.data("instructions")) as w:
        for inst in load_instructions(ctx.config.data, report):
            w.write(inst)
            if report.kept % 1000 == 0:
                ctx.reporter.progress(report.kept)
                await asyncio.sleep(0)  # a long synchronous loop: let a cancel (Ctrl-C, SIGTERM) in
    counts = report.counts()
    for reason, where in report.examples.items():
        ctx.reporter.warning(
            f"load: dropped {report.dropped[reason]} row(s) as {reason} (first: {where})"
        )
    if report.kept == 0:
        raise ConfigurationError(
            f"data: no instructions left after loading ({counts.flat()}); check data.path, the "
            "field settings and data.max_chars"
        )
    return counts


STAGE = Stage(
    name="load",
    scope="run",
    run=load,
    counts=LoadCounts,
    summary="read [data]: normalise, drop empty / too long / duplicate -> data/instructions.jsonl",
)
