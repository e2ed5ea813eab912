"""The instruction categories and difficulty levels used by the `classify_category` template.

The paper kept a balanced, harder subset of WildChat instructions after an LLM classified them;
"reasoning" helped most. These eight categories cover typical chat traffic coarsely enough that a
model can choose reliably; "other" catches the rest. Pass your own list to the template
(`categories=format_categories(mine)`) and the same list to `parse_category`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["DEFAULT_CATEGORIES", "DIFFICULTIES", "format_categories"]

DEFAULT_CATEGORIES: Mapping[str, str] = {
    "reasoning": "logic puzzles, multi-step inference, analysis and planning problems",
    "math": "calculations, word problems, proofs and statistics",
    "coding": "writing, debugging, reviewing or explaining code",
    "writing": "creative or professional writing, editing, summarising and translating",
    "knowledge": "factual questions and explanations of concepts",
    "advice": "recommendations and guidance on personal, professional or practical matters",
    "roleplay": "playing a character or persona, games and interactive fiction",
    "other": "anything that fits none of the categories above",
}

DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")


def format_categories(categories: Mapping[str, str] | Iterable[str]) -> str:
    """The category list as the template shows it: one `- name: description` line each (or
    `- name` when given bare names)."""
    if isinstance(categories, Mapping):
        lines = [f"- {name}: {desc}" if desc else f"- {name}" for name, desc in categories.items()]
    else:
        lines = [f"- {name}" for name in categories]
    if not lines:
        raise ValueError("at least one category is needed")
    return "\n".join(lines)
