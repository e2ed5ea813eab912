"""A tiny TOML writer: enough for configs (tables, arrays of tables, inline arrays, scalars).

The standard library reads TOML (`tomllib`) but does not write it; the resolved config a run
writes into its directory, and the tests' configs, go through `dumps_toml`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["dumps_toml"]


_BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _string(k)


def _string(s: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes (\" \\ \n \t \uXXXX ...).
    return json.dumps(s, ensure_ascii=False)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items() if x is not None)
        return "{" + items + "}" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps_toml(data: dict[str, Any]) -> str:
    """Serialise a dict (from `model_dump(mode="json")`) to TOML; None values are left out."""
    out: list[str] = []
    _write_table(out, data, [])
    return "\n".join(out).strip() + "\n"


def _write_table(out: list[str], table: dict[str, Any], path: list[str]) -> None:
    scalars = {
        k: v
        for k, v in table.items()
        if v is not None and not isinstance(v, dict) and not _is_table_array(v)
    }
    for k, v in scalars.items():
        out.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            name = ".".join(_key(p) for p in [*path, k])
            out.append("")
            out.append(f"[{name}]")
            _write_table(out, v, [*path, k])
        elif _is_table_array(v):
            name = ".".join(_key(p) for p in [*path, k])
            for item in v:
                out.append("")
                out.append(f"[[{name}]]")
                _write_table(out, item, [*path, k])
