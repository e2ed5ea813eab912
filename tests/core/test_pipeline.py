"""The pipeline (ste_core.pipeline): the whole loop in-process on the scripted backends (no
HTTP): files, funnel, resume, budget, fine-tune failures, serving lifecycle, hooks, options."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ste_core import IterationMetrics, hookimpl
from ste_core.engine.store import RunStore
from ste_core.errors import BudgetExceeded, ConfigurationError, FineTuneFailed, SteError
from ste_core.pipeline import Pipeline
from ste_core.plugins import get_host
from ste_core.run.io import read_rows
from tests.core.helpers import CrashAfter, ScriptedFineTune, ScriptedInference, config_with

OUTPUTS = (
    "eval_pairs.jsonl",
    "data/train.jsonl",
    "data/eval.jsonl",
    "iter_0/eval.jsonl",
    "iter_1/pairs.jsonl",
    "iter_1/judgements.jsonl",
    "iter_1/selected.jsonl",
    "iter_1/sft.jsonl",
    "iter_1/dpo.jsonl",
    "iter_1/eval.jsonl",
    "iter_2/judgements.jsonl",
    "iter_2/sft.jsonl",
    "iter_2/eval.jsonl",
)


async def test_two_iterations_files_funnel_and_metrics(tmp_path: Path, scripted) -> None:
    pipe = Pipeline(config_with(tmp_path))
    result = await pipe.run()
    assert result.status == "succeeded"
    root = result.run_dir
    for name in (
        *OUTPUTS,
        "config.toml",
        "manifest.json",
        "store.sqlite",
        "summary.md",
        "iter_1/metrics.json",
        "iter_2/metrics.json",
    ):
        assert (root / name).exists(), name
    assert not list(root.rglob("*.tmp"))
    # Funnel: 40 instructions -> 10 eval + 30 train; the scripted generator's 10% unparsable
    # worse responses are drops, never pairs.
    f1 = pipe.funnel(1)
    assert f1["baseline"]["instructions"] == 30
    assert f1["worse"]["pairs"] + f1["worse"].get("dropped_parse_error", 0) == 30
    assert f1["judge"]["judgements"] == f1["worse"]["pairs"] * 2 * 3
    sel = f1["select"]
    assert sel["label_A"] >= sel["selected"] // 2 and sel["selected"] % 2 == 0
    sft = list(read_rows(root / "iter_1" / "sft.jsonl"))
    assert len(sft) == sel["selected"] == f1["training_data"]["sft"]
    # Every SFT target is a correct judgement.
    for ex in sft:
        assert ("[[A]]" if ex["order"] == "AB" else "[[B]]") in ex["completion"]
    # The frozen eval pairs are the same for every judge, and disjoint from training.
    eval_ids = {p.id for p in pipe.eval_pairs()}
    for j in (0, 1, 2):
        assert {r.pair_id for r in pipe.eval_judgements(j)} == eval_ids
    train_ids = {p.instruction_id for p in pipe.pairs(1)}
    assert not train_ids & {p.instruction_id for p in pipe.eval_pairs()}
    # Judges improve under the scripted accuracy rule (acc70 -> ft1 -> ft2), on the same pairs.
    m = result.metrics
    assert [m[j].judge_model for j in (0, 1, 2)] == [
        "judge-acc70",
        "judge-acc70-ft1",
        "judge-acc70-ft2",
    ]
    assert m[2].paired["vs_previous"].against_iteration == 1
    # metrics.json is an export of the typed record the store holds, not a second computation.
    for j in (0, 1, 2):
        exported = (root / f"iter_{j}" / "metrics.json").read_text()
        assert IterationMetrics.model_validate_json(exported) == m[j]
    # The funnel is typed and comes from the stages' own counts.
    assert m[1].funnel.judged == f1["judge"]["judgements"] and m[1].funnel.sft_examples == len(sft)
    assert m[0].funnel.eval_instructions == pipe.funnel(0)["split"]["eval"]
    assert "| 2 | `judge-acc70-ft2` |" in (root / "summary.md").read_text()
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["models"]["iter_2"] == "judge-acc70-ft2"
    assert [j["status"] for j in manifest["finetune_jobs"]] == ["succeeded", "succeeded"]
    assert manifest["cost_usd"]["finetune"] == pytest.approx(0.5)
    assert manifest["status"] == "succeeded"
    # The report is rewritten when the session ends, so it shows the final status.
    report = (root / "report.md").read_text()
    assert "| status | succeeded |" in report and "| status | running |" not in report
    # Served judges were torn down; each served exactly once (evaluation + next judging).
    assert ScriptedFineTune.served == ["judge-acc70-ft1", "judge-acc70-ft2"]
    assert ScriptedFineTune.torn_down == ScriptedFineTune.served
    # Calls went to the session's endpoint name; records name the fine-tuned model.
    assert "judge-acc70-ft1@1" in ScriptedInference.calls
    assert {j.judge_model for j in pipe.judgements(2)} == {"judge-acc70-ft1"}
    endpoints = json.loads((root / "manifest.json").read_text())["endpoints"]
    assert [(e["model"], e["served_as"]) for e in endpoints] == [
        ("judge-acc70-ft1", "judge-acc70-ft1@1"),
        ("judge-acc70-ft2", "judge-acc70-ft2@2"),
    ]
    # The served model's options reached its inference backend (ModelRef.options merged).
    assert (
        json.loads((root / "iter_1" / "metrics.json").read_text())["judge_model"]
        == "judge-acc70-ft1"
    )


async def test_an_sft_warm_up_then_grpo(
    tmp_path: Path, scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ste_core.backends import FineTuneCapabilities
    from ste_core.records import FineTuneMethod

    grpo_too = FineTuneCapabilities(methods=frozenset(FineTuneMethod), continue_from_previous=True)
    monkeypatch.setattr(ScriptedFineTune, "capabilities", grpo_too)
    changes = {
        "finetune.method": "grpo",
        "finetune.warmup": "sft",
        "finetune.init_from": "previous",
    }
    config = config_with(tmp_path, **changes)
    await Pipeline(config).run()
    run = config.run_dir
    # Iteration 1: the judge's kept judgements, trained with SFT.
    assert (run / "iter_1" / "judgements.jsonl").exists()
    sft = list(read_rows(run / "iter_1" / "train.scripted.sft.jsonl"))
    assert sft and all(row["method"] == "sft" and row["completion"] for row in sft)
    # Iteration 2: no judging; both orders of every pair with their labels, trained with GRPO
    # from M_1.
    assert not (run / "iter_2" / "judgements.jsonl").exists()
    grpo = list(read_rows(run / "iter_2" / "train.scripted.grpo.jsonl"))
    pairs = list(read_rows(run / "iter_2" / "pairs.jsonl"))
    assert len(grpo) == 2 * len(pairs) > 0
    assert {(r["order"], r["label"], r["method"]) for r in grpo} == {
        ("AB", "A", "grpo"),
        ("BA", "B", "grpo"),
    }
    models = [job["model"] for job in ScriptedFineTune.jobs.values()]
    assert models[1] == models[0] + "-ft2"  # init_from previous: M_2 continues M_1
    m2 = json.loads((run / "iter_2" / "metrics.json").read_text())
    assert m2["funnel"]["grpo_prompts"] == len(grpo) and "judged" not in m2["funnel"]


@pytest.mark.parametrize(
    ("stage", "n"), [("judge@1", 40), ("worse@1", 7), ("evaluate@1", 5), ("baseline@2", 1)]
)
async def test_crash_and_resume_repeats_no_call_and_writes_the_same_files(
    tmp_path: Path, scripted, stage: str, n: int
) -> None:
    ref = await Pipeline(config_with(tmp_path / "a")).run()
    reference_calls = len(ScriptedInference.calls)
    ScriptedInference.calls.clear()

    cfg = config_with(tmp_path / "b")
    with pytest.raises(RuntimeError, match="simulated crash"):
        await Pipeline(cfg, reporter=CrashAfter(stage, n)).run()
    crashed = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert crashed["status"] == "failed"
    result = await Pipeline(cfg).run()
    assert result.status == "succeeded"
    # No request was answered twice: the calls of both runs add up to one uninterrupted run.
    assert len(ScriptedInference.calls) == reference_calls
    for name in OUTPUTS:
        assert (ref.run_dir / name).read_bytes() == (result.run_dir / name).read_bytes(), name
    assert ScriptedFineTune.served == ScriptedFineTune.torn_down  # also after the crash


async def test_rerunning_a_finished_run_calls_nothing(tmp_path: Path, scripted) -> None:
    cfg = config_with(tmp_path)
    await Pipeline(cfg).run()
    calls = len(ScriptedInference.calls)
    await Pipeline(cfg).run()
    assert len(ScriptedInference.calls) == calls and ScriptedFineTune.submits == 2
    # Extending the run by one iteration: only the new work is done.
    await Pipeline(cfg).run(iterations=3)
    assert ScriptedFineTune.submits == 3
    assert sorted(Pipeline(cfg).metrics()) == [0, 1, 2, 3]


async def test_fresh_starts_over_and_changed_config_is_refused(tmp_path: Path, scripted) -> None:
    cfg = config_with(tmp_path)
    await Pipeline(cfg).run(iterations=1)
    changed = config_with(tmp_path, **{"judge.samples_per_order": 2})
    # What changed, from what to what: a default that moved in a newer version is set back by
    # writing the old value.
    with pytest.raises(ConfigurationError, match=r"judge\.samples_per_order \(was 3, now 2\)"):
        Pipeline(changed).open()
    calls = len(ScriptedInference.calls)
    await Pipeline(changed, fresh=True).run(iterations=1)
    assert len(ScriptedInference.calls) > calls  # a new store: everything asked again
    assert ScriptedFineTune.submits == 2


async def test_budget_stops_before_a_stage_and_resume_finishes(tmp_path: Path, scripted) -> None:
    cfg = config_with(tmp_path, **{"budget.max_requests": 100})
    with pytest.raises(BudgetExceeded, match="max_requests"):
        await Pipeline(cfg).run(iterations=1)
    used = len(ScriptedInference.calls)
    assert used <= 100
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["usage"]["requests"] == used
    more = config_with(tmp_path, **{"budget.max_requests": 10_000})
    await Pipeline(more).run(iterations=1)
    total = len(ScriptedInference.calls)
    ScriptedInference.calls.clear()
    await Pipeline(config_with(tmp_path / "ref")).run(iterations=1)
    assert total == len(ScriptedInference.calls)  # nothing paid twice across the stop


async def test_cost_budget_uses_prices_for_the_estimate(tmp_path: Path, scripted) -> None:
    cfg = config_with(
        tmp_path,
        **{
            "budget.max_cost_usd": 0.001,
            "budget.input_per_million": 1.0,
            "budget.output_per_million": 2.0,
        },
    )
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        await Pipeline(cfg).run(iterations=1)
    assert ScriptedInference.calls == []  # stopped before the first stage's requests


async def test_finetune_failure_stops_with_the_providers_message(tmp_path: Path, scripted) -> None:
    ScriptedFineTune.fail_jobs = True
    cfg = config_with(tmp_path)
    with pytest.raises(FineTuneFailed, match="out of GPUs"):
        await Pipeline(cfg).run()
    ScriptedFineTune.fail_jobs = False
    result = await Pipeline(cfg).run()
    assert result.status == "succeeded" and ScriptedFineTune.submits == 3


async def test_hooks_receive_stage_iteration_and_run_events(tmp_path: Path, scripted) -> None:
    events: list[tuple[str, Any]] = []

    class Tracker:
        @hookimpl
        def stage_finished(self, event: Any) -> None:
            events.append(("stage", (event.iteration, event.stage, event.counts)))

        @hookimpl
        def iteration_finished(self, event: Any) -> None:
            events.append(("iteration", (event.iteration, event.metrics["accuracy"])))

        @hookimpl
        def run_finished(self, event: Any) -> None:
            events.append(("run", event.status))

    get_host().register_plugin(Tracker(), name="tracker")
    await Pipeline(config_with(tmp_path)).run(iterations=1)
    stages = [e[1][:2] for e in events if e[0] == "stage"]
    assert stages == [
        (0, "load"),
        (0, "split"),
        (0, "eval_pairs"),
        (1, "baseline"),
        (1, "worse"),
        (0, "evaluate"),
        (1, "judge"),
        (1, "select"),
        (1, "training_data"),
        (1, "finetune"),
        (1, "evaluate"),
    ]
    assert [e[1][0] for e in events if e[0] == "iteration"] == [0, 1]
    assert events[-1] == ("run", "succeeded")
    judge_counts = next(e[1][2] for e in events if e[0] == "stage" and e[1][1] == "judge")
    assert judge_counts["judgements"] > 0


async def test_previous_init_dpo_and_single_order(tmp_path: Path, scripted) -> None:
    cfg = config_with(
        tmp_path,
        **{
            "finetune.init_from": "previous",
            "finetune.method": "dpo",
            "finetune.dpo_pairs_per_prompt": 2,
            "judge.orders": "single",
            "evaluation.orders": "single",
        },
    )
    result = await Pipeline(cfg).run()
    # init_from previous: iteration 2 starts from iteration 1's model.
    assert result.models[2].model == "judge-acc70-ft1-ft2"
    rows = list(read_rows(result.run_dir / "iter_1" / "train.scripted.dpo.jsonl"))
    assert rows and all(r["method"] == "dpo" and r["chosen"] != r["rejected"] for r in rows)
    assert all(
        {"AB", "BA"} != {j.order.value for j in result_judgements(result, 1, p)}
        for p in list({r["pair_id"] for r in rows})[:5]
    )


def result_judgements(result: Any, i: int, pair_id: str) -> list[Any]:
    from ste_core.pipeline import read_judgements

    return [
        j
        for j in read_judgements(result.run_dir / f"iter_{i}" / "judgements.jsonl")
        if j.pair_id == pair_id
    ]


async def test_category_filter_keeps_a_balanced_subset(tmp_path: Path, scripted) -> None:
    cfg = config_with(
        tmp_path,
        **{
            "filter.enabled": True,
            "filter.categories": ["knowledge", "reasoning", "roleplay"],
            "evaluation.eval_size": 4,
        },
    )
    pipe = Pipeline(cfg)
    await pipe.stage("load")
    counts = await pipe.stage("classify")
    assert counts["classified"] + counts["api_errors"] + counts["parse_errors"] == 40
    n = min(counts["category_knowledge"], counts["category_reasoning"])
    assert n > 0 and "category_roleplay" not in counts  # absent: balanced over the others
    cats = [r["category"] for r in read_rows(cfg.run_dir / "data" / "filtered.jsonl")]
    assert cats.count("knowledge") == cats.count("reasoning") == n == counts["kept"] // 2
    split = await pipe.stage("split")
    assert split["pool"] == 2 * n and split["eval"] == 4
    await pipe.aclose()


async def test_reused_eval_pairs_are_frozen_across_runs(tmp_path: Path, scripted) -> None:
    first = await Pipeline(config_with(tmp_path / "a")).run(iterations=1)
    frozen = first.run_dir / "eval_pairs.jsonl"
    cfg = config_with(tmp_path / "b", **{"evaluation.pairs_path": str(frozen), "run.seed": 11})
    second = await Pipeline(cfg).run(iterations=1)
    assert (second.run_dir / "eval_pairs.jsonl").read_bytes() == frozen.read_bytes()
    eval_instr = {row["instruction"] for row in read_rows(frozen)}
    train = {
        json.loads(line)["text"]
        for line in (second.run_dir / "data" / "train.jsonl").read_text().splitlines()
    }
    assert not eval_instr & train
    assert len(train) == 40 - len(eval_instr)
    # The seed judge's accuracy on the same frozen pairs is identical in both runs.
    assert second.metrics[0].eval.item_scores == first.metrics[0].eval.item_scores


async def test_benchmarks_are_scored_for_every_judge(tmp_path: Path, scripted) -> None:
    bench = tmp_path / "rb.jsonl"
    rows = [
        {
            "prompt": f"Q{i}: name a prime",
            "chosen": f"{2 + i * 0} is prime",
            "rejected": f"{4 + i} is prime",
            "subset": "math-prm",
            "id": i,
        }
        for i in range(6)
    ]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config_with(tmp_path, **{"evaluation.benchmarks": [{"name": "rb", "path": str(bench)}]})
    result = await Pipeline(cfg).run(iterations=1)
    for j in (0, 1):
        score = result.metrics[j].benchmarks["rb"]
        assert score.n_items == 6 and score.n_judgements == 12
    # The benchmark is frozen with the run: a later session scores the next judge on the same
    # pairs even though the user's file has changed meanwhile.
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    result = await Pipeline(cfg).run(iterations=2)
    assert result.metrics[2].benchmarks["rb"].n_items == 6


async def test_stage_api_needs_inputs_and_reads_typed_records(tmp_path: Path, scripted) -> None:
    pipe = Pipeline(config_with(tmp_path))
    with pytest.raises(ConfigurationError, match=r"runs only when filter\.enabled = true"):
        await pipe.stage("classify")
    with pytest.raises(SteError, match="needs stage 'load'"):
        await pipe.stage("split")
    for name in ("load", "split", "eval_pairs"):
        await pipe.stage(name)
    counts = await pipe.stage("baseline", iteration=1)
    assert counts["baselines"] == 30
    again = await pipe.stage("baseline", iteration=1, force=True)
    assert again == counts
    with pytest.raises(ConfigurationError, match="unknown stage"):
        await pipe.stage("train")
    await pipe.stage("worse", iteration=1)
    assert all(p.chosen != p.rejected for p in pipe.pairs(1))
    await pipe.stage("evaluate", iteration=0)
    assert pipe.metrics()[0].eval.n_items == len(list(pipe.eval_pairs()))
    await pipe.aclose()


async def test_a_failing_hook_is_a_warning_not_a_failed_run(tmp_path: Path, scripted) -> None:
    from ste_core.plugins import PluginWarning

    class Broken:
        @hookimpl
        def stage_finished(self, event: Any) -> None:
            raise RuntimeError("tracker down")

    get_host().register_plugin(Broken(), name="broken")
    with pytest.warns(PluginWarning, match="tracker down"):
        result = await Pipeline(config_with(tmp_path)).run(iterations=1)
    assert result.status == "succeeded"


async def test_a_run_of_version_1_resumes_with_its_spending_and_metrics(
    tmp_path: Path, scripted
) -> None:
    """ste 0.1 kept the manifest and metrics in manifest.json / metrics.json and each stage's
    usage in `state`. Resuming such a run adopts them into the store once: the budget counts
    what the earlier sessions spent, and the next judge is compared with the previous one."""
    import sqlite3

    first = await Pipeline(config_with(tmp_path, **{"run.iterations": 1})).run()
    root = first.run_dir
    spent = json.loads((root / "manifest.json").read_text())["usage"]["requests"]
    assert spent > 0
    # Turn the store into one written by 0.1: no manifest or metrics rows; usage in `state`.
    with RunStore(root / "store.sqlite") as store:
        usage = {
            (it, name): store.stage_usage(it).get(name)
            for it, stages in store.all_stage_counts().items()
            for name in stages
        }
        for (it, name), u in usage.items():
            if u is not None:
                store.set_state(f"stage_usage/{it}/{name}", u.model_dump(exclude={"seconds"}))
    conn = sqlite3.connect(root / "store.sqlite")
    with conn:
        conn.execute("DELETE FROM manifest")
        conn.execute("DELETE FROM metrics")
        conn.execute("UPDATE stages SET usage = NULL")
    conn.close()

    resumed = Pipeline(config_with(tmp_path, **{"run.iterations": 2}))
    resumed.open()
    assert resumed.budget is not None and resumed.budget.requests == spent
    result = await resumed.run()
    assert result.status == "succeeded"
    assert sorted(result.metrics) == [0, 1, 2]
    assert result.metrics[2].paired["vs_previous"].against_iteration == 1
    assert result.metrics[1].stages["judge"].requests > 0  # adopted stage usage, now in the store
    with RunStore.open_read_only(root / "store.sqlite") as store:
        assert store.get_state("stage_usage/1/judge") is None
        manifest = store.manifest()
    assert manifest is not None and len(manifest.sessions) == 2


async def test_a_session_that_died_is_marked_killed_by_the_next(tmp_path: Path, scripted) -> None:
    cfg = config_with(tmp_path)
    dead = Pipeline(cfg)
    dead.open()  # a session starts ... and its process dies: no status is ever recorded
    dead_manifest = dead.manifest
    assert dead_manifest is not None and dead_manifest.sessions[-1].status == "running"
    result = await Pipeline(cfg).run()
    sessions = json.loads((result.run_dir / "manifest.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["killed", "succeeded"]


async def test_max_cost_stops_before_a_fine_tune_that_would_go_over(
    tmp_path: Path, scripted
) -> None:
    """Each job is estimated at $0.50 and ends at $0.25: with $0.60, the first job fits; the
    second does not, counting what the first cost. Raising the limit resumes the run."""
    with pytest.raises(BudgetExceeded, match=r"max_cost_usd = \$0\.6000"):
        await Pipeline(config_with(tmp_path, **{"budget.max_cost_usd": 0.6})).run()
    assert ScriptedFineTune.submits == 1
    root = tmp_path / "runs" / "t"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["status"] == "stopped_at_budget"
    assert manifest["cost_usd"]["finetune"] == pytest.approx(0.25)
    result = await Pipeline(config_with(tmp_path, **{"budget.max_cost_usd": 1.0})).run()
    assert result.status == "succeeded" and ScriptedFineTune.submits == 2


async def test_max_cost_counts_the_uptime_of_dedicated_endpoints(
    tmp_path: Path, scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $1.20, the jobs alone fit ($0.25 spent, $0.50 estimated for the second); an
    endpoint billed at $100 a second while M1 is evaluated and judges does not leave room for
    the second job."""
    monkeypatch.setattr(ScriptedFineTune, "usd_per_hour", 360_000.0)
    cfg = config_with(
        tmp_path,
        **{
            "budget.max_cost_usd": 1.2,
            "finetune.options": {"polls_to_finish": 2, "dedicated": True},
        },
    )
    with pytest.raises(BudgetExceeded, match=r"max_cost_usd = \$1\.2000"):
        await Pipeline(cfg).run()
    assert ScriptedFineTune.submits == 1 and ScriptedFineTune.endpoints == {}
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "stopped_at_budget"
    assert manifest["cost_usd"]["endpoints"] > 0.5


async def _until_requests_are_in_flight(pipe: Pipeline) -> int:
    for _ in range(1000):
        if pipe._ctx is not None and pipe._ctx.gate.in_flight:
            return pipe._ctx.gate.in_flight
        await asyncio.sleep(0.005)
    raise AssertionError("no request went out")


def _cached(cfg: Any) -> int:
    with RunStore.open_read_only(cfg.run_dir / "store.sqlite") as store:
        return store.cache_size()


async def test_stop_lets_the_requests_in_flight_finish_and_a_second_stop_is_at_once(
    tmp_path: Path, scripted
) -> None:
    ScriptedInference.delay_s = 0.2
    cfg = config_with(tmp_path)
    pipe = Pipeline(cfg)
    task = asyncio.ensure_future(pipe.run())
    assert await _until_requests_are_in_flight(pipe) > 0
    pipe.stop()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Every request sent was answered and cached (each call here is one request); none new went
    # out after the stop.
    sent = len(ScriptedInference.calls)
    assert _cached(cfg) == sent
    assert json.loads((cfg.run_dir / "manifest.json").read_text())["status"] == "interrupted"
    # A second stop does not wait: the requests on the wire are cancelled, their answers lost.
    resumed = Pipeline(cfg)
    again = asyncio.ensure_future(resumed.run())
    assert await _until_requests_are_in_flight(resumed) > 0
    resumed.stop()
    resumed.stop()
    with pytest.raises(asyncio.CancelledError):
        await again
    assert _cached(cfg) < len(ScriptedInference.calls)
