"""A real run to view, built once per test module: two iterations of the loop on the scripted
backends (training pairs judged with 3 samples per order, ~10% of answers without a verdict),
with a small labelled benchmark of two subsets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ste_core.pipeline import Pipeline
from ste_core.plugins import get_host, reset_host
from tests.core.helpers import _Plugin, config_with


def build_run(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    bench = tmp / "rb.jsonl"
    rows = [
        {
            "prompt": f"Q{i}: name a prime number",
            "chosen": f"{[2, 3, 5, 7][i % 4]} is prime",
            "rejected": f"{4 + 2 * i} is prime",
            "subset": "math-prm" if i % 2 else "refusals-dangerous",
            "id": i,
        }
        for i in range(6)
    ]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config_with(tmp, **{"evaluation.benchmarks": [{"name": "rb", "path": str(bench)}]})
    result = asyncio.run(Pipeline(cfg).run())
    assert result.status == "succeeded"
    return result.run_dir


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run (read-only for the tests: copy it before changing it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STE_PLUGINS", "")
        reset_host()
        get_host().register_plugin(_Plugin(), name="scripted-test")
        try:
            run = build_run(tmp_path_factory.mktemp("view"))
        finally:
            reset_host()
    yield run
