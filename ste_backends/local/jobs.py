"""The files of one local fine-tune job: how the backend and its training worker talk.

A job is a directory; its absolute path is the job id, so a later process (a resumed run) can
poll it without any in-memory registry:

    <job dir>/
      job.json        what to train (written by the backend before the worker starts)
      status.json     status, pid, step/max_steps, last loss, message (replaced atomically;
                      written by the backend before the worker starts, then by the worker only)
      worker.pid      the worker's pid, written by the backend right after starting it
      events.jsonl    one line per progress event ("step 3/10 loss=1.2345 ...")
      worker.log      the worker's stdout and stderr (tracebacks land here)
      completions.jsonl  GRPO: every sampled judgement, its verdict and rewards (see grpo.py)
      adapter/        the trained LoRA adapter + tokenizer (only once the job succeeded)
      rank-N.pid      multi-process jobs: the pid of rank N (worker.pid is the launcher's)
      rank-N.error    multi-process jobs: the error of rank N, written before it exits
      rank-N.json     multi-process jobs, when asked for (launch.DIGEST_ENV): world size and a
                      digest of rank N's trained adapter weights
      trainer/        the Trainer's scratch output_dir (no checkpoints are saved)

Standard library only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class JobFiles:
    """Paths and atomic reads/writes for one job directory.

    `writes=False` (every rank but 0 of a multi-process job): status and event writes are
    dropped, so one process alone writes them.
    """

    def __init__(self, job_dir: str | Path, *, writes: bool = True) -> None:
        self.dir = Path(job_dir)
        self.writes = writes
        self.job = self.dir / "job.json"
        self.status = self.dir / "status.json"
        self.events = self.dir / "events.jsonl"
        self.log = self.dir / "worker.log"
        self.pid_file = self.dir / "worker.pid"
        self.adapter = self.dir / "adapter"
        self.trainer = self.dir / "trainer"

    def exists(self) -> bool:
        return self.job.is_file()

    def worker_pid(self, status: dict[str, Any] | None = None) -> int | None:
        """The worker's pid: from status.json once the worker runs, else from worker.pid."""
        pid = (status or self.read_status()).get("pid")
        if isinstance(pid, int):
            return pid
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write_job(self, job: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.job, job)

    def read_job(self) -> dict[str, Any]:
        return json.loads(self.job.read_text(encoding="utf-8"))

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"status": "queued"}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json (one writer at a time: the worker while it lives)."""
        status = self.read_status()
        if not self.writes:
            return status
        status.update(fields, updated_at=time.time())
        _atomic_write(self.status, status)
        return status

    def add_event(self, text: str) -> None:
        if not self.writes:
            return
        with self.events.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": time.time(), "text": text}) + "\n")

    def read_events(self) -> list[str]:
        try:
            lines = self.events.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line being written right now
        return events

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(
                self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            )
        except FileNotFoundError:
            return ""


def _atomic_write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists (and is not a zombie we can see)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a zombie still answers kill(0); read its state
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True
