"""`ste run`: `--plan` prints the schedule and what is done."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ste_core import Pipeline
from ste_core.cli.app import app
from ste_core.config import load_config
from tests.core.helpers import base_config, write_config


async def test_ste_run_plan_prints_the_schedule_and_what_is_done(tmp_path: Path, scripted) -> None:
    config_path = write_config(tmp_path, base_config(tmp_path))
    pipe = Pipeline(load_config(config_path))
    await pipe.stage("load")
    await pipe.aclose()
    out = CliRunner().invoke(app, ["run", str(config_path), "--plan"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("plan of run 't'") and "18 steps" in lines[0]
    load_line = next(line for line in lines if " load " in line)
    split_line = next(line for line in lines if " split " in line)
    assert "done" in load_line and "to do" in split_line
    judge_line = next(line for line in lines if line.split()[:2] == ["1", "judge"])
    assert "M_0" in judge_line
    finetune_line = next(line for line in lines if line.split()[:2] == ["2", "finetune"])
    assert finetune_line.endswith("(method sft)")


def test_ste_run_plan_shows_the_sft_warm_up_and_the_grpo_iterations(
    tmp_path: Path, scripted
) -> None:
    data = base_config(tmp_path)
    data["finetune"].update(method="grpo", warmup="sft", init_from="previous")
    out = CliRunner().invoke(app, ["run", str(write_config(tmp_path, data)), "--plan"])
    assert out.exit_code == 0, out.output
    steps = [line.split()[:2] for line in out.output.splitlines()[2:-1]]
    assert ["1", "judge"] in steps and ["1", "select"] in steps
    assert ["2", "judge"] not in steps and ["2", "select"] not in steps
    methods = [line.split("(method ")[1] for line in out.output.splitlines() if "(method " in line]
    assert methods == ["sft)", "grpo)"]


def _check(config_path: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["run", str(config_path), "--check", *args])


def test_ste_run_check_prints_the_estimate_and_creates_nothing(tmp_path: Path, scripted) -> None:
    config_path = write_config(tmp_path, base_config(tmp_path))
    out = _check(config_path)
    assert out.exit_code == 0, out.output
    assert "preflight of run 't'" in out.output
    baseline = next(line for line in out.output.splitlines() if " baseline " in line)
    assert "30" in baseline and "≤" not in baseline  # the training instructions are known
    assert "estimate of what the run still needs: ≤260 requests" in out.output
    assert "unpriced" in out.output and "2 fine-tune job(s) (cost unknown)" in out.output
    assert not (tmp_path / "runs").exists()
    assert scripted.calls == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"judge": {"template": "judge_nope"}}, "judge.template: got 'judge_nope'"),
        ({"generator": {"optoins": {}}}, "generator.optoins"),
        ({"generator": {"options": {"unparsable_rat": 0.1}}}, "generator.options.unparsable_rat"),
    ],
)
def test_ste_run_check_exits_2_naming_the_problem(
    tmp_path: Path, scripted, change: dict[str, Any], message: str
) -> None:
    data = base_config(tmp_path)
    for section, values in change.items():
        data[section].update(values)
    out = _check(write_config(tmp_path, data))
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output
    assert scripted.calls == [] and not (tmp_path / "runs").exists()


def test_ste_run_check_exits_3_when_the_estimate_exceeds_the_budget(
    tmp_path: Path, scripted
) -> None:
    data = base_config(tmp_path)
    data["budget"] = {"max_requests": 100}
    out = _check(write_config(tmp_path, data))
    assert out.exit_code == 3, out.output
    assert "problem: the plan needs at most 260 more requests" in out.output
    assert "over budget.max_requests = 100" in out.output


def test_ste_run_check_of_a_started_run_reads_it_and_changes_nothing(
    tmp_path: Path, scripted
) -> None:
    config_path = write_config(tmp_path, base_config(tmp_path))
    pipe = Pipeline(load_config(config_path))

    async def start() -> None:
        for stage in ("load", "split", "eval_pairs"):
            await pipe.stage(stage)
        await pipe.aclose()

    asyncio.run(start())
    run_dir = tmp_path / "runs" / "t"

    def contents() -> dict[Path, bytes]:
        # SQLite's -wal/-shm files let any reader (also a read-only one) share a WAL database.
        files = (p for p in run_dir.rglob("*") if p.is_file())
        return {p: p.read_bytes() for p in files if not p.name.endswith(("-wal", "-shm"))}

    before = contents()
    calls = len(scripted.calls)
    out = _check(config_path)
    assert out.exit_code == 0, out.output
    assert contents() == before
    assert len(scripted.calls) == calls
    eval_pairs = next(line for line in out.output.splitlines() if " eval_pairs " in line)
    assert "done" in eval_pairs
    # The eval pairs exist: the seed judge's evaluation is counted exactly from them.
    lines = out.output.splitlines()
    evaluate = next(line for line in lines if line.split()[1:4] == ["0", "│", "evaluate"])
    assert "≤" not in evaluate


def test_ste_run_probe_needs_check(tmp_path: Path, scripted) -> None:
    config_path = write_config(tmp_path, base_config(tmp_path))
    out = CliRunner().invoke(app, ["run", str(config_path), "--probe"])
    assert out.exit_code == 2 and "--probe goes with --check" in out.output


def test_ste_run_prints_each_stage_summary_in_words(tmp_path: Path, scripted) -> None:
    config_path = write_config(tmp_path, base_config(tmp_path))
    # Wide enough that rich does not wrap a summary line.
    out = CliRunner().invoke(
        app, ["run", str(config_path), "--iterations", "1"], env={"COLUMNS": "300"}
    )
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    eval_pairs = next(line for line in lines if line.startswith("✓ eval pairs"))
    assert "baselines (" in eval_pairs and "worse responses (" in eval_pairs, eval_pairs
    select = next(line for line in lines if line.startswith("✓ iter 1 select"))
    assert "pair orders" in select and "with a correct judgement" in select, select
    for internal in ("keys_with_correct", "baseline_baselines", "worse_pairs", "verdict_A"):
        assert internal not in out.output


def test_ste_run_names_the_run_directory_at_the_start_and_on_failure(
    tmp_path: Path, scripted
) -> None:
    data = base_config(tmp_path)
    data["budget"] = {"max_requests": 3}
    config_path = write_config(tmp_path, data)
    out = CliRunner().invoke(app, ["run", str(config_path)])
    assert out.exit_code == 3, out.output
    run_dir = (tmp_path / "runs" / "t").resolve()
    assert out.output.count(f"run directory: {run_dir}") == 2  # at the start, and on failure
    assert "stopped at the budget" in out.output
