"""Every cassette in the repository is free of secrets (keys, bearer tokens, signatures)."""

from __future__ import annotations

from pathlib import Path

from ste_core.testing.cassettes import audit_cassettes

ROOT = Path(__file__).resolve().parents[2]


def all_cassettes() -> list[Path]:
    return sorted(
        p
        for p in (ROOT / "tests").rglob("*")
        if p.is_file() and "cassettes" in p.parts and p.suffix in (".yaml", ".yml", ".json")
    )


def test_there_are_cassettes_to_audit():
    together = [p for p in all_cassettes() if "together" in p.parts]
    assert len(together) >= 20, "the Together cassettes are missing"


def test_no_cassette_holds_a_secret():
    leaks = audit_cassettes(all_cassettes())
    assert leaks == {}, "secrets in cassettes:\n" + "\n".join(
        f"{p.relative_to(ROOT)}: {', '.join(kinds)}" for p, kinds in leaks.items()
    )


def test_no_cassette_holds_a_loopback_port():
    # The fake provider's random port would make every re-recording a diff.
    offenders = [p for p in all_cassettes() if "127.0.0.1:" in p.read_text(errors="replace")]
    assert offenders == []
