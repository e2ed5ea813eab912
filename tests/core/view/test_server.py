"""The viewer's HTTP side (ste_core.view.server): the JSON API and the bundled static files,
through a real HTTP client against the server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ste_core.view.data import ItemQuery, RunView
from ste_core.view.server import ViewServer, make_server


@pytest.fixture
def server(built_run: Path) -> Iterator[ViewServer]:
    srv = make_server([built_run, built_run])
    srv.start_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(srv: ViewServer, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(srv.url + path.lstrip("/"), timeout=30) as res:
            return res.status, res.headers["Content-Type"], res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def api(srv: ViewServer, path: str) -> tuple[int, Any]:
    status, kind, body = get(srv, path)
    assert kind.startswith("application/json")
    return status, json.loads(body)


def test_listens_on_loopback_on_a_free_port(server: ViewServer) -> None:
    assert server.server_address[0] == "127.0.0.1" and server.server_address[1] > 0
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server.url)


def test_runs_summary_items_and_pair(server: ViewServer, built_run: Path) -> None:
    status, runs = api(server, "/api/runs")
    assert status == 200 and [r["id"] for r in runs] == [0, 1] and runs[0]["name"] == "t"
    status, summary = api(server, "/api/runs/1/summary")
    assert status == 200 and summary == json.loads(json.dumps(RunView(built_run).summary()))
    status, page = api(server, "/api/runs/0/items?set=train&iter=1&filter=kept&offset=2&limit=3")
    direct = RunView(built_run).items(
        ItemQuery(set="train", iteration=1, filters=("kept",), offset=2, limit=3)
    )
    assert status == 200 and page == json.loads(json.dumps(direct))
    assert len(page["items"]) == 3 and page["offset"] == 2
    pid = page["items"][0]["id"]
    status, detail = api(server, f"/api/runs/0/pair?set=train&id={pid}&iter=1")
    assert status == 200 and detail["pair"]["id"] == pid
    assert len(detail["judges"]) == 1 and detail["judges"][0]["judge"] == "M0"
    status, both = api(server, "/api/runs/0/items?iter=2&compare=0&filter=changed,wrong")
    assert status == 200 and all(i["flags"]["wrong"] for i in both["items"])
    eid = RunView(built_run).items(ItemQuery())["items"][0]["id"]
    status, cmp = api(server, f"/api/runs/0/pair?id={eid}&iter=2&compare=1")
    assert [j["iteration"] for j in cmp["judges"]] == [2, 1]
    status, found = api(server, "/api/runs/0/items?set=bench:rb&iter=0&q=8%20is%20prime")
    assert [i["id"] for i in found["items"]] == ["2"]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/runs/5/summary", 404, "no run 5; runs are 0..1"),
        ("/api/runs/0/items?set=dev", 404, "no set 'dev'"),
        ("/api/runs/0/items?filter=bogus", 400, "unknown filter 'bogus'"),
        ("/api/runs/0/items?iter=x", 400, "iter must be an integer"),
        ("/api/runs/0/items?limit=100000", 400, "limit between 1 and 500"),
        ("/api/runs/0/pair?set=eval", 400, "pair needs id="),
        ("/api/runs/0/pair?id=nope", 404, "no pair 'nope'"),
        ("/api/nothing", 404, "no API route"),
        ("/static/../data.py", 404, "no file"),
    ],
)
def test_errors_are_json_with_a_reason(server: ViewServer, path: str, status: int, message: str):
    got, body = api(server, path)
    assert got == status and message in body["error"]


def test_the_app_is_served_whole_from_the_package(server: ViewServer) -> None:
    status, kind, html = get(server, "/")
    assert status == 200 and kind.startswith("text/html")
    page = html.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert set(assets) >= {"/static/app.js", "/static/app.css"}
    for asset in assets:
        # Nothing from elsewhere: the viewer works offline.
        assert asset.startswith(("/static/", "#")), asset
        if asset.startswith("/static/"):
            status, kind, body = get(server, asset)
            assert status == 200 and body
            assert not re.search(rb"(?:src|href|url\()\s*=?\s*[\"']?https?://", body)
            assert b"@import" not in body
    status, kind, _ = get(server, "/static/app.js")
    assert "javascript" in kind
