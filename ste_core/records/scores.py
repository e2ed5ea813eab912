"""Records of measured judges: a score on one pairs set, RewardBench sections, paired tests.

`ste_core.evaluation` computes them; the run's metrics (`IterationMetrics`) and reports carry
them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CI_METHOD_ITEMS",
    "CI_METHOD_WEIGHTED",
    "BenchmarkFigure",
    "BenchmarkResult",
    "EvalScore",
    "JudgeSelection",
    "Mode",
    "PairedTest",
    "RewardBenchScore",
    "SectionScore",
    "SubsetScore",
]

Mode = Literal["single", "both"]

#: The interval method named in every score (see docs/evaluation.md, "Statistics").
CI_METHOD_ITEMS = "wilson (items; fractional successes for 0.5 scores; conservative)"
CI_METHOD_WEIGHTED = "stratified percentile bootstrap over items within subsets"


class _Score(BaseModel):
    # Not `Record`: scores written by earlier versions may carry fields this one dropped.
    model_config = ConfigDict(frozen=True)


class SubsetScore(_Score):
    accuracy: float
    n: int
    ci: tuple[float, float]


class SectionScore(_Score):
    score: float
    ci: tuple[float, float]
    subsets: list[str]
    missing_subsets: list[str]


class RewardBenchScore(_Score):
    """Sections and final, over the sections present; missing sections are named, not zeroed."""

    weights: str
    weights_description: str
    sections: dict[str, SectionScore]
    final: float | None
    final_ci: tuple[float, float] | None
    missing_sections: list[str]
    other_subsets: list[str] = Field(
        default_factory=list, description="subsets scored on their own, outside the sections"
    )

    @property
    def complete(self) -> bool:
        return not self.missing_sections


class EvalScore(_Score):
    """Everything measured on one judge x one pairs set."""

    accuracy: float
    ci_low: float
    ci_high: float
    ci_method: str = CI_METHOD_ITEMS
    n_items: int
    n_judgements: int
    mode: Mode
    majority: bool = False
    samples_per_order: int = 1
    seed: int = 0
    position_consistency: float | None = Field(
        None,
        description="share of comparable (both orders decided) items that picked the same "
        "response in both orders; None in single mode",
    )
    n_position_comparable: int = 0
    no_verdict_rate: float = Field(0.0, description="judgements without a verdict / judgements")
    tie_rate: float = 0.0
    error_count: int = Field(0, description="API failures plus missing judgements (score 0.5)")
    missing_count: int = 0
    a_verdict_share: float | None = Field(None, description="A / (A + B) over all verdicts")
    per_subset: dict[str, SubsetScore] = Field(default_factory=dict)
    rewardbench: RewardBenchScore | None = None
    item_scores: dict[str, float] = Field(default_factory=dict)
    judge_models: list[str] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line: accuracy [CI] (n)."""
        return (
            f"{100 * self.accuracy:.1f}% [{100 * self.ci_low:.1f}, {100 * self.ci_high:.1f}] "
            f"(n={self.n_items}, mode={self.mode})"
        )


class PairedTest(_Score):
    """Result of comparing judge b with judge a on their common items."""

    method: Literal["mcnemar", "bootstrap"]
    n_common: int
    n_only_a: int
    n_only_b: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    b_better: int = 0
    a_better: int = 0
    n_resamples: int
    seed: int = 0

    def summary(self) -> str:
        return (
            f"{100 * self.difference:+.1f} pts "
            f"[{100 * self.ci_low:+.1f}, {100 * self.ci_high:+.1f}], "
            f"p={self.p_value:.3g} ({self.method}, n={self.n_common})"
        )


class BenchmarkFigure(_Score):
    """One figure of a benchmark (a subset, source, domain or the headline): its value over the
    items that were scored, a 95% interval, how many items it covers, and beside it the items
    left out because a request failed (`errors`) or no output was given (`missing`)."""

    value: float | None
    ci: tuple[float, float] | None = None
    n: int
    errors: int = 0
    missing: int = 0
    parse_failures: int = 0


class BenchmarkResult(_Score):
    """A judge's result on one published benchmark, scored by that benchmark's own rules
    (`ste_core.evaluation.benchmarks`). `headline` is None (and `refused` says why) when too many
    items could not be scored; the per-subset figures are still given."""

    benchmark: str
    rule_version: str
    comparability: str
    headline_name: str
    headline: float | None
    headline_ci: tuple[float, float] | None = None
    refused: str | None = None
    figures: dict[str, BenchmarkFigure] = Field(default_factory=dict)
    extra: dict[str, BenchmarkFigure] = Field(default_factory=dict)
    n_items: int
    error_count: int = 0
    missing_count: int = 0
    parse_failures: int = 0
    error_rate: float = 0.0
    max_error_rate: float = 0.10
    seed: int = 0
    judge_models: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    item_scores: dict[str, float] = Field(default_factory=dict)


class JudgeSelection(_Score):
    """The judge picked as the run's result (`evaluation.select_on`): the iteration whose judge
    scored best on the selection items, and its score on items it was *not* selected on."""

    iteration: int
    judge_model: str
    criterion: str  # "eval" or "validation"
    source: str  # what the selection items are
    value: float
    ci: tuple[float, float]
    candidates: dict[int, float] = Field(default_factory=dict)
    #: the selected judge's accuracy on the frozen eval pairs when it was selected on other
    #: items; None when it was selected on them (that figure is then biased upwards)
    held_out_accuracy: float | None = None
    held_out_ci: tuple[float, float] | None = None
    note: str = ""
