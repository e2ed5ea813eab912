"""`ste view`: arguments, a clear refusal where it cannot serve, and a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from ste_core.cli.app import app
from tests.core.rundirs import make_run

runner = CliRunner()


def test_refuses_what_is_not_a_run(tmp_path: Path) -> None:
    res = runner.invoke(app, ["view", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a directory" in res.output
    res = runner.invoke(app, ["view", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a ste run directory" in res.output and str(tmp_path.resolve()) in res.output


def test_a_port_in_use_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", [0.6, 0.8])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["view", str(run), "--port", str(port)])
    assert res.exit_code == 2, res.output
    assert f"cannot serve on 127.0.0.1:{port}" in res.output and "--port" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_serves_until_ctrl_c(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", [0.6, 0.8])
    proc = subprocess.Popen(
        [sys.executable, "-m", "ste_core.cli.app", "view", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        with urllib.request.urlopen(url.group(0) + "api/runs", timeout=30) as res:
            assert json.load(res)[0]["path"] == str(run.resolve())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
