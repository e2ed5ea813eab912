"""The scripted model: template inversion, worse responses, judge accuracy, classifier."""

from __future__ import annotations

import pytest

from ste_core.testing.fake_provider import ScriptedModel, TemplateMatcher, model_accuracy
from ste_core.testing.fake_provider.model import _rng, good_answer, signatures_in
from ste_prompts import (
    builtin_templates,
    get_template,
    parse_category,
    parse_verdict,
    parse_worse_response,
)

TRICKY = "Use {braces}, [[A]] markers,\n### headings\nand [End of response A] text."


@pytest.mark.parametrize("name", sorted(builtin_templates()))
def test_every_builtin_template_is_recognised_with_its_variables(name: str) -> None:
    t = get_template(name)
    values = {v: f"value of {v}: {TRICKY}" for v in t.variables}
    found = TemplateMatcher().match(t.render(**values))
    assert found is not None
    got_name, purpose, got = found
    assert got_name == name and purpose == t.purpose
    for v in t.variables:
        assert got[v] == values[v]


def test_plain_instruction_is_not_a_template() -> None:
    assert TemplateMatcher().match([{"role": "user", "content": "Hello there"}]) is None


def test_model_accuracy_rule() -> None:
    assert model_accuracy("fake-acc70") == 0.70
    assert model_accuracy("ACC85-model") == 0.85
    assert model_accuracy("plain") == 0.75
    assert model_accuracy("fake-acc70-ft1") == pytest.approx(0.80)
    assert model_accuracy("fake-acc70-ft2") == pytest.approx(0.90)
    assert model_accuracy("fake-acc70-ft1-ft2") == pytest.approx(0.90)
    assert model_accuracy("fake-acc70-ft5") == pytest.approx(0.95)  # capped
    assert model_accuracy("fake-acc97-ft1") == pytest.approx(0.97)  # never below base
    assert model_accuracy("ft:fake-acc60:org::abc") == pytest.approx(0.70)
    assert model_accuracy("fake-acc70-after") == 0.70  # "-aft" is not a fine-tune marker


def _pair(instruction: str, seed: int) -> tuple[str, str]:
    m = ScriptedModel(unparsable_rate=0.0)
    base = m.generate("gen", [{"role": "user", "content": instruction}], seed=seed)[0][0]
    msgs = get_template("worse_response").render(instruction=instruction, baseline_response=base)
    text, _ = m.generate("gen", msgs, seed=seed)[0]
    parsed = parse_worse_response(text, instruction=instruction)
    assert parsed.ok, parsed
    return base, parsed.response


def test_worse_response_parses_and_unparsable_fraction() -> None:
    instruction = "List three uses of copper in electronics"
    base, worse = _pair(instruction, 1)
    assert base != worse and signatures_in(base) != signatures_in(worse)
    m = ScriptedModel(unparsable_rate=0.3)
    msgs = get_template("worse_response").render(instruction=instruction, baseline_response=base)
    outs = m.generate("gen", msgs, n=400, temperature=1.0)
    failed = sum(not parse_worse_response(t).ok for t, _ in outs)
    assert 0.22 < failed / 400 < 0.38


@pytest.mark.parametrize("model,acc", [("j-acc60", 0.6), ("j-acc90", 0.9), ("j-acc70-ft2", 0.9)])
@pytest.mark.parametrize("template", ["judge_eval_plan", "judge_short", "judge_meta_rewardbench"])
def test_judge_picks_better_with_model_accuracy(model: str, acc: float, template: str) -> None:
    m = ScriptedModel()
    correct = total = 0
    for k in range(8):
        instruction = f"Describe the water cycle for a class of {k + 5} year olds"
        base, worse = _pair(instruction, k)
        for a, b, right in ((base, worse, "A"), (worse, base, "B")):
            msgs = get_template(template).render(
                instruction=instruction, response_a=a, response_b=b
            )
            for text, _ in m.generate(model, msgs, n=40, temperature=0.7, seed=k):
                v = parse_verdict(text)
                assert v.ok and text.rstrip().endswith(f"[[{v.verdict}]]")
                correct += v.verdict == right
                total += 1
    assert abs(correct / total - acc) < 0.05


def test_judge_without_signatures_prefers_on_topic_words() -> None:
    m = ScriptedModel(default_accuracy=1.0)
    msgs = get_template("judge_short").render(
        instruction="How do volcanoes erupt?",
        response_a="Cats sleep a lot.",
        response_b="Volcanoes erupt when magma pressure rises.",
    )
    assert parse_verdict(m.generate("judge", msgs)[0][0]).verdict == "B"


def test_four_way_ranking_and_ratings_follow_the_model_accuracy() -> None:
    from ste_prompts import parse_ranking, parse_rating

    m = ScriptedModel()
    right = rated_right = total = 0
    for k in range(8):
        instruction = f"Describe the water cycle for a class of {k + 5} year olds"
        base, worse = _pair(instruction, k)
        shown = [worse, worse, worse, worse]
        shown[k % 4] = base
        msgs = get_template("judge_rank_four").render(
            instruction=instruction,
            **{f"response_{x}": t for x, t in zip("abcd", shown, strict=True)},
        )
        for text, _ in m.generate("j-acc80", msgs, n=40, temperature=0.7, seed=k):
            right += parse_ranking(text).choice == "ABCD"[k % 4]
            total += 1
        for response, good in ((base, True), (worse, False)):
            msgs = get_template("judge_rate").render(instruction=instruction, response=response)
            for text, _ in m.generate("j-acc80", msgs, n=20, temperature=0.7, seed=k):
                rating = parse_rating(text).rating
                assert rating is not None
                rated_right += (rating >= 8) == good
    assert abs(right / total - 0.8) < 0.06
    assert abs(rated_right / total - 0.8) < 0.06


def test_no_verdict_rate() -> None:
    m = ScriptedModel(no_verdict_rate=1.0)
    msgs = get_template("judge_short").render(instruction="x", response_a="a", response_b="b")
    assert parse_verdict(m.generate("j", msgs)[0][0]).verdict is None


def test_classifier_output_parses() -> None:
    m = ScriptedModel()
    for instruction, expected in [
        ("Write a python function that reverses a string", "coding"),
        ("Solve the equation 3x + 5 = 20", "math"),
    ]:
        msgs = get_template("classify_category").render(instruction=instruction)
        result = parse_category(m.generate("c", msgs)[0][0])
        assert result.ok and result.category == expected


def test_good_answer_mentions_key_words_and_is_signed() -> None:
    text = good_answer("Compare solar and wind energy costs", _rng(1))
    assert all(w in text.lower() for w in ("solar", "wind", "energy"))
    assert len(signatures_in(text)) == 1
