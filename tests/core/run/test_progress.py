"""Progress reporters: JSON lines for batch jobs, rich bars that never break a run."""

from __future__ import annotations

import io
import json
import logging
import re
from types import SimpleNamespace

from rich.console import Console

from ste_core.records import FineTuneJobState, JobStatus
from ste_core.run.progress import JsonReporter, Reporter, RichReporter, make_reporter
from ste_core.stages.baseline import BaselineCounts
from ste_core.stages.eval_pairs import EvalPairsCounts
from ste_core.stages.select import SelectCounts
from ste_core.stages.worse import WorseCounts


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


# -- what a person sees on a terminal ---------------------------------------------------------

_CONTROL = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]+")


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows after `raw` (the cursor moves and erases rich's live display
    uses; colours dropped): a bar drawn through by a raw write would stay visible here."""
    lines, row, col = [""], 0, 0
    for m in _CONTROL.finditer(raw):
        text = m.group(0)
        if text == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif text == "\r":
            col = 0
        elif m.group(3) is None:  # printable text
            line = lines[row].ljust(col)
            lines[row] = line[:col] + text + line[col + len(text) :]
            col += len(text)
        elif m.group(1):  # ?25l / ?25h: cursor shown or hidden
            continue
        elif m.group(3) == "A":
            row = max(0, row - int(m.group(2) or 1))
        elif m.group(3) == "G":
            col = int(m.group(2) or 1) - 1
        elif m.group(3) == "K":
            lines[row] = ""
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


def _terminal() -> tuple[io.StringIO, Console]:
    out = io.StringIO()
    return out, Console(file=out, force_terminal=True, width=150, color_system=None)


def _shown(reporter: RichReporter, out: io.StringIO) -> list[str]:
    reporter._progress.refresh()
    return _screen(out.getvalue())


def test_stage_bar_shows_done_total_rate_errors_and_eta(monkeypatch) -> None:
    out, console = _terminal()
    reporter = RichReporter(console=console)
    now = [1000.0]
    monkeypatch.setattr(reporter._progress, "get_time", lambda: now[0])
    try:
        reporter.stage_started(1, "judge", None)
        reporter.phase(total=40)  # the stage knows its size; the scheduler reads a stream
        for done in range(1, 11):
            now[0] += 1.0
            reporter.scheduler_event(
                SimpleNamespace(done=done, total=None, errors=3, cache_hits=0, rate_per_s=1.0)
            )
        bar = _shown(reporter, out)[-1]
    finally:
        reporter.close()
    assert bar.startswith("iter 1 judge ")
    assert "10/40" in bar and "1.0/s" in bar and "3 errors" in bar
    # 30 left at one a second.
    assert "eta 0:30" in bar, bar
    assert _screen(out.getvalue()) == []  # the bar goes when the run ends


def test_each_pass_of_eval_pairs_has_its_own_label_and_count() -> None:
    out, console = _terminal()
    reporter = RichReporter(console=console)
    try:
        reporter.stage_started(0, "eval_pairs", None)
        reporter.phase("baselines", 5)
        reporter.progress(5, None)
        first = _shown(reporter, out)[-1]
        reporter.phase("worse responses", 4)
        reporter.progress(1, None)
        second = _shown(reporter, out)[-1]
    finally:
        reporter.close()
    assert first.startswith("eval pairs: baselines ") and "5/5" in first
    assert second.startswith("eval pairs: worse responses ") and "1/4" in second


def test_finetune_bar_shows_phase_step_loss_price_and_eta(monkeypatch) -> None:
    from ste_core.run import progress as progress_module

    out, console = _terminal()
    reporter = RichReporter(console=console)
    clock = [50.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    job = "/abs/path/to/jobs/local-sft-1"
    try:
        reporter.stage_started(1, "finetune", None)
        reporter.phase("uploading and submitting")
        assert _shown(reporter, out)[-1].startswith("iter 1 finetune: uploading and submitting")
        reporter.finetune_state(
            FineTuneJobState(job_id=job, status=JobStatus.RUNNING, phase="loading model")
        )
        assert _shown(reporter, out)[-1].startswith("iter 1 finetune: loading model")
        for step in (10, 40):
            clock[0] += 30.0
            reporter.finetune_state(
                FineTuneJobState(
                    job_id=job,
                    status=JobStatus.RUNNING,
                    phase="training",
                    step=step,
                    total_steps=80,
                    loss=1.23456,
                    cost_usd=3.2,
                )
            )
        bar = _shown(reporter, out)[-1]
    finally:
        reporter.close()
    assert bar.startswith("iter 1 finetune: training ")
    assert "40/80" in bar and "loss 1.235" in bar and "~$3.20" in bar
    # 30 steps in 30 s, 40 to go: 40 s.
    assert "eta 0:40" in bar, bar
    assert job not in bar and "0/1" not in bar


def test_a_grpo_bar_shows_the_mean_reward_and_the_kl() -> None:
    out, console = _terminal()
    reporter = RichReporter(console=console)
    try:
        reporter.stage_started(2, "finetune", None)
        reporter.finetune_state(
            FineTuneJobState(
                job_id="j",
                status=JobStatus.RUNNING,
                phase="training",
                step=3,
                total_steps=10,
                loss=0.01,
                metrics={"reward": 1.625, "reward/correct": 0.75, "kl": 0.00042},
            )
        )
        bar = _shown(reporter, out)[-1]
    finally:
        reporter.close()
    assert "loss 0.01, reward 1.62, kl 0.00042" in bar, bar


def test_a_warning_while_a_bar_is_live_prints_above_it_and_leaves_no_broken_bar() -> None:
    out, console = _terminal()
    reporter = RichReporter(console=console)
    try:
        reporter.stage_started(1, "baseline", None)
        reporter.phase(total=20)
        reporter.progress(7, None)
        _shown(reporter, out)
        logging.getLogger("ste_backends.somewhere").warning("retrying [429] in 2 s")
        reporter.info("Together endpoint e-1 created ($2.40/hour).")
        reporter.progress(8, None)
        live = _shown(reporter, out)
    finally:
        reporter.close()
    assert live[:-1] == [
        "warning: retrying [429] in 2 s",
        "Together endpoint e-1 created ($2.40/hour).",
    ]
    assert live[-1].startswith("iter 1 baseline ") and "8/20" in live[-1]
    assert _screen(out.getvalue()) == live[:-1]


def test_stage_summaries_use_words_and_skipped_stages_say_what_they_did() -> None:
    out, console = _terminal()
    reporter = RichReporter(console=console)
    counts = SelectCounts(judgements=20, correct=12, keys=10, keys_with_correct=8, selected=8)
    try:
        reporter.stage_started(1, "select", None)
        reporter.stage_finished(
            1, "select", counts.flat(), 2.0, skipped=False, summary=counts.describe()
        )
        reporter.stage_finished(0, "split", {"eval": 5}, 0.0, skipped=True, summary="5 held out")
    finally:
        reporter.close()
    assert _screen(out.getvalue()) == [
        "✓ iter 1 select (2.0s): 20 judgements, 12 correct, 10 pair orders, "
        "8 with a correct judgement, 8 selected",
        "split: done earlier (5 held out)",
    ]


def test_counts_describe_nested_and_by_reason_counts_in_words() -> None:
    counts = EvalPairsCounts(
        baseline=BaselineCounts(instructions=10, baselines=9, dropped={"empty_baseline": 1}),
        worse=WorseCounts(baselines=9, pairs=9),
        pairs=9,
    )
    text = counts.describe()
    assert text == (
        "baselines (10 instructions, 9 baselines, dropped: 1 empty baseline), "
        "worse responses (9 baselines, 9 pairs), 9 eval pairs"
    )
    assert "baseline_baselines" in counts.flat()  # the stored counts keep their names


def test_json_lines_carry_the_phase_total_and_finetune_fields() -> None:
    out = io.StringIO()
    reporter = JsonReporter(out, interval_s=3600)
    reporter.stage_started(0, "eval_pairs", None)
    reporter.phase("worse responses", 4)
    reporter.scheduler_event(
        SimpleNamespace(done=4, total=None, errors=1, cache_hits=0, rate_per_s=2.0)
    )
    reporter.finetune_state(
        FineTuneJobState(
            job_id="j", status=JobStatus.RUNNING, phase="training", step=3, total_steps=8, loss=0.5
        )
    )
    reporter.stage_finished(0, "eval_pairs", {"pairs": 4}, 1.0, skipped=False, summary="4 pairs")
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in rows] == [
        "stage_started",
        "progress",
        "progress",
        "finetune",
        "stage_finished",
    ]
    assert rows[1]["phase"] == "worse responses" and rows[1]["done"] == 0
    assert rows[2]["total"] == 4 and rows[2]["done"] == 4 and rows[2]["errors"] == 1
    assert {k: rows[3][k] for k in ("status", "phase", "step", "total_steps", "loss")} == {
        "status": "running",
        "phase": "training",
        "step": 3,
        "total_steps": 8,
        "loss": 0.5,
    }
    assert rows[4]["counts"] == {"pairs": 4} and rows[4]["summary"] == "4 pairs"


def test_a_library_that_prints_its_own_logs_is_not_printed_twice() -> None:
    """huggingface_hub prints its warnings through its own handler: the reporter leaves them."""
    import io
    import logging

    from ste_core.run.progress import RichReporter

    own = logging.getLogger("some_library")
    own_stream = io.StringIO()
    handler = logging.StreamHandler(own_stream)
    own.addHandler(handler)
    stream = io.StringIO()
    reporter = RichReporter(stream)
    try:
        logging.getLogger("some_library.http").warning("Retrying in 8s [Retry 1/5].")
        logging.getLogger("ste_backends.other").warning("printed by ste")
    finally:
        reporter.close()
        own.removeHandler(handler)
    assert own_stream.getvalue().count("Retrying in 8s") == 1
    assert "Retrying" not in stream.getvalue() and "printed by ste" in stream.getvalue()
