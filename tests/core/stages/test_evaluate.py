"""The evaluate stage (ste_core.stages.evaluate) on the scripted backends: failed requests are
errors beside the accuracy, never part of it; too many fail the stage, which a re-run retries;
the paired tests are computed once and every export reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ste_core.engine.store import RunStore
from ste_core.errors import EvaluationFailed, PermanentProviderError
from ste_core.evaluation import write_report
from ste_core.pipeline import Pipeline
from ste_core.records import ChatRequest, ResponsePair
from ste_core.run.io import read_rows
from ste_core.run.progress import Reporter
from tests.core.helpers import ScriptedInference, config_with

FINE_TUNED = "judge-acc70-ft1"


class Warnings(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def warning(self, message: str) -> None:
        self.seen.append(message)


def _refuse_fine_tuned(request: ChatRequest) -> BaseException | None:
    # A fine-tuned model that is not deployed: the provider answers 400, for every request.
    if request.model.split("@", 1)[0] == FINE_TUNED:
        return PermanentProviderError(
            "model not available on serverless; deploy a dedicated endpoint",
            provider="scripted",
            status=400,
        )
    return None


async def test_a_judge_whose_every_request_fails_has_no_accuracy_and_fails_the_run(
    tmp_path: Path, scripted: type[ScriptedInference]
) -> None:
    # 8 eval pairs x 2 orders = 16 failures: under the scheduler's own stop (20 failures)
    config = config_with(tmp_path, **{"run.iterations": 1, "evaluation.eval_size": 8})
    scripted.refuse = _refuse_fine_tuned
    with pytest.raises(EvaluationFailed) as caught:
        await Pipeline(config).run()
    message = str(caught.value)
    eval_file = (config.run_dir / "iter_1" / "eval.jsonl").absolute()
    n = len(list(read_rows(config.run_dir / "eval_pairs.jsonl", ResponsePair)))
    assert f"evaluation of judge 1 ({FINE_TUNED}): {n} of {n} items could not be scored" in message
    assert f"{2 * n} failed requests" in message
    assert "The first error: PermanentProviderError: [scripted 400] model not avail" in message
    assert str(eval_file) in message and "run the same command again" in message
    with RunStore.open_read_only(config.run_dir / "store.sqlite") as store:
        assert not store.stage_done(1, "evaluate")  # so that a re-run retries it
        assert set(store.metrics()) == {0}  # no accuracy, no paired test for judge 1
    assert not (config.run_dir / "iter_1" / "metrics.json").exists()
    summary = (config.run_dir / "summary.md").read_text()
    assert "| 1 |" not in summary and "| 0 |" in summary

    # The cause fixed (the model now answers), the same command resumes and scores it.
    scripted.refuse = None
    result = await Pipeline(config).run()
    assert result.status == "succeeded"
    m1 = result.metrics[1]
    assert m1.eval.accuracy is not None and m1.eval.error_count == 0
    assert m1.paired["vs_previous"].against_iteration == 0


async def test_a_few_failed_items_are_left_out_and_counted(
    tmp_path: Path, scripted: type[ScriptedInference]
) -> None:
    config = config_with(tmp_path, **{"run.iterations": 1, "evaluation.max_error_rate": 0.2})
    failed = ""

    def refuse_one_item(request: ChatRequest) -> BaseException | None:
        nonlocal failed
        if request.model.split("@", 1)[0] != FINE_TUNED or request.metadata["order"] != "BA":
            return None
        if not failed:  # the first eval pair, whatever order the requests arrive in
            failed = min(p.id for p in read_rows(config.run_dir / "eval_pairs.jsonl", ResponsePair))
        if request.metadata["pair_id"] == failed:
            return PermanentProviderError("bad request", provider="scripted", status=400)
        return None

    scripted.refuse = refuse_one_item
    reporter = Warnings()
    result = await Pipeline(config, reporter=reporter).run()
    e = result.metrics[1].eval
    n = len(list(read_rows(config.run_dir / "eval_pairs.jsonl", ResponsePair)))
    assert n >= 5  # 10 eval instructions, less the generator's parse failures
    assert (e.error_count, e.request_errors, e.n_items, e.n_scored) == (1, 1, n, n - 1)
    assert failed not in e.item_scores and len(e.item_scores) == n - 1
    assert e.accuracy == pytest.approx(sum(e.item_scores.values()) / (n - 1))
    assert e.first_error is not None and "400" in e.first_error
    warning = next(w for w in reporter.seen if "evaluation of judge 1" in w)
    assert f"1 error of {n} items (1 failed request)" in warning
    assert str((config.run_dir / "iter_1" / "eval.jsonl").absolute()) in warning
    # the count beside the accuracy, in every export
    summary = (config.run_dir / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| 1 |"))
    assert f"| {100 * e.accuracy:.1f}% |" in row and f"| {n - 1} | 1 of {n} |" in row
    metrics = json.loads((config.run_dir / "iter_1" / "metrics.json").read_text())
    assert metrics["eval"]["error_count"] == 1 and metrics["eval"]["n_scored"] == n - 1
    md = write_report([config.run_dir]).markdown.read_text()
    acc = rf"{100 * e.accuracy:.1f} \[[\d.]+, [\d.]+\]"
    assert re.search(rf"\| 1 \| judge-acc70-ft1 \| {acc} \| {n - 1} \| 1 of {n} \|", md)


async def test_paired_tests_are_computed_once_and_read_by_every_export(
    tmp_path: Path, scripted: type[ScriptedInference]
) -> None:
    config = config_with(tmp_path)  # run.seed = 3, two iterations
    assert config.run.seed == 3
    result = await Pipeline(config).run()
    for j, key in ((1, "vs_previous"), (2, "vs_previous"), (2, "vs_seed")):
        stored = result.metrics[j].paired[key]
        assert stored.seed == 3
        exported = json.loads((config.run_dir / f"iter_{j}" / "metrics.json").read_text())
        assert exported["paired"][key]["p_value"] == stored.p_value
        cell = f"{100 * stored.difference:+.1f} pts (p={stored.p_value:.3g})"
        summary_row = next(
            line
            for line in (config.run_dir / "summary.md").read_text().splitlines()
            if line.startswith(f"| {j} |")
        )
        assert cell in summary_row
        md = write_report([config.run_dir]).markdown.read_text()
        against = "0 (seed)" if stored.against_iteration == 0 else str(stored.against_iteration)
        report_row = next(line for line in md.splitlines() if f"| {j} vs {against} |" in line)
        assert f"| {stored.p_value:.3g} |" in report_row
        assert f"{100 * stored.difference:+.1f} [" in report_row


async def test_a_benchmark_whose_requests_fail_fails_its_stage(
    tmp_path: Path, scripted: type[ScriptedInference]
) -> None:
    rows = [
        {"id": f"rb{i}", "prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(4)
    ]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = config_with(
        tmp_path,
        **{"run.iterations": 1, "evaluation.benchmarks": [{"name": "rb", "path": str(bench)}]},
    )

    def refuse_the_benchmark(request: ChatRequest) -> BaseException | None:
        if str(request.metadata.get("pair_id", "")).startswith("rb"):
            return PermanentProviderError("bad request", provider="scripted", status=400)
        return None

    scripted.refuse = refuse_the_benchmark
    with pytest.raises(EvaluationFailed, match=r"benchmark rb of judge 0 \(judge-acc70\): 4 of 4"):
        await Pipeline(config).run()
    with RunStore.open_read_only(config.run_dir / "store.sqlite") as store:
        assert store.stage_done(0, "evaluate") and not store.stage_done(0, "benchmark")
        assert store.metrics()[0].benchmarks == {}  # no score made of failures
