"""What every record shares: frozen, strict pydantic models, and the content hash used for ids."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    # frozen: a stage derives new records, it never edits old ones. extra="forbid": a misspelt
    # field in a file is an error, not silently lost data.
    model_config = ConfigDict(frozen=True, extra="forbid")


def content_hash(*parts: Any) -> str:
    """A stable sha256 over JSON-serialisable parts (used for ids, splits and cache keys)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
