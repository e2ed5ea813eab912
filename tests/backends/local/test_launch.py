"""LocalFineTune with several processes (ste_backends/local/launch.py): the worker runs once per
rank under `accelerate launch`, here as 2 CPU ranks over gloo, for two optimizer steps.

Every rank writes a digest of its trained adapter (launch.DIGEST_ENV): data parallel training
must leave both ranks with the same weights, which are the ones rank 0 saved.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ste_backends.local import launch
from ste_backends.local.jobs import JobFiles, pid_alive
from ste_core.errors import ConfigurationError
from ste_core.records import FineTuneMethod, JobStatus
from tests.backends.local.local_support import dpo_examples, sft_examples
from tests.backends.local.test_finetune import finetuner, spec_for, wait_for


def adapter_digest_on_disk(adapter: Path) -> str:
    from safetensors.torch import load_file

    from ste_backends.local.train_worker import adapter_digest

    return adapter_digest(load_file(str(adapter / "adapter_model.safetensors")))


@pytest.mark.local_model
@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["sft", "dpo"])
async def test_two_processes_train_one_adapter(
    method: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(launch.DIGEST_ENV, "1")
    ft = finetuner(tmp_path, max_steps=2, processes=2)
    path = tmp_path / f"{method}.jsonl"
    examples = sft_examples(8) if method == "sft" else dpo_examples(8)
    ft.write_training_file(examples, FineTuneMethod(method), path)
    job = await ft.submit(spec_for(tiny_model_dir, method), path)
    assert "under accelerate launch (2 processes), launcher pid" in job.events[0]
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events)
    job_dir = Path(job.job_id)
    ranks = [json.loads((job_dir / f"rank-{n}.json").read_text()) for n in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["adapter_sha256"] == ranks[1]["adapter_sha256"]
    assert state.model is not None
    assert adapter_digest_on_disk(Path(state.model.model)) == ranks[1]["adapter_sha256"]
    # Rank 0 alone writes status and events: one of each, not one per rank.
    status = JobFiles(job_dir).read_status()
    assert status["world_size"] == 2 and "pid" not in status  # ste tracks the launcher's pid
    assert sum(e.startswith("training started") for e in state.events) == 1
    assert [e.split()[1] for e in state.events if e.startswith("step ") and " loss=" in e] == [
        "1/2",
        "2/2",
    ]
    assert launch.rank_errors(job_dir) == []


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_a_failing_rank_fails_the_job_with_its_error(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rank 1 alone cannot read its training data (injected at interpreter start-up).
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import ste_core.run.io as io\n"
        "    def broken(path):\n"
        "        raise RuntimeError('rank one cannot read ' + str(path))\n"
        "    io.read_rows = broken\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])
    )
    ft = finetuner(tmp_path, max_steps=2, processes=2)
    path = tmp_path / "sft.jsonl"
    ft.write_training_file(sft_examples(4), FineTuneMethod.SFT, path)
    job = await ft.submit(spec_for(tiny_model_dir), path)
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal, limit_s=180)
    assert state.status is JobStatus.FAILED
    assert state.message == f"rank 1 failed: RuntimeError: rank one cannot read {path}"
    assert not (Path(job.job_id) / "adapter").exists()


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_cancel_stops_every_rank(tiny_model_dir: Path, tmp_path: Path) -> None:
    ft = finetuner(tmp_path, max_steps=100_000, processes=2, cancel_grace_seconds=30)
    path = tmp_path / "sft.jsonl"
    ft.write_training_file(sft_examples(4), FineTuneMethod.SFT, path)
    job = await ft.submit(spec_for(tiny_model_dir), path)
    running = await wait_for(ft, job.job_id, lambda s: s.status.terminal or (s.step or 0) > 0)
    assert running.status is JobStatus.RUNNING, (running.message, running.events)
    launcher = JobFiles(job.job_id).worker_pid()
    ranks = launch.rank_pids(Path(job.job_id))
    assert launcher is not None and len(ranks) == 2
    state = await ft.cancel(job.job_id)
    assert state.status is JobStatus.CANCELLED, (state.message, state.events)
    assert not any(pid_alive(pid) for pid in [launcher, *ranks])
    assert launch.rank_pids(Path(job.job_id)) == []  # each rank removed its pid file


def test_one_process_needs_no_launcher(tmp_path: Path) -> None:
    assert launch.launcher_args(1, None) == []
    assert launch.worker_command(tmp_path, []) == [
        sys.executable,
        "-m",
        "ste_backends.local.train_worker",
        str(tmp_path),
    ]
    two = launch.launcher_args(2, None)
    assert two[1:3] == ["-m", "accelerate.commands.launch"] and two[-1] == "--module"
    assert two[two.index("--num_processes") :][:2] == ["--num_processes", "2"]
    config = tmp_path / "ds.yaml"
    with_config = launch.launcher_args(1, config)
    assert with_config[3:5] == ["--config_file", str(config)]
    assert "--num_processes" not in with_config and "--multi_gpu" not in with_config


async def test_launch_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "sft.jsonl"
    missing = tmp_path / "nowhere.yaml"
    ft = finetuner(tmp_path, accelerate_config=missing)
    ft.write_training_file(sft_examples(2), FineTuneMethod.SFT, path)
    with pytest.raises(ConfigurationError, match=f"accelerate_config: {missing} is not a file"):
        await ft.submit(spec_for(tmp_path / "model"), path)
    from ste_backends.local import LocalFineTune

    one_gpu = LocalFineTune(device="cuda:1", processes=2, output_dir=tmp_path / "jobs")
    with pytest.raises(ConfigurationError, match="names one GPU"):
        await one_gpu.submit(spec_for(tmp_path / "model"), path)


def test_a_worker_notices_when_ste_or_its_parent_goes() -> None:
    parent = os.getppid()
    assert not launch.orphaned(parent, None)
    assert not launch.orphaned(parent, os.getpid())  # ste alive
    assert launch.orphaned(parent + 100_000, None)  # reparented: the parent died
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert launch.orphaned(parent, gone.pid)  # ste gone, the launcher still there


def test_only_rank_zero_writes(tmp_path: Path) -> None:
    quiet = JobFiles(tmp_path, writes=False)
    quiet.update_status(status="running")
    quiet.add_event("hello")
    assert not quiet.status.exists() and not quiet.events.exists()


OWNER = """
import asyncio, sys
from pathlib import Path
from ste_backends.local import LocalFineTune
from ste_core.records import FineTuneSpec, LoRAConfig

async def main():
    model, data, jobs = sys.argv[1:]
    ft = LocalFineTune(device="cpu", output_dir=Path(jobs), max_steps=100_000, processes=2)
    spec = FineTuneSpec(base_model=model, lora=LoRAConfig(r=4, alpha=8), batch_size=2)
    job = await ft.submit(spec, Path(data))
    print(job.job_id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_ranks_stop_when_ste_dies(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The ranks' parent is the launcher, which outlives a killed ste: they watch ste's pid."""
    data = tmp_path / "sft.jsonl"
    finetuner(tmp_path).write_training_file(sft_examples(4), FineTuneMethod.SFT, data)
    owner = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", OWNER, str(tiny_model_dir), str(data), str(tmp_path / "jobs")],
        stdout=asyncio.subprocess.PIPE,
    )
    assert owner.stdout is not None
    job_id = (await owner.stdout.readline()).decode().strip()
    ft = finetuner(tmp_path)
    await wait_for(ft, job_id, lambda s: s.status.terminal or (s.step or 0) > 0)
    launcher = JobFiles(job_id).worker_pid()
    ranks = launch.rank_pids(Path(job_id))
    assert launcher is not None and len(ranks) == 2
    owner.kill()
    await owner.wait()
    state = await wait_for(ft, job_id, lambda s: s.status.terminal, limit_s=60)
    assert state.status is JobStatus.CANCELLED, (state.message, state.events)
    for _ in range(300):  # the launcher exits once its ranks have
        if not any(pid_alive(pid) for pid in [launcher, *ranks]):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the launcher or a rank outlived ste")
