"""Reading and writing the run directory's files: JSON lines, written atomically.

A file that exists is whole: writers write `<file>.tmp`, then rename it into place, so a kill
mid-write leaves the previous version (or nothing), never half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["JsonlWriter", "count_lines", "jsonl_writer", "read_jsonl", "write_json"]

T = TypeVar("T", bound=BaseModel)


class JsonlWriter:
    """Writes JSON lines to `<path>.tmp`; `commit()` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.tmp.open("w", encoding="utf-8")
        self.count = 0

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        if isinstance(record, BaseModel):
            line = record.model_dump_json()
        else:
            line = json.dumps(record, ensure_ascii=False)
        self._fh.write(line + "\n")
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
def jsonl_writer(path: Path) -> Iterator[JsonlWriter]:
    """`with jsonl_writer(p) as w: w.write(rec)`: committed on success, discarded on error."""
    writer = JsonlWriter(path)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def read_jsonl(path: Path, model: type[T] | None = None) -> Iterator[Any]:
    """Stream the rows of a JSONL file (validated as `model` when given)."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            if model is None:
                yield json.loads(line)
            else:
                yield model.model_validate_json(line)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (tmp + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    os.replace(tmp, path)
