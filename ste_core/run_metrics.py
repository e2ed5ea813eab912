"""Bookkeeping of a run: per-stage usage, the data funnel, metrics.json files, summary.md.

Everything here reads what the steps left in the store and the run directory; nothing here calls
a model or changes a stage's output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ste_core.config import Config
from ste_core.rundir import RunDir
from ste_core.scheduler import Scheduler
from ste_core.steps import EVALUATE, ITERATION_STAGES, RUN_STAGES
from ste_core.store import RunStore

__all__ = [
    "IterationMetrics",
    "UsageSnapshot",
    "finetune_info",
    "funnel",
    "headline",
    "read_metrics",
    "read_metrics_raw",
    "stage_usage",
    "usage_since",
    "usage_snapshot",
    "write_summary",
]

# id(scheduler) -> its running totals at one moment.
UsageSnapshot = dict[int, dict[str, float]]

_HEADLINE_KEYS = (
    "accuracy",
    "ci_low",
    "ci_high",
    "n_items",
    "position_consistency",
    "no_verdict_rate",
)


class IterationMetrics(BaseModel):
    """metrics.json of one iteration (0 = the seed judge), as typed objects."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    iteration: int
    judge_model: str
    eval: Any  # ste_core.evaluation.EvalScore
    benchmarks: dict[str, Any] = Field(default_factory=dict)
    paired: dict[str, Any] = Field(default_factory=dict)
    funnel: dict[str, Any] = Field(default_factory=dict)


# -- usage of a stage -----------------------------------------------------------------------


def usage_snapshot(schedulers: Iterable[Scheduler]) -> UsageSnapshot:
    """The running totals of every scheduler (by identity: a shared one counts once)."""
    out = {}
    for s in {id(s): s for s in schedulers}.values():
        st = s.stats
        out[id(s)] = {
            "requests": st.requests,
            "cache_hits": st.cache_hits,
            "prompt_tokens": st.usage.prompt_tokens,
            "completion_tokens": st.usage.completion_tokens,
            "cost_usd": st.cost_usd,
        }
    return out


def usage_since(before: UsageSnapshot, schedulers: Iterable[Scheduler]) -> dict[str, float]:
    """What all schedulers used since `before` (a scheduler new since then counts whole)."""
    total: dict[str, float] = {  # the shape of manifest.json's `usage`
        "requests": 0,
        "cache_hits": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }
    for sid, now in usage_snapshot(schedulers).items():
        prev = before.get(sid, {})
        for k in total:
            total[k] += now[k] - prev.get(k, 0)
    return total


def stage_usage(store: RunStore, j: int) -> dict[str, Any]:
    """The recorded usage and seconds of every finished stage of iteration `j`."""
    names = (*RUN_STAGES, EVALUATE) if j == 0 else (*ITERATION_STAGES, EVALUATE)
    out = {}
    for name in names:
        data = store.get_state(f"stage_usage/{j}/{name}")
        if data is not None:
            out[name] = data
    return out


# -- the funnel -----------------------------------------------------------------------------


def funnel(store: RunStore, j: int) -> dict[str, Any]:
    """The iteration's data funnel in the report's shape (+ every stage's counts)."""
    stages: dict[str, dict[str, int]] = store.stage_counts(j)  # type: ignore[assignment]
    drops: dict[str, int] = {}
    out: dict[str, Any] = {}
    if j == 0:
        load = stages.get("load", {})
        out["instructions"] = load.get("kept", 0)
        out["eval_instructions"] = stages.get("split", {}).get("eval", 0)
        out["train_instructions"] = stages.get("split", {}).get("train", 0)
        out["pairs"] = stages.get("eval_pairs", {}).get("pairs", 0)
        for k, v in load.items():
            if k.startswith("dropped_") and v:
                drops[f"load_{k[8:]}"] = v
        for k, v in stages.get("eval_pairs", {}).items():
            if "dropped_" in k and v:
                drops["eval_" + k.replace("dropped_", "")] = v
    else:
        out["instructions"] = stages.get("baseline", {}).get("instructions", 0)
        out["pairs"] = stages.get("worse", {}).get("pairs", 0)
        judge = stages.get("judge", {})
        out["judged"] = judge.get("judgements", 0)
        out["correct"] = judge.get("correct", 0)
        out["judge_failures"] = judge.get("failures", 0)
        sel = stages.get("select", {})
        out["kept_before_balance"] = sel.get("kept", 0)
        out["balanced_kept"] = sel.get("selected", 0)
        td = stages.get("training_data", {})
        out["sft_examples"] = td.get("sft", 0)
        out["dpo_examples"] = td.get("dpo", 0)
        for stage in ("baseline", "worse"):
            for k, v in stages.get(stage, {}).items():
                if k.startswith("dropped_") and v:
                    drops[k[8:]] = drops.get(k[8:], 0) + v
        if sel.get("pairs_below_threshold"):
            drops["below_agreement_threshold"] = sel["pairs_below_threshold"]
        if sel.get("dropped_for_balance"):
            drops["label_balance"] = sel["dropped_for_balance"]
    out["drops"] = drops
    return out


def finetune_info(store: RunStore, j: int) -> dict[str, Any] | None:
    """The fine-tune job and model of iteration `j` (None for the seed judge)."""
    if j == 0:
        return None
    state = store.get_state(f"finetune/{j}") or {}
    ref = store.get_state(f"model/{j}") or {}
    return {
        "job_id": state.get("job_id"),
        "status": state.get("status"),
        "model": ref.get("model"),
        "endpoint": (ref.get("options") or {}).get("base_url"),
        "cost_usd": state.get("cost_usd"),
    }


# -- metrics.json and summary.md ------------------------------------------------------------


def read_metrics_raw(root: Path) -> dict[int, dict[str, Any]]:
    """Every iter_<j>/metrics.json of the run directory `root`, by iteration, as JSON."""
    out: dict[int, dict[str, Any]] = {}
    if not root.exists():
        return out
    for d in root.glob("iter_*"):
        path = d / "metrics.json"
        if path.exists() and d.name[5:].isdigit():
            out[int(d.name[5:])] = json.loads(path.read_text(encoding="utf-8"))
    return dict(sorted(out.items()))


def read_metrics(root: Path) -> dict[int, IterationMetrics]:
    """Every evaluated judge's metrics, by iteration, as typed objects."""
    from ste_core.evaluation import EvalScore

    out = {}
    for j, m in read_metrics_raw(root).items():
        out[j] = IterationMetrics(
            iteration=j,
            judge_model=m.get("judge_model", ""),
            eval=EvalScore.model_validate(m["eval"]),
            benchmarks={k: EvalScore.model_validate(v) for k, v in m.get("benchmarks", {}).items()},
            paired=m.get("paired", {}),
            funnel=m.get("funnel", {}),
        )
    return out


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few eval numbers the event hooks carry."""
    e = metrics.get("eval") or {}
    return {k: e.get(k) for k in _HEADLINE_KEYS}


def write_summary(config: Config, rundir: RunDir) -> None:
    """summary.md: one table row per evaluated judge (written even before the first one)."""
    ev = config.evaluation
    rows = read_metrics_raw(rundir.root)
    lines = [
        f"# {config.run.name}: judge accuracy per iteration",
        "",
        f"Frozen eval pairs: `eval_pairs.jsonl`; orders: {ev.orders}; "
        f"samples per order: {ev.samples_per_order}"
        + ("; majority vote" if ev.majority_vote else "")
        + ". A missing verdict counts 0.5. Intervals: 95% Wilson.",
        "",
        "| iteration | judge | accuracy | 95% CI | n | position consistency | no verdict "
        "| vs previous |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for j, m in rows.items():
        e = m.get("eval") or {}
        pc = e.get("position_consistency")
        prev = (m.get("paired") or {}).get("vs_previous")
        delta = f"{100 * prev['difference']:+.1f} pts (p={prev['p_value']:.3g})" if prev else "–"
        lines.append(
            f"| {j} | `{m.get('judge_model', '')}` | {100 * e.get('accuracy', 0):.1f}% | "
            f"[{100 * e.get('ci_low', 0):.1f}, {100 * e.get('ci_high', 0):.1f}] | "
            f"{e.get('n_items', 0)} | {'–' if pc is None else f'{100 * pc:.1f}%'} | "
            f"{100 * e.get('no_verdict_rate', 0):.1f}% | {delta} |"
        )
    if not rows:
        lines.append("| – | – | – | – | – | – | – | – |")
    rundir.create()
    rundir.summary_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
