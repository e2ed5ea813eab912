"""Run reports: read run directories, write report.md, a self-contained report.html and
accuracy.png.

A run directory is read through its run store (`RunStore.open_read_only`: a report never writes
to a run, which may be live): the manifest, every judge's `IterationMetrics` (scores, stored
paired tests, funnel, per-stage usage, fine-tune job) and the counts of finished stages. What is
missing is named in the report, so a crashed run still gets one:

- an iteration with `iter_N/eval.jsonl` but no metrics (it crashed while evaluating) is scored
  here from eval.jsonl against eval_pairs.jsonl, and its funnel falls back to the store's stage
  counts;
- a run directory of ste 0.1, whose state was its manifest.json and metrics.json, is read from
  those files (`ste_core.run.exports.read_version_1_exports`).

The loop calls `write_report` after every iteration; it only reads, never changes, the run.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ste_core.engine.store import RunStore
from ste_core.errors import DataFileError
from ste_core.evaluation.document import (
    Bullets,
    Document,
    Heading,
    Image,
    Para,
    Table,
    to_html,
    to_markdown,
)
from ste_core.evaluation.paired import paired_comparison
from ste_core.evaluation.scoring import score_pairs
from ste_core.records import (
    EvalScore,
    FineTuneInfo,
    Funnel,
    IterationMetrics,
    PairedTest,
    RunManifest,
    StageUsage,
)
from ste_core.run.exports import read_version_1_exports
from ste_core.run.rundir import RunDir

STAGE_KEYS = tuple(StageUsage.model_fields)
_ITER_RE = re.compile(r"^iter_(\d+)$")


@dataclass(frozen=True)
class ReportFiles:
    """Paths of the files `write_report` wrote (`png` is None when matplotlib is missing)."""

    markdown: Path
    html: Path
    png: Path | None
    notes: tuple[str, ...] = ()


@dataclass
class IterationData:
    index: int
    path: Path
    judge_model: str | None = None
    eval: EvalScore | None = None
    eval_source: str = ""
    benchmarks: dict[str, EvalScore] = field(default_factory=dict)
    #: the iteration's stored metrics (None: it has none, e.g. it crashed while evaluating)
    metrics: IterationMetrics | None = None
    #: counts of its finished stages, shown when there is no funnel in the metrics
    stage_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def funnel(self) -> Funnel | None:
        return self.metrics.funnel if self.metrics else None

    @property
    def stages(self) -> dict[str, StageUsage]:
        return self.metrics.stages if self.metrics else {}

    @property
    def finetune(self) -> FineTuneInfo | None:
        return self.metrics.finetune if self.metrics else None


@dataclass
class RunData:
    path: Path
    name: str
    manifest: RunManifest | None = None
    iterations: list[IterationData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _score_eval_jsonl(it: IterationData, pairs_path: Path, notes: list[str]) -> None:
    from ste_core.evaluation.pairs_io import read_judgements, read_pairs

    jpath = it.path / "eval.jsonl"
    if not jpath.exists():
        return
    if not pairs_path.exists():
        it.notes.append("eval.jsonl present but eval_pairs.jsonl missing: cannot score it")
        return
    try:
        pairs = read_pairs(pairs_path, on_error="skip")
        judged = read_judgements(jpath, on_error="skip")
    except DataFileError as exc:
        it.notes.append(f"eval.jsonl could not be scored: {exc}")
        return
    if pairs.skipped:
        it.notes.append(f"eval_pairs.jsonl: {len(pairs.skipped)} bad rows skipped")
    if judged.skipped:
        it.notes.append(f"eval.jsonl: {len(judged.skipped)} bad rows skipped")
    seen: dict[str, set[str]] = {}
    for r in judged.records:
        pair_id, order, _ = r.sample
        seen.setdefault(pair_id, set()).add(order.value)
    mode = "both" if any(len(v) > 1 for v in seen.values()) else "single"
    try:
        it.eval = score_pairs(pairs.pairs, judged.records, mode=mode)  # type: ignore[arg-type]
        it.eval_source = f"eval.jsonl (scored here, mode={mode})"
    except ValueError as exc:
        it.notes.append(f"eval.jsonl could not be scored: {exc}")


def _run_state(
    rundir: RunDir, notes: list[str]
) -> tuple[RunManifest | None, dict[int, IterationMetrics], dict[int, dict[str, dict[str, int]]]]:
    """(manifest, metrics by iteration, stage counts by iteration) from the run store, or from
    the exports of a run of ste 0.1."""
    manifest: RunManifest | None = None
    metrics: dict[int, IterationMetrics] = {}
    counts: dict[int, dict[str, dict[str, int]]] = {}
    if rundir.store_path.exists():
        try:
            with RunStore.open_read_only(rundir.store_path) as store:
                manifest, metrics = store.manifest(), store.metrics()
                counts = store.all_stage_counts()
        except Exception as exc:  # an unreadable store must not stop the report
            notes.append(f"store.sqlite could not be read ({exc})")
    else:
        notes.append("store.sqlite missing: not a run directory, or the run never started")
    if manifest is None and not metrics:
        manifest, metrics = read_version_1_exports(rundir, notes)
    if manifest is None:
        notes.append("no manifest recorded yet")
    return manifest, metrics, counts


def load_run(run_dir: str | Path) -> RunData:
    """Read what a run directory holds (tolerant: what is missing or broken becomes a note)."""
    path = Path(run_dir)
    run = RunData(path=path, name=path.name)
    if not path.is_dir():
        run.notes.append(f"{path} is not a directory")
        return run
    manifest, metrics, counts = _run_state(RunDir(path), run.notes)
    run.manifest = manifest
    if manifest is not None and manifest.name:
        run.name = manifest.name
    dirs = {
        int(found.group(1)): p
        for p in path.iterdir()
        if p.is_dir() and (found := _ITER_RE.match(p.name))
    }
    for idx in sorted(set(dirs) | set(metrics)):
        it = IterationData(index=idx, path=dirs.get(idx, path / f"iter_{idx}"))
        stored = metrics.get(idx)
        if stored is not None:
            it.metrics, it.judge_model = stored, stored.judge_model
            it.eval, it.eval_source = stored.eval, "run store"
            it.benchmarks = dict(stored.benchmarks)
        else:
            it.notes.append("no metrics recorded (iteration unfinished or crashed?)")
            _score_eval_jsonl(it, path / "eval_pairs.jsonl", it.notes)
            if it.eval is not None:
                it.notes.append(f"eval accuracy computed from {it.eval_source}")
                if it.eval.judge_models:
                    it.judge_model = ", ".join(it.eval.judge_models)
            it.stage_counts = counts.get(idx, {})
        run.iterations.append(it)
    if not run.iterations:
        run.notes.append("no judge evaluated yet")
    return run


# --------------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _acc_ci(score: EvalScore | None) -> str:
    if score is None:
        return "–"
    return f"{_pct(score.accuracy)} [{_pct(score.ci_low)}, {_pct(score.ci_high)}]"


def _final_ci(score: EvalScore) -> str:
    r = score.rewardbench
    if r is None or r.final is None:
        return "–"
    ci = f" [{_pct(r.final_ci[0])}, {_pct(r.final_ci[1])}]" if r.final_ci else ""
    return _pct(r.final) + ci + ("" if r.complete else " (partial)")


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_num(x)}" for k, x in v.items()) or "–"
    return str(v)


def _iter_label(i: int) -> str:
    return "0 (seed)" if i == 0 else str(i)


def _paired_rows(run: RunData) -> list[list[str]]:
    """Consecutive judges, and each with the seed: the tests the run stored when it evaluated
    them; computed here (with the run's seed) only for a judge that has no stored metrics."""
    scored = [it for it in run.iterations if it.eval is not None]
    seed = run.manifest.seed if run.manifest and run.manifest.seed is not None else 0
    comparisons: list[tuple[str, IterationData, IterationData]] = []
    for prev, cur in itertools.pairwise(scored):
        comparisons.append(("previous", prev, cur))
    first = next((it for it in scored if it.index == 0), None)
    if first is not None:
        for cur in scored:
            if cur.index >= 2:
                comparisons.append(("seed", first, cur))
    rows: list[list[str]] = []
    for kind, a, b in comparisons:
        label = f"{b.index} vs {_iter_label(a.index)}"
        stored = b.metrics.paired.get(f"vs_{kind}") if b.metrics else None
        if stored is not None and stored.against_iteration == a.index:
            rows.append(_paired_row(label, kind, stored))
            continue
        assert a.eval is not None and b.eval is not None
        try:
            t = paired_comparison(a.eval, b.eval, method="auto", seed=seed)
        except ValueError as exc:
            rows.append([label, kind, "–", "–", str(exc)])
            continue
        rows.append(_paired_row(label, kind, t))
    return rows


def _paired_row(label: str, kind: str, t: PairedTest) -> list[str]:
    return [
        label,
        kind,
        f"{_pct(t.accuracy_a)} → {_pct(t.accuracy_b)}",
        f"{100 * t.difference:+.1f} [{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]",
        f"{t.p_value:.3g}",
        t.method,
        f"{t.n_common} ({t.b_better} better, {t.a_better} worse)",
    ]


# --------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------


def _overview_rows(runs: list[RunData]) -> list[list[str]]:
    rows = []
    for run in runs:
        for it in run.iterations:
            s = it.eval
            bench = "; ".join(f"{n}: {_final_ci(b)}" for n, b in it.benchmarks.items()) or "–"
            rows.append(
                [
                    run.name,
                    _iter_label(it.index),
                    it.judge_model or "–",
                    _acc_ci(s),
                    str(s.n_items) if s else "–",
                    _pct(s.position_consistency) if s else "–",
                    _pct(s.a_verdict_share) if s else "–",
                    _pct(s.no_verdict_rate) if s else "–",
                    str(s.error_count) if s else "–",
                    bench,
                ]
            )
    return rows


def build_document(runs: list[RunData], png: Path | None, png_note: str | None) -> Document:
    """Assemble the report's content (shared by the Markdown and HTML renderers)."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = Document(title="ste report: " + ", ".join(r.name for r in runs))
    doc.add(
        Para(
            f"Generated {now} from {len(runs)} run director{'y' if len(runs) == 1 else 'ies'}: "
            + ", ".join(str(r.path) for r in runs)
            + ". Accuracies are percentages with 95% intervals in brackets; iteration 0 is the "
            "seed judge. See docs/evaluation.md for how each number is computed."
        )
    )
    doc.add(Heading(1, "Accuracy per iteration"))
    if png is not None:
        doc.add(Image(png, "Eval accuracy per iteration with 95% intervals"))
    else:
        doc.add(Para(png_note or "no plot", kind="note"))
    doc.add(
        Table(
            [
                "run",
                "iteration",
                "judge",
                "eval accuracy [95% CI]",
                "n",
                "position consistency",
                "A share",
                "no verdict",
                "errors",
                "benchmarks (final [CI])",
            ],
            _overview_rows(runs),
        )
    )
    doc.add(
        Para(
            "Position consistency: share of items whose verdicts picked the same response in "
            "both orders. A share: share of A among A/B verdicts (0.5 = no position bias when "
            "the better response is shown first and second equally often).",
            kind="note",
        )
    )
    for run in runs:
        _run_section(doc, run)
    return doc


def _run_section(doc: Document, run: RunData) -> None:
    doc.add(Heading(1, f"Run {run.name}"))
    if run.notes:
        doc.add(Para("; ".join(run.notes), kind="warn"))
    _manifest(doc, run)

    rows = _paired_rows(run)
    doc.add(Heading(2, "Paired tests between iterations"))
    if rows:
        doc.add(
            Table(
                ["comparison", "against", "accuracy", "difference [95% CI]", "p", "test", "items"],
                rows,
            ),
            Para(
                "Same eval items, paired: exact McNemar on discordant items when all item "
                "scores are 0/1, else a paired bootstrap of the mean difference. The interval "
                "is a paired bootstrap in both cases. 'previous' compares with the iteration "
                "before, 'seed' with iteration 0.",
                kind="note",
            ),
        )
    else:
        doc.add(Para("Fewer than two scored iterations: nothing to compare yet."))

    _benchmarks(doc, run)
    _funnel(doc, run)
    _usage(doc, run)
    _finetunes(doc, run)
    notes = [f"iteration {it.index}: {n}" for it in run.iterations for n in it.notes]
    notes += [
        f"iteration {it.index}: {w}"
        for it in run.iterations
        for s in [it.eval, *it.benchmarks.values()]
        if s is not None
        for w in s.warnings
    ]
    if notes:
        doc.add(Heading(2, "Notes"), Bullets(notes))


def _manifest(doc: Document, run: RunData) -> None:
    if run.manifest is None:
        return
    rows = []
    for key, value in run.manifest.model_dump(mode="json").items():
        if key in ("finetune_jobs", "endpoints"):
            continue  # shown in their own section
        if isinstance(value, dict):
            for k, v in value.items():
                rows.append([f"{key}.{k}", _short(v)])
        else:
            rows.append([key, _short(value)])
    doc.add(Heading(2, "Manifest"), Table(["key", "value"], rows))


def _short(v: Any, limit: int = 160) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _benchmarks(doc: Document, run: RunData) -> None:
    names = sorted({n for it in run.iterations for n in it.benchmarks})
    evals = [it for it in run.iterations if it.eval is not None and it.eval.rewardbench]
    if not names and not evals:
        return
    doc.add(Heading(2, "Benchmarks"))
    for name in names:
        its = [it for it in run.iterations if name in it.benchmarks]
        section_names: list[str] = []
        for it in its:
            r = it.benchmarks[name].rewardbench
            if r:
                section_names += [s for s in r.sections if s not in section_names]
        rows = []
        for it in its:
            s = it.benchmarks[name]
            r = s.rewardbench
            row = [_iter_label(it.index), _acc_ci(s), str(s.n_items)]
            for sec in section_names:
                if r and sec in r.sections:
                    sc = r.sections[sec]
                    row.append(f"{_pct(sc.score)} [{_pct(sc.ci[0])}, {_pct(sc.ci[1])}]")
                else:
                    row.append("–")
            row.append(_final_ci(s))
            row.append(
                (
                    r.weights
                    + (f"; missing: {', '.join(r.missing_sections)}" if r.missing_sections else "")
                )
                if r
                else "–"
            )
            rows.append(row)
        doc.add(
            Table(
                ["iteration", "accuracy (unweighted)", "n", *section_names, "final", "weights"],
                rows,
                caption=name,
            )
        )


def _funnel(doc: Document, run: RunData) -> None:
    doc.add(Heading(2, "Data funnel per iteration"))
    its = [(it, it.funnel) for it in run.iterations if it.funnel is not None]
    from_store = [it for it in run.iterations if it.funnel is None and it.stage_counts]
    if not its and not from_store:
        doc.add(Para("No funnel counts recorded (no metrics, no finished stages)."))
        return
    if its:
        steps = [
            k
            for k in Funnel.model_fields
            if k != "drops" and any(getattr(f, k) is not None for _, f in its)
        ]
        rows = [
            [_iter_label(it.index)] + [_num(getattr(f, k)) for k in steps] + [_num(f.drops)]
            for it, f in its
        ]
        header = ["iteration", *[k.replace("_", " ") for k in steps], "drops by reason"]
        doc.add(Table(header, rows))
    if from_store:
        rows = [
            [
                _iter_label(it.index),
                ", ".join(
                    f"{stage}.{k}: {_num(v)}"
                    for stage, c in it.stage_counts.items()
                    for k, v in c.items()
                ),
            ]
            for it in from_store
        ]
        doc.add(
            Table(
                ["iteration", "finished stages: counts"],
                rows,
                caption="From the run store's stage counts (iterations without metrics)",
            )
        )


def _usage(doc: Document, run: RunData) -> None:
    its = [it for it in run.iterations if it.stages]
    doc.add(Heading(2, "Tokens, cost and time per stage"))
    if not its:
        doc.add(Para("No per-stage usage recorded."))
        return
    rows = []
    total = StageUsage()
    for it in its:
        for stage, st in it.stages.items():
            rows.append([_iter_label(it.index), stage] + [_num(getattr(st, k)) for k in STAGE_KEYS])
            total = total + st
    rows.append(["all", "total"] + [_num(getattr(total, k)) for k in STAGE_KEYS])
    doc.add(Table(["iteration", "stage", *[k.replace("_", " ") for k in STAGE_KEYS]], rows))


def _finetunes(doc: Document, run: RunData) -> None:
    infos = {it.finetune.job_id: it.finetune for it in run.iterations if it.finetune}
    rows = []
    for job in run.manifest.finetune_jobs if run.manifest else []:
        info = infos.pop(job.job_id, None)
        endpoint = info.endpoint if info else None
        rows.append([_num(v) for v in (job.iteration, job.job_id, job.status, job.model, endpoint)])
    for it in run.iterations:  # jobs the manifest does not list (an interrupted session's)
        ft = it.finetune
        if ft is not None and ft.job_id in infos:
            rows.append(
                [str(it.index)] + [_num(v) for v in (ft.job_id, ft.status, ft.model, ft.endpoint)]
            )
    endpoints = run.manifest.endpoints if run.manifest else []
    if not rows and not endpoints:
        return
    doc.add(Heading(2, "Fine-tune jobs and endpoints"))
    if rows:
        doc.add(Table(["iteration", "job id", "status", "model", "endpoint"], rows))
    if endpoints:
        keys = list(type(endpoints[0]).model_fields)
        doc.add(
            Table(
                [k.replace("_", " ") for k in keys],
                [[_num(getattr(e, k)) for k in keys] for e in endpoints],
                "Endpoints",
            )
        )


# --------------------------------------------------------------------------------------------
# The plot
# --------------------------------------------------------------------------------------------


def draw_accuracy_png(runs: list[RunData], path: Path) -> str | None:
    """Draw accuracy.png; return None on success or a note saying why there is no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return (
            "accuracy.png was not drawn: matplotlib is not installed "
            "(pip install 'self-taught-evaluators[report]')."
        )
    bench_names = sorted({n for r in runs for it in r.iterations for n in it.benchmarks})
    panels: list[tuple[str, str]] = [("eval", "Synthetic eval accuracy (%)")]
    panels += [
        (n, f"{n}: {'final' if _has_final(runs, n) else 'accuracy'} (%)") for n in bench_names[:3]
    ]
    panels.append(("ashare", "Share of A verdicts (%)"))
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
                    xo,
                    ys,
                    yerr=yerr,
                    fmt="-o",
                    color=color,
                    capsize=4,
                    lw=1.6,
                    ms=5,
                    label=run.name,
                )
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
                        bbox={
                            "boxstyle": "round,pad=0.15",
                            "fc": "white",
                            "ec": "none",
                            "alpha": 0.85,
                        },
                    )
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
        axes[0][0].text(
            0.5,
            0.5,
            "no scored iterations yet",
            ha="center",
            va="center",
            transform=axes[0][0].transAxes,
        )
    fig.suptitle("Judge accuracy per iteration, 95% intervals", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


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
            xs.append(it.index)
            ys.append(100 * s.accuracy)
            lo.append(100 * s.ci_low)
            hi.append(100 * s.ci_high)
        else:
            s = it.benchmarks.get(key)
            if s is None:
                continue
            r = s.rewardbench
            xs.append(it.index)
            if r is not None and r.final is not None and r.final_ci is not None:
                ys.append(100 * r.final)
                lo.append(100 * r.final_ci[0])
                hi.append(100 * r.final_ci[1])
            else:
                ys.append(100 * s.accuracy)
                lo.append(100 * s.ci_low)
                hi.append(100 * s.ci_high)
    if key == "ashare":
        return xs, ys, None, None
    return xs, ys, lo, hi


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def write_report(run_dirs: list[Path], out_dir: Path | None = None) -> ReportFiles:
    """Read `run_dirs` and write report.md, report.html (self-contained) and accuracy.png.

    `out_dir` defaults to the run directory for one run, and to `./ste-report` for several.
    Never fails because a run is incomplete: missing files are named in the report. Without
    matplotlib there is no PNG and the report says so.
    """
    if not run_dirs:
        raise ValueError("write_report needs at least one run directory")
    dirs = [Path(d) for d in run_dirs]
    out = (
        Path(out_dir)
        if out_dir is not None
        else (dirs[0] if len(dirs) == 1 else Path("ste-report"))
    )
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(d) for d in dirs]
    png_path = out / "accuracy.png"
    note = draw_accuracy_png(runs, png_path)
    png: Path | None = None if note else png_path
    doc = build_document(runs, png, note)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(to_markdown(doc), encoding="utf-8")
    html_path.write_text(to_html(doc), encoding="utf-8")
    notes = tuple(([note] if note else []) + [n for r in runs for n in r.notes])
    return ReportFiles(markdown=md_path, html=html_path, png=png, notes=notes)
