"""The `benchmark` stage on published benchmarks: every judge of the loop is scored on each,
by its own rules, and the results land in the judge's metrics (and in `ste score`'s format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ste_core.evaluation.benchmarks import get_benchmark, read_outputs
from ste_core.pipeline import Pipeline
from tests.core.helpers import config_with
from tests.e2e.test_cli_benchmarks import judgebench_rows, rewardbench2_rows, rmbench_rows


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


async def test_published_benchmarks_are_scored_for_every_judge(tmp_path: Path, scripted) -> None:
    benches = [
        {"name": "rb2", "benchmark": "rewardbench2", "limit": 12,
         "path": write(tmp_path / "rb2.jsonl", rewardbench2_rows()[-12:])},
        {"name": "jb", "benchmark": "judgebench",
         "path": write(tmp_path / "jb.jsonl", judgebench_rows()[:6])},
        {"name": "rm", "benchmark": "rmbench", "pair_rule": "mean",
         "path": write(tmp_path / "rm.jsonl", rmbench_rows()[:5])},
    ]  # fmt: skip
    cfg = config_with(tmp_path, **{"evaluation.benchmarks": benches})
    result = await Pipeline(cfg).run(iterations=1)
    for j in (0, 1):
        got = result.metrics[j].benchmark_results
        assert set(got) == {"rb2", "jb", "rm"}
        assert got["rb2"].n_items == 12 and got["rb2"].error_count == 0
        assert "Ties" in got["rb2"].figures
        assert got["jb"].n_items == 6 and got["jb"].figures
        assert got["rm"].n_items == 5 and "pair rule mean" in got["rm"].rule_version
        assert result.metrics[j].benchmarks == {}
    # What the stage wrote re-scores to the same result, as `ste score` would.
    run_dir = cfg.run_dir
    for name, kind in (("jb", "judgebench"), ("rb2", "rewardbench2")):
        bench = get_benchmark(kind)
        loaded = bench.load(run_dir / f"bench_{name}.rows.jsonl")
        if name == "rb2":
            loaded.limit(12)
        outputs, skipped = read_outputs(bench, run_dir / "iter_1" / f"bench_{name}.jsonl")
        assert skipped == []
        again = bench.score(loaded, outputs, mode="ranking", seed=cfg.run.seed)
        assert again == result.metrics[1].benchmark_results[name]
    # The report shows each published benchmark per iteration, with its rule and comparability.
    from ste_core.evaluation import write_report

    files = write_report([run_dir])
    md = files.markdown.read_text(encoding="utf-8")
    assert "## Published benchmarks" in md
    assert md.count("jb (judgebench): accuracy (two games, counter > 0)") == 1
    assert md.count("Rule: judgebench-metrics@e2c52c2") == 1
    assert "rb2 (rewardbench2): score (mean of the six subsets)" in md
    assert "| 1 | " in md.split("rb2 (rewardbench2)")[1]
    assert "Comparable to RM-Bench" in md
    # ... and each judge's headlines in the overview table, beside its eval accuracy.
    from ste_core.evaluation.benchmarks.summary import headline

    row = next(line for line in md.splitlines() if line.startswith("| t | 1 | "))
    for name in ("rb2", "jb", "rm"):
        assert f"{name}: {headline(result.metrics[1].benchmark_results[name])}" in row


async def test_ppe_correctness_sets_keep_their_names_through_the_frozen_copy(
    tmp_path: Path, scripted
) -> None:
    # A folder of two correctness sets: the stage judges a frozen copy in the run directory,
    # and the per-set figures still carry the sets' names (not the copy's file name).
    sets = tmp_path / "ppe"
    sets.mkdir()
    for name in ("math", "gpqa"):
        rows = [
            {"question_id": f"{name}{i}", "model_name": "x", "prompt": f"Question {name} {i}?",
             "response_1": f"Right answer {i}.", "response_2": f"Wrong answer {i}.",
             "scores": [True, False], "sampled_conflict_pairs": [[0, 1]]}
            for i in range(3)
        ]  # fmt: skip
        write(sets / f"{name}.jsonl", rows)
    benches = [{"name": "ppe", "benchmark": "ppe", "path": str(sets)}]
    cfg = config_with(tmp_path, **{"evaluation.benchmarks": benches})
    result = await Pipeline(cfg).run(iterations=1)
    got = result.metrics[1].benchmark_results["ppe"]
    assert got.n_items == 6 and got.error_count == 0
    assert {"math", "gpqa"} <= set(got.figures)
    assert got.figures["math"].n == 3 and got.figures["gpqa"].n == 3
    assert "correctness_mean_of_sets" in got.extra


async def test_select_on_a_validation_file_never_uses_eval_items(tmp_path: Path, scripted) -> None:
    val = str(tmp_path / "val.jsonl")
    cfg = config_with(tmp_path, **{"evaluation.select_on": val})
    # The eval pairs are frozen first; the validation file then repeats one of their
    # instructions, which must be left out.
    pipe = Pipeline(cfg)
    for name in ("load", "split", "eval_pairs"):
        await pipe.stage(name)
    await pipe.aclose()
    from ste_core.records import ResponsePair
    from ste_core.run.io import read_rows

    eval_pair = next(iter(read_rows(cfg.run_dir / "eval_pairs.jsonl", ResponsePair)))
    rows = [{"id": f"v{i}", "instruction": f"Explain tides number {i} to a child",
             "chosen": f"Here is how tides number {i} works, explained to a child.",
             "rejected": "Some facts about jazz for adults."} for i in range(5)]  # fmt: skip
    rows.append({"id": "dup", "instruction": eval_pair.instruction, "chosen": "x", "rejected": "y"})
    write(tmp_path / "val.jsonl", rows)
    result = await Pipeline(cfg).run(iterations=1)
    frozen = [r["id"] for r in map(json.loads, (cfg.run_dir / "validation.pairs.jsonl").open())]
    assert frozen == [f"v{i}" for i in range(5)]
    for j in (0, 1):
        assert result.metrics[j].validation is not None
        assert result.metrics[j].validation.n_items == 5
    summary = (cfg.run_dir / "summary.md").read_text(encoding="utf-8")
    assert "Selected judge (the run's result): iteration" in summary
    assert "Held-out eval accuracy" in summary
    from ste_core.evaluation import write_report

    md = write_report([cfg.run_dir]).markdown.read_text(encoding="utf-8")
    assert "Selected judge (the run's result)" in md and val in md


async def test_the_preflight_counts_the_benchmark_requests(tmp_path: Path, scripted) -> None:
    from ste_core.engine.store import RunStore
    from ste_core.run.preflight import preflight

    rows = [{"id": f"v{i}", "instruction": f"Explain bees number {i} to a child",
             "chosen": f"Here is how bees number {i} works.", "rejected": "About jazz."}
            for i in range(3)]  # fmt: skip
    benches = [
        {"name": "rb2", "benchmark": "rewardbench2", "mode": "ratings",
         "path": write(tmp_path / "rb2.jsonl", rewardbench2_rows()[-6:])},
        {"name": "rm", "benchmark": "rmbench",
         "path": write(tmp_path / "rm.jsonl", rmbench_rows()[:2])},
    ]  # fmt: skip
    cfg = config_with(
        tmp_path,
        **{
            "evaluation.benchmarks": benches,
            "evaluation.select_on": write(tmp_path / "v.jsonl", rows),
        },
    )
    checked = await preflight(cfg, store=None)
    assert checked.problems == [] and checked.estimate is not None
    estimated = {
        s.iteration: s.work.requests for s in checked.estimate.steps if s.stage == "benchmark"
    }
    # 6 RB2 rows rated per completion + 2 RM-Bench rows x 9 pairs x 2 orders + 3 x 2 validation
    completions = sum(len(r["chosen"]) + len(r["rejected"]) for r in rewardbench2_rows()[-6:])
    assert estimated[0] == completions + 36 + 6
    await Pipeline(cfg).run(iterations=1)
    with RunStore.open_read_only(cfg.run_dir / "store.sqlite") as store:
        made = {i: store.stage_usage(i)["benchmark"].requests for i in (0, 1)}
    assert made == {0: estimated[0], 1: estimated[1]}
