"""How the local backend starts, watches and stops its training worker: one process, or one
process per rank under `accelerate launch` (data parallel; DeepSpeed or FSDP from a config file).

One process (the default): `python -m ste_backends.local.train_worker <job dir>`.

Several (`processes > 1` or an `accelerate_config`): `python -m accelerate.commands.launch ...
--module ste_backends.local.train_worker <job dir>`. Both run in ste's process group, so Ctrl-C
in the terminal reaches the worker or the launcher. The launcher (torch's elastic agent) starts
each rank in a session of its own and forwards SIGTERM/SIGINT to every rank (SIGKILL 30 s later);
each rank writes its pid to `rank-N.pid`, so `cancel` can SIGKILL the ranks too when the launcher
does not stop in time. A rank's parent is the launcher, not ste, so every worker watches ste's
pid from job.json (`owner_pid`) as well as its own parent, and stops when either goes.

Inside the worker, `rank()` says which rank this is; rank 0 alone writes status, events and the
adapter. A rank that fails writes `rank-N.error` before it exits, so rank 0 (stopped by the
launcher, or failing in a collective) and the backend report that rank's error, not a symptom.
With `DIGEST_ENV=1` every rank writes `rank-N.json` (world size, digest of its trained adapter
weights): the check that data-parallel ranks ended with identical weights.

Method-agnostic: whatever the worker trains (SFT, DPO, ...) runs the same way under the launcher.
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from ste_backends.local.jobs import pid_alive

#: The environment variable that makes every rank write `rank-N.json` (a test / diagnostic).
DIGEST_ENV = "STE_RANK_DIGESTS"
#: Set by `spawn_worker` for launched workers: the pid ste tracks is the launcher's, not theirs.
LAUNCHED_ENV = "STE_LAUNCHED"

WORKER_MODULE = "ste_backends.local.train_worker"


def launcher_args(processes: int, accelerate_config: Path | None) -> list[str]:
    """The `accelerate launch` arguments, or [] to run the worker as one plain process."""
    if processes <= 1 and accelerate_config is None:
        return []
    args = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config is not None:
        # The file decides the distributed type (DDP, DeepSpeed, FSDP) and its settings.
        args += ["--config_file", str(accelerate_config)]
        if processes > 1:
            args += ["--num_processes", str(processes)]
    else:
        # --multi_gpu also runs CPU ranks (over gloo) when the worker sets use_cpu=True;
        # accelerate's --cpu flag silently runs a single process. Port 0: any free port, so two
        # jobs on one machine do not collide.
        args += [
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "0",
        ]
    return [*args, "--module"]


def worker_command(job_dir: Path, launcher: list[str]) -> list[str]:
    """The command line that trains the job in `job_dir` (under `launcher`, when given)."""
    if launcher:
        return [*launcher, WORKER_MODULE, str(job_dir)]
    return [sys.executable, "-m", WORKER_MODULE, str(job_dir)]


def spawn_worker(
    command: list[str], log: Path, env: dict[str, str], *, launched: bool
) -> subprocess.Popen[bytes]:
    """Start the worker (or the launcher of its ranks), output appended to `log`."""
    if launched:
        env = dict(env, **{LAUNCHED_ENV: "1"})
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )


def stop(pids: list[int], sig: int) -> None:
    """Send `sig` to each of `pids` that still exists."""
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def rank_pids(job_dir: Path) -> list[int]:
    """The pids the ranks of a launched job wrote (none for a one-process job)."""
    pids = []
    for path in job_dir.glob("rank-*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pids.append(int(path.read_text().strip()))
    return pids


# -- inside the worker -------------------------------------------------------------------------


def rank() -> int:
    """This process's global rank (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    return os.environ.get(LAUNCHED_ENV) == "1"


def rank_pid_file(job_dir: Path, n: int) -> Path:
    return job_dir / f"rank-{n}.pid"


def rank_error_file(job_dir: Path, n: int) -> Path:
    return job_dir / f"rank-{n}.error"


def rank_errors(job_dir: Path) -> list[str]:
    """'rank N failed: ...' for each rank that wrote an error file, in rank order."""
    found = []
    for path in job_dir.glob("rank-*.error"):
        with contextlib.suppress(ValueError, OSError):
            found.append((int(path.stem.split("-", 1)[1]), path.read_text().strip()))
    return [f"rank {n} failed: {text}" for n, text in sorted(found)]


def orphaned(parent: int, owner: int | None) -> bool:
    """Whether this worker lost its parent (ste or the launcher) or ste (`owner`) is gone."""
    if os.getppid() != parent:
        return True
    return owner is not None and owner != parent and not pid_alive(owner)
