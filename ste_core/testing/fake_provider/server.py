"""A local HTTP server on 127.0.0.1 that speaks the OpenAI-compatible chat API (stdlib only).

Used by end-to-end tests, backend cassette recording and the throughput benchmark. It runs a
`ThreadingHTTPServer` in a background thread; every request is dispatched to a route handler
registered with `FakeProvider.route`. Built-in routes:

- `POST /v1/chat/completions` (name "chat"): the OpenAI wire format (id, object, created, model,
  choices[index, message{role, content}, finish_reason], usage{prompt_tokens, completion_tokens,
  total_tokens}, an `x-request-id` header); answers come from `ScriptedModel` (see model.py).
- `GET /v1/models` (name "models"): the known model names (`FakeProvider.models`).

This module knows no provider beyond that OpenAI-compatible surface. A provider's own API (files,
fine-tunes, batches, ...) is replicated next to its backend, in `ste_backends/<provider>/fake.py`,
as a route extension: a callable `extension(provider)` that registers routes, passed as
`FakeProvider(routes=(extension, ...))` (run in order, after the built-in routes) or on the
command line as `--routes MODULE:FUNCTION`. Each such module also offers a FakeProvider subclass
with its routes installed (e.g. `ste_backends.together.fake.TogetherFake`).

Extension points for route modules: `provider.route(method, pattern, name)` (pattern: a regex that
must match the whole path; a later registration wins over an earlier one for the same path, so an
extension may replace a built-in route), `provider.find_route(method, path)` (the route that would
answer), `provider.chat_completion(request)` (the built-in chat answer, for a route that wraps it),
`provider.lock` (guard shared state), `provider.state` (a JSON-able dict persisted with
`provider.persist()` to `state_dir/state.json` and reloaded at construction), `provider.models`
and `provider.model_gate` (a callable `model -> FakeResponse | None` run before each chat
completion: return an error response to refuse a model, e.g. an undeployed fine-tune).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ste_core.testing.fake_provider.faults import FaultPlan, error_body, malformed_json
from ste_core.testing.fake_provider.model import ScriptedModel, count_tokens
from ste_core.testing.multipart import parse_multipart

__all__ = [
    "DEFAULT_MODELS",
    "FakeProvider",
    "FakeRequest",
    "FakeResponse",
    "FaultPlan",
    "RouteExtension",
]

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("fake-acc70", "fake-acc80", "fake-acc90")


@dataclass
class FakeRequest:
    """One HTTP request as a route handler sees it (header names are lower-case)."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (ValueError if it is not JSON)."""
        return json.loads(self.body.decode("utf-8") or "null")

    def form(self) -> dict[str, tuple[str | None, bytes]]:
        """A multipart/form-data body as {field: (filename or None, content)} (file uploads)."""
        ctype = self.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ValueError(f"expected multipart/form-data, got {ctype!r}")
        return parse_multipart(self.body, ctype)


@dataclass
class FakeResponse:
    """What a handler returns. A dict/list body is sent as JSON, a str as UTF-8 text."""

    status: int = 200
    body: bytes | dict[str, Any] | list[Any] | str = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, dict | list):
            blob = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(self.body, str):
            blob = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            blob = self.body
            headers.setdefault("Content-Type", "application/octet-stream")
        return blob, headers


Handler = Callable[[FakeRequest, "re.Match[str]"], FakeResponse | dict[str, Any] | list[Any]]
#: registers a provider's routes on a FakeProvider (its return value, if any, is ignored)
RouteExtension = Callable[["FakeProvider"], object]


@dataclass(frozen=True)
class Route:
    """A registered route (`FakeProvider.find_route` returns the one that answers a request)."""

    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    #: authenticates itself (a presigned URL carries its signature): no Authorization header
    presigned: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 makes concurrent clients wait on SYN retries
    provider: FakeProvider


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers (clients pool connections)
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the provider keeps a log
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(parts.query).items()}
        req = FakeRequest(
            method=self.command,
            path=parts.path,
            query=query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        response = self.server.provider._dispatch(req)
        if response is None:  # stopping: drop the connection
            self.close_connection = True
            return
        blob, headers = response.encode()
        try:
            self.send_response(response.status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(blob)))
            # Headers and body in one write: two small writes trip Nagle + delayed ACK (~40 ms
            # per request), a latency no real provider adds.
            self._headers_buffer.append(b"\r\n" + blob)  # type: ignore[attr-defined]
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. an injected timeout)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class FakeProvider:
    """A fake model provider on 127.0.0.1. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        routes: Iterable[RouteExtension] = (),
        latency_s: float = 0.0,
        faults: FaultPlan | None = None,
        port: int = 0,
        state_dir: Path | str | None = None,
        model: ScriptedModel | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.latency_s = latency_s
        self.faults = faults
        self.port = port
        self.host = host
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.model = model or ScriptedModel()
        #: when set, requests must carry `Authorization: Bearer <api_key>` (else 401)
        self.api_key = api_key
        self.lock = threading.RLock()
        self.counter: Counter[str] = Counter()
        self.log: list[tuple[str, str, str, int]] = []
        #: exceptions raised by handlers (each answered with a 500); tests should assert empty
        self.errors: list[str] = []
        self.models: list[str] = list(DEFAULT_MODELS)
        self.model_gate: Callable[[str], FakeResponse | None] | None = None
        #: seconds to wait, per route name, after the handler ran and before answering: the
        #: provider has done the work (created the job) but the client has not heard back yet,
        #: the window in which a client killed mid-call loses what it asked for
        self.reply_delay_s: dict[str, float] = {}
        self.state: dict[str, Any] = self._load_state()
        self._routes: list[Route] = []
        self._fault_seq = 0
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.route("POST", r"/v1/chat/completions", "chat")(
            lambda req, _match: self.chat_completion(req)
        )
        self.route("GET", r"/v1/models", "models")(self._list_models)
        for extension in routes:
            extension(self)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Bind and serve in a background thread (idempotent)."""
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self.host, self.port), _RequestHandler)
        server.provider = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-provider-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (wakes handlers sleeping in a latency/timeout)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (OpenAI-style clients use `url + "/v1"`)."""
        if self._server is None:
            raise RuntimeError("FakeProvider is not running: call start() or use `with`")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """`url + "/v1"`, the base URL OpenAI-compatible SDKs want."""
        return self.url + "/v1"

    @property
    def requests_total(self) -> int:
        with self.lock:
            return sum(self.counter.values())

    # -- routes ------------------------------------------------------------------------------

    def route(
        self, method: str, pattern: str, name: str, *, presigned: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register `handler(req, match) -> FakeResponse` for `method` and a full-path regex.
        `presigned` routes (an S3-style upload URL) are exempt from the API-key check, as
        object storage never sees the provider's key."""

        def register(handler: Handler) -> Handler:
            with self.lock:
                route = Route(method.upper(), re.compile(pattern), name, handler, presigned)
                self._routes.append(route)
            return handler

        return register

    def find_route(self, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        """The route that answers `method path` now, and its match (None: a 404)."""
        with self.lock:
            routes = list(self._routes)
        for r in reversed(routes):  # later registrations override earlier ones
            if r.method == method:
                m = r.pattern.fullmatch(path)
                if m:
                    return r, m
        return None

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, req: FakeRequest) -> FakeResponse | None:
        found = self.find_route(req.method.upper(), req.path)
        name = found[0].name if found else "<unmatched>"
        with self.lock:
            self.counter[name] += 1
            faulty = self.faults is not None and self.faults.applies_to(name)
            if faulty:
                self._fault_seq += 1
            seq = self._fault_seq
        response = self._answer(req, found, name, seq if faulty else 0)
        if response is not None:
            with self.lock:
                self.log.append((name, req.method, req.path, response.status))
        return response

    def _answer(
        self,
        req: FakeRequest,
        found: tuple[Route, re.Match[str]] | None,
        name: str,
        seq: int,
    ) -> FakeResponse | None:
        plan = self.faults if seq else None
        delay = self.latency_s + (plan.latency_for(name) if plan else 0.0)
        if delay > 0 and self._stop.wait(delay):
            return None
        if (
            self.api_key is not None
            and not (found is not None and found[0].presigned)
            and req.headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            return FakeResponse(401, error_body("Invalid API key provided.", 401))
        if found is None:
            return FakeResponse(404, error_body(f"no route for {req.method} {req.path}", 404))
        if plan is not None:
            action = plan.decide(seq)
            if action is not None:
                if action.kind == "timeout":
                    if self._stop.wait(action.sleep_s):
                        return None
                else:
                    return FakeResponse(action.status, action.body or b"", dict(action.headers))
        route, match = found
        try:
            result = route.handler(req, match)
        except Exception as exc:  # a bug in a handler: visible to tests via provider.errors
            with self.lock:
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log.error("fake provider handler %s failed:\n%s", name, traceback.format_exc())
            return FakeResponse(500, error_body(f"fake handler error: {exc}", 500))
        response = result if isinstance(result, FakeResponse) else FakeResponse(200, result)
        after = self.reply_delay_s.get(name, 0.0)
        if after > 0 and self._stop.wait(after):
            return None
        if plan is not None and response.status == 200 and plan.malformed(seq):
            body = response.body
            cut = (
                malformed_json(body)
                if isinstance(body, dict | list)
                else response.encode()[0][: max(1, len(response.encode()[0]) // 2)]
            )
            response = FakeResponse(
                200, cut, {**response.headers, "Content-Type": "application/json"}
            )
        return response

    # -- state -------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        if self.state_dir is None:
            return {}
        path = self.state_dir / "state.json"
        if not path.exists():
            return {}
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def persist(self) -> None:
        """Write `state` to `state_dir/state.json` atomically (no-op without a state_dir)."""
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.lock:
            blob = json.dumps(self.state, indent=1, sort_keys=True, default=str)
        tmp = self.state_dir / f"state.json.{uuid.uuid4().hex}.tmp"
        tmp.write_text(blob, encoding="utf-8")
        tmp.replace(self.state_dir / "state.json")

    def add_model(self, name: str) -> None:
        """Make `name` appear in GET /v1/models."""
        with self.lock:
            if name not in self.models:
                self.models.append(name)

    # -- built-in routes ---------------------------------------------------------------------

    def _list_models(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self.lock:
            names = list(self.models)
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "fake"} for m in names]
        return FakeResponse(200, {"object": "list", "data": data})

    def chat_completion(self, req: FakeRequest) -> FakeResponse:
        """Answer a chat completion request in OpenAI's wire format (a 400 for a bad body)."""
        try:
            body = req.json()
        except ValueError as exc:
            return _bad_request(f"request body is not valid JSON: {exc}")
        parsed = _parse_chat(body)
        if isinstance(parsed, FakeResponse):
            return parsed
        model, messages, params = parsed
        if self.model_gate is not None:
            refused = self.model_gate(model)
            if refused is not None:
                return refused
        outputs = self.model.generate(model, messages, **params)
        prompt_tokens = sum(count_tokens(m["content"]) + 4 for m in messages)
        completion_tokens = sum(count_tokens(text) for text, _ in outputs)
        request_id = "req_" + uuid.uuid4().hex
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            for i, (text, reason) in enumerate(outputs)
        ]
        payload: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_fake",
        }
        return FakeResponse(200, payload, {"x-request-id": request_id})


def _bad_request(message: str, param: str | None = None) -> FakeResponse:
    body = error_body(message, 400)
    body["error"]["param"] = param
    return FakeResponse(400, body)


def _parse_chat(
    body: Any,
) -> tuple[str, list[dict[str, str]], dict[str, Any]] | FakeResponse:
    """Validate a chat completion body like the real API does (400 with the field named)."""
    if not isinstance(body, dict):
        return _bad_request("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _bad_request("you must provide a model parameter", "model")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        return _bad_request("'messages' must be a non-empty array", "messages")
    messages: list[dict[str, str]] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            return _bad_request(f"messages[{i}] needs a valid 'role'", f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if not isinstance(content, str):
            return _bad_request(f"messages[{i}].content must be a string", f"messages[{i}].content")
        role = "system" if m["role"] == "developer" else m["role"]
        messages.append({"role": role, "content": content})
    n = body.get("n", 1) or 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        return _bad_request("'n' must be an integer between 1 and 128", "n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return _bad_request("'max_tokens' must be a positive integer", "max_tokens")
    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        return _bad_request("'temperature' must be between 0 and 2", "temperature")
    seed = body.get("seed")
    if seed is not None and not isinstance(seed, int):
        return _bad_request("'seed' must be an integer", "seed")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        return _bad_request("'stop' must be a string or an array of strings", "stop")
    params = {
        "n": n,
        "temperature": float(temperature),
        "seed": seed,
        "max_tokens": max_tokens,
        "stop": tuple(stop),
    }
    return model, messages, params
