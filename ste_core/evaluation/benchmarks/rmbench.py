"""RM-Bench (Liu et al., 2024): chosen and rejected responses in three styles each.

Official rows (`THU-KEG/RM-Bench`, data/total_dataset.json): ``id, prompt, chosen[3],
rejected[3], domain``, the styles being concise, detailed plain text, detailed markdown; domains
chat, code, math, safety-refuse, safety-response.

Scoring ported from THU-KEG/RM-Bench at commit 73c52d7b27b361621361ec959ac6c0eb9bb7a689,
`scripts/utils.py`, `compute_accuracy` and `split_dataset_by_domain`:

* per domain, the 3x3 matrix M[i][j] = share of rows where chosen_i beats rejected_j;
* hard = mean of the upper triangle (i < j: the chosen response is plainer than the rejected
  one), normal = mean of the diagonal, easy = mean of the lower triangle;
* a domain's score = mean of (hard, normal, easy); domains are matched by prefix
  (``domain.startswith``), so safety-refuse and safety-response form one "safety" domain;
* overall = mean of the four domains (chat, math, code, safety), as are overall hard, normal
  and easy.

A reward model beats with a strictly higher score. A pairwise generative judge decides
"chosen_i beats rejected_j" from its two judgements of that pair (both orders) by `pair_rule`:
``consistent`` (default) counts it only when the judge picks chosen_i in both orders, the
analogue of the strict ">" (a judge whose choice flips with the order has stated no
preference); ``mean`` scores 1 / 0.5 / 0 per order and averages the two.

A row is scored only when all nine of its comparisons were judged in both orders: a failed
request leaves the row out (counted as an error), as does a comparison without output
(missing). The official code divides each cell by the number of rows, so rows must be whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ste_core.evaluation.benchmarks.base import (
    DEFAULT_MAX_ERROR_RATE,
    PairRule,
    Tally,
    collect_pairwise,
    error_gate,
    has_no_verdict,
    load_items,
    pair_status,
    require,
    string_list,
    two_order_score,
)
from ste_core.evaluation.stats import DEFAULT_RESAMPLES, stratified_bootstrap
from ste_core.records import BenchmarkFigure, BenchmarkResult, Drop, Judgement, ResponsePair
from ste_core.run.io import OnError

NAME = "rmbench"
RULE_VERSION = "rm-bench-compute_accuracy@73c52d7 (3x3 style matrix, 4 domains)"
DOMAINS = ("chat", "math", "code", "safety")
SIZE = 3


def comparability(pair_rule: PairRule) -> str:
    return (
        "Comparable to RM-Bench's published domain and hard/normal/easy accuracies for the same "
        f"data file when the judge's two orders make one decision by the '{pair_rule}' rule "
        "(published generative-judge numbers use their own prompts and rules; reward-model "
        "numbers compare two scalar scores)."
    )


@dataclass(frozen=True)
class RMBenchItem:
    id: str
    prompt: str
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]
    domain: str
    group: str  # the official domain: the first of DOMAINS that `domain` starts with

    def pairs(self) -> list[ResponsePair]:
        """The nine comparisons chosen_i vs rejected_j, ids ``<id>:c<i>r<j>``."""
        return [
            ResponsePair(
                id=cell_id(self.id, i, j),
                instruction=self.prompt,
                chosen=self.chosen[i],
                rejected=self.rejected[j],
                subset=self.domain,
            )
            for i in range(SIZE)
            for j in range(SIZE)
        ]


def cell_id(item_id: str, i: int, j: int) -> str:
    return f"{item_id}:c{i}r{j}"


def parse_row(row: dict[str, Any]) -> RMBenchItem:
    raw_id = row.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ValueError("missing or invalid 'id'")
    chosen, rejected = string_list(row, "chosen"), string_list(row, "rejected")
    if len(chosen) != SIZE or len(rejected) != SIZE:
        raise ValueError(
            f"'chosen' and 'rejected' must hold {SIZE} responses each (concise, detailed plain, "
            f"detailed markdown), got {len(chosen)} and {len(rejected)}"
        )
    domain = require(row, "domain", str)
    group = next((d for d in DOMAINS if domain.startswith(d)), None)
    if group is None:
        raise ValueError(f"'domain' {domain!r} does not start with one of {', '.join(DOMAINS)}")
    return RMBenchItem(
        id=str(raw_id),
        prompt=require(row, "prompt", str),
        chosen=tuple(chosen),
        rejected=tuple(rejected),
        domain=domain,
        group=group,
    )


def load(path: str | Path, *, on_error: OnError = "raise") -> tuple[list[RMBenchItem], Any]:
    return load_items(path, parse_row, lambda i: i.id, on_error=on_error)


def to_pairs(items: Iterable[RMBenchItem]) -> list[ResponsePair]:
    return [p for it in items for p in it.pairs()]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _levels(cells: list[list[float]]) -> dict[str, float]:
    """hard / normal / easy of one row's 3x3 matrix (the official triangles)."""
    hard = [cells[i][j] for i in range(SIZE) for j in range(SIZE) if i < j]
    normal = [cells[i][i] for i in range(SIZE)]
    easy = [cells[i][j] for i in range(SIZE) for j in range(SIZE) if i > j]
    return {"hard": _mean(hard), "normal": _mean(normal), "easy": _mean(easy)}


def score(
    items: list[RMBenchItem],
    records: Iterable[Judgement | Drop],
    *,
    pair_rule: PairRule = "consistent",
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    seed: int = 0,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> BenchmarkResult:
    """Score judgements of the nine comparisons of every row (`to_pairs` ids)."""
    known = {cell_id(it.id, i, j) for it in items for i in range(SIZE) for j in range(SIZE)}
    got = collect_pairwise(records, known)
    tallies = {d: Tally() for d in DOMAINS}
    item_scores: dict[str, float] = {}
    for it in items:
        t = tallies[it.group]
        ids = [[cell_id(it.id, i, j) for j in range(SIZE)] for i in range(SIZE)]
        statuses = {pair_status(c, got) for row in ids for c in row}
        if "error" in statuses:
            t.errors += 1
            continue
        if "missing" in statuses:
            t.missing += 1
            continue
        cells = [[two_order_score(got.verdicts[c], pair_rule) for c in row] for row in ids]
        levels = _levels(cells)
        # The domain score is the mean of hard, normal and easy, each a mean of three cells:
        # the mean over rows of each row's nine-cell mean.
        item_scores[it.id] = _mean([levels["hard"], levels["normal"], levels["easy"]])
        t.add(
            item_scores[it.id],
            parse_failure=any(has_no_verdict(got.verdicts[c]) for row in ids for c in row),
            **levels,
        )
    present = [d for d in DOMAINS if tallies[d].scores]
    figs = {d: tallies[d].figure(seed=seed, confidence=confidence) for d in DOMAINS}
    extra = {
        f"{d}/{level}": tallies[d].figure(level, seed=seed, confidence=confidence)
        for d in present
        for level in ("hard", "normal", "easy")
    }
    strata = {
        f"{d}/{key}": (tallies[d].scores if key == "avg" else tallies[d].extra[key])
        for d in present
        for key in ("avg", "hard", "normal", "easy")
    }

    def statistic(means: dict[str, float]) -> dict[str, float]:
        return {
            key: _mean([means[f"{d}/{key}"] for d in present])
            for key in ("avg", "hard", "normal", "easy")
        }

    cis = (
        stratified_bootstrap(
            strata, statistic, n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        if present
        else {}
    )
    errors = sum(t.errors for t in tallies.values())
    missing = sum(t.missing for t in tallies.values())
    pf = sum(t.parse_failures for t in tallies.values())
    n_scored = sum(len(t.scores) for t in tallies.values())
    point = (
        {
            key: _mean(
                [
                    _mean(tallies[d].scores if key == "avg" else tallies[d].extra[key])
                    for d in present
                ]
            )
            for key in ("avg", "hard", "normal", "easy")
        }
        if present
        else {}
    )
    for level in ("hard", "normal", "easy"):
        extra[level] = BenchmarkFigure(
            value=point.get(level),
            ci=cis.get(level),
            n=n_scored,
            errors=errors,
            missing=missing,
            parse_failures=pf,
        )
    rate, refused = error_gate(len(items), errors, missing, max_error_rate)
    warnings: list[str] = []
    absent = [d for d in DOMAINS if d not in present]
    if absent and present:
        warnings.append(
            f"domain(s) without scored rows: {', '.join(absent)}; the overall is the mean of "
            f"{', '.join(present)} only and not comparable to the published four-domain mean"
        )
    if not present and not refused:
        refused = "no row could be scored"
    return BenchmarkResult(
        benchmark=NAME,
        rule_version=f"{RULE_VERSION}; pair rule {pair_rule}",
        comparability=comparability(pair_rule),
        headline_name="overall (mean of chat, math, code, safety)",
        headline=None if refused else point.get("avg"),
        headline_ci=None if refused else cis.get("avg"),
        refused=refused,
        figures=figs,
        extra=extra,
        n_items=len(items),
        error_count=errors,
        missing_count=missing,
        parse_failures=pf,
        error_rate=rate,
        max_error_rate=max_error_rate,
        seed=seed,
        judge_models=got.judge_models,
        warnings=warnings,
        item_scores=item_scores,
    )
