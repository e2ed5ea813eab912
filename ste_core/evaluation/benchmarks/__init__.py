"""Published benchmarks scored by their own official rules: RewardBench 2, JudgeBench, RM-Bench
and PPE (RewardBench v1 is `ste_core.evaluation.scoring`, the `rewardbench` entry here).

`BENCHMARKS` maps a name to a `Benchmark`: how its official file is read, which judge requests
an item needs (pairwise in both orders, or RewardBench 2's rankings / ratings) and how the
outputs are scored into a `BenchmarkResult` (per-subset figures, 95% intervals, counts of
failed and missing outputs, the rule version and what the numbers are comparable to). The
scorers are pure functions; `judging.judge_benchmark` sends the requests. See
docs/evaluation.md, "Published benchmarks".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ste_core.evaluation.benchmarks import judgebench, ppe, rewardbench2, rmbench
from ste_core.evaluation.benchmarks.base import (
    DEFAULT_MAX_ERROR_RATE,
    PAIR_RULES,
    OfficialRows,
    PairRule,
    read_official_rows,
)
from ste_core.records import BenchmarkResult, ResponsePair
from ste_core.run.io import OnError, SkippedRow

__all__ = [
    "BENCHMARKS",
    "DEFAULT_MAX_ERROR_RATE",
    "PAIR_RULES",
    "Benchmark",
    "Loaded",
    "OfficialRows",
    "PairRule",
    "get_benchmark",
    "read_official_rows",
    "read_outputs",
]


@dataclass
class Loaded:
    """A benchmark file read: its items (benchmark-specific) and the rows skipped."""

    benchmark: Benchmark
    data: Any
    path: Path
    skipped: list[SkippedRow]

    @property
    def pairs(self) -> list[ResponsePair]:
        """The pairwise comparisons to judge in both orders ([] for RewardBench 2)."""
        return self.benchmark.to_pairs(self.data) if self.benchmark.to_pairs else []

    @property
    def n_items(self) -> int:
        return len(self.data.items if isinstance(self.data, ppe.PPEFile) else self.data)

    def limit(self, n: int | None) -> Loaded:
        """Keep the first `n` items (all when None)."""
        if n is not None:
            if isinstance(self.data, ppe.PPEFile):
                self.data.items = self.data.items[:n]
            else:
                self.data = self.data[:n]
        return self


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    reader: Callable[..., tuple[Any, OfficialRows]]
    to_pairs: Callable[[Any], list[ResponsePair]] | None  # None: RewardBench 2's own requests
    scorer: Callable[..., BenchmarkResult]
    options: tuple[str, ...]  # the scorer's keyword options beyond the common ones

    def load(self, path: str | Path, *, on_error: OnError = "raise") -> Loaded:
        data, src = self.reader(path, on_error=on_error)
        return Loaded(self, data, src.path, src.skipped)

    def score(self, loaded: Loaded, outputs: Any, **options: Any) -> BenchmarkResult:
        """Score `outputs` (Judgement/Drop records, or RB2Output rows) of `loaded`'s items;
        options this benchmark does not take are dropped."""
        common = {"max_error_rate", "seed", "confidence"}
        kept = {k: v for k, v in options.items() if k in common or k in self.options}
        return self.scorer(loaded.data, outputs, **kept)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "rewardbench2",
            "RewardBench 2",
            rewardbench2.load,
            None,
            rewardbench2.score,
            ("mode", "n_resamples"),
        ),
        Benchmark(
            "judgebench",
            "JudgeBench",
            judgebench.load,
            lambda items: [i.pair() for i in items],
            judgebench.score,
            (),
        ),
        Benchmark(
            "rmbench",
            "RM-Bench",
            rmbench.load,
            rmbench.to_pairs,
            rmbench.score,
            ("pair_rule", "n_resamples"),
        ),
        Benchmark(
            "ppe", "PPE", ppe.load, lambda f: [i.pair() for i in f.items], ppe.score, ("pair_rule",)
        ),
    )
}


def read_outputs(
    benchmark: Benchmark,
    path: str | Path,
    *,
    on_error: OnError = "raise",
    parser: Callable[[str], Any] | None = None,
    judge_model: str = "unknown",
) -> tuple[list[Any], list[SkippedRow]]:
    """Judge outputs produced anywhere: judgement rows (pairwise benchmarks; verdicts re-parsed
    with `parser`, default the pairwise verdict parser) or RewardBench 2 output rows."""
    if benchmark.to_pairs is None:
        return rewardbench2.read_outputs(path, on_error=on_error)
    from ste_core.evaluation.pairs_io import read_judgements

    jf = read_judgements(path, on_error=on_error, parser=parser, judge_model=judge_model)
    return list(jf.records), jf.skipped


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(
            f"unknown benchmark {name!r}; known: rewardbench, pairs, {', '.join(BENCHMARKS)}"
        ) from None
