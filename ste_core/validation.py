"""One actionable line per problem from a pydantic `ValidationError`: `key: got VALUE; what is
allowed`, never a traceback.

Backend options (`ste_core.backends.BackendOptions`) and the config (`ste_core.config.loading`,
with `model=Config`) report through `problems()`; a misspelt key gets a "did you mean".
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

# pydantic puts a union's member into the location: ("lora", "LoRAConfig", "r"),
# ("max_n", "literal['auto']"), ("max_n", "int"). Such a part is not a key the user wrote.
_UNION_TAG = re.compile(
    r"^([A-Z][A-Za-z0-9_]*|int|str|float|bool|bytes|none"
    r"|(literal|function-\w+|constrained-\w+|list|dict|tuple|set|frozenset|nullable"
    r"|json-or-python|lax-or-strict|is-instance|chain|default)\[.*\])$"
)


def problems(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    prefix: str = "",
    conceal: Callable[[ErrorDetails], bool] = lambda err: False,
) -> list[tuple[str, str]]:
    """`(key, problem)` for each error of `exc`, raised while validating `model`.

    `key` is the dotted location under `prefix` (e.g. "judge.options.timeout_s"); `problem` says
    what was given and what is allowed, and lists the allowed keys for an unknown one. The input
    of an error for which `conceal` is true is never echoed (a secret, say).
    """
    errors = [
        (err, [str(p) for p in err["loc"] if not _UNION_TAG.match(str(p))])
        for err in exc.errors(include_url=False)
    ]
    # A deeper error under the same key is the informative one (a union reports a failure per
    # member), so drop an error whose location is a strict prefix of another's.
    locs = [tuple(loc) for _, loc in errors]
    by_key: dict[str, list[str]] = {}
    for err, loc in errors:
        if any(len(o) > len(loc) and o[: len(loc)] == tuple(loc) for o in locs):
            continue
        key = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "(top level)"
        text = _describe(err, allowed_keys(model, loc[:-1]), show=not conceal(err))
        if text not in by_key.setdefault(key, []):
            by_key[key].append(text)
    # The members of a union at one key: "got "x"; must be true or false, or must be one of...".
    return [(key, _join(texts)) for key, texts in by_key.items()]


def _join(texts: list[str]) -> str:
    got = texts[0].split("; ", 1)[0] + "; " if texts[0].startswith("got ") else ""
    if got and all(t.startswith(got) for t in texts):
        return got + ", or ".join(t[len(got) :] for t in texts)
    return "; ".join(texts)


def allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str] | None:
    """The field names of the model found at `loc` under `model`; None when there is none."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part)
        current = _model_of(field.annotation) if field is not None else None
        if current is None:
            return None
    return list(current.model_fields)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the known name closest to a misspelt `name`, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _got(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(err: ErrorDetails, allowed: list[str] | None, *, show: bool) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    got = f"got {_got(err.get('input'))}; " if show else ""
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        if allowed is None:
            return "unknown key"
        hint = did_you_mean(str(err["loc"][-1]), allowed) if err["loc"] else ""
        return f"unknown key{hint}; allowed keys: {', '.join(allowed) or 'none'}"
    if kind == "greater_than_equal":
        return got + f"must be >= {ctx['ge']}"
    if kind == "greater_than":
        return got + f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return got + f"must be <= {ctx['le']}"
    if kind == "less_than":
        return got + f"must be < {ctx['lt']}"
    if kind in ("literal_error", "enum"):
        return got + f"must be one of {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return got + "must be an integer"
    if kind in ("float_parsing", "float_type"):
        return got + "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return got + "must be true or false"
    if kind == "string_type":
        return got + "must be a string"
    if kind == "string_pattern_mismatch":
        return got + f"must match the pattern {ctx.get('pattern', '')}"
    if kind in ("too_short", "string_too_short"):
        return got + "must not be empty"
    if kind in ("too_long", "string_too_long"):
        return got + f"is too long (at most {ctx.get('max_length')})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return got + "must be a table"
    if kind in ("list_type", "tuple_type"):
        return got + "must be a list"
    if kind in ("path_not_file", "path_type"):
        return got + "must be an existing file"
    if kind == "value_error":
        return got + str(ctx.get("error", err["msg"]))
    return got + err["msg"]
