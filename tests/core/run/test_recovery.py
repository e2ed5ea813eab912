"""What a dead session left open at a provider: reused, or reaped with a warning (run/recovery)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ste_core.engine.store import RunStore
from ste_core.pipeline import Pipeline
from ste_core.run.progress import Reporter
from tests.core.helpers import CrashAfter, ScriptedFineTune, config_with


class Warnings(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def warning(self, message: str) -> None:
        self.lines.append(message)


def leave_open(store_path: Path, model: str, endpoint_id: str) -> int:
    """What a session killed while serving `model` leaves: a live endpoint, open in the ledger."""
    with RunStore(store_path) as store:
        r = store.resource_begin(
            "endpoint", backend="scripted", section="finetune", key=model, usd_per_hour=3.6
        )
        store.resource_update(r.entry, provider_id=endpoint_id, state="live")
    ScriptedFineTune.endpoints[endpoint_id] = model
    return r.entry


async def test_the_endpoint_the_run_needs_next_is_reused_and_the_others_reaped(
    tmp_path: Path, scripted
) -> None:
    cfg = config_with(tmp_path, **{"finetune.options": {"polls_to_finish": 2, "dedicated": True}})
    with pytest.raises(RuntimeError, match="simulated crash"):
        await Pipeline(cfg, reporter=CrashAfter("evaluate@1", 5)).run()
    assert ScriptedFineTune.endpoints == {}  # the crash still tore its own endpoint down
    store_path = cfg.run_dir / "store.sqlite"
    leave_open(store_path, "judge-acc70-ft1", "ep-dead-1")  # evaluate@1 needs it next
    leave_open(store_path, "judge-acc70-ft9", "ep-dead-2")  # nothing needs it
    created_before = len(ScriptedFineTune.created)

    reporter = Warnings()
    result = await Pipeline(cfg, reporter=reporter).run()

    assert result.status == "succeeded"
    assert ScriptedFineTune.reused == ["ep-dead-1"]
    # Only M2 needed a new endpoint; nothing is left live at the provider or open in the ledger.
    assert len(ScriptedFineTune.created) == created_before + 1
    assert ScriptedFineTune.endpoints == {}
    with RunStore.open_read_only(store_path) as store:
        assert store.resources(open_only=True) == []
        ended = {r.provider_id: r for r in store.resources(kind="endpoint")}
    assert all(r.cost_usd is not None and r.cost_usd > 0 for r in ended.values())
    reaped = [line for line in reporter.lines if "ep-dead-2" in line]
    assert len(reaped) == 1 and "left open by an earlier session" in reaped[0]
    assert "deleted" in reaped[0] and "$" in reaped[0]
    manifest = json.loads((cfg.run_dir / "manifest.json").read_text())
    assert manifest["cost_usd"]["endpoints"] == pytest.approx(
        sum(r.cost_usd or 0 for r in ended.values()), abs=1e-5
    )
    assert manifest["cost_usd"]["total"] >= manifest["cost_usd"]["endpoints"]
    costs = [e["cost_usd"] for e in manifest["endpoints"]]
    assert costs and all(c is not None and c > 0 for c in costs[-2:])


async def test_a_finished_run_leaves_nothing_open(tmp_path: Path, scripted) -> None:
    cfg = config_with(tmp_path, **{"finetune.options": {"polls_to_finish": 2, "dedicated": True}})
    await Pipeline(cfg).run()
    leave_open(cfg.run_dir / "store.sqlite", "judge-acc70-ft2", "ep-stray")
    result = await Pipeline(cfg).run()  # a resume that has nothing left to do
    assert result.status == "succeeded" and ScriptedFineTune.endpoints == {}
    with RunStore.open_read_only(cfg.run_dir / "store.sqlite") as store:
        assert store.resources(open_only=True) == []
