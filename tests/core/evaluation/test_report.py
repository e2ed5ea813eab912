"""write_report: files exist, HTML parses and embeds the PNG, PNG decodes, crashed runs work."""

from __future__ import annotations

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
    # paired tests: consecutive and against the seed
    assert "| 1 vs 0 (seed) | previous |" in md
    assert "| 3 vs 2 | previous |" in md
    assert "| 3 vs 0 (seed) | seed |" in md
    # funnel, usage, fine-tunes, RewardBench sections from the stored metrics; counts fallback
    assert "| 1 | 200 | 179 | 176 | 125 | 110 | parse_failure: 21, api_error: 1 |" in md
    assert "judge.correct: 70" in md
    assert "| all | total | 1,120 | 8 | 860,000 | 580,000 | 1.26 | 323 |" in md
    assert "| 2 | ft-222 | succeeded | judge-it2 | ep-2 |" in md
    assert "| 1 | ft-111 | succeeded | judge-it1 | ep-1 |" in md  # manifest job + its endpoint
    assert "| 1 | judge-it1 | ep-1 | 612.5 |" in md  # endpoints as a table
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
    assert len(parser.imgs) == 1
    src = parser.imgs[0]["src"] or ""
    assert src.startswith("data:image/png;base64,")  # self-contained
    import base64

    assert base64.b64decode(src.split(",", 1)[1]) == files.png.read_bytes()  # type: ignore[union-attr]
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


def test_load_run_reads_metrics_eval_without_rescoring(run_a: Path) -> None:
    run = load_run(run_a)
    assert [it.index for it in run.iterations] == [0, 1, 2, 3]
    assert [it.eval_source for it in run.iterations][:3] == ["run store"] * 3
    assert run.iterations[1].benchmarks["rewardbench"].rewardbench is not None
