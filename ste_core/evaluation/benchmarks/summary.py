"""A benchmark result as text (the headline or why there is none, each figure with its interval
and counts, the rule version and what it is comparable to), and as report tables."""

from __future__ import annotations

from ste_core.evaluation.document import Para, Table
from ste_core.records import BenchmarkFigure, BenchmarkResult

__all__ = ["format_figure", "format_result", "published_tables"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def format_figure(f: BenchmarkFigure) -> str:
    ci = f" [{_pct(f.ci[0])}, {_pct(f.ci[1])}]" if f.ci else ""
    counts = f"n={f.n}"
    if f.errors:
        counts += f", {f.errors} failed"
    if f.missing:
        counts += f", {f.missing} missing"
    if f.parse_failures:
        counts += f", {f.parse_failures} unparsed"
    return f"{_pct(f.value)}{ci} ({counts})"


def headline(r: BenchmarkResult) -> str:
    """The headline with its 95% interval, or "no headline" (too many items unscored)."""
    if r.headline is None:
        return "no headline"
    ci = f" [{_pct(r.headline_ci[0])}, {_pct(r.headline_ci[1])}]" if r.headline_ci else ""
    return _pct(r.headline) + ci


def format_result(r: BenchmarkResult) -> str:
    lines = [f"{r.benchmark}: {r.headline_name}"]
    if r.headline is not None:
        lines[0] += f" = {headline(r)} (95% interval)"
    else:
        lines.append(f"  no headline: {r.refused}")
    lines.append(
        f"  {r.n_items} items, {r.error_count} failed requests, {r.missing_count} without "
        f"output, {r.parse_failures} with unparsed answers (max_error_rate {r.max_error_rate:.0%})"
    )
    width = max((len(k) for k in (*r.figures, *r.extra)), default=0)
    for name, fig in r.figures.items():
        lines.append(f"  {name:<{width}}  {format_figure(fig)}")
    if r.extra:
        lines.append("  also:")
        for name, fig in r.extra.items():
            lines.append(f"  {name:<{width}}  {format_figure(fig)}")
    lines.append(f"  rule: {r.rule_version}")
    lines.append(f"  comparable: {r.comparability}")
    lines += [f"  warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def _cell(f: BenchmarkFigure) -> str:
    ci = f" [{_pct(f.ci[0])}, {_pct(f.ci[1])}]" if f.ci else ""
    unscored = f.errors + f.missing
    return f"{_pct(f.value)}{ci}" + (f" ({unscored} unscored)" if unscored else "")


def published_tables(
    per_iteration: list[tuple[str, dict[str, BenchmarkResult]]],
) -> list[Table | Para]:
    """Per published benchmark: a table with a row per iteration (headline with its interval,
    each figure, the items left unscored), then a note with the rule, what the numbers are
    comparable to, and any iteration without a headline."""
    names = sorted({n for _, results in per_iteration for n in results})
    blocks: list[Table | Para] = []
    for name in names:
        rows_of = [(label, results[name]) for label, results in per_iteration if name in results]
        figures: list[str] = []
        for _, r in rows_of:
            figures += [f for f in r.figures if f not in figures]
        rows = []
        for label, r in rows_of:
            head = headline(r)
            unscored = f"{r.error_count} failed, {r.missing_count} missing"
            rows.append(
                [label, head]
                + [_cell(r.figures[f]) if f in r.figures else "–" for f in figures]
                + [unscored]
            )
        last = rows_of[-1][1]
        label = name if name == last.benchmark else f"{name} ({last.benchmark})"
        caption = f"{label}: {last.headline_name}"
        blocks.append(Table(["iteration", "headline", *figures, "unscored"], rows, caption))
        note = f"Rule: {last.rule_version}. {last.comparability}"
        refusals = [f"iteration {it}: {r.refused}" for it, r in rows_of if r.refused]
        if refusals:
            note += " No headline for " + "; ".join(refusals)
        blocks.append(Para(note, kind="note"))
    return blocks
