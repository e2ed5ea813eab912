"""Progress reporters: JSON lines for batch jobs, rich bars that never break a run."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from ste_core.records import FineTuneJobState, JobStatus
from ste_core.run.progress import JsonReporter, Reporter, RichReporter, make_reporter


def _drive(r: Reporter) -> None:
    r.stage_started(1, "judge", None)
    for done in range(1, 11):
        r.scheduler_event(
            SimpleNamespace(done=done, total=10, errors=done // 5, cache_hits=1, rate_per_s=3.0)
        )
    r.finetune_state(FineTuneJobState(job_id="j1", status=JobStatus.RUNNING, progress=0.5))
    r.stage_finished(1, "judge", {"judgements": 10, "failures": 0}, 1.5, skipped=False)
    r.stage_finished(1, "select", {"kept": 3}, 0.0, skipped=True)
    r.warning("careful")
    r.close()


def test_json_reporter_writes_one_object_per_line() -> None:
    out = io.StringIO()
    _drive(JsonReporter(out, interval_s=3600))
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [r["event"] for r in rows]
    # Progress is throttled, but the final done == total update is always written.
    assert kinds == [
        "stage_started",
        "progress",
        "finetune",
        "stage_finished",
        "stage_finished",
        "warning",
    ]
    assert rows[1]["done"] == 10 and rows[1]["errors"] == 2 and rows[1]["stage"] == "judge"
    assert rows[3]["counts"] == {"judgements": 10, "failures": 0} and not rows[3]["skipped"]


def test_rich_reporter_prints_funnels_and_quiet_prints_only_warnings() -> None:
    out = io.StringIO()
    _drive(RichReporter(out))
    text = out.getvalue()
    assert "iter 1 judge" in text and "judgements 10" in text and "done earlier" in text
    quiet = io.StringIO()
    _drive(Reporter(quiet))
    assert quiet.getvalue() == "warning: careful\n"
    assert isinstance(make_reporter(log_json=True, quiet=True), JsonReporter)
    assert type(make_reporter(quiet=True)) is Reporter


def test_rich_reporter_prints_brackets_and_log_warnings_as_given() -> None:
    """Text from configs and providers is never rich markup; logged warnings come out as the
    reporter's warnings (above the live bars)."""
    import io
    import logging

    from ste_core.run.progress import RichReporter

    stream = io.StringIO()
    reporter = RichReporter(stream)
    try:
        reporter.warning("set input_per_million in [budget]")
        reporter.info("pip install 'self-taught-evaluators[litellm]'")
        logging.getLogger("ste_backends.x").warning("endpoint [judge] gone")
    finally:
        reporter.close()
    logging.getLogger("ste_backends.x").warning("after close: not shown")
    text = stream.getvalue()
    assert "warning: set input_per_million in [budget]" in text
    assert "pip install 'self-taught-evaluators[litellm]'" in text
    assert "warning: endpoint [judge] gone" in text and "after close" not in text
