"""`ste run`: `--plan` prints the schedule and what is done."""

from __future__ import annotations

from pathlib import Path

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
