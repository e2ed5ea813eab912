"""The separately packaged example plugin (examples/ste-plugin-example), installed like any
third-party distribution (CI pip-installs it), is found through entry-point metadata and works in
a pipeline stage."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from ste_core import Drop, Order, ResponsePair, SamplingParams
from ste_core.engine.scheduler import Scheduler
from ste_core.plugins import get_host
from ste_core.stages.judge import judge_pairs


@pytest.fixture(scope="module")
def example_installed() -> None:
    try:
        distribution("ste-plugin-example")
    except PackageNotFoundError:
        pytest.fail(
            "the example plugin is not installed: pip install ./examples/ste-plugin-example "
            "(.ci/run does this)"
        )


def test_discovered_through_entry_point_metadata(example_installed: None) -> None:
    # A fresh interpreter that never imports the plugin by path: only `ste backends` reading the
    # `ste` entry-point group can find it.
    ste = Path(sys.executable).with_name("ste")
    out = subprocess.run(
        [str(ste), "backends", "--json"], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)["backends"]}
    row = rows["example-rules"]
    assert row["distribution"] == "ste-plugin-example"
    assert row["version"] == distribution("ste-plugin-example").version
    assert row["plugin"] == "example"
    assert row["kinds"] == ["inference"] and row["installed"] is True
    assert row["capabilities"]["inference"]["max_n"] == 1
    # Installed as a distribution, not imported from the source tree.
    cls = get_host().backend("example-rules").inference
    assert cls is not None
    assert "site-packages" in (sys.modules[cls.__module__].__file__ or "")


async def test_a_pipeline_stage_runs_on_the_plugin_backend(example_installed: None) -> None:
    import ste_prompts

    backend = get_host().inference_backend("example-rules", rule="always-a")
    pairs = [
        ResponsePair(
            id=f"p{i}", instruction=f"question {i}", chosen=f"good {i}", rejected=f"bad {i}"
        )
        for i in range(5)
    ]
    results = [
        r
        async for r in judge_pairs(
            Scheduler(backend),
            pairs,
            model="anything",
            template=ste_prompts.get_template("judge_short"),
            params=SamplingParams(temperature=0.7, top_p=0.9, seed=1),
            samples_per_order=2,
        )
    ]
    assert not [r for r in results if isinstance(r, Drop)]
    # 5 pairs x 2 orders x 2 samples; the core split n=2 into two requests (max_n=1).
    assert len(results) == 20
    assert {r.verdict for r in results} == {"A"}
    correct = [r for r in results if r.verdict == r.order.correct_verdict]
    assert {r.order for r in correct} == {Order.AB} and len(correct) == 10


def test_its_options_are_typed_and_decide_the_cache_identity(example_installed: None) -> None:
    from ste_core import ConfigurationError
    from ste_core.plugins import inference_options

    cls = get_host().backend("example-rules").inference
    assert cls is not None
    assert cls.Options.result_option_names() == ["rule"]
    assert get_host().inference_backend("example-rules", rule="always-b").describe() == {
        "backend": "example-rules",
        "rule": "always-b",
    }
    with pytest.raises(ConfigurationError) as info:
        inference_options("example-rules", {"rule": "dice"}, where="judge.options")
    assert str(info.value) == (
        "judge.options.rule (example-rules option): got \"dice\"; must be one of 'coin', "
        "'always-a' or 'always-b'"
    )
