"""A fake OpenAI for tests and cassette recording: the fake provider plus the Files and Batch API.

    from ste_backends.openai.fake import OpenAIFake

    with OpenAIFake() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="unused")
        ...

The chat completion and model list routes are the generic fake's own (OpenAI-compatible, see
ste_core/testing/fake_provider/server.py); `OpenAIFake(**options)` is a `FakeProvider` (same
options, faults and counters) with the Files and Batches routes below added. `register_routes`
is the same routes as a route extension, for `FakeProvider(routes=(register_routes,))` or the
command line:

    python -m ste_core.testing.fake_provider --routes ste_backends.openai.fake:register_routes

Shapes follow the `openai` SDK types (`FileObject`, `Batch`, `BatchRequestCounts`, `BatchError`)
and the documented per-line output format:

    {"id": "batch_req_...", "custom_id": "...",
     "response": {"status_code": 200, "request_id": "req_...", "body": {chat completion}},
     "error": null}

Routes (route names in parentheses, for counters and fault plans):

- `POST /v1/files` (files_create): multipart `file` + `purpose`; the FileObject.
- `GET /v1/files/{id}` (files_retrieve), `DELETE /v1/files/{id}` (files_delete),
  `GET /v1/files/{id}/content` (files_content): the raw bytes.
- `POST /v1/batches` (batches_create): JSON {input_file_id, endpoint, completion_window, metadata}.
- `GET /v1/batches/{id}` (batches_retrieve), `GET /v1/batches` (batches_list),
  `POST /v1/batches/{id}/cancel` (batches_cancel).

Deterministic time: a batch advances ONE status per retrieve call, validating -> in_progress ->
finalizing -> completed (so a test polls exactly three times). Input validation (bad JSON, missing
or duplicate custom_id, wrong method/url, more than one model) happens on the first retrieve and
ends in `failed` with `errors.data` naming the line, as the real API does. The lines are run
through the provider's own chat route when the batch reaches `finalizing`: successes go to the
output file, non-200 answers to the error file (same line shape, the error body as `body`).

Per-line faults: a `FaultPlan` whose `routes` include "batch_line" is applied to each input line
(its 1-based number is the sequence number), e.g. `FaultPlan(server_error_every=3,
routes={"batch_line"})` fails lines 3, 6, ... with 500. `provider.model_gate` applies per line too.
`counter["batch_lines"]` counts the lines run (paid for).
Cancel: `cancelling`, then `cancelled` on the next retrieve, with whatever ran (nothing, if it was
not yet finalizing) in the output file. `provider.state["batch_expire"] = True` makes batches end
`expired` instead of running, with every line in the error file (code `batch_expired`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from ste_core.testing.fake_provider.faults import error_body
from ste_core.testing.fake_provider.server import FakeProvider, FakeRequest, FakeResponse

__all__ = ["OpenAIFake", "register_routes"]

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_ENDPOINTS = ("/v1/chat/completions",)
MAX_LINES = 50_000
PROGRESSION = {"validating": "in_progress", "in_progress": "finalizing", "finalizing": "completed"}


def register_routes(provider: FakeProvider) -> None:
    """Add the Files and Batches routes to `provider` (a route extension)."""
    api = _BatchAPI(provider)
    provider.route("POST", r"/v1/files", "files_create")(api.files_create)
    provider.route("GET", r"/v1/files/(?P<id>[^/]+)", "files_retrieve")(api.files_retrieve)
    provider.route("DELETE", r"/v1/files/(?P<id>[^/]+)", "files_delete")(api.files_delete)
    provider.route("GET", r"/v1/files/(?P<id>[^/]+)/content", "files_content")(api.files_content)
    provider.route("POST", r"/v1/batches", "batches_create")(api.batches_create)
    provider.route("GET", r"/v1/batches", "batches_list")(api.batches_list)
    provider.route("GET", r"/v1/batches/(?P<id>[^/]+)", "batches_retrieve")(api.batches_retrieve)
    provider.route("POST", r"/v1/batches/(?P<id>[^/]+)/cancel", "batches_cancel")(
        api.batches_cancel
    )


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    """The Batch object as the API shows it (without the fake's private bookkeeping)."""
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _error(status: int, message: str, param: str | None = None) -> FakeResponse:
    body = error_body(message, status)
    body["error"]["param"] = param
    return FakeResponse(status, body)


class _BatchAPI:
    def __init__(self, provider: FakeProvider) -> None:
        self.p = provider
        with provider.lock:
            # provider.state is JSON-able and persisted; file contents are kept as text.
            self.files: dict[str, dict[str, Any]] = provider.state.setdefault("openai_files", {})
            self.contents: dict[str, str] = provider.state.setdefault("openai_file_contents", {})
            self.batches: dict[str, dict[str, Any]] = provider.state.setdefault(
                "openai_batches", {}
            )

    # -- files -------------------------------------------------------------------------------

    def _new_file(self, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        now = int(time.time())
        file_id = "file-" + uuid.uuid4().hex[:24]
        obj: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": now,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": now + 30 * 24 * 3600 if purpose.startswith("batch") else None,
        }
        self.files[file_id] = obj
        self.contents[file_id] = content.decode("utf-8", "replace")
        return obj

    def files_create(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        try:
            form = req.form()
        except ValueError as exc:
            return _error(400, f"Invalid multipart body: {exc}")
        if "file" not in form:
            return _error(400, "Missing required parameter: 'file'.", "file")
        purpose = form.get("purpose", (None, b""))[1].decode().strip()
        if purpose not in FILE_PURPOSES:
            return _error(
                400,
                f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'",
                "purpose",
            )
        filename, content = form["file"]
        if purpose == "batch" and not (filename or "").endswith(".jsonl"):
            return _error(400, "Batch input files must be .jsonl files.", "file")
        with self.p.lock:
            obj = self._new_file(filename or "upload", content, purpose)
            self.p.persist()
        return FakeResponse(200, dict(obj))

    def files_retrieve(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self.p.lock:
            obj = self.files.get(match["id"])
        if obj is None:
            return _error(404, f"No such File object: {match['id']}", "id")
        return FakeResponse(200, dict(obj))

    def files_delete(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self.p.lock:
            obj = self.files.pop(match["id"], None)
            self.contents.pop(match["id"], None)
            self.p.persist()
        if obj is None:
            return _error(404, f"No such File object: {match['id']}", "id")
        return FakeResponse(200, {"id": obj["id"], "object": "file", "deleted": True})

    def files_content(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self.p.lock:
            content = self.contents.get(match["id"])
        if content is None:
            return _error(404, f"No such File object: {match['id']}", "id")
        return FakeResponse(
            200, content.encode("utf-8"), {"Content-Type": "application/octet-stream"}
        )

    # -- batches -----------------------------------------------------------------------------

    def batches_create(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        try:
            body = req.json()
        except ValueError as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(key):
                return _error(400, f"Missing required parameter: '{key}'.", key)
        if body["completion_window"] != "24h":
            return _error(
                400,
                f"Invalid completion_window: '{body['completion_window']}'. Only '24h' is "
                "supported.",
                "completion_window",
            )
        if body["endpoint"] not in BATCH_ENDPOINTS:
            return _error(
                400, f"Unsupported endpoint for this fake: {body['endpoint']}", "endpoint"
            )
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(v, str) and len(v) <= 512 for v in metadata.values())
        ):
            return _error(400, "metadata: at most 16 string values of up to 512 chars", "metadata")
        with self.p.lock:
            file = self.files.get(body["input_file_id"])
            if file is None:
                return _error(404, f"No such File object: {body['input_file_id']}", "input_file_id")
            if file["purpose"] != "batch":
                return _error(
                    400,
                    f"File {file['id']} has purpose '{file['purpose']}', expected 'batch'.",
                    "input_file_id",
                )
            now = int(time.time())
            batch = {
                "id": "batch_" + uuid.uuid4().hex[:24],
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": file["id"],
                "completion_window": "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": now,
                "in_progress_at": None,
                "expires_at": now + 24 * 3600,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": metadata,
                "model": None,
                "usage": None,
            }
            self.batches[batch["id"]] = batch
            self.p.persist()
        return FakeResponse(200, _public(batch))

    def batches_list(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        try:
            limit = int(req.query.get("limit", 20))
        except ValueError:
            return _error(400, "limit must be an integer", "limit")
        after = req.query.get("after")
        with self.p.lock:
            items = list(reversed(list(self.batches.values())))  # newest first
        if after:
            ids = [b["id"] for b in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:limit]
        return FakeResponse(
            200,
            {
                "object": "list",
                "data": [_public(b) for b in page],
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            },
        )

    def batches_cancel(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self.p.lock:
            batch = self.batches.get(match["id"])
            if batch is None:
                return _error(404, f"No such Batch object: {match['id']}", "batch_id")
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                return _error(
                    409, f"Cannot cancel a batch with status '{batch['status']}'.", "batch_id"
                )
            if batch["status"] != "cancelling":
                batch["status"] = "cancelling"
                batch["cancelling_at"] = int(time.time())
            self.p.persist()
            return FakeResponse(200, _public(batch))

    def batches_retrieve(self, req: FakeRequest, match: re.Match[str]) -> FakeResponse:
        with self.p.lock:
            batch = self.batches.get(match["id"])
            if batch is None:
                return _error(404, f"No such Batch object: {match['id']}", "batch_id")
            status = batch["status"]
        # Advance one step per retrieve (outside the lock for the chat calls of `finalizing`).
        if status == "cancelling":
            self._finish(batch, "cancelled")
        elif status == "validating":
            self._validate(batch)
        elif status == "in_progress":
            if self.p.state.get("batch_expire"):
                self._finish(batch, "expired")
            else:
                self._run(batch)
                self._set(batch, status="finalizing", finalizing_at=int(time.time()))
        elif status == "finalizing":
            self._finish(batch, "completed")
        with self.p.lock:
            self.p.persist()
            return FakeResponse(200, _public(batch))

    # -- the work ----------------------------------------------------------------------------

    def _set(self, batch: dict[str, Any], **changes: Any) -> None:
        with self.p.lock:
            batch.update(changes)

    def _validate(self, batch: dict[str, Any]) -> None:
        with self.p.lock:
            text = self.contents.get(batch["input_file_id"], "")
        errors: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        models: set[str] = set()
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue

            def bad(code: str, message: str, param: str | None = None, n: int = number) -> None:
                errors.append({"code": code, "message": message, "param": param, "line": n})

            try:
                line = json.loads(raw)
            except ValueError:
                bad("invalid_json_line", "This line is not parseable as valid JSON.")
                continue
            if not isinstance(line, dict):
                bad("invalid_json_line", "Each line must be a JSON object.")
                continue
            custom_id = line.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                bad(
                    "missing_required_parameter",
                    "Missing required parameter: 'custom_id'.",
                    "custom_id",
                )
                continue
            if custom_id in seen:
                bad(
                    "duplicate_custom_id",
                    f"The custom_id '{custom_id}' is duplicated.",
                    "custom_id",
                )
                continue
            seen.add(custom_id)
            if line.get("method") != "POST":
                bad("invalid_request", "Only the POST method is supported.", "method")
                continue
            if line.get("url") != batch["endpoint"]:
                bad(
                    "mismatched_endpoint",
                    f"The URL provided for this request does not match the batch endpoint "
                    f"{batch['endpoint']}.",
                    "url",
                )
                continue
            body = line.get("body")
            if not isinstance(body, dict):
                bad("invalid_request", "'body' must be a JSON object.", "body")
                continue
            if isinstance(body.get("model"), str):
                models.add(body["model"])
            lines.append(line)
        if len(models) > 1:
            errors.append(
                {
                    "code": "model_mismatch",
                    "message": "Requests in a batch must all use the same model; found "
                    + ", ".join(sorted(models)),
                    "param": "model",
                    "line": None,
                }
            )
        if not lines and not errors:
            errors.append(
                {
                    "code": "empty_file",
                    "message": "The input file is empty.",
                    "param": None,
                    "line": None,
                }
            )
        if len(lines) > MAX_LINES:
            errors.append(
                {
                    "code": "too_many_requests",
                    "message": f"A batch may have at most {MAX_LINES} requests.",
                    "param": None,
                    "line": None,
                }
            )
        now = int(time.time())
        if errors:
            self._set(
                batch, status="failed", failed_at=now, errors={"object": "list", "data": errors}
            )
            return
        self._set(
            batch,
            status="in_progress",
            in_progress_at=now,
            model=next(iter(models), None),
            request_counts={"total": len(lines), "completed": 0, "failed": 0},
        )

    def _run(self, batch: dict[str, Any]) -> None:
        """Answer every line through the provider's chat route; store the results on the batch."""
        with self.p.lock:
            text = self.contents.get(batch["input_file_id"], "")
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        usage = {"input_tokens": 0, "output_tokens": 0}
        plan = self.p.faults
        number = 0
        for raw in text.splitlines():
            if not raw.strip():
                continue
            number += 1
            line = json.loads(raw)
            response = self._answer_line(line, number, plan)
            body: Any = response.body
            if isinstance(body, bytes | str):
                try:
                    body = json.loads(body)
                except ValueError:
                    body = {"error": {"message": str(body)[:200], "type": "server_error"}}
            record = {
                "id": "batch_req_" + uuid.uuid4().hex[:24],
                "custom_id": line["custom_id"],
                "response": {
                    "status_code": response.status,
                    "request_id": response.headers.get("x-request-id", "req_" + uuid.uuid4().hex),
                    "body": body,
                },
                "error": None,
            }
            if response.status == 200:
                outputs.append(record)
                u = (body.get("usage") or {}) if isinstance(body, dict) else {}
                usage["input_tokens"] += int(u.get("prompt_tokens", 0))
                usage["output_tokens"] += int(u.get("completion_tokens", 0))
            else:
                failures.append(record)
        with self.p.lock:
            # Lines run (and paid for): a test counts repeats with counter["batch_lines"].
            self.p.counter["batch_lines"] += number
            batch["_outputs"] = outputs
            batch["_failures"] = failures
            batch["request_counts"] = {
                "total": number,
                "completed": len(outputs),
                "failed": len(failures),
            }
            batch["usage"] = {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage["input_tokens"] + usage["output_tokens"],
            }

    def _answer_line(self, line: dict[str, Any], number: int, plan: Any) -> FakeResponse:
        if plan is not None and plan.applies_to("batch_line"):
            action = plan.decide(number)
            if action is not None and action.kind != "timeout":
                return FakeResponse(action.status, action.body or {}, dict(action.headers))
        found = self.p.find_route("POST", "/v1/chat/completions")
        if found is None:
            return _error(404, "no chat route")
        route, match = found
        request = FakeRequest(
            method="POST",
            path="/v1/chat/completions",
            query={},
            headers={"content-type": "application/json"},
            body=json.dumps(line["body"]).encode(),
        )
        with self.p.lock:
            self.p.counter["batch_line"] += 1
        result = route.handler(request, match)
        return result if isinstance(result, FakeResponse) else FakeResponse(200, result)

    def _finish(self, batch: dict[str, Any], status: str) -> None:
        now = int(time.time())
        with self.p.lock:
            outputs = batch.pop("_outputs", [])
            failures = batch.pop("_failures", [])
            text = self.contents.get(batch["input_file_id"], "")
        if status == "expired":
            # Every request that did not run is reported in the error file.
            failures = [
                {
                    "id": "batch_req_" + uuid.uuid4().hex[:24],
                    "custom_id": json.loads(raw).get("custom_id"),
                    "response": None,
                    "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion "
                        "window expired.",
                    },
                }
                for raw in text.splitlines()
                if raw.strip()
            ]
        with self.p.lock:
            if outputs:
                out = self._new_file(
                    f"batch_{batch['id']}_output.jsonl",
                    "".join(json.dumps(r) + "\n" for r in outputs).encode(),
                    "batch_output",
                )
                batch["output_file_id"] = out["id"]
            if failures:
                err = self._new_file(
                    f"batch_{batch['id']}_error.jsonl",
                    "".join(json.dumps(r) + "\n" for r in failures).encode(),
                    "batch_output",
                )
                batch["error_file_id"] = err["id"]
            batch["status"] = status
            batch[f"{status}_at"] = now
            if status == "expired":
                batch["request_counts"] = {
                    "total": len(failures),
                    "completed": 0,
                    "failed": len(failures),
                }


class OpenAIFake(FakeProvider):
    """A FakeProvider that also serves OpenAI's Files and Batch API."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        register_routes(self)
