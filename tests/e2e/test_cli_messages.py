"""What a user sees when `ste run` cannot start: the `ste` console script in a subprocess, its
exit code and its one message (issue 16's measured defects, one test each where the unit tests
do not already run the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ste_core.config import dumps_toml
from tests.conftest import closed_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STE = [str(Path(sys.executable).with_name("ste"))]


def _ste(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STE_", "HF_", "TRANSFORMERS_", "HTTPS_PROXY", "https_proxy"))
    }
    return subprocess.run(
        [*STE, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=100,
        cwd=cwd,
    )


def _local_config(tmp: Path, model: str, data: dict[str, Any]) -> Path:
    cfg = {
        "run": {"name": "hub", "output_dir": "runs", "iterations": 1},
        "data": data,
        "generator": {"backend": "local", "model": model, "options": {"device": "cpu"}},
        "judge": {"backend": "local", "model": model, "options": {"device": "cpu"}},
        "finetune": {"backend": "local", "options": {"device": "cpu"}},
        "evaluation": {"eval_size": 2},
    }
    path = tmp / "hub.toml"
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    rows = "".join(f'{{"instruction": "Name the number after {i}."}}\n' for i in range(20))
    (tmp / "instructions.jsonl").write_text(rows, "utf-8")
    return path


def _one_message(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_a_run_directory_given_as_the_config_names_its_config_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text("", "utf-8")
    err = _one_message(_ste("run", "runs/r1", cwd=tmp_path))
    assert f"{run_dir} is a directory; give a config file: this run's is {run_dir}/config.toml" in (
        err
    )


def test_an_unreachable_hub_model_fails_in_seconds_saying_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    config = _local_config(tmp_path, "ste-test/not-downloaded", {"path": "instructions.jsonl"})
    start = time.monotonic()
    err = _one_message(_ste("run", str(config), cwd=tmp_path, HF_ENDPOINT=endpoint))
    # huggingface_hub's own retries took 51 s per model here before the same failure.
    assert time.monotonic() - start < 30
    assert f"the Hugging Face Hub ({endpoint}) cannot be reached" in err
    assert "hf download ste-test/not-downloaded" in err and "HF_HUB_OFFLINE=1" in err
    assert f"run directory: {tmp_path / 'runs' / 'hub'}" in err


def test_an_unreachable_hub_dataset_fails_in_seconds_saying_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    config = _local_config(tmp_path, "ste-test/model", {"dataset": "ste-test/instructions"})
    start = time.monotonic()
    err = _one_message(_ste("run", str(config), cwd=tmp_path, HF_ENDPOINT=endpoint))
    assert time.monotonic() - start < 30  # 25 s of datasets' retries before
    assert "data.dataset: could not read 'ste-test/instructions'" in err
    assert f"{endpoint} cannot be reached" in err
    assert "hf download --repo-type dataset ste-test/instructions" in err
