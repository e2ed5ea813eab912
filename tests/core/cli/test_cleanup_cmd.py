"""`ste cleanup RUN_DIR`: lists what a run left open at a provider; --yes tears it down."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ste_core import Pipeline
from ste_core.cli.app import app
from ste_core.config import load_config
from ste_core.engine.store import RunStore
from tests.core.helpers import ScriptedFineTune, base_config, write_config
from tests.core.run.test_recovery import leave_open


def test_cleanup_lists_then_tears_down_what_the_run_left_open(tmp_path: Path, scripted) -> None:
    data = base_config(tmp_path)
    data["run"]["iterations"] = 1
    data["finetune"]["options"]["dedicated"] = True
    cfg = load_config(write_config(tmp_path, data))
    Pipeline(cfg).run_sync()
    store_path = cfg.run_dir / "store.sqlite"
    leave_open(store_path, "judge-acc70-ft1", "ep-live")
    gone = leave_open(store_path, "judge-acc70-ft1", "ep-gone")
    del ScriptedFineTune.endpoints["ep-gone"]  # the provider deleted it meanwhile

    dry = CliRunner().invoke(app, ["cleanup", str(cfg.run_dir)])
    assert dry.exit_code == 0, dry.output
    assert "2 open" in dry.output and "dry run: 1 to tear down" in dry.output
    assert "ep-live" in dry.output and "live: READY" in dry.output
    assert "gone at the provider" in dry.output
    assert ScriptedFineTune.endpoints == {"ep-live": "judge-acc70-ft1"}  # a dry run touches nothing

    done = CliRunner().invoke(app, ["cleanup", str(cfg.run_dir), "--yes"])
    assert done.exit_code == 0, done.output
    assert ScriptedFineTune.endpoints == {}
    with RunStore.open_read_only(store_path) as store:
        assert store.resources(open_only=True) == []
        assert store.resource(gone).state == "ended"
    again = CliRunner().invoke(app, ["cleanup", str(cfg.run_dir)])
    assert again.exit_code == 0 and "nothing to clean up" in again.output


def test_cleanup_of_a_directory_that_is_no_run_exits_2(tmp_path: Path, scripted) -> None:
    out = CliRunner().invoke(app, ["cleanup", str(tmp_path)])
    assert out.exit_code == 2 and "not a run directory" in out.output


def test_cleanup_cancels_a_fine_tune_job_left_training(tmp_path: Path, scripted) -> None:
    data = base_config(tmp_path)
    data["run"]["iterations"] = 1
    cfg = load_config(write_config(tmp_path, data))
    Pipeline(cfg).run_sync()
    ScriptedFineTune.jobs["job-9"] = {"polls": -100, "model": "m-ft9", "suffix": "ste-t-it9"}
    with RunStore(cfg.run_dir / "store.sqlite") as store:
        r = store.resource_begin(
            "finetune_job", backend="scripted", section="finetune", key="ste-t-it9"
        )
        store.resource_update(r.entry, provider_id="job-9", state="live")

    dry = CliRunner().invoke(app, ["cleanup", str(cfg.run_dir)])
    assert dry.exit_code == 0, dry.output
    assert "finetune_job ste-t-it9 (id job-9)" in dry.output and "live: running" in dry.output
    done = CliRunner().invoke(app, ["cleanup", str(cfg.run_dir), "--yes"])
    assert done.exit_code == 0 and "cancelled" in done.output, done.output
    assert ScriptedFineTune.jobs["job-9"]["cancelled"] is True
