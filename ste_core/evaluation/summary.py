"""Plain-text rendering of an EvalScore (what `ste evaluate` / `ste score` print)."""

from __future__ import annotations

from ste_core.records import EvalScore


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _ci(ci: tuple[float | None, float | None] | None) -> str:
    return "" if ci is None else f"[{_p(ci[0])}, {_p(ci[1])}]"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def format_score(score: EvalScore) -> str:
    """A few aligned lines: overall, diagnostics, per subset, RewardBench sections."""
    s = score
    vote = f", majority of {s.samples_per_order}" if s.majority else ""
    samples = f", {s.samples_per_order} samples/order" if s.samples_per_order > 1 else ""
    if s.n_items == 0:
        headline = "accuracy   none: no items"
    elif s.accuracy is None or s.ci_low is None or s.ci_high is None:
        headline = f"accuracy   none: {s.errors_note()}, too many to report an accuracy"
    else:
        headline = (
            f"accuracy   {_p(s.accuracy)}% {_ci((s.ci_low, s.ci_high))} (95% Wilson over the "
            f"{s.scored} scored items; {s.errors_note()})"
        )
    lines = [
        headline,
        f"items      {s.n_items} items, {s.n_judgements} judgements, "
        f"orders={s.mode}{samples}{vote}",
    ]
    diag = []
    if s.mode == "both":
        diag.append(
            f"position consistency {_p(s.position_consistency)}% (n={s.n_position_comparable})"
        )
    diag.append(f"A share {_p(s.a_verdict_share)}%")
    diag.append(f"no verdict {_p(s.no_verdict_rate)}% ({s.no_verdict_count}, scored 0.5)")
    diag.append(f"ties {_p(s.tie_rate)}%")
    diag.append(
        f"errors: {_n(s.error_count, 'item')} not scored ({_n(s.request_errors, 'failed request')}"
        f", {s.missing_count} missing)"
    )
    lines.append("judge      " + ", ".join(diag))
    if s.first_error:
        lines.append(f"first error {s.first_error}")
    models = [m for m in s.judge_models if m != "unknown"]
    if models:
        templates = [t for t in s.templates if t != "unknown"] or ["unknown"]
        lines.append(f"model      {', '.join(models)}  template {', '.join(templates)}")
    if s.per_subset:
        width = max(len(k) for k in s.per_subset) + 2
        lines += ["", f"{'subset':<{width}}{'n':>6}{'errors':>8}  {'accuracy':>8}  95% CI"]
        for name, sub in s.per_subset.items():
            lines.append(
                f"{name:<{width}}{sub.n:>6}{sub.errors:>8}  {_p(sub.accuracy):>8}  {_ci(sub.ci)}"
            )
    r = s.rewardbench
    if r is not None:
        lines += ["", f"RewardBench sections, weights '{r.weights}': {r.weights_description}"]
        for name, sec in r.sections.items():
            partial = (
                f"  (missing: {', '.join(sec.missing_subsets)})" if sec.missing_subsets else ""
            )
            lines.append(f"  {name:<10} {_p(sec.score):>6} {_ci(sec.ci)}{partial}")
        lines.append(f"  {'final':<10} {_p(r.final):>6} {_ci(r.final_ci)}")
        if r.missing_sections:
            lines.append(
                f"  final is the mean of the {len(r.sections)} section(s) present; missing "
                f"sections (not scored as 0): {', '.join(r.missing_sections)}"
            )
        if r.other_subsets:
            lines.append(f"  subsets outside the sections: {', '.join(r.other_subsets)}")
    for w in s.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
