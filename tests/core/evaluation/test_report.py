"""write_report: files exist, HTML parses and embeds the charts, PNGs decode, crashed runs work;
the analysis comes first and the manifest last, collapsed; costs add up to the manifest's."""

from __future__ import annotations

import re
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ste_core.evaluation import write_report
from ste_core.evaluation.report import load_run
from tests.core.rundirs import make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def run_a(tmp_path: Path) -> Path:
    return make_run(tmp_path, "runA", [0.6, 0.75, 0.85, 0.8])


def test_single_run_report(run_a: Path) -> None:
    files = write_report([run_a])
    assert files.markdown == run_a / "report.md" and files.png == run_a / "accuracy.png"
    md = files.markdown.read_text()
    # overview row of the seed judge and the crashed iteration scored from eval.jsonl
    assert "| runA | 0 (seed) | seed-judge |" in md
    assert "| runA | 3 | judge-it3 |" in md
    assert "iteration 3: no metrics recorded (iteration unfinished or crashed?)" in md
    assert "eval accuracy computed from eval.jsonl" in md
    # paired tests, as stored with each judge's metrics: consecutive and against the seed; the
    # crashed iteration 3 has none (a test is computed once, when a judge's evaluation ends)
    assert "| 1 vs 0 (seed) | previous |" in md
    assert "| 2 vs 1 | previous |" in md and "| 2 vs 0 (seed) | seed |" in md
    assert "| 3 vs" not in md
    assert "iteration 3: no metrics recorded (iteration unfinished or crashed?); no paired" in md
    # funnel, usage, fine-tunes, RewardBench sections from the stored metrics; counts fallback
    assert "| 1 | 200 | 179 | 176 | 125 | 110 | parse_failure: 21, api_error: 1 |" in md
    assert "judge.correct: 70" in md
    assert "| 2 | ft-222 | succeeded | judge-it2 | ep-2 | – |" in md
    # the manifest's job with its endpoint and its cost
    assert "| 1 | ft-111 | succeeded | judge-it1 | ep-1 | $4.50 |" in md
    assert "| 1 | judge-it1 | ep-1 | 612.5 | $1.23 |" in md  # endpoints, with what they cost
    assert "| Chat | Chat Hard | Safety | Reasoning | final | weights |" in md

    width, height = png_size(files.png.read_bytes())  # type: ignore[union-attr]
    assert width > 800 and height > 300
    # The whole image decodes (every chunk, every pixel), and it is not a blank canvas.
    from PIL import Image

    with Image.open(files.png) as image:  # type: ignore[arg-type]
        image.load()
        assert image.size == (width, height)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 10

    html = files.html.read_text()
    parser = _Collector()
    parser.feed(html)
    parser.close()
    assert parser.tags.count("table") >= 5
    assert [p.name for p in files.charts] == ["accuracy.png", "funnel.png", "cost.png"]
    assert len(parser.imgs) == 3
    import base64

    for img, chart in zip(parser.imgs, files.charts, strict=True):
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")  # self-contained
        assert base64.b64decode(src.split(",", 1)[1]) == chart.read_bytes()
    assert "judge-it3" in "".join(parser.text)


def test_several_runs_side_by_side(tmp_path: Path, run_a: Path) -> None:
    run_b = make_run(tmp_path, "runB", [0.6, 0.65], crash_last=False)
    out = tmp_path / "cmp"
    files = write_report([run_a, run_b], out)
    md = files.markdown.read_text()
    assert files.markdown.parent == out
    assert "# ste report: runA, runB" in md
    assert "## Run runA" in md and "## Run runB" in md
    assert "| runB | 1 | judge-it1 |" in md
    png_size((out / "accuracy.png").read_bytes())
    assert "not evaluated on the same eval pairs" not in md  # both scored the same 60 pairs
    assert "| runB | ../runB | created | 60 pairs, #" in md  # the run folder, from the report's


def test_runs_on_different_eval_pairs_get_a_warning(tmp_path: Path, run_a: Path) -> None:
    run_b = make_run(tmp_path, "runB", [0.6, 0.65], crash_last=False, n_eval_pairs=50)
    files = write_report([run_a, run_b], tmp_path / "cmp")
    md = files.markdown.read_text()
    warning = next(line for line in md.splitlines() if "not evaluated on the same eval" in line)
    assert warning.startswith("> **Warning:**")
    assert "runA: 60 pairs, #" in warning and "runB: 50 pairs, #" in warning
    assert md.index(warning) < md.index("## Accuracy per judge")  # before the numbers it affects
    assert any("not evaluated on the same eval pairs" in n for n in files.notes)


def test_the_analysis_comes_first_and_the_manifest_last_collapsed(run_a: Path) -> None:
    files = write_report([run_a])
    md = files.markdown.read_text()
    order = [
        "## Accuracy per judge",
        "### Paired tests between iterations",
        "### Benchmarks",
        "### Data funnel per iteration",
        "### Cost, tokens and time",
        "## Manifest of run runA",
    ]
    positions = [md.index(h) for h in order]
    assert positions == sorted(positions)
    assert md.rstrip().endswith("| sessions | – |")  # the manifest closes the Markdown
    html = files.html.read_text()
    details = html.index("<details><summary>Manifest of run runA</summary>")
    assert "<details open" not in html  # collapsed
    assert html.index("cost.png") < details if "cost.png" in html else True
    assert html.index("Cost, tokens and time") < details < html.index("versions.ste")
    assert '"versions"' not in html and "{" not in md.split("## Manifest", 1)[1]  # no raw JSON


def test_per_stage_costs_add_up_to_the_manifest(run_a: Path) -> None:
    # The metrics' stage snapshot is taken while a judge is evaluated, so it lacks the evaluate
    # stage; the report reads each finished stage's own row and agrees with the manifest.
    from ste_core.engine.store import RunStore

    with RunStore.open_read_only(run_a / "store.sqlite") as store:
        manifest = store.manifest()
    assert manifest is not None
    md = write_report([run_a]).markdown.read_text()
    assert "| 0 (seed) | evaluate | 120 | 0 | 50,000 | 20,000 | 0.07 | 12 |" in md
    total = next(line for line in md.splitlines() if line.startswith("| all | total |"))
    cells = [c.strip() for c in total.strip("|").split("|")]
    assert cells[2] == f"{manifest.usage.requests:,}"
    assert float(cells[6]) == pytest.approx(manifest.cost_usd.inference)
    assert f"| inference (the stages below) | ${manifest.cost_usd.inference:,.2f} |" in md
    assert f"| dedicated endpoints | ${manifest.cost_usd.endpoints:,.2f} |" in md
    assert f"| total | ${manifest.cost_usd.total:,.2f} |" in md
    assert "differs from the manifest" not in md


def test_a_stage_total_that_disagrees_with_the_manifest_is_flagged(run_a: Path) -> None:
    from ste_core.engine.store import RunStore

    store = RunStore(run_a / "store.sqlite")
    manifest = store.manifest()
    assert manifest is not None
    manifest.add_cost("inference", 1.0)  # spent, but no finished stage recorded it
    store.save_manifest(manifest)
    store.close()
    md = write_report([run_a]).markdown.read_text()
    assert "The stages' inference cost ($1.99) differs from the manifest's ($2.99)" in md


def test_a_share_is_in_percent_in_column_and_note(run_a: Path) -> None:
    md = write_report([run_a]).markdown.read_text()
    assert "| A share % |" in md
    note = next(line for line in md.splitlines() if "A share:" in line)
    assert "in percent (50 = no position bias" in note and "0.5" not in note


def test_the_report_points_at_what_a_pip_user_has(run_a: Path) -> None:
    from typer.testing import CliRunner

    from ste_core.cli.app import app

    md = write_report([run_a]).markdown.read_text()
    assert "docs/" not in md
    assert "`ste report --help` says how each number is computed" in md
    help_text = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"}).output
    for term in ("Wilson", "McNemar", "Position consistency", "A share", "50 = no position"):
        assert term in help_text


def test_paths_are_relative_to_the_run_directory(run_a: Path) -> None:
    from ste_core.engine.store import RunStore

    store = RunStore(run_a / "store.sqlite")
    manifest = store.manifest()
    assert manifest is not None
    adapter = run_a.resolve() / "iter_1" / "adapter"
    manifest.models["judge"] = str(adapter)
    manifest.endpoints[0].model = str(adapter)
    store.save_manifest(manifest)
    store.close()
    files = write_report([run_a])
    for text in (files.markdown.read_text(), files.html.read_text()):
        assert str(run_a.resolve()) not in text and str(run_a) not in text
    md = files.markdown.read_text()
    assert "| models.judge | iter_1/adapter |" in md
    assert "| 1 | iter_1/adapter | ep-1 | 612.5 | $1.23 |" in md


def test_only_panels_with_intervals_promise_them(run_a: Path) -> None:
    import matplotlib.pyplot as plt

    from ste_core.evaluation.charts import accuracy_figure
    from ste_core.evaluation.report import load_run

    fig = accuracy_figure([load_run(run_a)])
    try:
        assert "interval" not in fig._suptitle.get_text() and "CI" not in fig._suptitle.get_text()
        titles = {ax.get_title(): ax for ax in fig.axes}
        assert len(titles) == 3  # eval, rewardbench, A share
        for title, ax in titles.items():
            has_bars = bool(ax.containers)  # errorbar containers: the intervals
            assert ("95% CI" in title) == has_bars, title
    finally:
        plt.close(fig)


def test_the_funnel_and_cost_charts_draw_what_the_run_recorded(run_a: Path) -> None:
    from ste_core.evaluation.charts import cost_by_iteration
    from ste_core.evaluation.report import load_run

    costs = cost_by_iteration(load_run(run_a))
    assert costs[1] == pytest.approx(
        {"baseline": 0.11, "judge": 0.52, "evaluate": 0.07, "fine-tune": 4.5, "endpoints": 1.23}
    )
    assert costs[0] == pytest.approx({"evaluate": 0.07})
    files = write_report([run_a])
    for chart in files.charts:
        width, height = png_size(chart.read_bytes())
        assert width > 600 and height > 300


def test_empty_and_broken_runs_still_get_a_report(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    # A run directory of ste 0.1 (state in its exports), with both files broken.
    broken = tmp_path / "broken"
    (broken / "iter_1").mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    (broken / "iter_1" / "metrics.json").write_text('{"eval": {"accuracy": "high"}}')
    (broken / "iter_1" / "eval.jsonl").write_text(
        '{"pair_id": "x", "text": "[[A]]", "order": "AB"}\n'
    )
    files = write_report([empty, broken], tmp_path / "out")
    md = files.markdown.read_text()
    assert "store.sqlite missing" in md and "no judge evaluated yet" in md
    assert "manifest.json could not be read" in md
    assert "iter_1/metrics.json is not valid metrics" in md
    assert "eval_pairs.jsonl missing" in md
    assert files.png is not None


def test_a_version_1_run_directory_is_read_from_its_exports(tmp_path: Path, run_a: Path) -> None:
    # ste 0.1 kept manifest and metrics in its exports only: turn run_a into such a directory.
    from ste_core.engine.store import RunStore

    with RunStore.open_read_only(run_a / "store.sqlite") as store:
        manifest, metrics = store.manifest(), store.metrics()
    assert manifest is not None
    (run_a / "manifest.json").write_text(manifest.model_dump_json())
    for j, m in metrics.items():
        (run_a / f"iter_{j}" / "metrics.json").write_text(m.model_dump_json())
    (run_a / "store.sqlite").unlink()
    run = load_run(run_a)
    assert [it.eval_source for it in run.iterations][:3] == ["run store"] * 3
    assert run.iterations[2].metrics == metrics[2]
    assert run.manifest is not None and run.manifest.finetune_jobs[0].job_id == "ft-111"


def test_without_matplotlib_the_report_says_so(
    run_a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    files = write_report([run_a])
    assert files.png is None
    md = files.markdown.read_text()
    assert "matplotlib is not installed" in md
    assert "<img" not in files.html.read_text()
    assert files.charts == ()


def test_load_run_reads_metrics_eval_without_rescoring(run_a: Path) -> None:
    run = load_run(run_a)
    assert [it.index for it in run.iterations] == [0, 1, 2, 3]
    assert [it.eval_source for it in run.iterations][:3] == ["run store"] * 3
    assert run.iterations[1].benchmarks["rewardbench"].rewardbench is not None


def test_a_real_runs_stage_table_adds_up_to_its_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two iterations of the loop on the scripted backends: every stage that ran (evaluate and
    benchmark included) is in the table, and its totals are the manifest's."""
    import asyncio

    from ste_core.engine.store import RunStore
    from ste_core.pipeline import Pipeline
    from ste_core.plugins import get_host, reset_host
    from tests.core.helpers import _Plugin, config_with

    monkeypatch.setenv("STE_PLUGINS", "")
    reset_host()
    get_host().register_plugin(_Plugin(), name="scripted-test")
    try:
        result = asyncio.run(Pipeline(config_with(tmp_path)).run())
    finally:
        reset_host()
    assert result.status == "succeeded"
    with RunStore.open_read_only(result.run_dir / "store.sqlite") as store:
        manifest = store.manifest()
    assert manifest is not None and manifest.usage.requests > 0
    md = write_report([result.run_dir]).markdown.read_text()
    stage_rows = [line for line in md.splitlines() if re.match(r"\| (\d|0 \(seed\)) .*\| ", line)]
    assert any("| evaluate |" in line for line in stage_rows)
    total = next(line for line in md.splitlines() if line.startswith("| all | total |"))
    cells = [c.strip() for c in total.strip("|").split("|")]
    assert cells[2:6] == [
        f"{manifest.usage.requests:,}",
        f"{manifest.usage.cache_hits:,}",
        f"{manifest.usage.prompt_tokens:,}",
        f"{manifest.usage.completion_tokens:,}",
    ]
    assert f"| total | ${manifest.cost_usd.total:,.2f} |" in md
