"""RunContext: one backend (one client, one connection pool) per setup for the whole run."""

from __future__ import annotations

from pathlib import Path

from ste_core.run.context import RunContext
from ste_core.run.progress import Reporter
from ste_core.run.rundir import RunDir
from tests.core.helpers import config_with


async def test_stages_and_served_judges_on_one_setup_share_one_backend(
    tmp_path: Path, scripted
) -> None:
    cfg = config_with(tmp_path, **{"judge.limits": {"concurrency": 3}})
    ctx = RunContext.open(cfg, RunDir(cfg.run_dir), Reporter())
    try:
        generator, judge = ctx.scheduler("generator"), ctx.scheduler("judge")
        assert generator is not judge  # their own limits...
        assert generator.backend is judge.backend  # ...over one backend
        async with ctx.temporary_scheduler("scripted", {}, cfg.judge.limits, lambda b: b) as served:
            assert served.backend is judge.backend
        other = ctx.inference_backend("scripted", {"unparsable_rate": 0.5}, "judge")
        assert other is not judge.backend  # other options: another setup
    finally:
        await ctx.aclose()
