"""`ste demo` end to end, as a new user runs it: offline, in a subprocess, from an empty cache.

The time it takes is printed (run pytest with -s to see it), never asserted: it depends on the
machine. The second demo must reuse the cached model and the finished run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.local_model, pytest.mark.timeout(400)]

STE = str(Path(sys.executable).with_name("ste"))


def _demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STE_")}
    env |= {"STE_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run(
        [STE, "demo", *args], env=env, capture_output=True, text=True, timeout=380, cwd=tmp_path
    )
    return proc, time.perf_counter() - started


def test_ste_demo_runs_the_whole_loop_offline_and_says_where_it_is(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    proc, seconds = _demo(tmp_path)
    print(f"\nste demo, first run (model built, loop): {seconds:.1f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ste-demo" / "runs" / "demo"  # --out defaults to ./ste-demo
    for iteration in (0, 1):  # the seed judge M0 and the fine-tuned M1, on the same pairs
        metrics = json.loads((run / f"iter_{iteration}" / "metrics.json").read_text())
        assert metrics["eval"]["n_items"] == 3 and metrics["eval"]["n_judgements"] == 6
    funnel = json.loads((run / "iter_1" / "metrics.json").read_text())["funnel"]
    assert funnel["judged"] == 2 * 2 * funnel["pairs"] and funnel["sft_examples"] > 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert [job["status"] for job in manifest["finetune_jobs"]] == ["succeeded"]
    for report in ("report.md", "report.html", "summary.md"):
        assert (run / report).is_file(), report
    assert "building the demo model in " + str(tmp_path / "cache" / "demo-model") in proc.stdout
    assert f"run directory: {run}" in proc.stdout
    assert str(run / "report.html") in proc.stdout
    assert f"ste view {run}" in proc.stdout
    assert "demo finished in " in proc.stdout

    again, seconds = _demo(tmp_path)
    print(f"ste demo, second run (cached model, finished run): {seconds:.1f} s")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "building" not in again.stdout and "reused the cached model" in again.stdout
    assert f"ste view {run}" in again.stdout
