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
    """A subset's accuracy over its `n` scored items; `errors` of its items could not be scored."""

    accuracy: float
    n: int
    ci: tuple[float, float]
    errors: int = 0


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
    """Everything measured on one judge x one pairs set.

    An item is scored when every order it was to be judged in has at least one answered sample;
    otherwise (a request failed, or a judgement is missing) it is an error: left out of the
    accuracy and counted in `error_count`. When errors exceed `max_error_rate` of the items
    there is no headline: `accuracy`, its interval, the subsets and RewardBench are None/empty
    (`ste_core.evaluation.headline.headline_allowed`).
    """

    accuracy: float | None = Field(
        description="mean item score over the scored items; None when errors exceed the limit"
    )
    ci_low: float | None
    ci_high: float | None
    ci_method: str = CI_METHOD_ITEMS
    n_items: int
    n_scored: int | None = Field(
        None, description="items with a score (n_items - error_count); None in older records"
    )
    n_judgements: int = Field(description="answered judgements (failed requests not included)")
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
    no_verdict_count: int = Field(
        0, description="answers without a usable verdict (parse failures; scored 0.5)"
    )
    tie_rate: float = 0.0
    error_count: int = Field(
        0, description="items not scored: a request failed or a judgement is missing"
    )
    request_errors: int = Field(0, description="samples whose request failed (transport errors)")
    missing_count: int = Field(0, description="(item, order) judgements never made")
    first_error: str | None = Field(None, description="the first failed request's error")
    max_error_rate: float | None = Field(
        None, description="errors above this share of the items withhold the headline"
    )
    a_verdict_share: float | None = Field(None, description="A / (A + B) over all verdicts")
    per_subset: dict[str, SubsetScore] = Field(default_factory=dict)
    rewardbench: RewardBenchScore | None = None
    item_scores: dict[str, float] = Field(
        default_factory=dict, description="per scored item (errors are not in it)"
    )
    judge_models: list[str] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def scored(self) -> int:
        return self.n_items - self.error_count if self.n_scored is None else self.n_scored

    def errors_note(self) -> str:
        """The error counts, the words shown beside every accuracy ("0 errors" included)."""
        words = f"{self.error_count} error{'s' if self.error_count != 1 else ''}"
        if self.error_count:
            failed = (
                f"{self.request_errors} failed request{'s' if self.request_errors != 1 else ''}"
            )
            words += f" of {self.n_items} items ({failed}"
            words += f", {self.missing_count} missing)" if self.missing_count else ")"
        return words

    def summary(self) -> str:
        """One line: accuracy [CI] (n, errors), or why there is no accuracy."""
        if self.accuracy is None or self.ci_low is None or self.ci_high is None:
            return f"no accuracy: {self.errors_note()} (n={self.n_items}, mode={self.mode})"
        return (
            f"{100 * self.accuracy:.1f}% [{100 * self.ci_low:.1f}, {100 * self.ci_high:.1f}] "
            f"(n={self.scored}, {self.errors_note()}, mode={self.mode})"
        )


class PairedTest(_Score):
    """Result of comparing judge b with judge a on their common items."""

    #: "bootstrap" only in records of earlier versions (a bootstrap p-value, anti-conservative)
    method: Literal["mcnemar", "sign-flip", "bootstrap"]
    exact: bool = Field(True, description="False: a Monte Carlo p-value over n_draws draws")
    n_draws: int = 0
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
            f"p={self.p_value:.3g} ({self.test_name()}, n={self.n_common})"
        )

    def test_name(self) -> str:
        """The test behind the p-value, in words."""
        if self.method == "sign-flip":
            return "sign-flip, exact" if self.exact else f"sign-flip, {self.n_draws} draws"
        return "exact McNemar" if self.method == "mcnemar" else "bootstrap (old record)"


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
