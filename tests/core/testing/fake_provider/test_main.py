"""`python -m ste_core.testing.fake_provider`: serving from the command line, route extensions."""

from __future__ import annotations

import time

import httpx
import pytest

MSG = [{"role": "user", "content": "Explain how tides depend on the moon"}]


def test_cli_serves_and_stops(tmp_path) -> None:
    import subprocess
    import sys

    ready = tmp_path / "url"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ste_core.testing.fake_provider",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--rate-limit-every",
            "2",
            "--retry-after",
            "0.5",
            "--routes",
            "ste_backends.together.fake:register_routes",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        url = ready.read_text().strip()
        body = {"model": "m", "messages": MSG}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
        r = httpx.post(url + "/v1/chat/completions", json=body)
        assert r.status_code == 429 and r.headers["retry-after"] == "0.5"
        # the route extension replaced the OpenAI-shaped model list with Together's bare list
        assert httpx.get(url + "/v1/models").json()[0]["type"] == "chat"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "'chat': 2" in err


def test_cli_refuses_a_routes_extension_it_cannot_import(capsys) -> None:
    from ste_core.testing.fake_provider.__main__ import build_parser

    for spec in ("no_colon_here", "ste_core.no_such_module:register", "json:no_such_function"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["--routes", spec])
        assert exit_.value.code == 2
        assert spec in capsys.readouterr().err
