"""The public surface: what `ste_core` exports resolves, importing it stays cheap, and the
README and the user-facing docs import only public names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import ste_core

ROOT = Path(__file__).resolve().parents[2]
#: Modules a user may import: the curated API, the evaluation library, the test utilities.
PUBLIC = {
    "ste_core",
    "ste_core.evaluation",
    "ste_core.testing.fake_provider",
    "ste_core.testing.cassettes",
}
#: Pages that document internals on purpose, and say so at the top.
INTERNAL_PAGES = {"docs/machinery.md"}
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "examples" / "ste-plugin-example" / "README.md",
]


@pytest.mark.parametrize("name", ste_core.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(ste_core, name) is not None


def test_importing_ste_core_does_not_load_the_loop() -> None:
    code = (
        "import sys, ste_core; "
        "print(sorted(m for m in ('ste_core.pipeline', 'ste_core.stages', 'ste_core.config', "
        "'torch', 'litellm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _imports(doc: Path) -> list[tuple[str, str]]:
    text = doc.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        for module in re.findall(r"^\s*(?:from|import)\s+(ste_core[\w.]*)", block, re.M):
            found.append((str(doc.relative_to(ROOT)), module))
    return found


def test_the_user_facing_documents_import_only_public_names() -> None:
    seen = [imp for doc in DOCUMENTS for imp in _imports(doc)]
    assert len(seen) >= 8  # the documents do show code
    private = [
        (doc, module) for doc, module in seen if doc not in INTERNAL_PAGES and module not in PUBLIC
    ]
    assert not private, f"documents that teach internal imports: {private}"
    for page in INTERNAL_PAGES:
        assert "internal" in (ROOT / page).read_text(encoding="utf-8")[:600]
