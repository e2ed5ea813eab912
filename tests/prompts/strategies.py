"""What the property tests (hypothesis) of templates and parsers share: their settings and
hostile text (`from tests.prompts.strategies import SETTINGS, hostile_text`)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Fragments that break naive templating: format/Template/jinja syntax, regex replacement
# escapes, our own placeholders and escape, verdict markers and every section heading.
HOSTILE = [
    "{",
    "}",
    "{}",
    "{0}",
    "{instruction}",
    "{{instruction}}",
    "{response_a}",
    "{response_b}",
    "{baseline_response}",
    "{categories}",
    "{{",
    "}}",
    "$",
    "$instruction",
    "${instruction}",
    "{{ jinja }}",
    "{% if x %}",
    "{# c #}",
    "%s",
    "%(instruction)s",
    "\\",
    "\\1",
    "\\g<0>",
    "\\n",
    "[[A]]",
    "[[B]]",
    "[[C]]",
    "[User Question]",
    "[The End of Assistant A's Answer]",
    "### Modified instruction",
    "### Response to the modified instruction",
    "### End of response",
    "Category: math",
    "Difficulty: hard",
    "```",
    "\n",
    "\r\n",
    "\t",
    " ",
    "é",
    "😀",
    "\u2028",
]
hostile_text = (
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=8)), max_size=12)
    .map("".join)
    .filter(lambda s: "\x00" not in s)
)
