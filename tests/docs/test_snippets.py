"""The Python in README.md, docs/*.md and the example plugin's README runs as written.

Each Markdown file's ```python blocks are one of three things:

- an **excerpt** of a file: its first line is `# PATH` of a file of this repository (relative to
  the Markdown file or to the repository's root); it must appear verbatim in that file, so the
  guide never drifts from the code;
- a **fragment** listed in FRAGMENTS with the reason it cannot run alone (it names objects the
  text around it defines, or it is a test for the reader's own suite): it must compile (top-level
  `await` allowed, as in a notebook) and its imports must work;
- otherwise a **program**: a file's programs run in order, as one script, in a fresh folder
  that holds what they read, against the scripted backends (a run), the fake provider (an
  OpenAI-compatible server on 127.0.0.1) or the installed example plugin.

A new block that is none of these fails `test_every_block_is_classified` until it runs or is
listed with its reason.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.core.helpers import _Plugin, base_config, write_config
from tests.core.rundirs import eval_pairs, judge

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "examples" / "ste-plugin-example" / "README.md",
]
_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.M | re.S)

#: (document, first line of the block): why it does not run alone
FRAGMENTS = {
    ("docs/machinery.md", "from ste_core.engine.limits import Limits"): (
        "reference excerpt: `backend`, `requests` and `request` stand for the reader's own"
    ),
    ("docs/machinery.md", "from ste_core.engine.retry import RetryPolicy"): (
        "reference excerpt: `error` and `backend` stand for the reader's own"
    ),
    ("docs/machinery.md", "from ste_core.engine.budget import estimate_request_tokens"): (
        "reference excerpt: `requests` and `budget` stand for the reader's own"
    ),
    ("docs/pipeline.md", "from ste_core import Pipeline, run"): (
        "an API tour in notebook form: `my.toml` is the reader's config, and `run()` blocks "
        "while the awaited calls need the notebook's event loop"
    ),
    ("docs/together.md", "import pytest"): (
        "a test for the reader's own suite: runs under pytest with a recorded cassette"
    ),
}


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    code: str

    @property
    def doc(self) -> str:
        return self.document.relative_to(ROOT).as_posix()

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code.strip() else ""

    @property
    def excerpt_of(self) -> Path | None:
        found = re.fullmatch(r"# ([\w./-]+\.py)", self.first_line)
        if found is None:
            return None
        # A path that names no file is a file the reader writes (`my_package/plugin.py`): a
        # program. A wrong path to a real file would not run as one either.
        near, top = self.document.parent / found.group(1), ROOT / found.group(1)
        return near if near.exists() else top if top.exists() else None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(document: Path) -> list[Block]:
    text = document.read_text(encoding="utf-8")
    return [
        Block(document, text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(2)))
        for m in _BLOCK.finditer(text)
    ]


ALL = [b for d in DOCUMENTS for b in blocks(d)]


def _kind(block: Block) -> str:
    if block.excerpt_of is not None:
        return "excerpt"
    return "fragment" if (block.doc, block.first_line) in FRAGMENTS else "program"


def test_every_block_is_classified() -> None:
    assert len(ALL) >= 15, "the documents' Python blocks were found"
    listed = set(FRAGMENTS)
    present = {(b.doc, b.first_line) for b in ALL}
    assert listed <= present, f"FRAGMENTS lists blocks that are gone: {listed - present}"
    programs = {b.doc for b in ALL if _kind(b) == "program"}
    assert programs <= set(SETUPS), f"no setup for the programs of {programs - set(SETUPS)}"


@pytest.mark.parametrize("block", [b for b in ALL if _kind(b) == "excerpt"], ids=str)
def test_excerpts_are_verbatim(block: Block) -> None:
    source = block.excerpt_of
    assert source is not None
    body = block.code.split("\n", 1)[1]
    assert body.strip() and body in source.read_text(encoding="utf-8"), (
        f"{block} is not a verbatim excerpt of {source.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("block", [b for b in ALL if _kind(b) == "fragment"], ids=str)
def test_fragments_compile_and_import(block: Block) -> None:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = compile(block.code, str(block), "exec", flags)
    assert isinstance(tree, ast.Module)
    imports = ast.Module(
        body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[]
    )
    assert imports.body, f"{block}: a fragment shows where its names come from"
    exec(compile(imports, str(block), "exec"), {})


# --------------------------------------------------------------------------------------------
# Programs: what each document's folder holds before its blocks run
# --------------------------------------------------------------------------------------------


@dataclass
class Folder:
    path: Path
    monkeypatch: pytest.MonkeyPatch
    #: (written, replaced by): text of a block the test must point elsewhere
    rewrites: list[tuple[str, str]]


def _readme(folder: Folder) -> Iterator[None]:
    # examples/quickstart.toml, with the scripted backends (no model download): the library
    # snippet runs the loop for real, in a few seconds.
    from ste_core.plugins import get_host, reset_host
    from ste_core.testing.fake_provider import FakeProvider

    (folder.path / "examples").mkdir()
    data = base_config(folder.path / "examples", n=24)
    data["run"]["output_dir"] = str(folder.path / "runs")
    write_config(folder.path / "examples", data, "quickstart.toml")
    reset_host()  # the installed plugins (openai among them), and the scripted backends:
    get_host().register_plugin(_Plugin(), name="scripted-test")
    # The README's OpenAI-compatible server: the fake provider, on a free port.
    with FakeProvider() as fake:
        folder.rewrites.append(("http://localhost:8000/v1", fake.url + "/v1"))
        folder.monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
        try:
            yield
        finally:
            reset_host()


def _evaluation(folder: Folder) -> Iterator[None]:
    from ste_core.evaluation import write_judgements
    from ste_core.run.io import write_jsonl

    pairs = eval_pairs(80)
    write_jsonl(folder.path / "rewardbench.jsonl", pairs)
    write_judgements(folder.path / "seed.jsonl", judge(pairs, 0.6, seed=1, model="seed"))
    write_judgements(folder.path / "it1.jsonl", judge(pairs, 0.8, seed=2, model="it1"))
    yield


def _nothing(folder: Folder) -> Iterator[None]:
    yield


SETUPS: dict[str, Callable[[Folder], Iterator[None]]] = {
    "README.md": _readme,
    "docs/evaluation.md": _evaluation,
    "docs/machinery.md": _nothing,
    "docs/pipeline.md": _nothing,
    "docs/plugins.md": _nothing,
    "examples/ste-plugin-example/README.md": _nothing,
}


@pytest.mark.parametrize("document", sorted({b.doc for b in ALL if _kind(b) == "program"}), ids=str)
def test_programs_run_as_written(
    document: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("ste_plugin_example", reason="pip install ./examples/ste-plugin-example")
    programs = [b for b in ALL if b.doc == document and _kind(b) == "program"]
    folder = Folder(tmp_path, monkeypatch, [])
    monkeypatch.chdir(tmp_path)
    setup = SETUPS[document](folder)
    next(setup)
    try:
        namespace: dict[str, object] = {"__name__": "__main__"}
        for block in programs:
            code = block.code
            for written, replaced in folder.rewrites:
                code = code.replace(written, replaced)
            # A script, not a notebook: top-level `await` would be a SyntaxError here.
            exec(compile(code, str(block), "exec", dont_inherit=True), namespace)
    finally:
        setup.close()
    out = capsys.readouterr().out
    for expected in PRINTS.get(document, ()):
        assert re.search(expected, out), f"{document}: {expected!r} not in its output:\n{out}"


#: what the documents' programs print (a run's judgements and score, a completion's texts)
PRINTS = {
    # the library snippet: one line per judgement of iteration 1, then M_1's eval score; then
    # the n=4 texts the fake provider's scripted model wrote
    "README.md": (r"\n\S+ (AB|BA) [AB]\n", r"% \[[\d.]+, [\d.]+\] \(n=\d+", r"(?m)^\('.*', .*\)$"),
    "docs/evaluation.md": (r"[+-]\d+\.\d pts \[",),
    "docs/plugins.md": ("A coin decides", "deleted endpoint ep-1"),
    "docs/pipeline.md": (r"AnswerCheck\(status='correct', answer='B'\)",),
}
