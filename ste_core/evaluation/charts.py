"""The report's charts (matplotlib, imported only here and only when drawing): accuracy.png
(eval accuracy and benchmarks with 95% intervals, and the share of A verdicts), funnel.png (what
each step of an iteration kept) and cost.png (what each iteration cost, by kind).

Each `draw_*` returns None once the PNG is written, or a note saying why there is none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ste_core.records import Funnel

if TYPE_CHECKING:
    from ste_core.evaluation.report import RunData

NO_MATPLOTLIB = (
    "the charts were not drawn: matplotlib is not installed "
    "(pip install 'self-taught-evaluators[report]')."
)
#: the funnel steps drawn, in the order an iteration goes through them
FUNNEL_STEPS = tuple(k for k in Funnel.model_fields if k != "drops")


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _iter_label(i: int) -> str:
    return "0 (seed)" if i == 0 else str(i)


# --------------------------------------------------------------------------------------------
# accuracy.png
# --------------------------------------------------------------------------------------------


def accuracy_panels(runs: list[RunData]) -> list[tuple[str, str]]:
    """(series key, panel title): the titles say which panels carry intervals."""
    bench_names = sorted({n for r in runs for it in r.iterations for n in it.benchmarks})
    panels: list[tuple[str, str]] = [("eval", "Synthetic eval accuracy (%), 95% CI")]
    panels += [
        (n, f"{n}: {'final' if _has_final(runs, n) else 'accuracy'} (%), 95% CI")
        for n in bench_names[:3]
    ]
    panels.append(("ashare", "Share of A verdicts (%), 50 = no position bias"))
    return panels


def accuracy_figure(runs: list[RunData]) -> Any:
    """The accuracy figure (a matplotlib Figure); needs matplotlib."""
    plt = _pyplot()
    assert plt is not None, NO_MATPLOTLIB
    panels = accuracy_panels(runs)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels), 3.9), squeeze=False, constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_data = False
    all_iters: set[int] = set()
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for ri, run in enumerate(runs):
            xs, ys, lo, hi = _series(run, key)
            if not xs:
                continue
            any_data = True
            all_iters.update(xs)
            offset = (ri - (len(runs) - 1) / 2) * 0.08  # side by side, bars do not overlap
            xo = [x + offset for x in xs]
            color = colors[ri % len(colors)]
            if lo is not None and hi is not None:
                yerr = [
                    [y - a for y, a in zip(ys, lo, strict=True)],
                    [b - y for y, b in zip(ys, hi, strict=True)],
                ]
                ax.errorbar(
                    xo, ys, yerr=yerr, fmt="-o", color=color, capsize=4, lw=1.6, ms=5,
                    label=run.name,
                )  # fmt: skip
            else:
                ax.plot(xo, ys, "-o", color=color, lw=1.6, ms=5, label=run.name)
            if len(runs) == 1:  # value labels only when they cannot collide with another run
                for x, y in zip(xo, ys, strict=True):
                    ax.annotate(
                        f"{y:.1f}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(8, -3),
                        fontsize=8,
                        color=color,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.85},
                    )  # fmt: skip
        if key == "ashare":
            ax.axhline(50, color="grey", lw=1, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration (0 = seed judge)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax, (key, _title) in zip(axes[0], panels, strict=True):
        if all_iters:
            ticks = sorted(all_iters)
            ax.set_xticks(ticks)
            ax.set_xlim(min(ticks) - 0.4, max(ticks) + 0.6)
        lo_y, hi_y = ax.get_ylim()
        if key == "ashare":  # keep 50 % in the middle so a bias is not exaggerated
            spread = max(15.0, abs(lo_y - 50) + 3, abs(hi_y - 50) + 3)
            ax.set_ylim(max(0, 50 - spread), min(100, 50 + spread))
        else:
            ax.set_ylim(max(0, lo_y - 3), min(102, hi_y + 3))
    if len(runs) > 1:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(runs), 6), fontsize=8)
    if not any_data:
        _empty(axes[0][0], "no scored iterations yet")
    # The panels' titles say which carry intervals: the A-share panel has none.
    fig.suptitle("Judges per iteration", fontsize=11)
    return fig


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _has_final(runs: list[RunData], name: str) -> bool:
    return any(
        (s := it.benchmarks.get(name)) is not None
        and s.rewardbench is not None
        and s.rewardbench.final is not None
        for r in runs
        for it in r.iterations
    )


def _series(
    run: RunData, key: str
) -> tuple[list[int], list[float], list[float] | None, list[float] | None]:
    xs: list[int] = []
    ys: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for it in run.iterations:
        if key in ("eval", "ashare"):
            s = it.eval
            if s is None:
                continue
            if key == "ashare":
                if s.a_verdict_share is None:
                    continue
                xs.append(it.index)
                ys.append(100 * s.a_verdict_share)
                continue
            if s.accuracy is None or s.ci_low is None or s.ci_high is None:
                continue  # too many errors: no accuracy to draw
            xs.append(it.index)
            ys.append(100 * s.accuracy)
            lo.append(100 * s.ci_low)
            hi.append(100 * s.ci_high)
        else:
            s = it.benchmarks.get(key)
            if s is None:
                continue
            r = s.rewardbench
            if r is not None and r.final is not None and r.final_ci is not None:
                xs.append(it.index)
                ys.append(100 * r.final)
                lo.append(100 * r.final_ci[0])
                hi.append(100 * r.final_ci[1])
            elif s.accuracy is not None and s.ci_low is not None and s.ci_high is not None:
                xs.append(it.index)
                ys.append(100 * s.accuracy)
                lo.append(100 * s.ci_low)
                hi.append(100 * s.ci_high)
    if key == "ashare":
        return xs, ys, None, None
    return xs, ys, lo, hi


# --------------------------------------------------------------------------------------------
# funnel.png and cost.png: one panel per run
# --------------------------------------------------------------------------------------------


def _run_panels(plt: Any, runs: list[RunData]) -> tuple[Any, list[Any]]:
    # Stacked, so the figure keeps the width of one panel and fits half the report's width
    # beside its sibling chart.
    fig, axes = plt.subplots(
        len(runs), 1, figsize=(6.2, 3.6 * len(runs)), squeeze=False, constrained_layout=True
    )
    return fig, [row[0] for row in axes]


def funnel_figure(runs: list[RunData]) -> Any:
    """Grouped bars: for each funnel step, how many items each training iteration kept."""
    plt = _pyplot()
    assert plt is not None, NO_MATPLOTLIB
    fig, axes = _run_panels(plt, runs)
    for ax, run in zip(axes, runs, strict=True):
        funnels = [(it.index, it.funnel) for it in run.iterations if it.funnel is not None]
        funnels = [(i, f) for i, f in funnels if any(getattr(f, k) for k in FUNNEL_STEPS)]
        steps = [k for k in FUNNEL_STEPS if any(getattr(f, k) is not None for _, f in funnels)]
        ax.set_title(f"{run.name}: items kept per step", fontsize=10)
        if not steps:
            _empty(ax, "no funnel recorded yet")
            continue
        width = 0.8 / len(funnels)
        for n, (index, f) in enumerate(funnels):
            xs = [s + (n - (len(funnels) - 1) / 2) * width for s in range(len(steps))]
            ys = [getattr(f, k) or 0 for k in steps]
            ax.bar(xs, ys, width=width * 0.95, label=f"iteration {_iter_label(index)}")
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels([k.replace("_", " ") for k in steps], rotation=30, ha="right")
        ax.set_ylabel("items", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
    return fig


def cost_by_iteration(run: RunData) -> dict[int, dict[str, float]]:
    """{iteration: {part: USD}}: inference per stage, fine-tune jobs, endpoints."""
    out: dict[int, dict[str, float]] = {}
    for it in run.iterations:
        for stage, usage in it.usage.items():
            if usage.cost_usd:
                parts = out.setdefault(it.index, {})
                parts[stage] = parts.get(stage, 0.0) + usage.cost_usd
    m = run.manifest
    paid: list[tuple[int, str, float | None]] = []
    if m is not None:
        paid += [(j.iteration, "fine-tune", j.cost_usd) for j in m.finetune_jobs]
        paid += [(e.iteration, "endpoints", e.cost_usd) for e in m.endpoints]
    for index, part, usd in paid:
        if usd:
            parts = out.setdefault(index, {})
            parts[part] = parts.get(part, 0.0) + usd
    return out


def cost_figure(runs: list[RunData]) -> Any:
    """Stacked bars: what each iteration cost (USD), by stage, fine-tune and endpoints."""
    plt = _pyplot()
    assert plt is not None, NO_MATPLOTLIB
    fig, axes = _run_panels(plt, runs)
    for ax, run in zip(axes, runs, strict=True):
        costs = cost_by_iteration(run)
        ax.set_title(f"{run.name}: cost per iteration (USD)", fontsize=10)
        if not costs:
            _empty(ax, "nothing paid recorded")
            continue
        iterations = sorted(costs)
        parts = list(dict.fromkeys(p for i in iterations for p in costs[i]))
        bottom = [0.0] * len(iterations)
        for part in parts:
            ys = [costs[i].get(part, 0.0) for i in iterations]
            ax.bar(range(len(iterations)), ys, bottom=bottom, label=part, width=0.6)
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        for x, total in enumerate(bottom):
            ax.annotate(
                f"${total:,.2f}", (x, total), textcoords="offset points", xytext=(0, 3),
                ha="center", fontsize=8,
            )  # fmt: skip
        ax.set_xticks(range(len(iterations)))
        ax.set_xticklabels([_iter_label(i) for i in iterations])
        ax.set_xlabel("iteration (0 = seed judge)", fontsize=9)
        ax.set_ylim(0, max(bottom) * 1.18)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
    return fig


CHARTS = {"accuracy.png": accuracy_figure, "funnel.png": funnel_figure, "cost.png": cost_figure}


def draw_charts(runs: list[RunData], out: Path) -> tuple[dict[str, Path], str | None]:
    """Write the charts into `out`: ({file name: path}, None), or ({}, why there are none)."""
    plt = _pyplot()
    if plt is None:
        return {}, NO_MATPLOTLIB
    written: dict[str, Path] = {}
    for name, figure in CHARTS.items():
        fig = figure(runs)
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written[name] = out / name
    return written, None
