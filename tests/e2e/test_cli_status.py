"""End to end: `ste status` from another process while `ste run` goes, after a kill, and after
it finished; `ste runs` over several runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ste_core.testing.fake_provider import FakeProvider
from tests.e2e.test_cli_run import STE, _env, _run_until, _ste, _write_run
from tests.e2e.test_cli_run import fakes as fakes  # the fixture

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _status(run: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STE, "status", str(run)], env=_env(), capture_output=True, text=True, timeout=30
    )


def test_status_while_running_after_a_kill_and_when_done(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    # One request at a time: judging lasts long enough to be seen from another process.
    config = _write_run(tmp_path / "a", oa, tg, concurrency=1)
    run = tmp_path / "a" / "runs" / "e2e"
    seen: list[str] = []

    def judging_seen() -> bool:
        # Judging lasts about a second, less than `ste status` may take to start: polling it
        # could miss the window. So status.json is polled here, and once it says judge@1 the
        # run is held (SIGSTOP: its process stays alive) while `ste status` asks from another.
        try:
            live = json.loads((run / "status.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        if live.get("stage") != "judge" or live.get("iteration") != 1:
            return False
        os.kill(live["pid"], signal.SIGSTOP)
        out = _status(run)
        assert out.returncode == 0, out.stderr
        seen.append(out.stdout)
        return True

    _run_until(config, judging_seen)  # SIGKILLed once `ste status` saw it judging
    live = seen[-1]
    assert "now: judge@1: " in live, live
    assert ": running" in live and "(updated" in live.split("now: judge@1: ", 1)[1]
    # the seed judge was evaluated before judging: its accuracy, interval and errors
    assert re.search(r"M0 fake-acc70: \d+\.\d% \[[\d.]+, [\d.]+\] \(n=10, 0 errors", live), live

    killed = _status(run)
    assert "killed (its process is gone" in killed.stdout
    assert "no session is running" in killed.stdout

    assert _ste(config).returncode == 0
    done = _status(run)
    assert ": succeeded" in done.stdout and "M2 " in done.stdout

    other = _write_run(tmp_path / "a", oa, tg)  # a second run in the same output directory
    other.write_text(other.read_text().replace('name = "e2e"', 'name = "second"'))
    started = time.monotonic()
    _run_until(other, lambda: (run.parent / "second" / "status.json").exists())
    assert time.monotonic() - started < 60
    listing = subprocess.run(
        [*STE, "runs", str(run.parent)], env=_env(), capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if "│" in line}
    assert "succeeded" in rows["e2e"] and "M" in rows["e2e"]
    assert "killed" in rows["second"]
