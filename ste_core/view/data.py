"""What `ste view` shows, read from run directories: no HTTP here (`ste_core.view.server` serves
it), so every query is a plain call that the tests make directly.

A run's judged pairs come in *sets*, each a pairs file and one judgements file per judge:

* ``eval``: the frozen eval pairs (eval_pairs.jsonl), judged by each judge M_j in iter_j/eval.jsonl;
* ``bench:NAME``: a benchmark's frozen pairs (bench_NAME.pairs.jsonl), iter_j/bench_NAME.jsonl;
* ``train``: iteration i's training pairs (iter_i/pairs.jsonl), judged once, by the previous
  judge M_(i-1), in iter_i/judgements.jsonl; iter_i/selected.jsonl names the kept (pair, order)s.

Scale: a file is indexed once (pair ids, verdicts and byte offsets in memory; no text), so
filtering and paging never re-read it; a page's rows and a pair's detail are read by seeking to
their offsets. An index is rebuilt when its file changes (a live run rewrites its files whole,
see `ste_core.run.io`). Search streams the raw lines and decodes only those that contain the
query's bytes.

The run as a whole (accuracy per judge with intervals, paired tests, funnel, cost) is read the
way `ste report` reads it (`ste_core.evaluation.report.load_run`, through the run store opened
read-only), so the viewer and the report never disagree.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from ste_core.errors import SteError
from ste_core.records import Drop, Judgement, Order, ResponsePair, judgement_from_row

__all__ = [
    "FILTERS",
    "ItemQuery",
    "RunView",
    "ViewError",
    "compare_runs",
]

#: Pair filters (combined with AND): what each keeps.
FILTERS: dict[str, str] = {
    "wrong": "a judgement picked the worse response",
    "right": "every judgement picked the better response",
    "inconsistent": "the two orders of a sample picked different responses",
    "no_verdict": "a judgement without a verdict, or a failed sample",
    "tie": "a judgement called a tie",
    "changed": "the compared judge scored the pair differently",
    "kept": "kept for training (training pairs only)",
}
MAX_LIMIT = 500
_BENCH_RE = re.compile(r"^bench_(.+)\.pairs\.jsonl$")
_ITER_RE = re.compile(r"^iter_(\d+)$")
_SEARCH_CACHE = 32
_PAGE_CACHE = 64
#: the filters that are a property of one judge's judgements of a pair (see `_flags`)
_PAIR_FLAGS = ("wrong", "right", "inconsistent", "no_verdict", "tie")
_PAIR_TEXTS = ("instruction", "chosen", "rejected", "modified_instruction")


class ViewError(SteError):
    """A query the viewer cannot answer (unknown set, iteration, pair or filter): a 4xx."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# Indexes of JSONL files
# --------------------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of each non-blank line."""
    offset = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield offset, line
            offset += len(line)


def _read_line(path: Path, offset: int) -> dict[str, Any]:
    with path.open("rb") as fh:
        fh.seek(offset)
        row = json.loads(fh.readline())
    if not isinstance(row, dict):
        raise ViewError(f"{path}: the row at byte {offset} is not a JSON object", 500)
    return row


@dataclass(frozen=True)
class PairEntry:
    id: str
    offset: int
    subset: str | None
    head: str  # the instruction's beginning, for the list


@dataclass(frozen=True)
class Sample:
    """One row of a judgements file: a judgement, or a failed sample (`failed`)."""

    order: Order
    sample_index: int
    verdict: str | None
    failed: bool
    offset: int

    @property
    def pick(self) -> str | None:
        """ "chosen" / "rejected" for an A/B verdict, None for a tie, no verdict or a failure."""
        if self.verdict not in ("A", "B"):
            return None
        return "chosen" if self.verdict == self.order.correct_verdict else "rejected"

    @property
    def score(self) -> float:
        return {"chosen": 1.0, "rejected": 0.0}.get(self.pick or "", 0.5)

    def brief(self) -> dict[str, Any]:
        return {
            "order": self.order.value,
            "sample_index": self.sample_index,
            "verdict": self.verdict,
            "pick": self.pick,
            "failed": self.failed,
        }


@dataclass
class PairsIndex:
    entries: list[PairEntry]
    by_id: dict[str, PairEntry]
    bad_lines: int = 0
    subsets: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, path: Path) -> PairsIndex:
        entries: list[PairEntry] = []
        bad = 0
        for offset, line in _lines(path):
            try:
                row = json.loads(line)
                entry = PairEntry(
                    str(row["id"]), offset, row.get("subset"), str(row["instruction"])[:200]
                )
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            entries.append(entry)
        subsets = sorted({e.subset for e in entries if e.subset is not None})
        return cls(entries, {e.id: e for e in entries}, bad, subsets)


@dataclass
class JudgementsIndex:
    by_pair: dict[str, list[Sample]]
    judge_models: list[str] = field(default_factory=list)
    rows: int = 0
    bad_lines: int = 0
    #: each pair's score, and the pairs each flag of `_flags` holds for: worked out once, so a
    #: filter over 100k judgements is a set lookup per pair
    scores: dict[str, float | None] = field(default_factory=dict)
    flagged: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, path: Path) -> JudgementsIndex:
        out = cls({})
        for offset, line in _lines(path):
            try:
                row = json.loads(line)
                failed = "reason" in row or ("error_type" in row and "text" not in row)
                verdict = None if failed else row.get("verdict")
                sample = Sample(
                    Order(row["order"]), int(row.get("sample_index", 0)), verdict, failed, offset
                )
                pair_id = str(row["pair_id"])
            except (ValueError, KeyError, TypeError):
                out.bad_lines += 1
                continue
            out.by_pair.setdefault(pair_id, []).append(sample)
            out.rows += 1
            model = row.get("judge_model")
            if model and model not in out.judge_models:
                out.judge_models.append(model)
        out.flagged = {name: set() for name in _PAIR_FLAGS}
        for pair_id, samples in out.by_pair.items():
            samples.sort(key=lambda s: (s.order.value, s.sample_index))
            out.scores[pair_id] = _score(samples)
            for name, on in _flags(samples).items():
                if on:
                    out.flagged[name].add(pair_id)
        return out


def _kept(path: Path) -> dict[str, list[str]]:
    """pair id -> the orders kept for training (iter_i/selected.jsonl), each marked when it
    feeds only one kind of training data (SFT and DPO balance their labels apart)."""
    out: dict[str, list[str]] = {}
    for _, line in _lines(path):
        try:
            row = json.loads(line)
            sft, dpo = row.get("for_sft", True), row.get("for_dpo", True)
            only = "" if sft == dpo else " (SFT only)" if sft else " (DPO only)"
            out.setdefault(str(row["pair_id"]), []).append(str(row["order"]) + only)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


T = TypeVar("T")


class _FileCache(Generic[T]):
    """One built value per file, rebuilt when the file's size or mtime changes."""

    def __init__(self, build: Callable[[Path], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._values: dict[Path, tuple[tuple[int, int], T]] = {}

    def get(self, path: Path) -> T:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._values.get(path)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        value = self._build(path)  # outside the lock: other files stay served meanwhile
        with self._lock:
            self._values[path] = (stamp, value)
        return value


# --------------------------------------------------------------------------------------------
# Per-pair flags
# --------------------------------------------------------------------------------------------


def _score(samples: list[Sample]) -> float | None:
    """The pair's score as `ste_core.evaluation.scoring` counts it without majority vote: the
    mean over the orders judged of the mean over samples (1 picked the better response, 0 the
    worse, 0.5 anything else). Unlike scoring, an order never judged is left out, not 0.5."""
    by_order: dict[Order, list[float]] = {}
    for s in samples:
        by_order.setdefault(s.order, []).append(s.score)
    if not by_order:
        return None
    return sum(sum(v) / len(v) for v in by_order.values()) / len(by_order)


def _inconsistent(samples: list[Sample]) -> bool:
    """Sample k picked one response in order AB and the other in BA (as position consistency
    is counted in `ste_core.evaluation.scoring`)."""
    ab = {s.sample_index: s.pick for s in samples if s.order is Order.AB}
    return any(
        s.pick is not None and ab.get(s.sample_index) not in (None, s.pick)
        for s in samples
        if s.order is Order.BA
    )


def _flags(samples: list[Sample]) -> dict[str, bool]:
    return {
        "wrong": any(s.pick == "rejected" for s in samples),
        "right": bool(samples) and all(s.pick == "chosen" for s in samples),
        "inconsistent": _inconsistent(samples),
        "no_verdict": any(s.failed or s.verdict is None for s in samples),
        "tie": any(s.verdict == "tie" for s in samples),
    }


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemQuery:
    """A page of a set's pairs as judged by one judge (and optionally compared with another)."""

    set: str = "eval"
    iteration: int | None = None  # None: the set's last judge
    compare: int | None = None
    filters: tuple[str, ...] = ()
    subset: str | None = None
    search: str = ""
    offset: int = 0
    limit: int = 50
    #: the pair open in the detail pane: the answer says where it is in the filtered list
    pair: str | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.filters if f not in FILTERS]
        if unknown:
            raise ViewError(f"unknown filter {unknown[0]!r}; filters are: {', '.join(FILTERS)}")
        if self.offset < 0 or not 1 <= self.limit <= MAX_LIMIT:
            raise ViewError(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
        if "changed" in self.filters and self.compare is None:
            raise ViewError("the 'changed' filter needs a judge to compare with (compare=N)")


@dataclass(frozen=True)
class _Source:
    """The pairs file and the judgements file of one set as judged at one iteration."""

    pairs: Path
    judgements: Path
    judge: str  # which judge made them: M_j
    kept: Path | None = None


class RunView:
    """Read-only access to one run directory for the viewer. Thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._pairs: _FileCache[PairsIndex] = _FileCache(PairsIndex.build)
        self._judgements: _FileCache[JudgementsIndex] = _FileCache(JudgementsIndex.build)
        self._kept: _FileCache[dict[str, list[str]]] = _FileCache(_kept)
        self._searches: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()
        self._search_lock = threading.Lock()

    # -- the run as a whole ------------------------------------------------------------------

    def iterations(self) -> list[int]:
        return sorted(
            int(m.group(1))
            for p in self.root.iterdir()
            if p.is_dir() and (m := _ITER_RE.match(p.name))
        )

    def sets(self) -> list[dict[str, Any]]:
        """The judged sets there are, with the iterations whose judgements exist."""
        iters = self.iterations()

        def judged(name: str) -> list[int]:
            return [j for j in iters if (self.root / f"iter_{j}" / name).exists()]

        out = []
        if (self.root / "eval_pairs.jsonl").exists():
            out.append(_set_info("eval", "eval pairs (frozen)", judged("eval.jsonl"), True))
        for p in sorted(self.root.glob("bench_*.pairs.jsonl")):
            name = _BENCH_RE.match(p.name).group(1)  # type: ignore[union-attr]
            out.append(
                _set_info(f"bench:{name}", f"benchmark {name}", judged(f"bench_{name}.jsonl"), True)
            )
        train = [
            j for j in judged("judgements.jsonl") if (self.root / f"iter_{j}/pairs.jsonl").exists()
        ]
        if train:
            out.append(_set_info("train", "training pairs", train, False))
        return out

    def summary(self) -> dict[str, Any]:
        """Accuracy per judge with intervals, paired tests, funnel and cost (as `ste report`)."""
        from ste_core.evaluation.report import load_run

        run = load_run(self.root)
        m = run.manifest
        return {
            "name": run.name,
            "path": str(self.root.resolve()),
            "status": m.status if m else None,
            "started": m.started if m else None,
            "updated": m.updated if m else None,
            "finished": m.finished if m else None,
            "seed": m.seed if m else None,
            "models": dict(m.models) if m else {},
            "cost_usd": m.cost_usd.model_dump() if m else None,
            "usage": m.usage.model_dump() if m else None,
            "usage_by_stage": {k: v.model_dump() for k, v in m.usage_by_stage.items()} if m else {},
            "finetune_jobs": [j.model_dump() for j in m.finetune_jobs] if m else [],
            "endpoints": [e.model_dump() for e in m.endpoints] if m else [],
            "iterations": [_iteration_summary(it) for it in run.iterations],
            "sets": self.sets(),
            "filters": FILTERS,
            "notes": run.notes,
        }

    # -- pairs -------------------------------------------------------------------------------

    def _source(self, set_key: str, iteration: int | None) -> tuple[_Source, int]:
        info = next((s for s in self.sets() if s["key"] == set_key), None)
        if info is None:
            known = ", ".join(s["key"] for s in self.sets()) or "none yet"
            raise ViewError(f"no set {set_key!r} in {self.root}; sets: {known}", 404)
        if not info["iterations"]:
            raise ViewError(f"set {set_key!r} has not been judged yet", 404)
        j = info["iterations"][-1] if iteration is None else iteration
        if j not in info["iterations"]:
            have = ", ".join(map(str, info["iterations"]))
            raise ViewError(f"set {set_key!r} has no judgements of iteration {j}; it has {have}")
        it = self.root / f"iter_{j}"
        if set_key == "eval":
            return _Source(self.root / "eval_pairs.jsonl", it / "eval.jsonl", f"M{j}"), j
        if set_key == "train":
            pairs, judged, kept = it / "pairs.jsonl", it / "judgements.jsonl", it / "selected.jsonl"
            return _Source(pairs, judged, f"M{j - 1}", kept), j
        name = set_key.removeprefix("bench:")
        return (
            _Source(self.root / f"bench_{name}.pairs.jsonl", it / f"bench_{name}.jsonl", f"M{j}"),
            j,
        )

    def items(self, q: ItemQuery) -> dict[str, Any]:
        """One page of pairs, filtered on the server, with each pair's verdicts and flags."""
        src, j = self._source(q.set, q.iteration)
        pairs = self._pairs.get(src.pairs)
        judged = self._judgements.get(src.judgements)
        other = None
        if q.compare is not None:
            if q.set == "train":
                raise ViewError("training pairs are judged by one judge only: nothing to compare")
            csrc, _ = self._source(q.set, q.compare)
            other = self._judgements.get(csrc.judgements)
        kept = self._kept.get(src.kept) if src.kept and src.kept.exists() else None
        if "kept" in q.filters and kept is None:
            raise ViewError("the 'kept' filter applies to training pairs (set=train) only")
        wanted: list[set[str] | frozenset[str] | dict[str, Any]] = []
        for f in q.filters:
            if f == "kept":
                wanted.append(kept or {})
            elif f == "changed" and other is not None:
                wanted.append({k for k, v in judged.scores.items() if other.scores.get(k) != v})
            else:
                wanted.append(judged.flagged[f])
        if q.search.strip():
            wanted.append(self._search(q.set, src, q.search))
        selected = [
            e
            for e in pairs.entries
            if (q.subset is None or e.subset == q.subset) and all(e.id in w for w in wanted)
        ]
        page = selected[q.offset : q.offset + q.limit]
        position = (
            next((i for i, e in enumerate(selected) if e.id == q.pair), None) if q.pair else None
        )
        return {
            "pair_position": position,
            "set": q.set,
            "iteration": j,
            "judge": src.judge,
            "judge_models": judged.judge_models,
            "compare": q.compare,
            "total": len(selected),
            "offset": q.offset,
            "limit": q.limit,
            "pairs_total": len(pairs.entries),
            "subsets": pairs.subsets,
            "bad_lines": pairs.bad_lines + judged.bad_lines,
            "items": [
                _item(
                    e,
                    judged.by_pair.get(e.id, []),
                    other.by_pair.get(e.id, []) if other is not None else None,
                    kept.get(e.id) if kept is not None else None,
                )
                for e in page
            ],
        }

    def pair(self, set_key: str, pair_id: str, iterations: list[int | None]) -> dict[str, Any]:
        """A pair in full and every judgement of it (both orders, every sample) by each judge
        asked for (one, or two side by side)."""
        judges = []
        pair_row: dict[str, Any] | None = None
        for iteration in iterations or [None]:
            src, j = self._source(set_key, iteration)
            entry = self._pairs.get(src.pairs).by_id.get(pair_id)
            if entry is None:
                raise ViewError(f"no pair {pair_id!r} in {src.pairs.name}", 404)
            if pair_row is None:
                pair_row = ResponsePair.model_validate(
                    _read_line(src.pairs, entry.offset)
                ).model_dump(mode="json")
            samples = self._judgements.get(src.judgements).by_pair.get(pair_id, [])
            kept = self._kept.get(src.kept) if src.kept and src.kept.exists() else None
            judges.append(
                {
                    "iteration": j,
                    "judge": src.judge,
                    "file": str(src.judgements.relative_to(self.root)),
                    "score": _score(samples),
                    "flags": _flags(samples),
                    "kept": kept.get(pair_id, []) if kept is not None else None,
                    "judgements": [_judgement(src.judgements, s) for s in samples],
                }
            )
        return {"set": set_key, "pair": pair_row, "judges": judges}

    # -- search ------------------------------------------------------------------------------

    def _search(self, set_key: str, src: _Source, text: str) -> frozenset[str]:
        """Ids of the pairs whose texts, or whose judgements' reasoning, contain `text`
        (case-insensitive); remembered per file version."""
        needle = text.strip().lower()
        stamps = tuple(
            (p, p.stat().st_mtime_ns, p.stat().st_size) for p in (src.pairs, src.judgements)
        )
        key = (set_key, stamps, needle)
        with self._search_lock:
            if key in self._searches:
                self._searches.move_to_end(key)
                return self._searches[key]
        found = set(_grep(src.pairs, needle, _PAIR_TEXTS, "id"))
        found.update(_grep(src.judgements, needle, ("text", "message"), "pair_id"))
        result = frozenset(found)
        with self._search_lock:
            self._searches[key] = result
            while len(self._searches) > _SEARCH_CACHE:
                self._searches.popitem(last=False)
        return result


def _grep(path: Path, needle: str, fields: tuple[str, ...], id_field: str) -> Iterator[str]:
    # Raw bytes first: for a query without characters JSON escapes, a line whose text contains
    # it contains its bytes, so only those lines are decoded.
    raw = needle.encode()
    prefilter = needle.isascii() and not any(c in needle for c in '"\\') and needle.isprintable()
    for _, line in _lines(path):
        if prefilter and raw not in line.lower():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if any(needle in str(row.get(f) or "").lower() for f in fields):
            yield str(row.get(id_field))


def _item(
    e: PairEntry, samples: list[Sample], theirs: list[Sample] | None, kept: list[str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "subset": e.subset,
        "instruction": e.head,
        "score": _score(samples),
        "flags": _flags(samples),
        "verdicts": [s.brief() for s in samples],
    }
    if kept is not None:
        out["kept"] = kept
    if theirs is not None:
        out["compare"] = {"score": _score(theirs), "verdicts": [s.brief() for s in theirs]}
    return out


def _judgement(path: Path, s: Sample) -> dict[str, Any]:
    rec: Judgement | Drop = judgement_from_row(_read_line(path, s.offset))
    a, b = ("chosen", "rejected") if s.order is Order.AB else ("rejected", "chosen")
    out = {**s.brief(), "shown": {"A": a, "B": b}, "correct_verdict": s.order.correct_verdict}
    if isinstance(rec, Judgement):
        out.update(
            text=rec.text,
            parse_reason=rec.parse_reason,
            judge_model=rec.judge_model,
            template=rec.template,
            usage=rec.usage.model_dump(),
        )
    else:
        out.update(text=rec.text, reason=rec.reason, error_type=rec.error_type, message=rec.message)
    return out


def _set_info(key: str, label: str, iterations: list[int], comparable: bool) -> dict[str, Any]:
    return {"key": key, "label": label, "iterations": iterations, "comparable": comparable}


def _iteration_summary(it: Any) -> dict[str, Any]:
    """One judge's numbers for the overview (`it`: a report's IterationData)."""
    score_fields = {"item_scores", "warnings"}
    metrics = it.metrics
    return {
        "index": it.index,
        "judge_model": it.judge_model,
        "eval": it.eval.model_dump(mode="json", exclude=score_fields) if it.eval else None,
        "eval_source": it.eval_source,
        "benchmarks": {
            k: v.model_dump(mode="json", exclude=score_fields) for k, v in it.benchmarks.items()
        },
        "paired": (
            {k: v.model_dump(mode="json") for k, v in metrics.paired.items()} if metrics else {}
        ),
        "funnel": it.funnel.model_dump(mode="json") if it.funnel else None,
        "stage_counts": it.stage_counts,
        "stages": {k: v.model_dump(mode="json") for k, v in it.usage.items()},
        "finetune": it.finetune.model_dump(mode="json") if it.finetune else None,
        "notes": it.notes,
    }


def compare_runs(views: list[RunView]) -> dict[str, Any]:
    """The runs side by side, one row each: the seed judge, the last judge and its paired test
    against the seed, the judge with the highest eval accuracy, cost, and which eval pairs they
    were scored on, with `ste report`'s warning when those differ."""
    from ste_core.evaluation.report import eval_pairs_mismatch, load_run

    loaded = [load_run(v.root) for v in views]
    rows = []
    for i, run in enumerate(loaded):
        # A judge with too many failed requests has no accuracy: it is not compared.
        scored = [
            (it, it.eval)
            for it in run.iterations
            if it.eval is not None and it.eval.accuracy is not None
        ]
        seed = next((it for it, _ in scored if it.index == 0), None)
        last = scored[-1][0] if scored else None
        highest = max(scored, key=lambda pair: pair[1].accuracy or 0.0, default=(None, None))[0]
        rows.append(
            {
                "id": i,
                "name": run.name,
                "directory": str(views[i].root.resolve()),
                "status": run.manifest.status if run.manifest else None,
                "eval_pairs": str(run.eval_pairs) if run.eval_pairs else None,
                "judges": len(scored),
                "seed": _judge_score(seed),
                "last": _judge_score(last),
                "last_vs_seed": _vs_seed(last),
                "highest": _judge_score(highest),
                "cost_usd": run.manifest.cost_usd.total if run.manifest else None,
            }
        )
    return {"runs": rows, "warning": eval_pairs_mismatch(loaded)}


def _judge_score(it: Any) -> dict[str, Any] | None:
    if it is None:
        return None
    e = it.eval
    return {
        "iteration": it.index,
        "accuracy": e.accuracy,
        "ci_low": e.ci_low,
        "ci_high": e.ci_high,
        "n_items": e.n_items,
    }


def _vs_seed(it: Any) -> dict[str, Any] | None:
    """The last judge's paired test against the seed judge (at iteration 1, its previous)."""
    if it is None or it.metrics is None:
        return None
    tests = [t for t in it.metrics.paired.values() if t.against_iteration == 0]
    return tests[0].model_dump(mode="json") if tests else None
