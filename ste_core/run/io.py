"""Reading and writing ste's data files: JSON lines, JSON arrays and Parquet in, JSON lines out.

Reading: `read_rows(path)` streams the rows of a JSONL file (blank lines skipped), a `.json`
array or a Parquet file (pyarrow, from the `data` extra, is imported only then), each validated as
a pydantic model when one is given. A bad row either raises `DataFileError` naming `path:line`
(`on_error="raise"`), or is passed over and recorded in the reader's `skipped`, which the caller
must report (`on_error="skip"`). Callers that check rows further report a row they refuse with
`rows.reject(reason)`, so their bad rows take the same path.

Writing: a file that exists is whole: writers write `<file>.tmp`, fsync, then rename it into
place, so a kill mid-write leaves the previous version (or nothing), never half a file.
The bytes of a line are part of the run's contract (the outputs of two versions are compared by
hash): a record is written as `model_dump_json()` (compact), a dict as
`json.dumps(row, ensure_ascii=False)` (default separators).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError

from ste_core.errors import DataFileError

__all__ = [
    "JsonlWriter",
    "OnError",
    "RowFormat",
    "Rows",
    "SkippedRow",
    "count_lines",
    "jsonl_line",
    "jsonl_writer",
    "read_rows",
    "write_json",
    "write_jsonl",
]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

OnError = Literal["raise", "skip"]
RowFormat = Literal["jsonl", "json", "parquet"]

PARQUET_BATCH_ROWS = 1024  # rows decoded at a time: memory stays flat on files of any size


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedRow:
    """A bad row passed over with `on_error="skip"`: where it is and what is wrong with it."""

    line: int
    reason: str


class Rows(Generic[R]):
    """The rows of one data file, read lazily in one pass: `for row in rows`.

    `line` is the position of the row last yielded: its line number in a JSONL file, its
    number (from 1) in a JSON array or a Parquet file. `skipped` lists the rows passed over.
    """

    def __init__(
        self, path: Path, model: type[BaseModel] | None, on_error: OnError, format: RowFormat
    ) -> None:
        self.path = path
        self.model = model
        self.on_error = on_error
        self.format = format
        self.line = 0
        self.skipped: list[SkippedRow] = []
        self._rows = self._read()

    def __iter__(self) -> Iterator[R]:
        return self

    def __next__(self) -> R:
        return next(self._rows)

    def reject(self, reason: str | ValueError) -> None:
        """Refuse the row last yielded (a check of the caller's): raise, or record it."""
        if isinstance(reason, ValueError):
            reason = _reason(reason)
        if self.on_error == "raise":
            raise DataFileError(f"{self.path}:{self.line}: {reason}")
        self.skipped.append(SkippedRow(self.line, reason))

    def _read(self) -> Iterator[Any]:
        items: Iterator[tuple[int, Any]]
        parse: Callable[[Any], Any]
        if self.format == "jsonl":
            items = self._jsonl_lines()
            # Validating the line's bytes directly skips building a dict per row.
            parse = json.loads if self.model is None else self.model.model_validate_json
        else:
            items = self._json_array() if self.format == "json" else self._parquet_rows()
            parse = _as_is if self.model is None else self.model.model_validate
        for line, item in items:
            self.line = line
            try:
                row = parse(item)
            except ValueError as exc:  # JSON, encoding and validation errors are all ValueErrors
                self.reject(exc)
                continue
            yield row

    def _open(self) -> IO[bytes]:
        try:
            return self.path.open("rb")
        except FileNotFoundError:
            raise DataFileError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise DataFileError(f"{self.path}: cannot be read ({exc.strerror})") from None

    def _jsonl_lines(self) -> Iterator[tuple[int, bytes]]:
        # Bytes, decoded per line: an encoding error then names its line like any other.
        with self._open() as fh:
            for number, raw in enumerate(fh, start=1):
                if raw.strip():  # blank lines are layout, not data
                    yield number, raw

    def _json_array(self) -> Iterator[tuple[int, Any]]:
        # A JSON document cannot be parsed in pieces; arrays are for small files (JSONL streams).
        with self._open() as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:  # its position is the useful part here
                raise DataFileError(f"{self.path}: not valid JSON ({exc})") from None
            except UnicodeDecodeError:
                raise DataFileError(f"{self.path}: not UTF-8 text") from None
        if not isinstance(data, list):
            raise DataFileError(
                f"{self.path}: a .json file must hold a list of rows (JSON lines go in .jsonl)"
            )
        yield from enumerate(data, start=1)

    def _parquet_rows(self) -> Iterator[tuple[int, Any]]:
        try:
            import pyarrow
            import pyarrow.parquet as pq
        except ImportError:
            raise DataFileError(
                f"{self.path}: reading Parquet needs pyarrow, which is not installed: "
                "pip install 'self-taught-evaluators[data]'"
            ) from None
        with self._open() as fh:
            number = 0
            try:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                    for row in batch.to_pylist():
                        number += 1
                        yield number, row
            except pyarrow.ArrowException as exc:
                raise DataFileError(f"{self.path}: not a readable Parquet file ({exc})") from None


def _as_is(row: Any) -> Any:
    return row


def _reason(exc: ValueError) -> str:
    """A one-line reason for a bad row, from the error that reading or validating it raised."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors[0]["type"] == "json_invalid":
            return f"not valid JSON ({errors[0]['ctx']['error']})"
        return "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'row'}: {e['msg']}" for e in errors[:3]
        )
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg})"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)


@overload
def read_rows(
    path: str | Path,
    model: type[T],
    *,
    on_error: OnError = "raise",
    format: RowFormat | None = None,
) -> Rows[T]: ...


@overload
def read_rows(
    path: str | Path,
    model: None = None,
    *,
    on_error: OnError = "raise",
    format: RowFormat | None = None,
) -> Rows[Any]: ...


def read_rows(
    path: str | Path,
    model: type[BaseModel] | None = None,
    *,
    on_error: OnError = "raise",
    format: RowFormat | None = None,
) -> Rows[Any]:
    """Stream the rows of a data file, validated as `model` when given (see the module doc).

    `format` defaults to the one the suffix names: `.parquet` / `.pq` Parquet, `.json` a JSON
    array, anything else JSON lines. Nothing is read before the first row is asked for; a missing
    file raises DataFileError then.
    """
    path = Path(path)
    if format is None:
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            format = "parquet"
        else:
            format = "json" if suffix == ".json" else "jsonl"
    return Rows(path, model, on_error, format)


def count_lines(path: Path) -> int:
    """Non-blank lines of a JSONL file (its rows, unparsed); 0 when it does not exist."""
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def jsonl_line(row: BaseModel | dict[str, Any]) -> str:
    """One JSONL line (with its newline), in the byte format described in the module doc."""
    if isinstance(row, BaseModel):
        return row.model_dump_json() + "\n"
    return json.dumps(row, ensure_ascii=False) + "\n"


class JsonlWriter:
    """Writes JSON lines to `<path>.tmp`; `commit()` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.tmp.open("w", encoding="utf-8")
        self.count = 0

    def write(self, row: BaseModel | dict[str, Any]) -> None:
        self._fh.write(jsonl_line(row))
        self.count += 1

    def commit(self) -> int:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        return self.count

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


@contextmanager
def jsonl_writer(path: str | Path) -> Iterator[JsonlWriter]:
    """`with jsonl_writer(p) as w: w.write(row)`: committed on success, discarded on error."""
    writer = JsonlWriter(Path(path))
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write `rows` to a JSONL file atomically; return how many were written."""
    with jsonl_writer(path) as w:
        for row in rows:
            w.write(row)
    return w.count


def write_json(path: Path, data: Any) -> None:
    """Write one JSON document, indented for people to read, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
