"""Run reports: read run directories, write report.md, a self-contained report.html and the
charts (accuracy.png, funnel.png, cost.png; `ste_core.evaluation.charts`).

The report puts the analysis first (accuracy per judge with intervals, paired tests, benchmarks,
funnel, cost) and each run's manifest last, collapsed. Paths are written relative to the run
directory. Runs compared side by side on different eval pairs get a warning: their accuracies
are not measured on the same items.

A run directory is read through its run store (`RunStore.open_read_only`: a report never writes
to a run, which may be live): the manifest, every judge's `IterationMetrics` (scores, stored
paired tests, funnel, per-stage usage, fine-tune job) and the counts of finished stages. What is
missing is named in the report, so a crashed run still gets one:

- an iteration with `iter_N/eval.jsonl` but no metrics (it crashed while evaluating, or had too
  many errors) is scored here from eval.jsonl against eval_pairs.jsonl, with the same rule on
  errors (no accuracy above 10% of the items) and no paired test (those are computed once, when
  a judge's evaluation finishes, and stored), and its funnel falls back to the store's stage
  counts;
- a run directory of ste 0.1, whose state was its manifest.json and metrics.json, is read from
  those files (`ste_core.run.exports.read_version_1_exports`).

The loop calls `write_report` after every iteration; it only reads, never changes, the run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ste_core.engine.store import RunStore
from ste_core.errors import DataFileError
from ste_core.evaluation.benchmarks.summary import headline, published_tables
from ste_core.evaluation.charts import draw_charts
from ste_core.evaluation.document import (
    Block,
    Bullets,
    Details,
    Document,
    Figures,
    Heading,
    Image,
    Para,
    Table,
    to_html,
    to_markdown,
)
from ste_core.evaluation.scoring import score_pairs
from ste_core.records import (
    BenchmarkResult,
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
    """Paths of the files `write_report` wrote (`png`, accuracy.png, is None and `charts` empty
    when matplotlib is missing)."""

    markdown: Path
    html: Path
    png: Path | None
    notes: tuple[str, ...] = ()
    #: every chart written: accuracy.png, funnel.png, cost.png
    charts: tuple[Path, ...] = ()


@dataclass
class IterationData:
    index: int
    path: Path
    judge_model: str | None = None
    eval: EvalScore | None = None
    eval_source: str = ""
    benchmarks: dict[str, EvalScore] = field(default_factory=dict)
    benchmark_results: dict[str, BenchmarkResult] = field(default_factory=dict)
    #: the iteration's stored metrics (None: it has none, e.g. it crashed while evaluating)
    metrics: IterationMetrics | None = None
    #: counts of its finished stages, shown when there is no funnel in the metrics
    stage_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: usage of each finished stage, from the run store's stage rows: the evaluate and
    #: benchmark stages included, which finish after the metrics' own snapshot was taken
    usage: dict[str, StageUsage] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def funnel(self) -> Funnel | None:
        return self.metrics.funnel if self.metrics else None

    @property
    def finetune(self) -> FineTuneInfo | None:
        return self.metrics.finetune if self.metrics else None


@dataclass(frozen=True)
class EvalPairsId:
    """Which eval pairs a run's judges were scored on: their number and a fingerprint of their
    ids and texts (two runs with the same fingerprint scored the same items)."""

    count: int
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.count} pairs, #{self.fingerprint}"


@dataclass
class RunData:
    path: Path
    name: str
    manifest: RunManifest | None = None
    iterations: list[IterationData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    eval_pairs: EvalPairsId | None = None


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
        if it.eval.accuracy is None:
            first = f"; the first: {it.eval.first_error}" if it.eval.first_error else ""
            it.notes.append(
                f"eval.jsonl: {it.eval.error_count} of {it.eval.n_items} items could not be "
                f"scored (failed requests or missing judgements{first}): no accuracy"
            )
    except ValueError as exc:
        it.notes.append(f"eval.jsonl could not be scored: {exc}")


@dataclass
class _State:
    manifest: RunManifest | None = None
    metrics: dict[int, IterationMetrics] = field(default_factory=dict)
    counts: dict[int, dict[str, dict[str, int]]] = field(default_factory=dict)
    usage: dict[int, dict[str, StageUsage]] = field(default_factory=dict)


def _run_state(rundir: RunDir, notes: list[str]) -> _State:
    """What the run store holds, or what the exports of a run of ste 0.1 hold."""
    state = _State()
    if rundir.store_path.exists():
        try:
            with RunStore.open_read_only(rundir.store_path) as store:
                state.manifest, state.metrics = store.manifest(), store.metrics()
                state.counts, state.usage = store.all_stage_counts(), store.all_stage_usage()
        except Exception as exc:  # an unreadable store must not stop the report
            notes.append(f"store.sqlite could not be read ({exc})")
    else:
        notes.append("store.sqlite missing: not a run directory, or the run never started")
    if state.manifest is None and not state.metrics:
        state.manifest, state.metrics = read_version_1_exports(rundir, notes)
    if state.manifest is None:
        notes.append("no manifest recorded yet")
    return state


def eval_pairs_id(path: Path) -> EvalPairsId | None:
    """The fingerprint of an eval_pairs.jsonl (None when it is missing or unreadable)."""
    from ste_core.evaluation.pairs_io import read_pairs

    if not path.exists():
        return None
    try:
        pairs = read_pairs(path, on_error="skip").pairs
    except DataFileError:
        return None
    digest = hashlib.sha256()
    for p in sorted(pairs, key=lambda p: p.id):
        for part in (p.id, p.instruction, p.chosen, p.rejected):
            digest.update(part.encode("utf-8") + b"\0")
    return EvalPairsId(len(pairs), digest.hexdigest()[:12])


def load_run(run_dir: str | Path) -> RunData:
    """Read what a run directory holds (tolerant: what is missing or broken becomes a note)."""
    path = Path(run_dir)
    run = RunData(path=path, name=path.name)
    if not path.is_dir():
        run.notes.append(f"{path} is not a directory")
        return run
    state = _run_state(RunDir(path), run.notes)
    manifest, metrics = state.manifest, state.metrics
    run.manifest = manifest
    run.eval_pairs = eval_pairs_id(path / "eval_pairs.jsonl")
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
        # A run of ste 0.1 has no stage rows: its metrics' snapshot is all there is.
        it.usage = state.usage.get(idx) or (dict(stored.stages) if stored else {})
        if stored is not None:
            it.metrics, it.judge_model = stored, stored.judge_model
            it.eval, it.eval_source = stored.eval, "run store"
            it.benchmarks = dict(stored.benchmarks)
            it.benchmark_results = dict(stored.benchmark_results)
        else:
            it.notes.append(
                "no metrics recorded (iteration unfinished or crashed?); no paired test (one is "
                "computed when a judge's evaluation finishes)"
            )
            _score_eval_jsonl(it, path / "eval_pairs.jsonl", it.notes)
            if it.eval is not None:
                it.notes.append(f"eval accuracy computed from {it.eval_source}")
                if it.eval.judge_models:
                    it.judge_model = ", ".join(it.eval.judge_models)
            it.stage_counts = state.counts.get(idx, {})
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
    if score.accuracy is None:
        return "none (too many errors)"
    return f"{_pct(score.accuracy)} [{_pct(score.ci_low)}, {_pct(score.ci_high)}]"


def _errors(score: EvalScore | None) -> str:
    """The error count shown beside an accuracy: items not scored, of all items."""
    if score is None:
        return "–"
    return f"{score.error_count} of {score.n_items}"


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
    """The paired tests each judge's evaluation stored (vs the previous judge, vs the seed).

    Never computed here: a test is computed once, when the judge's metrics are (with the run's
    seed), and metrics.json, summary.md, this report and `ste view` all read that one."""
    rows: list[list[str]] = []
    for it in run.iterations:
        if it.metrics is None:
            continue
        for key, kind in (("vs_previous", "previous"), ("vs_seed", "seed")):
            t = it.metrics.paired.get(key)
            if t is not None:
                label = f"{it.index} vs {_iter_label(t.against_iteration)}"
                rows.append(_paired_row(label, kind, t))
    return rows


def _paired_row(label: str, kind: str, t: PairedTest) -> list[str]:
    return [
        label,
        kind,
        f"{_pct(t.accuracy_a)} → {_pct(t.accuracy_b)}",
        f"{100 * t.difference:+.1f} [{100 * t.ci_low:+.1f}, {100 * t.ci_high:+.1f}]",
        f"{t.p_value:.3g}",
        t.test_name(),
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
            bench = (
                "; ".join(
                    [f"{n}: {_final_ci(b)}" for n, b in it.benchmarks.items()]
                    + [f"{n}: {headline(r)}" for n, r in it.benchmark_results.items()]
                )
                or "–"
            )
            rows.append(
                [
                    run.name,
                    _iter_label(it.index),
                    it.judge_model or "–",
                    _acc_ci(s),
                    str(s.scored) if s else "–",
                    _errors(s),
                    _pct(s.position_consistency) if s else "–",
                    _pct(s.a_verdict_share) if s else "–",
                    _pct(s.no_verdict_rate) if s else "–",
                    bench,
                ]
            )
    return rows


HELP_POINTER = "`ste report --help` says how each number is computed."


def build_document(
    runs: list[RunData], charts: dict[str, Path], chart_note: str | None, out_dir: Path
) -> Document:
    """Assemble the report's content (shared by the Markdown and HTML renderers): the analysis
    first, each run's manifest last and collapsed."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = Document(title="ste report: " + ", ".join(r.name for r in runs))
    doc.add(
        Para(
            f"Generated {now}. Accuracies are percentages with 95% intervals in brackets; "
            f"iteration 0 is the seed judge; paths are relative to each run's directory. "
            + HELP_POINTER
        ),
        Table(
            ["run", "directory", "status", "eval pairs"],
            [
                [
                    r.name,
                    _where(r.path, out_dir),
                    r.manifest.status if r.manifest else "–",
                    str(r.eval_pairs or "–"),
                ]
                for r in runs
            ],
        ),
    )
    mismatch = eval_pairs_mismatch(runs)
    if mismatch:
        doc.add(Para(mismatch, kind="warn"))
    doc.add(Heading(1, "Accuracy per judge"))
    if "accuracy.png" in charts:
        doc.add(Image(charts["accuracy.png"], "Eval accuracy per iteration with 95% intervals"))
    else:
        doc.add(Para(chart_note or "no chart", kind="note"))
    doc.add(
        Table(
            [
                "run",
                "iteration",
                "judge",
                "eval accuracy [95% CI]",
                "n scored",
                "errors",
                "position consistency %",
                "A share %",
                "no verdict %",
                "benchmarks (final [CI])",
            ],
            _overview_rows(runs),
        ),
        Para(
            "Errors: items that could not be scored (a request failed or a judgement is "
            "missing), left out of the accuracy; with more than evaluation.max_error_rate of the "
            "items (default 10%) there is no accuracy. A missing verdict is the judge's answer "
            "and scores half a point (no verdict %). Position consistency: share of items whose "
            "verdicts picked the same response in both orders. A share: share of A among A/B "
            "verdicts, in percent (50 = no position bias when the better response is shown "
            "first and second equally often).",
            kind="note",
        ),
    )
    side = [Image(charts[n], alt) for n, alt in _SIDE_CHARTS if n in charts]
    if side:
        doc.add(Figures(side))
    for run in runs:
        _run_section(doc, run)
    for run in runs:
        if run.manifest is not None:
            doc.add(Details(f"Manifest of run {run.name}", _manifest(run)))
    return doc


_SIDE_CHARTS = (
    ("funnel.png", "Items kept by each step of each iteration"),
    ("cost.png", "Cost per iteration by stage, fine-tune and endpoints"),
)


def _where(path: Path, out_dir: Path) -> str:
    """A run directory as seen from the report's folder."""
    rel = os.path.relpath(path.resolve(), out_dir.resolve())
    return "this folder" if rel == "." else rel


def eval_pairs_mismatch(runs: list[RunData]) -> str | None:
    """A warning when runs shown side by side were not scored on the same eval pairs."""
    # A list, not a dict by name: two runs may share a name (a copy, or two output_dirs).
    ids = [(r.name, r.eval_pairs) for r in runs]
    if len({pid for _, pid in ids}) < 2:
        return None
    seen = "; ".join(f"{name}: {pid or 'no eval_pairs.jsonl'}" for name, pid in ids)
    return (
        f"These runs were not evaluated on the same eval pairs ({seen}): their accuracies are "
        "measured on different items, so compare them only loosely. To compare judges on the "
        "same items, reuse one run's eval pairs in the other runs' configs, or score the judges "
        "with `ste evaluate` on one pairs file."
    )


def _run_section(doc: Document, run: RunData) -> None:
    doc.add(Heading(1, f"Run {run.name}"))
    if run.notes:
        doc.add(Para(_relative("; ".join(run.notes), run), kind="warn"))

    rows = _paired_rows(run)
    doc.add(Heading(2, "Paired tests between iterations"))
    if rows:
        doc.add(
            Table(
                ["comparison", "against", "accuracy", "difference [95% CI]", "p", "test", "items"],
                rows,
            ),
            Para(
                "Same eval items, paired, two-sided: exact McNemar on discordant items when "
                "all item scores are 0/1, else a sign-flip permutation test of the per-item "
                "differences (exact, or Monte Carlo with the number of draws named). The "
                "interval is a paired bootstrap. Each test was computed once, with the run's "
                "seed, when the judge was evaluated. 'previous' compares with the iteration "
                "before, 'seed' with iteration 0.",
                kind="note",
            ),
        )
    else:
        doc.add(Para("No paired test stored yet (they are made when a second judge is evaluated)."))

    _selection(doc, run)
    _benchmarks(doc, run)
    _published_benchmarks(doc, run)
    _funnel(doc, run)
    _cost(doc, run)
    notes = [f"iteration {it.index}: {n}" for it in run.iterations for n in it.notes]
    notes += [
        f"iteration {it.index}: {w}"
        for it in run.iterations
        for s in [it.eval, *it.benchmarks.values()]
        if s is not None
        for w in s.warnings
    ]
    if notes:
        doc.add(Heading(2, "Notes"), Bullets([_relative(n, run) for n in notes]))


def _relative(text: str, run: RunData) -> str:
    """`text` with the run directory's absolute path left out (paths relative to the run)."""
    for prefix in {str(run.path.resolve()), str(run.path.absolute())}:
        text = text.replace(prefix + os.sep, "").replace(prefix, ".")
    return text


def _manifest(run: RunData) -> list[Block]:
    """The manifest as readable key/value rows (jobs and endpoints are in the cost section)."""
    assert run.manifest is not None
    m = run.manifest
    rows = []
    for key, value in m.model_dump(mode="json", exclude={"finetune_jobs", "endpoints"}).items():
        if key == "sessions":
            value = [f"{x['started']} → {x['finished'] or '…'} ({x['status']})" for x in value]
            rows.append([key, "; ".join(value) or "–"])
        elif key == "seconds":
            rows.append([key, f"{_num(value.get('total'))} in all, {len(value) - 1} stage runs"])
        elif key == "backends":
            rows += [
                [f"backends.{role}", " ".join(str(x) for x in b.values() if x)]
                for role, b in value.items()
            ]
        elif isinstance(value, dict):
            rows += [[f"{key}.{k}", _num(v)] for k, v in value.items()]
        else:
            rows.append([key, _num(value)])
    return [Table(["key", "value"], [[k, _relative(v, run)] for k, v in rows])]


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
            row = [_iter_label(it.index), _acc_ci(s), str(s.scored), _errors(s)]
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
                [
                    "iteration",
                    "accuracy (unweighted)",
                    "n scored",
                    "errors",
                    *section_names,
                    "final",
                    "weights",
                ],
                rows,
                caption=name,
            )
        )


def _select_on(run_dir: Path) -> str | None:
    """`evaluation.select_on` of the run's resolved config.toml (None if unreadable)."""
    import tomllib

    try:
        data = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = data.get("evaluation", {}).get("select_on")
    return value if isinstance(value, str) else None


def _selection(doc: Document, run: RunData) -> None:
    from ste_core.evaluation.selection import select_judge

    select_on = _select_on(run.path)
    metrics = {it.index: it.metrics for it in run.iterations if it.metrics is not None}
    sel = select_judge(metrics, select_on)
    if sel is None:
        return
    held = (
        f" Held-out eval accuracy: {_pct(sel.held_out_accuracy)} "
        f"[{_pct(sel.held_out_ci[0])}, {_pct(sel.held_out_ci[1])}]."
        if sel.held_out_accuracy is not None and sel.held_out_ci is not None
        else ""
    )
    doc.add(
        Para(
            f"Selected judge (the run's result): {_iter_label(sel.iteration)}, "
            f"{sel.judge_model}, best on {sel.source}: {_pct(sel.value)} "
            f"[{_pct(sel.ci[0])}, {_pct(sel.ci[1])}].{held} ({sel.note}.)",
            kind="note",
        )
    )


def _published_benchmarks(doc: Document, run: RunData) -> None:
    per_iteration = [(_iter_label(it.index), it.benchmark_results) for it in run.iterations]
    blocks = published_tables(per_iteration)
    if blocks:
        doc.add(Heading(2, "Published benchmarks"))
        for block in blocks:
            doc.add(block)


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


def _cost(doc: Document, run: RunData) -> None:
    """What the run paid: by part (matching the manifest), per stage, per job, per endpoint."""
    doc.add(Heading(2, "Cost, tokens and time"))
    its = [it for it in run.iterations if it.usage]
    total = sum((u for it in its for u in it.usage.values()), StageUsage())
    m = run.manifest
    if m is not None:
        c = m.cost_usd
        doc.add(
            Table(
                ["part", "USD"],
                [
                    ["inference (the stages below)", _usd(total.cost_usd)],
                    ["fine-tuning", _usd(c.finetune)],
                    ["dedicated endpoints", _usd(c.endpoints)],
                    ["total", _usd(total.cost_usd + c.finetune + c.endpoints)],
                ],
            )
        )
        if abs(total.cost_usd - c.inference) > 5e-7:
            doc.add(
                Para(
                    f"The stages' inference cost ({_usd(total.cost_usd)}) differs from the "
                    f"manifest's ({_usd(c.inference)}): a session ended before its last stage "
                    "was marked finished, or the run store was changed by hand.",
                    kind="warn",
                )
            )
    if its:
        rows = [
            [_iter_label(it.index), stage] + [_num(getattr(st, k)) for k in STAGE_KEYS]
            for it in its
            for stage, st in it.usage.items()
        ]
        rows.append(["all", "total"] + [_num(getattr(total, k)) for k in STAGE_KEYS])
        doc.add(
            Table(
                ["iteration", "stage", *[k.replace("_", " ") for k in STAGE_KEYS]],
                rows,
                caption="Per stage: requests, tokens, cost (USD) and seconds",
            )
        )
    else:
        doc.add(Para("No per-stage usage recorded."))
    _finetunes(doc, run)


def _usd(x: float | None) -> str:
    return "–" if x is None else f"${x:,.4f}" if 0 < abs(x) < 0.01 else f"${x:,.2f}"


def _finetunes(doc: Document, run: RunData) -> None:
    infos = {it.finetune.job_id: it.finetune for it in run.iterations if it.finetune}
    rows = []
    for job in run.manifest.finetune_jobs if run.manifest else []:
        info = infos.pop(job.job_id, None)
        endpoint = info.endpoint if info else None
        rows.append(
            [_num(v) for v in (job.iteration, job.job_id, job.status, job.model, endpoint)]
            + [_usd(job.cost_usd)]
        )
    for it in run.iterations:  # jobs the manifest does not list (an interrupted session's)
        ft = it.finetune
        if ft is not None and ft.job_id in infos:
            rows.append(
                [str(it.index)]
                + [_num(v) for v in (ft.job_id, ft.status, ft.model, ft.endpoint)]
                + [_usd(ft.cost_usd)]
            )
    endpoints = run.manifest.endpoints if run.manifest else []
    if rows:
        rows = [[_relative(c, run) for c in row] for row in rows]
        doc.add(
            Table(
                ["iteration", "job id", "status", "model", "endpoint", "cost"],
                rows,
                caption="Fine-tune jobs",
            )
        )
    if endpoints:
        doc.add(
            Table(
                ["iteration", "model", "served as", "seconds", "cost"],
                [
                    [
                        _num(e.iteration),
                        _relative(e.model, run),
                        e.served_as,
                        _num(e.seconds),
                        "– (no dedicated endpoint)" if e.cost_usd is None else _usd(e.cost_usd),
                    ]
                    for e in endpoints
                ],
                caption="Serving sessions (dedicated endpoints are billed by uptime)",
            )
        )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def write_report(run_dirs: list[Path], out_dir: Path | None = None) -> ReportFiles:
    """Read `run_dirs` and write report.md, report.html (self-contained) and the charts
    (accuracy.png, funnel.png, cost.png).

    `out_dir` defaults to the run directory for one run, and to `./ste-report` for several.
    Never fails because a run is incomplete: missing files are named in the report. Without
    matplotlib there are no charts and the report says so.
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
    charts, note = draw_charts(runs, out)
    doc = build_document(runs, charts, note, out)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(to_markdown(doc), encoding="utf-8")
    html_path.write_text(to_html(doc), encoding="utf-8")
    notes = ([note] if note else []) + [n for r in runs for n in r.notes]
    mismatch = eval_pairs_mismatch(runs)
    return ReportFiles(
        markdown=md_path,
        html=html_path,
        png=charts.get("accuracy.png"),
        notes=tuple(notes + ([mismatch] if mismatch else [])),
        charts=tuple(charts.values()),
    )
