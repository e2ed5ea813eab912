"""What the published-benchmark scorers share: reading an official file, one pairwise decision
from a judgement in two orders, figures with 95% intervals, and the error-rate rule.

Rules common to every benchmark here:

* A **transport error** (a request that failed after retries, a `Drop`) is never scored: its
  item is left out of every figure and counted in that figure's `errors`. So is an item with no
  output at all (`missing`, e.g. a partial outputs file).
* When more than `max_error_rate` of the items are left out that way, the result has no
  headline (`refused` says why); the per-subset figures are still given with their counts.
* A **model parse failure** (an answer without a usable verdict or rating) is scored by the
  benchmark's official rule and counted in `parse_failures`.
* Intervals: Wilson for a proportion of 0/1 item scores, percentile bootstrap (seeded) for means
  of fractional item scores and for composite figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ste_core.errors import DataFileError
from ste_core.evaluation.headline import DEFAULT_MAX_ERROR_RATE, headline_allowed
from ste_core.evaluation.stats import DEFAULT_RESAMPLES, bootstrap_interval, wilson_interval
from ste_core.records import BenchmarkFigure, Drop, Judgement, Order
from ste_core.run.io import OnError, SkippedRow, read_rows

__all__ = [
    "DEFAULT_MAX_ERROR_RATE",
    "ORIGIN_KEY",
    "PAIR_RULES",
    "OfficialRows",
    "PairRule",
    "PairwiseOutcomes",
    "Tally",
    "collect_pairwise",
    "error_gate",
    "figure",
    "pair_status",
    "read_official_rows",
    "two_order_score",
]

PairRule = Literal["mean", "consistent", "counter"]

#: How one (chosen, rejected) comparison judged in both orders becomes one score.
PAIR_RULES: dict[str, str] = {
    "mean": "mean of the two orders (1 right, 0 wrong, 0.5 tie or no verdict), RewardBench's",
    "consistent": "1 only when the judge picks the better response in both orders "
    "(position-consistent accuracy, as J1 and EvalPlanner report), else 0",
    "counter": "JudgeBench's counter: +1 per order that picks the better response, -1 per order "
    "that picks the worse; 1 when the sum is positive, else 0",
}


# --------------------------------------------------------------------------------------------
# Official files
# --------------------------------------------------------------------------------------------


#: A frozen copy of official rows (a run's bench_<name>.rows.jsonl) keeps under this key the
#: data file each row came from, so a reader that names things by file (PPE's correctness sets)
#: reads the copy as it read the original. It is taken out of the row before parsing.
ORIGIN_KEY = "_ste_origin"


@dataclass
class OfficialRows:
    """The rows of a benchmark file (dicts as the official release spells them)."""

    path: Path
    rows: list[tuple[int, dict[str, Any]]]  # (line or row number, row)
    skipped: list[SkippedRow] = field(default_factory=list)
    #: row number -> the data file it came from, where that is not `path` itself
    origins: dict[int, str] = field(default_factory=dict)

    def origin(self, n: int) -> str:
        """The absolute path of the file (or `datasets` directory) row `n` came from."""
        return self.origins.get(n, self.path.as_posix())

    def frozen(self) -> Iterator[dict[str, Any]]:
        """The rows with their origin, for a copy that `read_official_rows` reads back alike."""
        for n, row in self.rows:
            yield {ORIGIN_KEY: self.origin(n), **row}


_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".pq")


def _dataset_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a `datasets` save_to_disk directory (its "test" split, or its only split)."""
    try:
        import datasets
    except ImportError:
        raise DataFileError(
            f"{path} is a `datasets` directory; reading it needs the `data` extra: "
            "pip install 'ste[data]'"
        ) from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "test" in loaded:
            loaded = loaded["test"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            raise DataFileError(
                f"{path}: a `datasets` directory with splits {', '.join(splits)} and no 'test' "
                "split; give the directory of the split to score"
            )
    yield from loaded


def read_official_rows(path: str | Path, *, on_error: OnError = "raise") -> OfficialRows:
    """Rows of a JSONL / JSON-array / Parquet file, a `datasets` save_to_disk directory, or a
    directory of such data files (read in name order, e.g. a hub snapshot's data folder)."""
    path = Path(path).resolve()
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    out = OfficialRows(path=path, rows=[])
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            out.rows = list(enumerate(_dataset_rows(path), start=1))
            return _take_origins(out)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _DATA_SUFFIXES)
        if not files:
            raise DataFileError(
                f"{path}: a directory without data files (.jsonl, .json, .parquet) and not a "
                "`datasets` save_to_disk directory"
            )
    else:
        files = [path]
    n = 0
    for f in files:
        rows = read_rows(f, on_error=on_error)
        for row in rows:
            n += 1
            if not isinstance(row, dict):
                rows.reject(f"expected a JSON object, got {type(row).__name__}")
                continue
            out.rows.append((n, row))
            if f != path:
                out.origins[n] = f.as_posix()
        out.skipped += [
            SkippedRow(s.line, s.reason if len(files) == 1 else f"{f.name}: {s.reason}")
            for s in rows.skipped
        ]
    return _take_origins(out)


def _take_origins(out: OfficialRows) -> OfficialRows:
    """Move a frozen copy's recorded origins (ORIGIN_KEY) out of its rows."""
    for n, row in out.rows:
        origin = row.pop(ORIGIN_KEY, None)
        if isinstance(origin, str):
            out.origins[n] = origin
    return out


def require(row: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """`row[key]`, checked to be of `kind`; ValueError (a bad row) otherwise."""
    if key not in row or row[key] is None:
        raise ValueError(f"missing field {key!r}")
    value = row[key]
    if isinstance(value, bool) and kind is int:
        raise ValueError(f"field {key!r} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def as_list(value: Any) -> Any:
    """A numpy array (as a Parquet reader gives list columns) as a list; anything else as is."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def string_list(row: Mapping[str, Any], key: str) -> list[str]:
    value = as_list(row.get(key))
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"field {key!r} must be a list of strings")
    if not value:
        raise ValueError(f"field {key!r} is empty")
    return value


def load_items(
    path: str | Path,
    parse: Callable[..., Any],
    key: Callable[[Any], str | None],
    *,
    on_error: OnError,
    with_origin: bool = False,
) -> tuple[list[Any], OfficialRows]:
    """Parse every row with `parse` (ValueError = a bad row); duplicate keys are bad rows (a
    key of None is not checked). With `with_origin`, `parse` also gets the row's data file
    (`OfficialRows.origin`)."""
    src = read_official_rows(path, on_error=on_error)
    items: list[Any] = []
    seen: dict[str, int] = {}
    for line, row in src.rows:
        try:
            item = parse(row, src.origin(line)) if with_origin else parse(row)
            k = key(item)
            if k is not None and k in seen:
                raise ValueError(f"duplicate id {k!r} (first at row {seen[k]})")
        except ValueError as exc:
            if on_error == "raise":
                raise DataFileError(f"{src.path}:{line}: {exc}") from None
            src.skipped.append(SkippedRow(line, str(exc)))
            continue
        if k is not None:
            seen[k] = line
        items.append(item)
    if not items:
        first = f" (first bad row: {src.skipped[0].line}: {src.skipped[0].reason})"
        raise DataFileError(f"{src.path}: no valid rows" + (first if src.skipped else ""))
    return items, src


# --------------------------------------------------------------------------------------------
# Pairwise judgements in two orders
# --------------------------------------------------------------------------------------------


@dataclass
class PairwiseOutcomes:
    """Per judged pair: the verdict of each order (None = no usable verdict), and which pairs had
    a failed request."""

    verdicts: dict[str, dict[Order, str | None]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    judge_models: list[str] = field(default_factory=list)
    unknown: int = 0


def collect_pairwise(
    records: Iterable[Judgement | Drop], known: set[str] | None = None
) -> PairwiseOutcomes:
    """Gather sample 0 of every (pair, order). Raises ValueError for a duplicate (pair, order)
    or a second sample: these benchmarks score one greedy judgement per order."""
    out = PairwiseOutcomes()
    for rec in records:
        pair_id, order, k = rec.sample
        if known is not None and pair_id not in known:
            out.unknown += 1
            continue
        if k != 0:
            raise ValueError(
                f"pair {pair_id!r} has sample {k}: benchmarks score one judgement per order "
                "(evaluate with samples_per_order = 1)"
            )
        slot = out.verdicts.setdefault(pair_id, {})
        if order in slot:
            raise ValueError(f"duplicate judgement for pair {pair_id!r}, order {order.value}")
        if isinstance(rec, Judgement):
            slot[order] = rec.verdict
            if rec.judge_model not in out.judge_models:
                out.judge_models.append(rec.judge_model)
        else:
            slot[order] = None
            out.failed.add(pair_id)
    return out


def _picked(verdict: str | None, order: Order) -> int:
    """+1 the better response, -1 the worse, 0 a tie or no verdict."""
    if verdict not in ("A", "B"):
        return 0
    return 1 if verdict == order.correct_verdict else -1


def two_order_score(verdicts: Mapping[Order, str | None], rule: PairRule) -> float:
    """One score for a comparison judged in both orders (see PAIR_RULES)."""
    picks = [_picked(verdicts[o], o) for o in (Order.AB, Order.BA)]
    if rule == "mean":
        return sum((p + 1) / 2 for p in picks) / 2
    if rule == "consistent":
        return 1.0 if picks == [1, 1] else 0.0
    if rule == "counter":
        return 1.0 if sum(picks) > 0 else 0.0
    raise ValueError(f"unknown pair rule {rule!r}; use one of {', '.join(PAIR_RULES)}")


def has_no_verdict(verdicts: Mapping[Order, str | None]) -> bool:
    return any(v is None for v in verdicts.values())


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def figure(
    scores: Sequence[float],
    *,
    errors: int = 0,
    missing: int = 0,
    parse_failures: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> BenchmarkFigure:
    """The mean of item scores with its interval: Wilson when every score is 0 or 1, else a
    percentile bootstrap of the mean."""
    n = len(scores)
    if n == 0:
        return BenchmarkFigure(
            value=None, n=0, errors=errors, missing=missing, parse_failures=parse_failures
        )
    total = sum(scores)
    if all(s in (0.0, 1.0) for s in scores):
        ci = wilson_interval(total, n, confidence)
    else:
        ci = bootstrap_interval(
            list(scores), n_resamples=n_resamples, seed=seed, confidence=confidence
        )
    return BenchmarkFigure(
        value=total / n,
        ci=ci,
        n=n,
        errors=errors,
        missing=missing,
        parse_failures=parse_failures,
    )


@dataclass
class Tally:
    """Item scores of one figure, and beside them the items that could not be scored."""

    scores: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    missing: int = 0
    parse_failures: int = 0

    def add(self, value: float, *, parse_failure: bool = False, **extra: float) -> None:
        self.scores.append(value)
        self.parse_failures += parse_failure
        for name, x in extra.items():
            self.extra.setdefault(name, []).append(x)

    def figure(
        self, name: str | None = None, *, seed: int = 0, confidence: float = 0.95
    ) -> BenchmarkFigure:
        """The figure of the main scores, or of the extra scores called `name`."""
        values = self.scores if name is None else self.extra.get(name, [])
        return figure(
            values,
            errors=self.errors,
            missing=self.missing,
            parse_failures=self.parse_failures,
            seed=seed,
            confidence=confidence,
        )


def pair_status(pair_id: str, got: PairwiseOutcomes) -> Literal["error", "missing"] | None:
    """Why a pair cannot be scored: a failed request, or an order without output; else None."""
    if pair_id in got.failed:
        return "error"
    if len(got.verdicts.get(pair_id, {})) < 2:
        return "missing"
    return None


def error_gate(
    n_items: int, errors: int, missing: int, max_error_rate: float
) -> tuple[float, str | None]:
    """(share of items not scored, why the headline is refused or None): the rule of
    `ste_core.evaluation.headline`, the same as for the eval pairs."""
    if not 0.0 <= max_error_rate <= 1.0:
        raise ValueError(f"max_error_rate must be in [0, 1], got {max_error_rate}")
    if n_items == 0:
        return 0.0, "no item to score: no headline"
    rate = (errors + missing) / n_items
    if not headline_allowed(errors + missing, n_items, max_error_rate):
        return rate, (
            f"{errors + missing} of {n_items} items ({rate:.1%}) could not be scored "
            f"({errors} failed requests, {missing} without output), more than max_error_rate "
            f"{max_error_rate:.0%}: no headline. Re-run the failed requests (the cache keeps "
            "the others) or raise max_error_rate"
        )
    return rate, None
