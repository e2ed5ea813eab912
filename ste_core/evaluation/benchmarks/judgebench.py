"""JudgeBench (Tan et al., 2024): pairs of responses to hard questions, one objectively right.

Official rows (`ScalerLab/JudgeBench`, data/*.jsonl): ``pair_id, source, question, response_A,
response_B, label`` with label ``"A>B"`` or ``"B>A"``. Each pair is judged in two games, the
second with the responses swapped.

Scoring ported from ScalerLab/JudgeBench at commit e2c52c284e735e139b3daa61c206ee208f36c461,
`utils/metrics.py`, `compute_final_metrics(pairs, reverse_order=True)`: per pair a counter gets
+1 for each game whose decision (flipped back for game 2) equals the label and -1 for each that
equals the flipped label; the pair is correct iff the counter is > 0 (so right + tie counts,
right + wrong does not). Figures per source prefix as `run_judge.py` prints them (mmlu-pro,
livebench-reasoning, livebench-math, livecodebench) and overall. Also reported: position-
consistent accuracy (right in both games), which J1 and EvalPlanner report for JudgeBench.

Differences from the official script, stated in every result: a game whose request failed is
not scored (the official script keeps the pair with that game as no decision); the verdict is
read by the judge template's parser (`[[A]]`/`[[B]]`, `[[C]]` = tie), not by the official judges'
own prompts and parsers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ste_core.evaluation.benchmarks.base import (
    DEFAULT_MAX_ERROR_RATE,
    Tally,
    collect_pairwise,
    error_gate,
    has_no_verdict,
    load_items,
    pair_status,
    require,
    two_order_score,
)
from ste_core.records import BenchmarkResult, Drop, Judgement, ResponsePair
from ste_core.run.io import OnError

NAME = "judgebench"
RULE_VERSION = "judgebench-metrics@e2c52c2 (counter > 0 over two games)"
COMPARABILITY = (
    "Comparable to JudgeBench's published two-game accuracy for the same data file and a judge "
    "prompted with this template; not to numbers from the official judges' own prompts, and "
    "failed requests are left out here (the official script counts them as no decision)."
)
#: The source prefixes `run_judge.py` reports, in its order.
SOURCE_PREFIXES = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")
LABELS = ("A>B", "B>A")


@dataclass(frozen=True)
class JudgeBenchItem:
    pair_id: str
    source: str
    question: str
    response_a: str
    response_b: str
    label: str

    def pair(self) -> ResponsePair:
        """Chosen = the labelled better response; game 1 (response_A first) is order AB when
        the label is A>B, else BA."""
        better_a = self.label == "A>B"
        return ResponsePair(
            id=self.pair_id,
            instruction=self.question,
            chosen=self.response_a if better_a else self.response_b,
            rejected=self.response_b if better_a else self.response_a,
            subset=self.source,
            metadata={"label": self.label},
        )


def parse_row(row: dict[str, Any]) -> JudgeBenchItem:
    pid = row.get("pair_id")
    if isinstance(pid, bool) or not isinstance(pid, str | int):
        raise ValueError("missing or invalid 'pair_id'")
    label = require(row, "label", str)
    if label not in LABELS:
        raise ValueError(f"'label' must be 'A>B' or 'B>A', got {label!r}")
    return JudgeBenchItem(
        pair_id=str(pid),
        source=require(row, "source", str),
        question=require(row, "question", str),
        response_a=require(row, "response_A", str),
        response_b=require(row, "response_B", str),
        label=label,
    )


def load(path: str | Path, *, on_error: OnError = "raise") -> tuple[list[JudgeBenchItem], Any]:
    return load_items(path, parse_row, lambda i: i.pair_id, on_error=on_error)


def source_group(source: str) -> str:
    for prefix in SOURCE_PREFIXES:
        if source.startswith(prefix):
            return prefix
    return source


def score(
    items: list[JudgeBenchItem],
    records: Iterable[Judgement | Drop],
    *,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    seed: int = 0,
    confidence: float = 0.95,
) -> BenchmarkResult:
    """Score judgements (both orders of each pair, `ResponsePair` ids = pair ids)."""
    got = collect_pairwise(records, {i.pair_id for i in items})
    groups: dict[str, Tally] = {}
    overall = Tally()
    item_scores: dict[str, float] = {}
    for it in items:
        tallies = (groups.setdefault(source_group(it.source), Tally()), overall)
        status = pair_status(it.pair_id, got)
        for t in tallies:
            t.errors += status == "error"
            t.missing += status == "missing"
        if status is not None:
            continue
        v = got.verdicts[it.pair_id]
        item_scores[it.pair_id] = two_order_score(v, "counter")
        for t in tallies:
            t.add(
                item_scores[it.pair_id],
                parse_failure=has_no_verdict(v),
                consistent=two_order_score(v, "consistent"),
            )
    figs = {name: t.figure(seed=seed, confidence=confidence) for name, t in groups.items()}
    head = overall.figure(seed=seed, confidence=confidence)
    consistent = overall.figure("consistent", seed=seed, confidence=confidence)
    rate, refused = error_gate(len(items), overall.errors, overall.missing, max_error_rate)
    warnings = [f"{got.unknown} judgement(s) of pairs not in the file were ignored"] * bool(
        got.unknown
    )
    return BenchmarkResult(
        benchmark=NAME,
        rule_version=RULE_VERSION,
        comparability=COMPARABILITY,
        headline_name="accuracy (two games, counter > 0)",
        headline=None if refused else head.value,
        headline_ci=None if refused else head.ci,
        refused=refused,
        figures=figs,
        extra={"overall": head, "position_consistent": consistent},
        n_items=len(items),
        error_count=overall.errors,
        missing_count=overall.missing,
        parse_failures=overall.parse_failures,
        error_rate=rate,
        max_error_rate=max_error_rate,
        seed=seed,
        judge_models=got.judge_models,
        warnings=warnings,
        item_scores=item_scores,
    )
