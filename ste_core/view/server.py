"""The viewer's HTTP side: static files (bundled with the package, nothing fetched from
elsewhere) and a JSON API over `ste_core.view.data`, on the standard library's
ThreadingHTTPServer (a local, single-user tool needs no web framework).

Routes (all GET):

```
/                                  the app (index.html); the view lives in the URL's #hash
/static/NAME                       app.js, app.css
/api/runs                          [{id, name, path}]
/api/compare                       the runs side by side, and a warning if their eval pairs differ
/api/runs/ID/summary               accuracy per judge, paired tests, funnel, cost, sets
/api/runs/ID/items?set=&iter=&compare=&filter=a,b&subset=&q=&offset=&limit=&pair=
/api/runs/ID/pair?set=&id=&iter=&compare=
```
"""

from __future__ import annotations

import json
import mimetypes
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ste_core.view.data import ItemQuery, RunView, ViewError, compare_runs

__all__ = ["ViewServer", "make_server"]

_STATIC = resources.files("ste_core.view") / "static"


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], runs: Sequence[RunView]) -> None:
        super().__init__(address, _Handler)
        self.runs = list(runs)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def start_in_thread(self) -> threading.Thread:
        """Serve from a background thread (tests); stop with `shutdown()`."""
        thread = threading.Thread(target=self.serve_forever, name="ste-view", daemon=True)
        thread.start()
        return thread


def make_server(run_dirs: Sequence[Path], host: str = "127.0.0.1", port: int = 0) -> ViewServer:
    """A server for these run directories (port 0: a free one)."""
    return ViewServer((host, port), [RunView(Path(d)) for d in run_dirs])


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "ste-view"

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the console shows the URL, not one line per request.
        return

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path in ("/", "/index.html"):
                self._static("index.html")
            elif url.path.startswith("/static/"):
                self._static(url.path.removeprefix("/static/"))
            elif url.path.startswith("/api/"):
                self._json(HTTPStatus.OK, self._api(url.path, parse_qs(url.query)))
            else:
                raise ViewError(f"no page {url.path}", 404)
        except ViewError as exc:
            self._json(HTTPStatus(exc.status), {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-answer

    def _api(self, path: str, query: dict[str, list[str]]) -> Any:
        parts = path.strip("/").split("/")[1:]
        if parts == ["runs"]:
            runs = self.server.runs
            return [{"id": i, "name": r.root.name, "path": str(r.root)} for i, r in enumerate(runs)]
        if parts == ["compare"]:
            return compare_runs(self.server.runs)
        if len(parts) != 3 or parts[0] != "runs":
            raise ViewError(f"no API route {path}", 404)
        run = self._run(parts[1])
        if parts[2] == "summary":
            return run.summary()
        if parts[2] == "items":
            return run.items(item_query(query))
        if parts[2] == "pair":
            pair_id = _one(query, "id")
            if not pair_id:
                raise ViewError("pair needs id=PAIR_ID")
            iters = [_int(query, "iter"), *([_int(query, "compare")] if "compare" in query else [])]
            return run.pair(_one(query, "set") or "eval", pair_id, iters)
        raise ViewError(f"no API route {path}", 404)

    def _run(self, ident: str) -> RunView:
        runs = self.server.runs
        if not ident.isdigit() or int(ident) >= len(runs):
            raise ViewError(f"no run {ident}; runs are 0..{len(runs) - 1}", 404)
        return runs[int(ident)]

    def _static(self, name: str) -> None:
        if "/" in name or name.startswith("."):
            raise ViewError(f"no file {name}", 404)
        resource = _STATIC / name
        if not resource.is_file():
            raise ViewError(f"no file {name}", 404)
        body = resource.read_bytes()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, f"{kind}; charset=utf-8", body)

    def _json(self, status: HTTPStatus, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        self._send(status, "application/json; charset=utf-8", body)

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def item_query(query: dict[str, list[str]]) -> ItemQuery:
    """An `ItemQuery` from URL query parameters."""
    filters = tuple(f for f in (_one(query, "filter") or "").split(",") if f)
    return ItemQuery(
        set=_one(query, "set") or "eval",
        iteration=_int(query, "iter"),
        compare=_int(query, "compare"),
        filters=filters,
        subset=_one(query, "subset") or None,
        search=_one(query, "q") or "",
        offset=_int(query, "offset") or 0,
        limit=_int(query, "limit") or 50,
        pair=_one(query, "pair") or None,
    )


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _int(query: dict[str, list[str]], key: str) -> int | None:
    value = _one(query, key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ViewError(f"{key} must be an integer, got {value!r}") from None
