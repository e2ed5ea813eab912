"""A fake Together AI for tests and cassette recording: the fake provider plus Together's routes.

    from ste_backends.together.fake import TogetherFake

    with TogetherFake(api_key="sekrit") as fake:
        client = together.AsyncTogether(api_key="sekrit", base_url=fake.url)
        fake.together.ft_failure = ("user_error", "bad data", 1)
        ...

`TogetherFake(**options)` is a `FakeProvider` (ste_core/testing/fake_provider/server.py; same
options, faults and counters) with the routes below installed; their state and behaviour knobs
are `fake.together` (a `TogetherRoutes`). `register_routes` is the same routes as a route
extension, for `FakeProvider(routes=(register_routes,))` or the command line:

    python -m ste_core.testing.fake_provider --routes ste_backends.together.fake:register_routes

A faithful local replica of the routes the `together` SDK 3.x calls, with the SDK's own JSON
shapes (field names and aliases as in `together/types`), so the real SDK runs against it and the
recorded cassettes carry the real wire format. It imports no SDK (the standard library and
ste_core's generic fake only):

Files
  POST /v1/files                      multipart form (purpose, file_name, file_type, checksum)
                                      -> 302, `Location` = a presigned URL on this server with an
                                      `X-Amz-Signature=...` query, `X-Together-File-Id` header;
                                      409 {"file_id"} when the same content was uploaded before
  PUT  /_presigned/files/{id}?X-Amz-... the upload itself (signature checked, like S3)
  POST /v1/files/{id}/preprocess      validates the content -> FileResponse
  GET  /v1/files, /v1/files/{id}, /v1/files/{id}/content; DELETE /v1/files/{id}
Fine-tuning
  GET  /v1/fine-tunes/models/limits?model_name=   FinetuneModelLimits (404 for unknown models)
  POST /v1/fine-tunes/estimate-price              AvailableEstimate / UnavailableEstimate
  POST /v1/fine-tunes                             create (validates file format vs method)
  GET  /v1/fine-tunes/{id}                        retrieve; each call advances the job one state:
                                                  pending -> queued -> running -> completed
                                                  (`ft_schedule`), or fails (`ft_failure`)
  GET  /v1/fine-tunes/{id}/events, POST /v1/fine-tunes/{id}/cancel, GET /v1/fine-tunes
Catalog, models, hardware
  GET  /v2/supported-models                       catalog with serverless pricing and profiles
  GET  /v2/projects/{p}/models/{id}               fine-tuned model objects (ml_...)
  GET  /v2/projects/{p}/configs?referenceModel=   certified configs (accelerator and
                                                  adapter_mode selectors; the deprecated
                                                  referenceModelId filter works too)
  GET  /v2/public/inference-instance-types        hardware list with priceCentsPerHour
  GET  /v3/whoami                                 a project API key identity
Dedicated endpoints (project-scoped, SDK 3.x)
  POST/GET/PATCH/DELETE /v2/projects/{p}/endpoints[/{id}]
  POST/GET/DELETE       /v2/projects/{p}/endpoints/{e}/deployments[/{id}]
                        each deployment GET advances PROVISIONING -> READY
                        (`deploy_polls_to_ready`), or FAILED (`deploy_failure`)
Lists (configs, endpoints, deployments, supported models) are cursor-paginated: `limit` and
`after` are honoured, and the `page_size` knob splits them into pages.
Batch API
  POST /v1/batches, GET /v1/batches[/{id}], POST /v1/batches/{id}/cancel; a batch runs its lines
  through the scripted model when it completes (after `batch_polls` GETs) and writes an output
  and an error file; `counter["batch_lines"]` counts the lines run (paid for)
Chat and models (override the built-in routes)
  POST /v1/chat/completions  the built-in scripted answer in Together's shape (no `chatcmpl-` id
                             prefix, a `seed` per choice, `prompt` instead of
                             `system_fingerprint`); also answers for fine-tuned output names
                             (when served serverless) and for endpoint names whose deployment is
                             READY (answering as the deployed fine-tune, so its accuracy rule
                             applies); refuses undeployed fine-tunes with Together's 400
                             "non-serverless model" error.
  GET  /v1/models            a bare list, each model with a `type`

Behaviour knobs live on `fake.together` (a `TogetherRoutes`), e.g.
`fake.together.ft_failure = ("user_error", "bad data", 1)` or
`fake.together.serverless_lora = False`. Fine-tuned output names append `-ftN` to the base model
name (N = 1 + the parent's level when continuing from a checkpoint), which is what makes a fake
fine-tune judge better (see ste_core/testing/fake_provider/model.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from ste_core.testing.fake_provider.faults import error_body
from ste_core.testing.fake_provider.server import FakeProvider, FakeRequest, FakeResponse

__all__ = ["TogetherFake", "TogetherRoutes", "register_routes"]

PRESIGNED_PREFIX = "/_presigned/files/"
_FT_LEVEL = re.compile(r"-ft(\d*)(?![a-z])")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, **extra: Any) -> FakeResponse:
    body = error_body(message, status)
    body.update(extra)
    return FakeResponse(status, body)


class _Refused(Exception):
    """An error answer raised from a lookup or check inside a handler (body not JSON, endpoint
    not found, ...), so handlers need not test and forward every helper's result; every route is
    wrapped by `_answer_refusals`, which turns it back into the response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, message)


def _answer_refusals(handler: Callable[[FakeRequest, re.Match[str]], Any]) -> Any:
    @functools.wraps(handler)
    def answer(req: FakeRequest, m: re.Match[str]) -> Any:
        try:
            return handler(req, m)
        except _Refused as refused:
            return refused.response

    return answer


def _json_body(req: FakeRequest) -> Any:
    try:
        return req.json()
    except ValueError:
        raise _Refused(400, "body must be JSON") from None


def _page(items: list[dict[str, Any]], req: FakeRequest, page_size: int | None) -> dict[str, Any]:
    """Cursor-paginated list (`AsyncCursorPagination`): from the `after` cursor (an offset
    here), at most `limit` items or `page_size` (the fake's knob), with `next_cursor` while
    more follow."""
    start = int(str(req.query.get("after") or 0))
    sizes = [int(str(req.query["limit"]))] if req.query.get("limit") else []
    size = min([*sizes, page_size or len(items) or 1])
    end = start + size
    return {"data": items[start:end], "next_cursor": str(end) if end < len(items) else None}


@dataclass
class TogetherRoutes:
    """The Together route handlers of one FakeProvider, with their state and behaviour knobs."""

    provider: FakeProvider
    #: statuses a fine-tune job goes through, one per retrieve after create ("pending")
    ft_schedule: list[str] = field(default_factory=lambda: ["queued", "running", "completed"])
    #: (status "error" | "user_error", message, at step index into ft_schedule) or None
    ft_failure: tuple[str, str, int] | None = None
    #: deployment GETs answered PROVISIONING before READY
    deploy_polls_to_ready: int = 2
    #: a message to make deployments end FAILED instead of READY
    deploy_failure: str | None = None
    #: whether LoRA fine-tunes of catalog models are served serverless
    serverless_lora: bool = True
    #: the `adapter_mode` selector of each certified config, by its hardware (a LoRA adapter
    #: deploys only on `fixed` or `dynamic` ones)
    config_adapter_modes: dict[str, str] = field(
        default_factory=lambda: {
            "1xnvidia-h100-80gb": "dynamic",
            "1xnvidia-a100-80gb": "fixed",
            "2xnvidia-h100-80gb": "disabled",
        }
    )
    #: items per page of the cursor-paginated lists (configs, endpoints, deployments,
    #: supported models); None: all on one page unless the client asks for a `limit`
    page_size: int | None = None
    #: a status to answer the supported-models catalog with (its route failing), or None
    catalog_failure: int | None = None
    #: batch GETs before a batch completes (VALIDATING, IN_PROGRESS, ..., COMPLETED)
    batch_polls: int = 2
    #: custom_ids whose batch lines fail (go to the error file)
    batch_fail_custom_ids: set[str] = field(default_factory=set)
    #: fine-tune price, USD per million trained tokens, and the account's credit limit
    price_per_million_tokens: float = 0.48
    user_limit: float = 1000.0
    #: serverless chat prices (USD per million input / output tokens) shown in the catalog
    chat_price: tuple[float, float] = (0.18, 0.18)
    project: dict[str, str] = field(
        default_factory=lambda: {"id": "proj_fake0001", "name": "ste fake", "slug": "ste-fake"}
    )
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    # -- persisted state ---------------------------------------------------------------------

    @property
    def st(self) -> dict[str, Any]:
        return self.provider.state.setdefault(
            "together",
            {
                "files": {},
                "contents": {},
                "jobs": {},
                "models": {},
                "endpoints": {},
                "batches": {},
            },
        )

    def _save(self) -> None:
        self.provider.persist()

    # -- files -------------------------------------------------------------------------------

    def _sign(self, file_id: str, expires: str) -> str:
        return hmac.new(self.signing_key, f"{file_id}:{expires}".encode(), "sha256").hexdigest()

    def _file_json(self, f: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": f["id"],
            "object": "file",
            "bytes": f["bytes"],
            "created_at": f["created_at"],
            "filename": f["filename"],
            "FileType": f["file_type"],
            "purpose": f["purpose"],
            "processing_status": f["processing_status"],
        }
        if f.get("validation_report") is not None:
            out["validation_report"] = f["validation_report"]
        return out

    def files_upload(self, req: FakeRequest, m: re.Match[str]) -> Any:
        try:
            form = {k: v[1].decode("utf-8") for k, v in req.form().items()}
        except ValueError as exc:
            return _error(400, f"invalid multipart body: {exc}")
        missing = [k for k in ("purpose", "file_name", "file_type", "checksum") if not form.get(k)]
        if missing:
            return _error(400, f"missing form fields: {', '.join(missing)}")
        if form["purpose"] not in ("fine-tune", "batch-api", "eval", "calibration"):
            return _error(400, f"invalid purpose {form['purpose']!r}")
        with self.provider.lock:
            for f in self.st["files"].values():
                if (
                    f["checksum"] == form["checksum"]
                    and f["purpose"] == form["purpose"]
                    and f["processing_status"] == "COMPLETED"
                ):
                    body = error_body("A file with this checksum already exists.", 409)
                    body["file_id"] = f["id"]
                    return FakeResponse(409, body)
            file_id = f"file-{uuid.uuid4()}"
            self.st["files"][file_id] = {
                "id": file_id,
                "filename": form["file_name"],
                "file_type": form["file_type"],
                "purpose": form["purpose"],
                "checksum": form["checksum"],
                "bytes": 0,
                "created_at": int(time.time()),
                "processing_status": "PENDING",
                "validation_report": None,
            }
            self._save()
        expires = "3600"
        query = urlencode(
            {
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Credential": "AKIAFAKEFAKEFAKE0000/20250101/us-east-1/s3/aws4_request",
                "X-Amz-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
                "X-Amz-Expires": expires,
                "X-Amz-SignedHeaders": "host",
                "X-Amz-Signature": self._sign(file_id, expires),
            }
        )
        host = req.headers.get("host") or f"{self.provider.host}:{self.provider.port}"
        location = f"http://{host}{PRESIGNED_PREFIX}{file_id}?{query}"
        return FakeResponse(302, b"", {"Location": location, "X-Together-File-Id": file_id})

    def presigned_put(self, req: FakeRequest, m: re.Match[str]) -> Any:
        file_id = m.group("id")
        sig = str(req.query.get("X-Amz-Signature", ""))
        expires = str(req.query.get("X-Amz-Expires", ""))
        if not hmac.compare_digest(sig, self._sign(file_id, expires)):
            return FakeResponse(
                403,
                "<Error><Code>SignatureDoesNotMatch</Code></Error>",
                {"Content-Type": "application/xml"},
            )
        with self.provider.lock:
            f = self.st["files"].get(file_id)
            if f is None:
                return FakeResponse(404, "<Error><Code>NoSuchKey</Code></Error>")
            self.st["contents"][file_id] = base64.b64encode(req.body).decode("ascii")
            f["bytes"] = len(req.body)
            f["processing_status"] = "QUEUED"
            self._save()
        etag = hashlib.md5(req.body, usedforsecurity=False).hexdigest()
        return FakeResponse(200, b"", {"ETag": f'"{etag}"'})

    def content_of(self, file_id: str) -> bytes:
        return base64.b64decode(self.st["contents"].get(file_id, ""))

    def files_preprocess(self, req: FakeRequest, m: re.Match[str]) -> Any:
        file_id = m.group("id")
        with self.provider.lock:
            f = self.st["files"].get(file_id)
            if f is None:
                return _error(404, f"file {file_id} not found")
            if file_id not in self.st["contents"]:
                return _error(400, f"file {file_id} has no uploaded content")
            content = self.content_of(file_id)
            if hashlib.sha256(content).hexdigest() != f["checksum"]:
                return _error(400, "checksum mismatch: the uploaded content is not the file")
            fmt, problem, nlines = _inspect(content, f["purpose"])
            f["validation_report"] = {
                "valid": problem is None,
                "dataset_format": fmt,
                "file_id": file_id,
                "nlines": nlines,
                **({"error": problem, "error_type": "INVALID_FORMAT"} if problem else {}),
            }
            f["processing_status"] = "COMPLETED" if problem is None else "INVALID_FORMAT"
            self._save()
            return self._file_json(f)

    def files_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            return {
                "object": "list",
                "data": [self._file_json(f) for f in self.st["files"].values()],
            }

    def files_retrieve(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            f = self.st["files"].get(m.group("id"))
            return _error(404, "file not found") if f is None else self._file_json(f)

    def files_content(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            if m.group("id") not in self.st["files"]:
                return _error(404, "file not found")
            data = self.content_of(m.group("id"))
        return FakeResponse(200, data, {"Content-Type": "application/octet-stream"})

    def files_delete(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            if self.st["files"].pop(m.group("id"), None) is None:
                return _error(404, "file not found")
            self.st["contents"].pop(m.group("id"), None)
            self._save()
        return {"id": m.group("id"), "deleted": True}

    # -- fine-tuning -------------------------------------------------------------------------

    def _finetunable(self, model: str) -> bool:
        with self.provider.lock:
            return model in self.provider.models and not self._is_output(model)

    def _is_output(self, model: str) -> bool:
        return any(j["model_output_name"] == model for j in self.st["jobs"].values())

    def limits_json(self, model: str) -> dict[str, Any]:
        return {
            "model_name": model,
            "default_gradient_accumulation_steps": 1,
            "lora_training": {
                "default_rank": 16,
                "max_rank": 64,
                "max_batch_size": 32,
                "max_batch_size_dpo": 16,
                "min_batch_size": 8,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
            },
            "full_training": {"max_batch_size": 16, "max_batch_size_dpo": 8, "min_batch_size": 8},
            "max_learning_rate": 1.0,
            "min_learning_rate": 1e-8,
            "max_num_checkpoints": 10,
            "max_num_epochs": 20,
            "max_num_evals": 100,
            "max_seq_length_sft": 8192,
            "max_seq_length_dpo": 8192,
            "min_max_seq_length": 512,
            "merge_output_lora": True,
            "supports_full_training": True,
            "supports_reasoning": False,
            "supports_tools": False,
            "supports_vision": False,
        }

    def ft_limits(self, req: FakeRequest, m: re.Match[str]) -> Any:
        model = str(req.query.get("model_name", ""))
        if not self._finetunable(model):
            return _error(404, f"Model '{model}' is not available for fine-tuning.")
        return self.limits_json(model)

    def _tokens(self, file_id: str | None) -> int:
        if not file_id:
            return 0
        return max(1, len(self.content_of(file_id)) // 4)

    def ft_estimate(self, req: FakeRequest, m: re.Match[str]) -> Any:
        body = _json_body(req)
        with self.provider.lock:
            train = self.st["files"].get(body.get("training_file") or "")
            if train is None or train["processing_status"] != "COMPLETED":
                reason = "train_file_not_validated" if train else "train_file_invalid"
                return {"estimation_available": False, "unavailable_reason": reason}
            val_id = body.get("validation_file")
            if val_id and self.st["files"].get(val_id, {}).get("processing_status") != "COMPLETED":
                return {"estimation_available": False, "unavailable_reason": "eval_file_invalid"}
            epochs = int(body.get("n_epochs") or 1)
            train_tokens = self._tokens(train["id"]) * epochs
            eval_tokens = self._tokens(val_id) * int(body.get("n_evals") or 0)
        method = (body.get("training_method") or {}).get("method", "sft")
        factor = 2.0 if method == "dpo" else 1.0  # DPO processes two outputs per example
        price = round(
            (train_tokens + eval_tokens) * factor * self.price_per_million_tokens / 1e6, 6
        )
        return {
            "estimation_available": True,
            "allowed_to_proceed": price <= self.user_limit,
            "estimated_total_price": price,
            "estimated_train_token_count": train_tokens,
            "estimated_eval_token_count": eval_tokens,
            "user_limit": self.user_limit,
        }

    def _job_json(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in job.items() if not k.startswith("_")}
        out["events"] = []  # events are served by /events (the list view omits them too)
        return out

    def _event(self, job: dict[str, Any], type_: str, message: str, **extra: Any) -> None:
        job["_events"].append(
            {
                "object": "fine-tune-event",
                "created_at": _now(),
                "level": extra.pop("level", "info"),
                "message": message,
                "type": type_,
                **extra,
            }
        )

    def ft_create(self, req: FakeRequest, m: re.Match[str]) -> Any:
        body = _json_body(req)
        with self.provider.lock:
            problem = self._check_create(body)
            if problem:
                return _error(400, problem)
            checkpoint = body.get("from_checkpoint")
            parent = self._job_for_checkpoint(checkpoint) if checkpoint else None
            base = parent["model"] if parent else body["model"]
            level = 1 + (_ft_level(parent["model_output_name"]) if parent else 0)
            tail = base.rsplit("/", 1)[-1]
            suffix = f"-{body['suffix']}" if body.get("suffix") else ""
            output = f"{self.project['slug']}/{tail}{suffix}-ft{level}"
            job_id = f"ft-{uuid.uuid4()}"
            now = _now()
            method = body.get("training_method") or {"method": "sft", "train_on_inputs": "auto"}
            training_type = body.get("training_type") or (
                parent["training_type"]
                if parent
                else {"type": "Lora", "lora_r": 16, "lora_alpha": 32}
            )
            train = self.st["files"][body["training_file"]]
            wandb = bool(body.get("wandb_key") or body.get("wandb_api_key"))
            job: dict[str, Any] = {
                "id": job_id,
                "status": "pending",
                "user_id": "user_fake0001",
                "owner_address": "fake@example.invalid",
                "created_at": now,
                "updated_at": now,
                "started_at": None,
                "model": base,
                "model_output_name": output,
                "model_output_path": f"s3://fake-bucket/finetune/{job_id}/output",
                "suffix": body.get("suffix"),
                "training_file": body["training_file"],
                "validation_file": body.get("validation_file") or None,
                "trainingfile_numlines": (train.get("validation_report") or {}).get("nlines"),
                "trainingfile_size": train["bytes"],
                "n_epochs": body.get("n_epochs", 1),
                "n_checkpoints": body.get("n_checkpoints", 1),
                "n_evals": body.get("n_evals", 0),
                "batch_size": body.get("batch_size", "max"),
                "learning_rate": body.get("learning_rate"),
                "lr_scheduler": body.get("lr_scheduler"),
                "warmup_ratio": body.get("warmup_ratio"),
                "max_grad_norm": body.get("max_grad_norm"),
                "weight_decay": body.get("weight_decay"),
                "max_seq_length": body.get("max_seq_length"),
                "packing": body.get("packing", True),
                "random_seed": body.get("random_seed"),
                "train_on_inputs": method.get("train_on_inputs"),
                "training_method": method,
                "training_type": training_type,
                "from_checkpoint": checkpoint,
                "wandb_project_name": body.get("wandb_project_name") if wandb else None,
                "wandb_name": body.get("wandb_name") if wandb else None,
                "wandb_url": f"https://wandb.ai/fake/{job_id}" if wandb else None,
                "token_count": self._tokens(body["training_file"]),
                "param_count": 8_000_000_000,
                "total_price": 0,
                "epochs_completed": 0,
                "queue_depth": 0,
                "progress": {"estimate_available": False, "seconds_remaining": 0},
                "_step": 0,
                "_events": [],
            }
            self._event(job, "job_pending", "Fine-tune job created and pending.")
            self.st["jobs"][job_id] = job
            self._save()
            return self._job_json(job)

    def _check_create(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        model, checkpoint = body.get("model"), body.get("from_checkpoint")
        if bool(model) == bool(checkpoint):
            return "exactly one of model and from_checkpoint must be given"
        if model and not self._finetunable(model):
            return f"Model '{model}' is not available for fine-tuning."
        if checkpoint and self._job_for_checkpoint(checkpoint) is None:
            return f"Checkpoint '{checkpoint}' not found among completed jobs of this account."
        train = self.st["files"].get(body.get("training_file") or "")
        if train is None:
            return f"Training file {body.get('training_file')!r} not found."
        if train["purpose"] != "fine-tune" or train["processing_status"] != "COMPLETED":
            return f"Training file {train['id']} is not a validated fine-tune file."
        method = (body.get("training_method") or {}).get("method", "sft")
        fmt = (train.get("validation_report") or {}).get("dataset_format")
        if method == "dpo" and fmt != "preference_openai":
            return f"DPO training needs a preference dataset; {train['id']} is {fmt}."
        if method == "sft" and fmt == "preference_openai":
            return "SFT training cannot use a preference dataset."
        suffix = body.get("suffix")
        if suffix is not None and len(str(suffix)) > 40:
            return "suffix must be at most 40 characters"
        return None

    def _job_for_checkpoint(self, checkpoint: str) -> dict[str, Any] | None:
        name = checkpoint.split(":", 1)[0]
        for job in self.st["jobs"].values():
            if name in (job["id"], job["model_output_name"]) and job["status"] == "completed":
                return job
        return None

    def _advance(self, job: dict[str, Any]) -> None:
        """One retrieve = one step of the schedule (terminal states stay put)."""
        if job["status"] in ("completed", "cancelled", "error", "user_error"):
            return
        if job["status"] == "cancel_requested":
            job["status"] = "cancelled"
            self._event(job, "job_stopped", "Job cancelled by user.")
            return
        step = job["_step"]
        if self.ft_failure is not None and step >= self.ft_failure[2]:
            status, message, _ = self.ft_failure
            job["status"] = status
            self._event(job, "job_error", message, level="error")
            return
        if step >= len(self.ft_schedule):
            return
        job["status"] = self.ft_schedule[step]
        job["_step"] = step + 1
        job["updated_at"] = _now()
        total = 10 * int(job.get("n_epochs") or 1)
        if job["status"] == "queued":
            self._event(job, "job_start", "Job queued.")
        elif job["status"] == "running":
            job["started_at"] = _now()
            self._event(job, "training_start", "Training started.", step=0, total_steps=total)
            self._event(
                job, "epoch_complete", "Epoch 1 complete.", step=total // 2, total_steps=total
            )
        elif job["status"] == "completed":
            self._complete(job, total)

    def _complete(self, job: dict[str, Any], total: int) -> None:
        self._event(job, "training_complete", "Training complete.", step=total, total_steps=total)
        lora = (job.get("training_type") or {}).get("type") == "Lora"
        model_id = "ml_" + uuid.uuid4().hex[:20]
        job["model_object_id"] = model_id
        job["model_object_name"] = job["model_output_name"]
        if lora:
            adapter_id = "ml_" + uuid.uuid4().hex[:20]
            job["adapter_object_id"] = adapter_id
            job["adapter_object_name"] = job["model_output_name"] + "-adapter"
        job["epochs_completed"] = job.get("n_epochs")
        job["total_price"] = int(self._tokens(job["training_file"]) * 0.48)
        self.st["models"][model_id] = {
            "id": model_id,
            "name": job["model_output_name"],
            "base": job["model"],
            "lora": lora,
            "created_at": _now(),
        }
        self._event(job, "job_complete", f"Fine-tuning complete: {job['model_output_name']}.")

    def _job(self, m: re.Match[str]) -> dict[str, Any]:
        job = self.st["jobs"].get(m.group("id"))
        if job is None:
            raise _Refused(404, f"fine-tune job {m.group('id')} not found")
        return job

    def ft_retrieve(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            job = self._job(m)
            self._advance(job)
            self._save()
            return self._job_json(job)

    def ft_events(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            job = self._job(m)
            return {"data": list(job["_events"])}

    def ft_cancel(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            job = self._job(m)
            if job["status"] in ("completed", "cancelled", "error", "user_error"):
                return _error(400, f"job {job['id']} is already {job['status']}")
            job["status"] = "cancel_requested"
            job["updated_at"] = _now()
            self._event(job, "cancel_requested", "Cancel requested by user.")
            self._save()
            return self._job_json(job)

    def ft_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            return {"data": [self._job_json(j) for j in self.st["jobs"].values()]}

    # -- catalog, models, hardware -----------------------------------------------------------

    HARDWARE = (
        ("1xnvidia-h100-80gb", "nvidia-h100-80gb", "H100", 80, 1, 399),
        ("1xnvidia-a100-80gb", "nvidia-a100-80gb", "A100", 80, 1, 256),
        ("2xnvidia-h100-80gb", "nvidia-h100-80gb", "H100", 80, 2, 798),
    )

    def models_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            names = list(self.provider.models)
        created = int(time.time())
        return [
            {"id": n, "object": "model", "created": created, "owned_by": "fake", "type": "chat"}
            for n in names
        ]

    def supported_models(self, req: FakeRequest, m: re.Match[str]) -> Any:
        if self.catalog_failure:
            return _error(self.catalog_failure, "supported models are unavailable right now")
        search = str(req.query.get("search", "")).lower()
        with self.provider.lock:
            names = [n for n in self.provider.models if not self._is_output(n)]
        items = []
        for name in names:
            if search and search not in name.lower():
                continue
            base_id = "ml_pub_" + hashlib.sha256(name.encode()).hexdigest()[:12]
            profiles: list[dict[str, Any]] = [
                {
                    "certifiedConfigRevisionId": f"cr_{hw_name.replace('-', '_')}",
                    "certifiedModelRevisionId": "rv_pub0001",
                    "config": f"projects/proj_public/configs/cr_{hw_name.replace('-', '_')}",
                    "gpuCount": count,
                    "gpuType": gpu,
                    "model": f"projects/proj_public/models/{base_id}",
                    "modelName": name,
                    "parallelism": f"TP{count}",
                    "performanceBenchmarks": {},
                    "profileId": f"cr_{hw_name.replace('-', '_')}",
                    "quantization": "bf16",
                    "adapterMode": "ADAPTER_MODE_DYNAMIC"
                    if self.serverless_lora
                    else "ADAPTER_MODE_DISABLED",
                }
                for hw_name, _t, gpu, _mem, count, _c in self.HARDWARE[:2]
            ]
            items.append(
                {
                    "id": base_id,
                    "baseModel": f"projects/proj_public/models/{base_id}",
                    "baseModelId": base_id,
                    "capabilities": ["CAPABILITY_CHAT"],
                    "createdAt": "2025-01-01T00:00:00Z",
                    "updatedAt": "2025-01-01T00:00:00Z",
                    "deploymentProfiles": profiles,
                    "displayName": name,
                    "displayType": "chat",
                    "inputModalities": ["MODALITY_TEXT"],
                    "outputModalities": ["MODALITY_TEXT"],
                    "name": name,
                    "products": ["PRODUCT_SERVERLESS", "PRODUCT_DEDICATED", "PRODUCT_FINE_TUNING"],
                    "publisher": "fake",
                    "status": "SUPPORTED_MODEL_STATUS_SUPPORTED",
                    "pricing": {"input": self.chat_price[0], "output": self.chat_price[1]},
                    "serverlessEndpoint": name,
                }
            )
        return _page(items, req, self.page_size)

    def _model_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        base_id = "ml_pub_" + hashlib.sha256(obj["base"].encode()).hexdigest()[:12]
        return {
            "id": obj["id"],
            "name": obj["name"],
            "organizationId": "org_fake0001",
            "projectId": self.project["id"],
            "visibility": "VISIBILITY_PRIVATE",
            "weights": {"type": "WEIGHTS_TYPE_DEFAULT", "architecture": "LlamaForCausalLM"},
            "baseModel": f"projects/proj_public/models/{base_id}",
            "baseModelId": base_id,
            "description": f"fine-tune of {obj['base']}",
            "createdAt": obj["created_at"],
        }

    def models_retrieve(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            obj = self.st["models"].get(m.group("id"))
            if obj is None or m.group("project") != self.project["id"]:
                return _error(404, f"model {m.group('id')} not found")
            return self._model_json(obj)

    def configs_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        ref = str(req.query.get("referenceModelId") or req.query.get("referenceModel") or "")
        ref = ref.rsplit("/", 1)[-1]
        if not ref:
            return _error(400, "referenceModel or referenceModelId is required")
        configs = [
            {
                "id": f"cr_{hw_name.replace('-', '_')}",
                "certifications": [],
                "projectId": "proj_public",
                "referenceModel": f"projects/proj_public/models/{ref}",
                "referenceModelId": ref,
                "selectors": [
                    {"key": "accelerator_type", "value": acc},
                    {"key": "accelerator_count", "value": str(count)},
                    *(
                        [{"key": "adapter_mode", "value": self.config_adapter_modes[hw_name]}]
                        if hw_name in self.config_adapter_modes
                        else []
                    ),
                ],
            }
            for hw_name, acc, _g, _mem, count, _c in self.HARDWARE
        ]
        return _page(configs, req, self.page_size)

    def hardware_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        data = [
            {
                "id": "it_" + hw_name.replace("-", "_"),
                "name": hw_name,
                "description": f"{count}x {gpu} {mem}GB",
                "gpuCount": count,
                "gpuMemoryGib": mem,
                "gpuType": gpu,
                "priceCentsPerHour": cents,
                "regions": [
                    {"name": "us-central-1", "headroom": {"relation": "RELATION_GTE", "value": 4}}
                ],
            }
            for hw_name, _acc, gpu, mem, count, cents in self.HARDWARE
        ]
        return {"object": "list", "data": data, "next_cursor": None}

    def whoami(self, req: FakeRequest, m: re.Match[str]) -> Any:
        return {
            "type": "project_api_key",
            "api_key": {"id": "key_fake0001"},
            "organization": {"id": "org_fake0001", "name": "ste fake org"},
            "project": dict(self.project),
        }

    # -- endpoints ---------------------------------------------------------------------------

    def _check_project(self, m: re.Match[str]) -> None:
        if m.group("project") != self.project["id"]:
            raise _Refused(403, f"API key has no access to project {m.group('project')}")

    def _deployment_json(self, d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if not k.startswith("_")}
        return out

    def _endpoint_json(self, ep: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in ep.items() if not k.startswith("_")}
        out["deployments"] = [
            {
                "id": d["id"],
                "autoscaling": d["autoscaling"],
                "createdAt": d["createdAt"],
                "estimatedEffectiveTrafficShare": 1.0 if self._routed(ep, d["id"]) else 0.0,
                "model": d["model"],
                "modelId": d["modelId"],
                "name": d["name"],
                "state": d["status"]["state"],
                "trafficMode": "TRAFFIC_MODE_LIVE",
                "hardware": d["hardware"],
                "readyReplicas": d["status"].get("readyReplicas", 0),
            }
            for d in ep["_deployments"].values()
        ]
        return out

    @staticmethod
    def _routed(ep: dict[str, Any], dep_id: str) -> bool:
        return any(
            t.get("deploymentId") == dep_id and float(t.get("weight", 0)) > 0
            for t in ep["trafficSplit"]
        )

    def ep_create(self, req: FakeRequest, m: re.Match[str]) -> Any:
        self._check_project(m)
        body = _json_body(req)
        name = str(body.get("name") or "").rsplit("/", 1)[-1]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            return _error(400, f"invalid endpoint name {body.get('name')!r}")
        qualified = f"{self.project['slug']}/{name}"
        with self.provider.lock:
            if any(e["name"] == qualified for e in self.st["endpoints"].values()):
                return _error(409, f"endpoint {qualified} already exists")
            now = _now()
            ep: dict[str, Any] = {
                "id": "ep_" + uuid.uuid4().hex[:20],
                "createdAt": now,
                "updatedAt": now,
                "endpointType": "ENDPOINT_TYPE_DEDICATED",
                "etag": uuid.uuid4().hex[:12],
                "name": qualified,
                "projectId": self.project["id"],
                "trafficSplit": [],
                "visibility": body.get("visibility") or "VISIBILITY_PRIVATE",
                "_deployments": {},
            }
            self.st["endpoints"][ep["id"]] = ep
            self._save()
            return self._endpoint_json(ep)

    def _endpoint(self, m: re.Match[str]) -> dict[str, Any]:
        self._check_project(m)
        ep = self.st["endpoints"].get(m.group("ep"))
        if ep is None:
            raise _Refused(404, f"endpoint {m.group('ep')} not found")
        return ep

    def ep_get(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            return self._endpoint_json(self._endpoint(m))

    def ep_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        self._check_project(m)
        with self.provider.lock:
            endpoints = [self._endpoint_json(e) for e in self.st["endpoints"].values()]
            return _page(endpoints, req, self.page_size)

    def ep_update(self, req: FakeRequest, m: re.Match[str]) -> Any:
        body = _json_body(req)
        with self.provider.lock:
            ep = self._endpoint(m)
            if body.get("etag") and body["etag"] != ep["etag"]:
                return _error(409, "etag mismatch: the endpoint changed since it was read")
            if "trafficSplit" in body:
                split = body["trafficSplit"] or []
                for entry in split:
                    if entry.get("deploymentId") not in ep["_deployments"]:
                        return _error(400, f"unknown deployment {entry.get('deploymentId')!r}")
                ep["trafficSplit"] = split
            if body.get("visibility"):
                ep["visibility"] = body["visibility"]
            ep["etag"] = uuid.uuid4().hex[:12]
            ep["updatedAt"] = _now()
            self._save()
            return self._endpoint_json(ep)

    def ep_delete(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            ep = self._endpoint(m)
            if ep["_deployments"]:
                return _error(400, "endpoint still has deployments: delete them first")
            del self.st["endpoints"][ep["id"]]
            self._save()
        return {}

    def dep_create(self, req: FakeRequest, m: re.Match[str]) -> Any:
        body = _json_body(req)
        with self.provider.lock:
            ep = self._endpoint(m)
            problem = self._check_deployment(body)
            if problem:
                return _error(400, problem)
            model_id = body["model"].split("/")[3]
            cfg_id = body["config"].rsplit("/", 1)[-1]
            hw = next(h for h in self.HARDWARE if f"cr_{h[0].replace('-', '_')}" == cfg_id)
            now = _now()
            dep = {
                "id": "dep_" + uuid.uuid4().hex[:20],
                "autoscaling": {
                    "minReplicas": body["autoscaling"].get("minReplicas", 1),
                    "maxReplicas": body["autoscaling"].get(
                        "maxReplicas", body["autoscaling"].get("minReplicas", 1)
                    ),
                },
                "config": body["config"],
                "configId": cfg_id,
                "createdAt": now,
                "updatedAt": now,
                "endpointId": ep["id"],
                "etag": uuid.uuid4().hex[:12],
                "hardware": hw[0],
                "model": f"{body['model']}/revisions/rv_0001",
                "modelId": model_id,
                "modelRevisionId": "rv_0001",
                "name": f"{ep['name']}/{body['name']}",
                "projectId": self.project["id"],
                "status": {
                    "state": "DEPLOYMENT_STATE_PROVISIONING",
                    "message": "Allocating GPUs",
                    "readyReplicas": 0,
                    "scheduledReplicas": 0,
                },
                "trafficMode": "TRAFFIC_MODE_LIVE",
                "desiredReplicas": body["autoscaling"].get("minReplicas", 1),
                "inactiveTimeout": body.get("inactiveTimeout"),
                "_polls": 0,
            }
            ep["_deployments"][dep["id"]] = dep
            self._save()
            return self._deployment_json(dep)

    def _check_deployment(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        if not body.get("name"):
            return "name is required"
        auto = body.get("autoscaling")
        if not isinstance(auto, dict):
            return "autoscaling is required"
        lo, hi = auto.get("minReplicas", 1), auto.get("maxReplicas", auto.get("minReplicas", 1))
        if not isinstance(lo, int) or not isinstance(hi, int) or lo < 0 or hi < lo:
            return "autoscaling needs 0 <= minReplicas <= maxReplicas"
        timeout = body.get("inactiveTimeout")
        if timeout not in (None, 0) and not 30 <= int(timeout) <= 1440:
            return "inactiveTimeout must be 0 or between 30 and 1440 minutes"
        mm = re.fullmatch(
            r"projects/([^/]+)/models/([^/]+)(/revisions/[^/]+)?", str(body.get("model"))
        )
        if mm is None or mm.group(2) not in self.st["models"]:
            return f"model {body.get('model')!r} not found"
        cfg = str(body.get("config") or "").rsplit("/", 1)[-1]
        if not any(f"cr_{h[0].replace('-', '_')}" == cfg for h in self.HARDWARE):
            return f"config {body.get('config')!r} is not compatible with the model"
        return None

    def _deployment(self, m: re.Match[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        ep = self._endpoint(m)
        dep = ep["_deployments"].get(m.group("dep"))
        if dep is None:
            raise _Refused(404, f"deployment {m.group('dep')} not found")
        return ep, dep

    def dep_get(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            _ep, dep = self._deployment(m)
            if dep["status"]["state"] == "DEPLOYMENT_STATE_PROVISIONING":
                dep["_polls"] += 1
                if dep["_polls"] > self.deploy_polls_to_ready:
                    replicas = dep["autoscaling"]["minReplicas"]
                    if self.deploy_failure:
                        dep["status"] = {
                            "state": "DEPLOYMENT_STATE_FAILED",
                            "message": self.deploy_failure,
                            "readyReplicas": 0,
                            "scheduledReplicas": 0,
                        }
                    else:
                        dep["status"] = {
                            "state": "DEPLOYMENT_STATE_READY",
                            "message": "All replicas ready",
                            "readyReplicas": replicas,
                            "scheduledReplicas": replicas,
                        }
                    dep["updatedAt"] = _now()
                    self._save()
            return self._deployment_json(dep)

    def dep_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            ep = self._endpoint(m)
            deployments = [self._deployment_json(d) for d in ep["_deployments"].values()]
            return _page(deployments, req, self.page_size)

    def dep_delete(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            ep, dep = self._deployment(m)
            if self._routed(ep, dep["id"]):
                return _error(400, "remove the deployment from live traffic before deleting it")
            del ep["_deployments"][dep["id"]]
            self._save()
        return {}

    # -- chat (overrides the built-in route to resolve fine-tunes and endpoints) -------------

    def resolve_model(self, name: str) -> tuple[str | None, Any]:
        """(model to answer as, None) or (None, an error response) for a chat `model`."""
        with self.provider.lock:
            for ep in self.st["endpoints"].values():
                if name != ep["name"]:
                    continue
                for d in ep["_deployments"].values():
                    if (
                        self._routed(ep, d["id"])
                        and d["status"]["state"] == "DEPLOYMENT_STATE_READY"
                    ):
                        obj = self.st["models"].get(d["modelId"])
                        return (obj["name"] if obj else name), None
                return None, _error(
                    503, f"Endpoint {name} has no ready deployment receiving traffic."
                )
            for job in self.st["jobs"].values():
                if job["model_output_name"] != name:
                    continue
                lora = (job.get("training_type") or {}).get("type") == "Lora"
                if job["status"] == "completed" and lora and self.serverless_lora:
                    return name, None
                return None, _error(
                    400,
                    f"Unable to access non-serverless model {name}. Please visit "
                    f"https://api.together.ai/models/{name} to create and start a new "
                    "dedicated endpoint for the model.",
                )
            # deleted endpoints: a name that looks like ours but no longer exists
            if name.startswith(self.project["slug"] + "/ste-"):
                return None, _error(404, f"Model {name} not found.")
        return name, None

    def chat(self, req: FakeRequest, m: re.Match[str]) -> Any:
        try:
            body = req.json()
        except ValueError:
            body = None
        name = body.get("model") if isinstance(body, dict) else None
        if not isinstance(name, str):
            return self.provider.chat_completion(req)  # its 400 names what is wrong
        actual, refused = self.resolve_model(name)
        if refused is not None:
            return refused
        response = self._chat_completion({**body, "model": actual})
        if isinstance(response.body, dict) and "model" in response.body:
            response.body["model"] = name
        return response

    def _chat_completion(self, body: dict[str, Any]) -> FakeResponse:
        """The built-in chat answer to `body`, reshaped into Together's chat completion."""
        request = FakeRequest(
            "POST",
            "/v1/chat/completions",
            {},
            {"content-type": "application/json"},
            json.dumps(body).encode(),
        )
        response = self.provider.chat_completion(request)
        if response.status == 200 and isinstance(response.body, dict):
            completion = response.body
            completion["id"] = completion["id"].removeprefix("chatcmpl-")
            del completion["system_fingerprint"]
            for choice in completion["choices"]:
                choice["seed"] = body.get("seed")
            completion["prompt"] = []
        return response

    # -- batches -----------------------------------------------------------------------------

    def _batch(self, m: re.Match[str]) -> dict[str, Any]:
        batch = self.st["batches"].get(m.group("id"))
        if batch is None:
            raise _Refused(404, f"batch {m.group('id')} not found")
        return batch

    def _batch_json(self, b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def batch_create(self, req: FakeRequest, m: re.Match[str]) -> Any:
        body = _json_body(req)
        if body.get("endpoint") != "/v1/chat/completions":
            return _error(400, f"unsupported batch endpoint {body.get('endpoint')!r}")
        with self.provider.lock:
            f = self.st["files"].get(body.get("input_file_id") or "")
            if f is None or f["purpose"] != "batch-api":
                return _error(400, "input_file_id must name an uploaded batch-api file")
            if f["processing_status"] != "COMPLETED":
                return _error(400, f"input file is not valid: {f.get('validation_report')}")
            now = _now()
            batch = {
                "id": str(uuid.uuid4()),
                "user_id": "user_fake0001",
                "input_file_id": f["id"],
                "file_size_bytes": f["bytes"],
                "status": "VALIDATING",
                "job_deadline": now,
                "created_at": now,
                "endpoint": body["endpoint"],
                "progress": 0.0,
                "model_id": body.get("model_id"),
                "output_file_id": None,
                "error_file_id": None,
                "error": None,
                "completed_at": None,
                "_polls": 0,
            }
            self.st["batches"][batch["id"]] = batch
            self._save()
            return {"job": self._batch_json(batch), "warning": None}

    def batch_get(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            batch = self._batch(m)
            if batch["status"] in ("VALIDATING", "IN_PROGRESS"):
                batch["_polls"] += 1
                if batch["_polls"] >= self.batch_polls:
                    self._run_batch(batch)
                else:
                    batch["status"] = "IN_PROGRESS"
                    batch["progress"] = 50.0
                self._save()
            return self._batch_json(batch)

    def _new_file(self, name: str, purpose: str, data: bytes) -> str:
        file_id = f"file-{uuid.uuid4()}"
        self.st["files"][file_id] = {
            "id": file_id,
            "filename": name,
            "file_type": "jsonl",
            "purpose": purpose,
            "checksum": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "created_at": int(time.time()),
            "processing_status": "COMPLETED",
            "validation_report": None,
        }
        self.st["contents"][file_id] = base64.b64encode(data).decode("ascii")
        return file_id

    def _run_batch(self, batch: dict[str, Any]) -> None:
        """Answer every line with the scripted model; failures go to the error file."""
        out_lines: list[str] = []
        err_lines: list[str] = []
        for raw in self.content_of(batch["input_file_id"]).decode("utf-8").splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            cid = line.get("custom_id")
            line_id = "batch_req_" + uuid.uuid4().hex[:16]
            body = line.get("body") or {}
            if cid in self.batch_fail_custom_ids:
                response = _error(500, "injected batch line failure")
            else:
                actual, refused = self.resolve_model(str(body.get("model")))
                if refused is not None:
                    response = refused
                else:
                    response = self._chat_completion({**body, "model": actual})
            payload = response.body if isinstance(response.body, dict) else {}
            record = {
                "id": line_id,
                "custom_id": cid,
                "response": {
                    "status_code": response.status,
                    "request_id": response.headers.get("x-request-id", line_id),
                    "body": payload,
                },
            }
            if response.status == 200:
                out_lines.append(json.dumps({**record, "error": None}))
            else:
                message = (payload.get("error") or {}).get("message", "error")
                err_lines.append(
                    json.dumps({**record, "error": {"message": message, "code": response.status}})
                )
        # Lines run (and paid for): a test counts repeats with counter["batch_lines"].
        self.provider.counter["batch_lines"] += len(out_lines) + len(err_lines)
        batch["output_file_id"] = self._new_file(
            f"batch_{batch['id']}_output.jsonl", "batch-api", "\n".join(out_lines).encode() + b"\n"
        )
        if err_lines:
            batch["error_file_id"] = self._new_file(
                f"batch_{batch['id']}_error.jsonl",
                "batch-api",
                "\n".join(err_lines).encode() + b"\n",
            )
        batch["status"] = "COMPLETED"
        batch["progress"] = 100.0
        batch["completed_at"] = _now()

    def batch_list(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            return [self._batch_json(b) for b in self.st["batches"].values()]

    def batch_cancel(self, req: FakeRequest, m: re.Match[str]) -> Any:
        with self.provider.lock:
            batch = self._batch(m)
            if batch["status"] in ("VALIDATING", "IN_PROGRESS"):
                batch["status"] = "CANCELLED"
                self._save()
            return self._batch_json(batch)


def _ft_level(name: str) -> int:
    levels = [int(d) if d else 1 for d in _FT_LEVEL.findall(name.lower())]
    return max(levels, default=0)


def _inspect(content: bytes, purpose: str) -> tuple[str | None, str | None, int]:
    """(dataset format, problem or None, line count) like Together's file validation."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None, "file is not UTF-8", 0
    fmt: str | None = None
    n = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            return fmt, f"line {lineno}: invalid JSON", n
        if not isinstance(obj, dict):
            return fmt, f"line {lineno}: each line must be a JSON object", n
        n += 1
        if purpose == "batch-api":
            cid = obj.get("custom_id")
            if not isinstance(cid, str) or not cid or len(cid) > 64:
                return "batch", f"line {lineno}: custom_id must be a string of 1-64 chars", n
            if not isinstance(obj.get("body"), dict):
                return "batch", f"line {lineno}: body must be an object", n
            fmt = "batch"
            continue
        if purpose != "fine-tune":
            continue
        if {"input", "preferred_output", "non_preferred_output"} <= obj.keys():
            this = "preference_openai"
            for key in ("preferred_output", "non_preferred_output"):
                out = obj[key]
                if (
                    not isinstance(out, list)
                    or len(out) != 1
                    or not isinstance(out[0], dict)
                    or out[0].get("role") != "assistant"
                ):
                    return this, f"line {lineno}: {key} must hold one assistant message", n
            msgs = (obj.get("input") or {}).get("messages")
        elif "messages" in obj:
            this = "conversation"
            msgs = obj["messages"]
        elif {"prompt", "completion"} <= obj.keys():
            this, msgs = "instruction", None
        elif "text" in obj:
            this, msgs = "general", None
        else:
            return fmt, f"line {lineno}: unknown dataset format (keys {sorted(obj)})", n
        if fmt is not None and this != fmt:
            return fmt, f"line {lineno}: mixes {this} with {fmt} lines", n
        fmt = this
        if msgs is not None:
            if not isinstance(msgs, list) or not msgs:
                return fmt, f"line {lineno}: messages must be a non-empty list", n
            for msg in msgs:
                if not isinstance(msg, dict) or msg.get("role") not in (
                    "system",
                    "user",
                    "assistant",
                    "tool",
                ):
                    return fmt, f"line {lineno}: every message needs a valid role", n
                if not isinstance(msg.get("content"), str):
                    return fmt, f"line {lineno}: message content must be a string", n
    if n == 0:
        return fmt, "file has no samples", 0
    return fmt, None, n


def register_routes(provider: FakeProvider) -> TogetherRoutes:
    """Add the Together routes to `provider` (a route extension); returns their handlers, which
    hold the state and knobs."""
    fake = TogetherRoutes(provider)
    fid = r"(?P<id>[A-Za-z0-9._-]+)"
    proj = r"/v2/projects/(?P<project>[^/]+)"
    routes = [
        ("POST", r"/v1/files", "files_upload", fake.files_upload),
        ("GET", r"/v1/files", "files_list", fake.files_list),
        ("PUT", PRESIGNED_PREFIX + fid, "files_presigned_put", fake.presigned_put),
        ("POST", rf"/v1/files/{fid}/preprocess", "files_preprocess", fake.files_preprocess),
        ("GET", rf"/v1/files/{fid}", "files_retrieve", fake.files_retrieve),
        ("DELETE", rf"/v1/files/{fid}", "files_delete", fake.files_delete),
        ("GET", rf"/v1/files/{fid}/content", "files_content", fake.files_content),
        ("GET", r"/v1/fine-tunes/models/limits", "ft_limits", fake.ft_limits),
        ("POST", r"/v1/fine-tunes/estimate-price", "ft_estimate", fake.ft_estimate),
        ("POST", r"/v1/fine-tunes", "ft_create", fake.ft_create),
        ("GET", r"/v1/fine-tunes", "ft_list", fake.ft_list),
        ("GET", rf"/v1/fine-tunes/{fid}", "ft_retrieve", fake.ft_retrieve),
        ("GET", rf"/v1/fine-tunes/{fid}/events", "ft_events", fake.ft_events),
        ("POST", rf"/v1/fine-tunes/{fid}/cancel", "ft_cancel", fake.ft_cancel),
        ("GET", r"/v2/supported-models", "supported_models", fake.supported_models),
        ("GET", proj + rf"/models/{fid}", "models_retrieve", fake.models_retrieve),
        ("GET", proj + r"/configs", "configs_list", fake.configs_list),
        ("GET", r"/v2/public/inference-instance-types", "hardware_list", fake.hardware_list),
        ("GET", r"/v3/whoami", "whoami", fake.whoami),
        ("POST", proj + r"/endpoints", "endpoints_create", fake.ep_create),
        ("GET", proj + r"/endpoints", "endpoints_list", fake.ep_list),
        ("GET", proj + r"/endpoints/(?P<ep>[^/]+)", "endpoints_get", fake.ep_get),
        ("PATCH", proj + r"/endpoints/(?P<ep>[^/]+)", "endpoints_update", fake.ep_update),
        ("DELETE", proj + r"/endpoints/(?P<ep>[^/]+)", "endpoints_delete", fake.ep_delete),
        (
            "POST",
            proj + r"/endpoints/(?P<ep>[^/]+)/deployments",
            "deployments_create",
            fake.dep_create,
        ),
        ("GET", proj + r"/endpoints/(?P<ep>[^/]+)/deployments", "deployments_list", fake.dep_list),
        (
            "GET",
            proj + r"/endpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)",
            "deployments_get",
            fake.dep_get,
        ),
        (
            "DELETE",
            proj + r"/endpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)",
            "deployments_delete",
            fake.dep_delete,
        ),
        ("POST", r"/v1/batches", "batches_create", fake.batch_create),
        ("GET", r"/v1/batches", "batches_list", fake.batch_list),
        ("GET", rf"/v1/batches/{fid}", "batches_get", fake.batch_get),
        ("POST", rf"/v1/batches/{fid}/cancel", "batches_cancel", fake.batch_cancel),
        ("POST", r"/v1/chat/completions", "chat", fake.chat),
        ("GET", r"/v1/models", "models", fake.models_list),
    ]
    for method, pattern, name, handler in routes:
        presigned = pattern.startswith(PRESIGNED_PREFIX)
        provider.route(method, pattern, name, presigned=presigned)(_answer_refusals(handler))
    return fake


class TogetherFake(FakeProvider):
    """A FakeProvider that speaks Together's API; `together` holds its state and knobs."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.together = register_routes(self)
