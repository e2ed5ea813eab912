"""Reading pairs files and judgement files, and writing judgements, for evaluation.

Pairs files (JSONL, a JSON array, or Parquet with the `data` extra), one pair per row, in any of:

* RewardBench: ``prompt``, ``chosen``, ``rejected``, optional ``subset``, ``id`` (int or str);
  other columns (``chosen_model``...) go into the pair's metadata;
* a plain user file: ``instruction``, ``chosen``, ``rejected``, optional ``subset``, ``id``;
* a run's frozen eval pairs: ResponsePair JSON (``id``, ``instruction``, ``chosen``, ...).

A row without ``id`` gets a content hash of (instruction, chosen, rejected) as id.

Judgements files (JSONL), one judge output per row:

* ``pair_id`` (alias ``id``), ``text`` (alias ``output``) = the raw judge output,
  ``order`` = ``"AB"`` (chosen shown as A) or ``"BA"``, or ``swapped`` = true/false instead,
  optional ``sample_index`` (default 0), ``judge_model``, ``template``;
* or a failure (a `Drop`): ``pair_id``, ``order``, ``sample_index``, ``stage``, ``reason``,
  ``error_type``, ``message`` (an API failure after retries; it scores 0.5 and is counted as an
  error). Rows of earlier versions without ``reason`` (``error_type`` and no ``text``) are read
  the same way.

The verdict is always parsed from ``text`` with `ste_prompts.parse_verdict`, so outputs produced
anywhere (vLLM elsewhere, an older run) are read exactly like ours. `write_judgements` writes
this same format, so `ste evaluate` output can be re-scored with `ste score`.

Bad rows: `on_error="raise"` (default) stops at the first one with ``path:line: reason``;
`on_error="skip"` skips it and records (line, reason) in the result's `skipped`, which callers
must report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ste_core.errors import DataFileError
from ste_core.records import Drop, Judgement, Order, ResponsePair, content_hash
from ste_core.run.io import OnError, SkippedRow, read_rows, write_jsonl


@dataclass
class PairsFile:
    pairs: list[ResponsePair]
    formats: list[str] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    path: Path | None = None


@dataclass
class JudgementsFile:
    records: list[Judgement | Drop]
    skipped: list[SkippedRow] = field(default_factory=list)
    verdict_mismatches: int = 0
    path: Path | None = None


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------

_PAIR_FIELDS = set(ResponsePair.model_fields)


def _pair_from_row(row: Any) -> tuple[ResponsePair, str]:
    """A ResponsePair and the name of the row's format; raises ValueError with a reason."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "prompt" in row and "instruction" not in row:
        fmt, text_key = "rewardbench", "prompt"
    elif "instruction" in row:
        fmt, text_key = (
            ("response_pair" if "id" in row and set(row) <= _PAIR_FIELDS else "user"),
            ("instruction"),
        )
    else:
        raise ValueError("needs 'prompt' (RewardBench) or 'instruction' (user / ResponsePair)")
    for key in (text_key, "chosen", "rejected"):
        if key not in row:
            raise ValueError(f"missing field {key!r}")
        if not isinstance(row[key], str):
            raise ValueError(f"field {key!r} must be a string, got {type(row[key]).__name__}")
        if not row[key].strip():
            raise ValueError(f"field {key!r} is empty")
    subset = row.get("subset")
    if subset is not None and not isinstance(subset, str):
        raise ValueError(f"field 'subset' must be a string, got {type(subset).__name__}")
    raw_id = row.get("id")
    if isinstance(raw_id, bool) or (raw_id is not None and not isinstance(raw_id, str | int)):
        raise ValueError(f"field 'id' must be a string or an integer, got {raw_id!r}")
    pid = (
        str(raw_id)
        if raw_id is not None
        else content_hash(row[text_key], row["chosen"], row["rejected"])[:16]
    )
    if fmt == "response_pair":
        return ResponsePair.model_validate({**row, "id": pid}), fmt
    known = {text_key, "chosen", "rejected", "subset", "id"}
    if fmt == "user":
        known |= {"modified_instruction", "instruction_id", "metadata"}
    metadata = dict(row.get("metadata") or {}) if fmt == "user" else {}
    metadata.update({k: v for k, v in row.items() if k not in known})
    return (
        ResponsePair(
            id=pid,
            instruction=row[text_key],
            chosen=row["chosen"],
            rejected=row["rejected"],
            subset=subset,
            modified_instruction=row.get("modified_instruction") if fmt == "user" else None,
            instruction_id=row.get("instruction_id") if fmt == "user" else None,
            metadata=metadata,
        ),
        fmt,
    )


def read_pairs(path: str | Path, *, on_error: OnError = "raise") -> PairsFile:
    """Read labelled pairs from a RewardBench / user / ResponsePair file (see module doc).

    Duplicate ids are a bad row (the second occurrence). Raises DataFileError on the first bad
    row with `on_error="raise"`, else skips and records it. An empty file is an error.
    """
    path = Path(path)
    rows = read_rows(path, on_error=on_error)
    out = PairsFile(pairs=[], skipped=rows.skipped, path=path)
    first_line: dict[str, int] = {}
    for row in rows:
        try:
            pair, fmt = _pair_from_row(row)
        except ValueError as exc:  # pydantic's ValidationError included
            rows.reject(exc)
            continue
        if pair.id in first_line:
            rows.reject(f"duplicate id {pair.id!r} (first on line {first_line[pair.id]})")
            continue
        first_line[pair.id] = rows.line
        if fmt not in out.formats:
            out.formats.append(fmt)
        out.pairs.append(pair)
    if not out.pairs:
        raise DataFileError(
            f"{path}: no valid pairs"
            + (
                f" ({len(out.skipped)} bad rows, first: line {out.skipped[0].line}: "
                f"{out.skipped[0].reason})"
                if out.skipped
                else ""
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Judgements
# --------------------------------------------------------------------------------------------


def _order_of(row: dict[str, Any]) -> Order:
    if "order" in row:
        try:
            return Order(row["order"])
        except ValueError:
            raise ValueError(f"'order' must be 'AB' or 'BA', got {row['order']!r}") from None
    if "swapped" in row:
        if not isinstance(row["swapped"], bool):
            raise ValueError(f"'swapped' must be true or false, got {row['swapped']!r}")
        return Order.BA if row["swapped"] else Order.AB
    raise ValueError("missing 'order' ('AB' = chosen shown as A, 'BA') or 'swapped'")


def _judgement_from_row(
    row: Any, *, judge_model: str, template: str, parser: Callable[..., Any]
) -> tuple[Any, bool]:
    """(Judgement | Drop, stored verdict disagrees with the parse)."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    pid = row.get("pair_id", row.get("id"))
    if isinstance(pid, bool) or not isinstance(pid, str | int):
        raise ValueError("missing or invalid 'pair_id'")
    order = _order_of(row)
    sample_index = row.get("sample_index", 0)
    if isinstance(sample_index, bool) or not isinstance(sample_index, int) or sample_index < 0:
        raise ValueError(f"'sample_index' must be a non-negative integer, got {sample_index!r}")
    if "reason" in row or (row.get("error_type") is not None and row.get("text") is None):
        # A sample that produced no judgement (an API failure after retries): it scores 0.5.
        failure = Drop(
            pair_id=str(pid),
            order=order,
            sample_index=sample_index,
            stage=str(row.get("stage") or "judge"),
            reason=row.get("reason") or "api_error",
            error_type=None if row.get("error_type") is None else str(row["error_type"]),
            message=str(row.get("message", "")),
        )
        return failure, False
    text = row.get("text", row.get("output"))
    if not isinstance(text, str):
        raise ValueError("missing 'text' (the raw judge output) or 'error_type'")
    truncated = row.get("truncated") is True
    parsed = parser(text, truncated=truncated)
    stored = row.get("verdict", parsed.verdict)
    usage = row.get("usage") or {}
    return (
        Judgement(
            pair_id=str(pid),
            order=order,
            sample_index=sample_index,
            text=text,
            verdict=parsed.verdict,
            judge_model=str(row.get("judge_model") or judge_model),
            template=str(row.get("template") or template),
            parse_reason=parsed.reason,
            usage=usage,
            truncated=truncated,
        ),
        stored != parsed.verdict,
    )


def read_judgements(
    path: str | Path,
    *,
    on_error: OnError = "raise",
    judge_model: str = "unknown",
    template: str = "unknown",
    parser: Callable[[str], Any] | None = None,
) -> JudgementsFile:
    """Read judge outputs (and failures) from JSONL; verdicts are re-parsed from the text.

    `parser` (text -> an object with `.verdict` and `.reason`) defaults to the parser and
    verdict rule of the template each row names (a run's rows name theirs), and to
    `ste_prompts.parse_verdict` (the `final` rule) for rows whose template is unknown; those
    read a row marked `"truncated": true` (cut off at max_tokens) as their rule says.
    `judge_model` / `template` fill rows that do not name them. Rows whose stored `verdict`
    disagrees with the parse are counted in `verdict_mismatches` (the parse wins).
    """
    path = Path(path)
    rows = read_rows(path, on_error=on_error)
    out = JudgementsFile(records=[], skipped=rows.skipped, path=path)
    templates = _TemplateParsers()
    for row in rows:
        try:
            rec, mismatch = _judgement_from_row(
                row,
                judge_model=judge_model,
                template=template,
                parser=_ignoring_truncation(parser)
                if parser
                else templates.parser(row, default=template),
            )
        except ValueError as exc:  # pydantic's ValidationError included
            rows.reject(exc)
            continue
        out.records.append(rec)
        out.verdict_mismatches += mismatch
    return out


def _ignoring_truncation(parser: Callable[[str], Any]) -> Callable[..., Any]:
    def parse(text: str, *, truncated: bool = False) -> Any:
        return parser(text)

    return parse


class _TemplateParsers:
    """The output parser of each template a judgements file names, looked up once each."""

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., Any]] = {}

    def parser(self, row: Any, *, default: str) -> Callable[..., Any]:
        name = str(row.get("template") or default) if isinstance(row, dict) else default
        if name not in self._by_name:
            self._by_name[name] = _template_parser(name)
        return self._by_name[name]


def _template_parser(name: str) -> Callable[..., Any]:
    from ste_core.plugins import get_host
    from ste_prompts import parse_verdict

    try:
        template = get_host().template(name)
    except Exception:  # a template this installation does not know: the default rule
        return parse_verdict
    if template.purpose != "judge":
        return parse_verdict
    return template.parse_output  # type: ignore[no-any-return]


def judgement_row(record: Judgement | Drop) -> dict[str, Any]:
    """The JSON object written for one Judgement, or for a Drop where a sample failed."""
    return record.model_dump(mode="json")


def write_judgements(path: str | Path, records: Iterable[Any]) -> int:
    """Write Judgement / Drop records as JSONL (the format `read_judgements` reads), atomically."""
    return write_jsonl(path, map(judgement_row, records))
