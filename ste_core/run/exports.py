"""The run directory's exports: manifest.json, iter_N/metrics.json and summary.md.

They are written from the run store's records, for people and other tools; the run itself never
reads them back (the store is its only state). The one exception is a run directory of ste 0.1,
whose manifest.json and metrics.json *were* its state: `read_version_1_exports` reads them, so
such a run can be resumed (its store adopts them) and reported on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ste_core.records import IterationMetrics, RunManifest
from ste_core.records.run import now
from ste_core.run.io import write_json
from ste_core.run.rundir import RunDir

if TYPE_CHECKING:
    from ste_core.config import Config

__all__ = ["export_manifest", "export_metrics", "read_version_1_exports", "write_summary"]


def export_manifest(rundir: RunDir, manifest: RunManifest) -> None:
    """manifest.json, stamped with the time of writing."""
    manifest.updated = now()
    rundir.create()
    write_json(rundir.manifest_path, manifest.model_dump(mode="json"))


def export_metrics(rundir: RunDir, metrics: IterationMetrics) -> None:
    """iter_<j>/metrics.json of one judge."""
    rundir.iter_dir(metrics.iteration).mkdir(parents=True, exist_ok=True)
    write_json(rundir.iter_file(metrics.iteration, "metrics.json"), metrics.model_dump(mode="json"))


def write_summary(config: Config, rundir: RunDir, metrics: Mapping[int, IterationMetrics]) -> None:
    """summary.md: one table row per evaluated judge (written even before the first one)."""
    ev = config.evaluation
    lines = [
        f"# {config.run.name}: judge accuracy per iteration",
        "",
        f"Frozen eval pairs: `eval_pairs.jsonl`; orders: {ev.orders}; "
        f"samples per order: {ev.samples_per_order}"
        + ("; majority vote" if ev.majority_vote else "")
        + ". A missing verdict counts 0.5. Errors (items whose request failed) are not scored: "
        "accuracy is over the n scored items. Intervals: 95% Wilson. Paired tests: exact "
        "McNemar or sign-flip permutation, two-sided.",
        "",
        "| iteration | judge | accuracy | 95% CI | n | errors | position consistency "
        "| no verdict | vs previous | vs seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for j, m in sorted(metrics.items()):
        e = m.eval
        pc = e.position_consistency
        acc, ci = "–", "–"
        if e.accuracy is not None and e.ci_low is not None and e.ci_high is not None:
            acc, ci = f"{100 * e.accuracy:.1f}%", f"[{100 * e.ci_low:.1f}, {100 * e.ci_high:.1f}]"
        tests = [m.paired.get(k) for k in ("vs_previous", "vs_seed")]
        delta = [f"{100 * t.difference:+.1f} pts (p={t.p_value:.3g})" if t else "–" for t in tests]
        lines.append(
            f"| {j} | `{m.judge_model}` | {acc} | {ci} | {e.scored} | "
            f"{e.error_count} of {e.n_items} | {'–' if pc is None else f'{100 * pc:.1f}%'} | "
            f"{100 * e.no_verdict_rate:.1f}% | {delta[0]} | {delta[1]} |"
        )
    if not metrics:
        lines.append("| – | – | – | – | – | – | – | – | – | – |")
    lines += _selection_lines(config, metrics)
    rundir.create()
    rundir.summary_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _selection_lines(config: Config, metrics: Mapping[int, IterationMetrics]) -> list[str]:
    from ste_core.evaluation.selection import select_judge

    sel = select_judge(metrics, config.evaluation.select_on)
    if sel is None:
        return []
    line = (
        f"**Selected judge (the run's result): iteration {sel.iteration}** `{sel.judge_model}`, "
        f"best on {sel.source} ({100 * sel.value:.1f}% [{100 * sel.ci[0]:.1f}, "
        f"{100 * sel.ci[1]:.1f}]). "
    )
    if sel.held_out_accuracy is not None and sel.held_out_ci is not None:
        line += (
            f"Held-out eval accuracy: {100 * sel.held_out_accuracy:.1f}% "
            f"[{100 * sel.held_out_ci[0]:.1f}, {100 * sel.held_out_ci[1]:.1f}]."
        )
    else:
        line += "Its eval accuracy was the selection criterion (optimistic); see its benchmarks."
    return ["", line]


def read_version_1_exports(
    rundir: RunDir, notes: list[str]
) -> tuple[RunManifest | None, dict[int, IterationMetrics]]:
    """The manifest and metrics a run of ste 0.1 kept in its exports; what cannot be read is
    left out, with a note saying so."""
    manifest = None
    if rundir.manifest_path.exists():
        try:
            raw = json.loads(rundir.manifest_path.read_text(encoding="utf-8"))
            manifest = RunManifest.model_validate(raw)
        except (OSError, ValueError) as exc:
            notes.append(f"manifest.json could not be read ({_short_reason(exc)}); ignored")
    metrics: dict[int, IterationMetrics] = {}
    for path in sorted(rundir.root.glob("iter_*/metrics.json")):
        try:
            m = IterationMetrics.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            where = f"{path.parent.name}/metrics.json"
            notes.append(f"{where} is not valid metrics ({_short_reason(exc)}); ignored")
            continue
        metrics[m.iteration] = m
    return manifest, metrics


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{exc.error_count()} error(s), first at {where}: {first['msg']}"
    return str(exc)
