"""The fake provider in a subprocess (its own interpreter, as a real server would be), for the
benchmark scripts: `with fake_server(latency, routes) as (url, pid): ...`."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def fake_server(latency: float, routes: str | None = None) -> Iterator[tuple[str, int]]:
    """(root URL, pid) of `python -m ste_core.testing.fake_provider` on a free port, with
    `routes` (MODULE:FUNCTION, e.g. Together's) added; stopped on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "url"
        cmd = [
            sys.executable,
            "-m",
            "ste_core.testing.fake_provider",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--ready-file",
            str(ready),
        ]
        if routes:
            cmd += ["--routes", routes]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fake provider did not start")
                time.sleep(0.05)
            time.sleep(0.1)
            yield ready.read_text().strip(), proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
