"""The training worker's watchdog (ste_backends/local/watchdog.py), in a small worker-like process
whose main thread is stuck in C code that releases the GIL but never lets a Python signal handler
run, as a rank is inside a collective that waits for a rank that is gone (here: a glibc mutex
locked twice, which POSIX never interrupts with EINTR)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from ste_backends.local.jobs import JobFiles

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses glibc's pthread_mutex_lock")

STUCK = """
import ctypes, signal, sys, threading
from ste_backends.local import train_worker
from ste_backends.local.jobs import JobFiles

files = JobFiles(sys.argv[1])
signal.signal(signal.SIGTERM, train_worker._on_sigterm)
train_worker._watchdog.start(files, None, grace_s=0.5)
files.update_status(status="running")
# "ready" once the main thread is surely stuck (a signal before that would raise in Python)
threading.Timer(1.0, lambda: print("ready", flush=True)).start()
libc = ctypes.CDLL(None)
mutex = ctypes.create_string_buffer(64)  # zeros: PTHREAD_MUTEX_INITIALIZER on glibc
libc.pthread_mutex_lock(mutex)
libc.pthread_mutex_lock(mutex)  # blocks for good; ctypes released the GIL
"""


STARTED: list[asyncio.subprocess.Process] = []


async def stuck_worker(job_dir: Path) -> asyncio.subprocess.Process:
    JobFiles(job_dir).write_job({})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK, str(job_dir), stdout=asyncio.subprocess.PIPE
    )
    STARTED.append(proc)
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    return proc


@pytest.fixture(autouse=True)
def _no_stuck_worker_left():
    yield
    for proc in STARTED:
        if proc.returncode is None:
            proc.kill()


async def test_a_signal_the_training_loop_cannot_see_still_ends_the_worker(tmp_path: Path) -> None:
    proc = await stuck_worker(tmp_path / "job")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 130
    status = JobFiles(tmp_path / "job").read_status()
    assert status["status"] == "cancelled"
    assert status["message"] == "cancelled (the training loop did not stop)"


async def test_rank_zero_fails_with_another_ranks_error_at_once(tmp_path: Path) -> None:
    proc = await stuck_worker(tmp_path / "job")
    (tmp_path / "job" / "rank-1.error").write_text("RuntimeError: out of memory")
    assert await asyncio.wait_for(proc.wait(), 20) == 1
    status = JobFiles(tmp_path / "job").read_status()
    assert (status["status"], status["message"]) == (
        "failed",
        "rank 1 failed: RuntimeError: out of memory",
    )
