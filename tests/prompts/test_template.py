"""ste_prompts templates (ste_prompts.template): the shipped files, loading, validation,
rendering, and property tests (hypothesis) that hostile content renders verbatim."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ste_prompts
from ste_prompts import (
    DEFAULT_CATEGORIES,
    PARSERS,
    CategoryResult,
    ParseFailure,
    Template,
    TemplateError,
    WorseResponse,
    builtin_templates,
    format_categories,
    format_worse_response,
    get_parser,
    get_template,
    load_template,
    loads_template,
    parse_category,
    parse_verdict,
    parse_worse_response,
    placeholders,
)
from tests.prompts.strategies import SETTINGS, hostile_text

JUDGE_VARS = ("instruction", "response_a", "response_b")
EXPECTED = {
    "worse_response": ("worse_response", ("instruction", "baseline_response"), "worse_response"),
    "judge_eval_plan": ("judge", JUDGE_VARS, "verdict"),
    "judge_short": ("judge", JUDGE_VARS, "verdict"),
    "judge_meta_rewardbench": ("judge", JUDGE_VARS, "verdict"),
    "classify_category": ("classifier", ("instruction",), "category"),
    "judge_plan_execute": ("judge", JUDGE_VARS, "plan_execute"),
    "solve": ("solve", ("problem",), "final_answer"),
    "judge_rank_four": (
        "judge_ranking",
        ("instruction", "response_a", "response_b", "response_c", "response_d"),
        "ranking",
    ),
    "judge_rate": ("judge_rating", ("instruction", "response"), "rating"),
}

VALID = """\
name = "mine"
purpose = "judge"
version = 2
description = "A test template."
variables = ["instruction", "response_a", "response_b"]
parser = "verdict"
system = "Be fair."
user = '''Q: {instruction}
A: {response_a}
B: {response_b}
Answer [[A]] or [[B]].'''
"""


def _values(t: Template, **extra: str) -> dict[str, str]:
    return {v: f"<value of {v}>" for v in t.variables} | extra


def _write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------
# The shipped templates
# ------------------------------------------------------------------------------------------


def test_builtin_names_and_metadata():
    ts = builtin_templates()
    assert set(ts) == set(EXPECTED)
    for name, (purpose, variables, parser) in EXPECTED.items():
        t = ts[name]
        assert (t.name, t.purpose, t.variables, t.parser) == (name, purpose, variables, parser)
        assert t.version >= 1 and isinstance(t.version, int)
        assert t.description.strip()
        assert t.source == "<builtin>"
        assert t.parser in PARSERS


def test_builtin_file_names_match_template_names():
    folder = resources.files("ste_prompts").joinpath("templates")
    stems = sorted(
        e.name.removesuffix(".toml") for e in folder.iterdir() if e.name.endswith(".toml")
    )
    assert stems == sorted(EXPECTED)


def test_builtin_templates_returns_fresh_dict():
    a = builtin_templates()
    a.pop("judge_short")
    assert "judge_short" in builtin_templates()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_builtin_renders_every_value(name):
    t = get_template(name)
    values = _values(t)
    msgs = t.render(**values)
    assert [m["role"] for m in msgs] == (["system", "user"] if t.system else ["user"])
    joined = "\n".join(m["content"] for m in msgs)
    for v in values.values():
        assert v in joined
    assert not placeholders(joined), "a placeholder survived rendering"


@pytest.mark.parametrize("name", ["judge_eval_plan", "judge_short", "judge_meta_rewardbench"])
def test_judge_templates_ask_for_both_markers_in_order(name):
    t = get_template(name)
    text = (t.system or "") + t.user
    assert "[[A]]" in text and "[[B]]" in text
    msgs = t.render(instruction="Q?", response_a="first", response_b="second")
    user = msgs[-1]["content"]
    assert user.index("Q?") < user.index("first") < user.index("second")


def test_eval_plan_judge_has_the_papers_steps():
    text = get_template("judge_eval_plan").user.lower()
    for word in ("error", "rubric", "criteri", "better overall", "last line"):
        assert word in text
    # the numbered steps come in the paper's order: errors, rubric, assessment, decision
    steps = [text.index(f"\n{i}. ") for i in range(1, 5)]
    assert steps == sorted(steps)
    for i, word in enumerate(("mistakes", "rubric", "assess", "decide")):
        end = steps[i + 1] if i < 3 else text.index("stay neutral")
        assert word in text[steps[i] : end], (i + 1, word)


def test_worse_response_template_describes_what_the_parser_reads():
    t = get_template("worse_response")
    user = t.user
    start = user.index(ste_prompts.parsers.MODIFIED_HEADING)
    end = user.index(ste_prompts.parsers.END_HEADING) + len(ste_prompts.parsers.END_HEADING)
    example = user[start:end]
    assert ste_prompts.parsers.RESPONSE_HEADING in example
    # Echoing the format block with its <...> hints is a failure ...
    assert isinstance(parse_worse_response(example), ParseFailure)
    # ... and filling the hints in, exactly as the template shows, parses.
    filled = re.sub(r"<the modified instruction>", "Write a haiku about rain.", example)
    filled = re.sub(r"<your response[^>]*>", "Drops on the tin roof", filled)
    assert parse_worse_response(filled) == WorseResponse(
        "Write a haiku about rain.", "Drops on the tin roof", ended=True
    )
    assert "not to the original" in user


def test_classify_category_default_list_matches_parser_default():
    t = get_template("classify_category")
    assert t.optional_variables == ("categories",)
    assert t.defaults["categories"] == format_categories(DEFAULT_CATEGORIES)
    rendered = t.render(instruction="Prove that 2 is prime.")[-1]["content"]
    for name in DEFAULT_CATEGORIES:
        assert f"- {name}:" in rendered
    assert "Category:" in rendered and "Difficulty:" in rendered


def test_classify_category_custom_list():
    t = get_template("classify_category")
    cats = ["poetry", "tax law"]
    msgs = t.render(instruction="x", categories=format_categories(cats))
    assert "- poetry\n- tax law" in msgs[-1]["content"]
    assert "reasoning" not in msgs[-1]["content"]
    assert parse_category("Category: Tax Law\nDifficulty: hard", cats) == CategoryResult(
        "tax law", "hard"
    )


# The released model only works with this exact format; this is an independent copy of Meta's
# SELF_TAUGHT_WITH_SYSTEM_PROMPT (facebookresearch/RAM, projects/self_taught_evaluator/src/
# utils.py, MIT licence) so that an accidental edit of the template file fails here.
META_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user question displayed below. You should choose the assistant that "
    "follows the user's instructions and answers the user's question better. Your evaluation "
    "should consider factors such as the helpfulness, relevance, accuracy, depth, creativity, "
    "and level of detail of their responses. Begin your evaluation by comparing the two "
    "responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow "
    "the length of the responses to influence your evaluation. Do not favor certain names of "
    "the assistants. Be as objective as possible. After providing your explanation, output your "
    'final verdict by strictly following this format: \\"[[A]]\\" if assistant A is better, '
    '\\"[[B]]\\" if assistant B is better.'
)
META_USER = (
    "[User Question]\n{input}\n\n"
    "[The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{response_b}\n[The End of Assistant B's Answer]\n"
)


def test_meta_template_is_exactly_metas_format():
    t = get_template("judge_meta_rewardbench")
    msgs = t.render(instruction="What is 2+2?", response_a="4", response_b="5")
    assert msgs == [
        {"role": "system", "content": META_SYSTEM},
        {
            "role": "user",
            "content": META_USER.format(input="What is 2+2?", response_a="4", response_b="5"),
        },
    ]


def test_meta_template_cites_source_and_licence():
    t = get_template("judge_meta_rewardbench")
    assert "facebookresearch/RAM" in t.metadata["source"]
    assert t.metadata["license"] == "MIT"
    raw = resources.files("ste_prompts").joinpath("templates/judge_meta_rewardbench.toml")
    text = raw.read_text(encoding="utf-8")
    assert "projects/self_taught_evaluator/src/utils.py" in text
    assert "Copyright (c) Meta Platforms, Inc. and affiliates." in text
    assert "Permission is hereby granted" in text


def test_meta_fingerprint_is_pinned():
    # Cache keys depend on this value: changing the template text or the fingerprint algorithm
    # must be a deliberate act (update this constant and say so in the changelog).
    assert get_template("judge_meta_rewardbench").fingerprint() == (
        "71bae3d3afae9be19e75d6d43864bb8888117b1937410a252413ada9acb75484"
    )


def test_judge_output_parses_with_the_templates_parser():
    for name in ("judge_eval_plan", "judge_short", "judge_meta_rewardbench"):
        parser = get_parser(get_template(name).parser)
        assert parser("Response B is wrong about the date.\n[[A]]").verdict == "A"


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------


def test_render_missing_and_unexpected_variables_are_named():
    t = loads_template(VALID)
    with pytest.raises(TemplateError, match=r"missing variable\(s\): response_b"):
        t.render(instruction="q", response_a="a")
    with pytest.raises(TemplateError, match=r"unexpected variable\(s\): extra, zzz"):
        t.render(instruction="q", response_a="a", response_b="b", zzz="1", extra="2")
    with pytest.raises(TemplateError) as info:
        t.render(instruction="q", response_b="b", bogus="x")
    assert "response_a" in str(info.value) and "bogus" in str(info.value)


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["x"]])
def test_render_refuses_non_string_values(bad):
    t = loads_template(VALID)
    with pytest.raises(TemplateError, match="response_a must be str"):
        t.render(instruction="q", response_a=bad, response_b="b")


def test_render_is_single_pass_and_verbatim():
    t = loads_template(VALID)
    hostile = "{response_b} {{instruction}} ${x} {% if %} \\1 \\g<0> [[B]]"
    msgs = t.render(instruction=hostile, response_a="{instruction}", response_b="B!")
    assert msgs[1]["content"] == (
        f"Q: {hostile}\nA: {{instruction}}\nB: B!\nAnswer [[A]] or [[B]]."
    )
    assert msgs[0] == {"role": "system", "content": "Be fair."}


def test_variable_named_self_is_allowed():
    t = loads_template(VALID.replace("{instruction}", "{self}").replace('"instruction"', '"self"'))
    assert "Q: me" in t.render(self="me", response_a="a", response_b="b")[1]["content"]


def test_literal_braces_and_escape_in_template_text():
    text = VALID.replace(
        "Answer [[A]] or [[B]].",
        'Reply as JSON like {"winner": "A"}; { x } and $x stay; {{instruction}} shows the syntax.',
    )
    t = loads_template(text)
    out = t.render(instruction="I", response_a="a", response_b="b")[1]["content"]
    assert out.endswith(
        'Reply as JSON like {"winner": "A"}; { x } and $x stay; {instruction} shows the syntax.'
    )
    assert placeholders(t.user) == ["instruction", "response_a", "response_b"]


def test_optional_variable_default_and_override():
    text = VALID + '\n[defaults]\nstyle = "plain"\n'
    text = text.replace("Answer [[A]]", "Style {style}. Answer [[A]]")
    t = loads_template(text)
    assert t.optional_variables == ("style",)
    assert t.all_variables == ("instruction", "response_a", "response_b", "style")
    base = {"instruction": "q", "response_a": "a", "response_b": "b"}
    assert "Style plain." in t.render(**base)[1]["content"]
    assert "Style {fancy}." in t.render(**base, style="{fancy}")[1]["content"]


def test_template_without_system_renders_only_user():
    t = loads_template(VALID.replace('system = "Be fair."\n', ""))
    assert t.system is None
    msgs = t.render(instruction="q", response_a="a", response_b="b")
    assert [m["role"] for m in msgs] == ["user"]


# ------------------------------------------------------------------------------------------
# Fingerprint, equality, immutability
# ------------------------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive():
    a = loads_template(VALID)
    assert a.fingerprint() == loads_template(VALID).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", a.fingerprint())
    changed = [
        VALID.replace("version = 2", "version = 3"),
        VALID.replace("Be fair.", "Be very fair."),
        VALID.replace("Q: {instruction}", "Question: {instruction}"),
        VALID.replace('name = "mine"', 'name = "yours"'),
        VALID + '\n[defaults]\nstyle = "x"\n',
    ]
    changed[-1] = changed[-1].replace("Answer [[A]]", "{style} Answer [[A]]")
    prints = {loads_template(c).fingerprint() for c in changed}
    assert len(prints) == len(changed) and a.fingerprint() not in prints


def test_fingerprint_ignores_documentation_and_location(tmp_path):
    a = loads_template(VALID)
    b = load_template(_write(tmp_path, VALID.replace("A test template.", "Other words.")))
    c = loads_template(VALID + '\n[metadata]\nauthor = "me"\n')
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()


def test_templates_are_frozen_hashable_and_comparable():
    a, b = loads_template(VALID), loads_template(VALID)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.user = "changed"  # type: ignore[misc]
    t = get_template("classify_category")
    with pytest.raises(TypeError):
        t.defaults["categories"] = "x"  # type: ignore[index]
    assert a != loads_template(VALID.replace("version = 2", "version = 3"))


def test_direct_construction_is_validated():
    with pytest.raises(TemplateError, match="never used"):
        Template(
            name="x",
            purpose="judge",
            version=1,
            description="",
            variables=("a", "b"),
            parser="verdict",
            system=None,
            user="{a}",
            source="<test>",
        )
    t = Template(
        name="x",
        purpose="judge",
        version=1,
        description="",
        variables=["a"],
        parser="verdict",
        system=None,
        user="{a}",
        source="<test>",
    )
    assert t.variables == ("a",)


# ------------------------------------------------------------------------------------------
# Loading and validation errors
# ------------------------------------------------------------------------------------------


def test_load_template_from_file(tmp_path):
    p = _write(tmp_path, VALID)
    t = load_template(p)
    assert t.source == str(p) and t.name == "mine" and t.version == 2
    assert load_template(str(p)) == t


@pytest.mark.parametrize(
    "key", ["name", "purpose", "version", "description", "variables", "parser", "user"]
)
def test_missing_required_key_names_file_and_key(tmp_path, key):
    data = VALID.split("\n")
    text = "\n".join(line for line in data if not line.startswith(f"{key} ="))
    if key == "user":
        text = VALID[: VALID.index("user =")]
    p = _write(tmp_path, text)
    with pytest.raises(TemplateError) as info:
        load_template(p)
    msg = str(info.value)
    assert str(p) in msg and f"'{key}'" in msg and "missing" in msg


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("version = 2", "version = 0", "'version' must be an integer >= 1"),
        ("version = 2", 'version = "2"', "'version' must be an integer"),
        ("version = 2", "version = true", "'version' must be an integer"),
        ('name = "mine"', 'name = ""', "'name' must not be empty"),
        ('name = "mine"', 'name = "has space"', "'name'"),
        ('purpose = "judge"', "purpose = 3", "'purpose' must be a string"),
        ('parser = "verdict"', 'parser = "verdikt"', "'parser' 'verdikt' is not a registered"),
        ('system = "Be fair."', 'system = "  "', "'system' must be a non-empty string"),
        (
            'variables = ["instruction", "response_a", "response_b"]',
            'variables = "instruction"',
            "'variables' must be a list",
        ),
        (
            'variables = ["instruction", "response_a", "response_b"]',
            'variables = ["instruction", "response_a", "response_b", "instruction"]',
            "more than once",
        ),
        (
            'variables = ["instruction", "response_a", "response_b"]',
            'variables = ["instruction", "response_a", "response_b", "bad-name"]',
            "'bad-name' is not an identifier",
        ),
        (
            'variables = ["instruction", "response_a", "response_b"]',
            'variables = ["instruction", "response_a", "response_b", "unused"]',
            "unused never used",
        ),
        ("B: {response_b}", "B: {response_b} {typo}", "{typo} not declared"),
        ('parser = "verdict"', 'parser = "verdict"\nvaraibles = []', "unknown key(s) 'varaibles'"),
    ],
)
def test_invalid_template_errors_name_file_and_problem(tmp_path, old, new, needle):
    assert old in VALID
    p = _write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(TemplateError) as info:
        load_template(p)
    assert str(p) in str(info.value)
    assert needle in str(info.value)


def test_variable_both_required_and_optional(tmp_path):
    p = _write(tmp_path, VALID + '\n[defaults]\ninstruction = "x"\n')
    with pytest.raises(TemplateError, match="both required"):
        load_template(p)


def test_default_must_be_string(tmp_path):
    p = _write(tmp_path, VALID.replace("Answer", "{n} Answer") + "\n[defaults]\nn = 3\n")
    with pytest.raises(TemplateError, match="default value"):
        load_template(p)


def test_invalid_toml_and_missing_file(tmp_path):
    p = _write(tmp_path, 'name = "x"\nuser = """unterminated')
    with pytest.raises(TemplateError, match="invalid TOML") as info:
        load_template(p)
    assert str(p) in str(info.value)
    with pytest.raises(TemplateError, match="not found"):
        load_template(tmp_path / "nope.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(VALID.replace("Be fair.", "Sé justo.").encode("latin-1"))
    with pytest.raises(TemplateError, match="UTF-8"):
        load_template(bad)


def test_builtin_files_parse_as_toml_with_only_known_keys():
    folder = resources.files("ste_prompts").joinpath("templates")
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            assert set(data) <= {
                "name",
                "purpose",
                "version",
                "description",
                "variables",
                "parser",
                "system",
                "user",
                "defaults",
                "metadata",
                "verdict_rule",
            }


# ------------------------------------------------------------------------------------------
# get_template
# ------------------------------------------------------------------------------------------


def test_get_template_by_name_and_by_path(tmp_path):
    assert get_template("judge_short").name == "judge_short"
    p = _write(tmp_path, VALID)
    assert get_template(p).name == "mine"
    assert get_template(str(p)).name == "mine"


def test_get_template_unknown_name_lists_available():
    with pytest.raises(TemplateError) as info:
        get_template("judge_shrot")
    msg = str(info.value)
    assert "judge_shrot" in msg
    for name in EXPECTED:
        assert name in msg


def test_get_template_missing_path():
    with pytest.raises(TemplateError, match="not found"):
        get_template("no/such/template.toml")


def test_get_template_custom_registry():
    mine = loads_template(VALID)
    assert get_template("mine", templates={"mine": mine}) is mine
    with pytest.raises(TemplateError, match="available: mine"):
        get_template("judge_short", templates={"mine": mine})


def test_name_wins_over_a_file_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, VALID, name="judge_short")
    assert get_template("judge_short").source == "<builtin>"


def test_parsers_of_templates_are_callable_on_text():
    # Every parser takes the text positionally; template.parser names resolve.
    outputs = {
        "verdict": "[[B]]",
        "worse_response": format_worse_response("x", "y"),
        "category": "Category: math\nDifficulty: easy",
        "plan_execute": ste_prompts.format_plan_execute("plan", "execution", "A"),
        "final_answer": ste_prompts.format_solution("2 + 2 = 4", "4"),
        "ranking": "C is best.\n[[C]]",
        "rating": "Clear and correct.\n\n8",
    }
    for t in builtin_templates().values():
        result = get_parser(t.parser)(outputs[t.parser])
        assert result.ok, (t.name, result)
    assert parse_verdict("[[B]]").verdict == "B"


# ------------------------------------------------------------------------------------------
# Property tests (hypothesis): hostile content renders verbatim
# ------------------------------------------------------------------------------------------

TEMPLATES = builtin_templates()


def _reference_render(text: str, values: dict[str, str]) -> str:
    """An independent renderer for the built-in texts (which use no escapes): split the text on
    the literal `{name}` strings and join the pieces with the values."""
    assert "{{" not in text
    pattern = "|".join(re.escape("{" + k + "}") for k in sorted(values, key=len, reverse=True))
    pieces = re.split("(" + pattern + ")", text)
    return "".join(values[p[1:-1]] if re.fullmatch(pattern, p) else p for p in pieces)


@SETTINGS
@given(name=st.sampled_from(sorted(TEMPLATES)), data=st.data())
def test_hostile_values_render_verbatim_in_builtins(name, data):
    t = TEMPLATES[name]
    values = {v: data.draw(hostile_text, label=v) for v in t.all_variables}
    msgs = t.render(**values)
    expected = []
    if t.system is not None:
        expected.append({"role": "system", "content": _reference_render(t.system, values)})
    expected.append({"role": "user", "content": _reference_render(t.user, values)})
    assert msgs == expected
    joined = "".join(m["content"] for m in msgs)
    for v in values.values():
        assert v in joined


@SETTINGS
@given(name=st.sampled_from(sorted(TEMPLATES)), data=st.data())
def test_fixed_text_is_intact_around_hostile_values(name, data):
    # Render with distinct sentinels, then with hostile values: cutting the values out of the
    # hostile rendering must give back exactly the fixed text around the sentinels.
    t = TEMPLATES[name]
    names = list(t.all_variables)
    sentinels = {v: f"\x00{i}\x00" for i, v in enumerate(names)}
    values = {v: data.draw(hostile_text, label=v) for v in names}
    for plain, hostile in zip(t.render(**sentinels), t.render(**values), strict=True):
        fixed = re.split("\x00\\d+\x00", plain["content"])
        order = [names[int(i)] for i in re.findall("\x00(\\d+)\x00", plain["content"])]
        rebuilt, pos = [], 0
        content = hostile["content"]
        for i, piece in enumerate(fixed):
            assert content.startswith(piece, pos)
            pos += len(piece)
            rebuilt.append(piece)
            if i < len(order):
                value = values[order[i]]
                assert content.startswith(value, pos)
                pos += len(value)
        assert pos == len(content)
        for piece in fixed:
            assert not re.search(r"\{[A-Za-z_]\w*\}", piece), "unrendered placeholder"


@SETTINGS
@given(value=hostile_text, default=hostile_text)
def test_hostile_values_and_defaults_in_user_template(value, default):
    t = loads_template(
        'name = "u"\npurpose = "judge"\nversion = 1\ndescription = ""\n'
        'variables = ["x"]\nparser = "verdict"\n'
        "user = 'Before {x} middle {{x}} {y} after.'\n"
        "[defaults]\ny = " + _toml_basic_string(default) + "\n"
    )
    assert t.defaults["y"] == default
    out = t.render(x=value)[0]["content"]
    assert out == f"Before {value} middle {{x}} {default} after."
    out2 = t.render(x=value, y=value)[0]["content"]
    assert out2 == f"Before {value} middle {{x}} {value} after."


def _toml_basic_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\' or ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
