"""The training worker's watchdog: a thread that ends the worker when its main thread cannot.

The main thread stops on SIGTERM/SIGINT by an exception (see `train_worker`), but Python runs
signal handlers only between bytecodes: a rank blocked in a collective (waiting for a rank that
died or was stopped) never sees it. The watchdog, in every worker:

- stops the worker when ste or the worker's parent (the launcher) is gone (`launch.orphaned`);
- learns of every SIGTERM/SIGINT at once (signal.set_wakeup_fd) and, if the main thread has not
  begun to finish `grace_s` later, records "cancelled" itself and exits;
- on rank 0: when another rank wrote its error (`launch.rank_errors`), records the job failed
  with that error and exits, instead of waiting in a collective for the launcher's SIGKILL;
- on other ranks: exits once the job is recorded failed or cancelled.

`finish()` decides once who records the end: the main thread or the watchdog, never both.
Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from ste_backends.local import launch
from ste_backends.local.jobs import JobFiles

CANCELLED_EXIT = 130
_STOP_SIGNALS = {int(signal.SIGTERM), int(signal.SIGINT)}


class Watchdog:
    """See the module docstring. `start` must be called from the main thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.finishing = False

    def finish(self) -> bool:
        """Claim the right to record the job's end; False when the other thread already has."""
        with self._lock:
            if self.finishing:
                return False
            self.finishing = True
            return True

    def start(self, files: JobFiles, owner: int | None, grace_s: float = 3.0) -> None:
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write)
        args = (files, os.getppid(), owner, read, grace_s)
        threading.Thread(target=self._watch, args=args, daemon=True, name="watchdog").start()

    def _watch(
        self, files: JobFiles, parent: int, owner: int | None, fd: int, grace: float
    ) -> None:
        signalled_at: float | None = None
        while True:
            # The wakeup fd receives the number of every signal with a Python handler; only
            # the stop signals count.
            if select.select([fd], [], [], 0.5)[0] and _STOP_SIGNALS & set(os.read(fd, 64)):
                signalled_at = signalled_at or time.monotonic()
            if signalled_at is None and launch.orphaned(parent, owner):
                os.kill(os.getpid(), signal.SIGTERM)  # as a cancel: the main thread may stop
                continue
            if files.writes and launch.rank_errors(files.dir):
                self._end(record_failed, files, "")
            if not files.writes and files.read_status().get("status") in ("failed", "cancelled"):
                self._end(_nothing_to_record, files, "")
            if signalled_at is not None and time.monotonic() - signalled_at > grace:
                self._end(record_cancelled, files, "cancelled (the training loop did not stop)")

    def _end(self, record: Callable[[JobFiles, str], int], files: JobFiles, reason: str) -> None:
        if not self.finish():
            return  # the main thread is recording the end; it exits by itself
        code = record(files, reason)
        launch.rank_pid_file(files.dir, launch.rank()).unlink(missing_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the main thread may be blocked for good: no clean interpreter exit


def _nothing_to_record(files: JobFiles, reason: str) -> int:
    return 1


def record_cancelled(files: JobFiles, reason: str) -> int:
    """Record the end of a stopped job; the exit code. When another rank failed (the launcher
    stops the others then), the job failed with that rank's error."""
    if launch.rank_errors(files.dir):
        return record_failed(files, reason)
    files.add_event(f"cancelled: {reason}")
    files.update_status(status="cancelled", message=reason)
    return CANCELLED_EXIT


def record_failed(files: JobFiles, message: str) -> int:
    """Record the job failed with `message`, or with another rank's error: a collective breaks
    in every rank once one dies, and the first error is the cause."""
    message = "; ".join(launch.rank_errors(files.dir)) or message
    files.add_event(f"failed: {message}")
    files.update_status(status="failed", message=message)
    return 1
