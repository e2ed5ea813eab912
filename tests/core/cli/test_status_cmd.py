"""`ste status`: the line that says what a live session is doing (from status.json)."""

from __future__ import annotations

import os
import time

from ste_core.cli.status_cmd import _current


def test_the_current_stage_line_names_the_phase_progress_and_fine_tune_step() -> None:
    live = {
        "pid": os.getpid(),
        "stage": "eval_pairs",
        "iteration": 0,
        "phase": "worse responses",
        "done": 30,
        "total": 90,
        "errors": 2,
        "rate_per_s": 3.0,
        "updated": time.time(),
    }
    line = _current(live, alive=True)
    assert line.startswith("eval_pairs@0 (worse responses): 30/90, 2 errors, 3.0/s")
    assert "about 20 s left" in line
    live |= {
        "stage": "finetune",
        "phase": None,
        "finetune": {
            "job_id": "ft-1",
            "status": "running",
            "phase": "training",
            "step": 40,
            "total_steps": 80,
            "loss": 1.2345,
            "progress": 0.5,
        },
    }
    assert "fine-tune job ft-1: training, step 40/80, loss 1.234" in _current(live, alive=True)
    assert _current(live, alive=False) == "no session is running"
    assert _current(None, alive=None).startswith("unknown")
