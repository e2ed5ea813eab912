"""The `solve` template and its parser (ste_prompts.answers): where a solution states its final
answer."""

from __future__ import annotations

import pytest

from ste_prompts import (
    FinalAnswer,
    ParseFailure,
    format_solution,
    get_parser,
    get_template,
    parse_final_answer,
)


@pytest.mark.parametrize(
    ("text", "answer", "shape"),
    [
        ("3 + 4 = 7\n\nAnswer: 7", "7", "answer_line"),
        ("Final answer: 1,234", "1,234", "answer_line"),
        ("**Answer:** 42", "42", "answer_line"),
        ("- answer: -3.5", "-3.5", "answer_line"),
        ("The answer is: 12 apples", "12 apples", "answer_line"),
        ("Answer: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "answer_line"),
        # a model that corrects itself: the last answer line counts
        ("Answer: 5\nWait, I mis-added.\nAnswer: 6", "6", "answer_line"),
        ("so the result is $\\boxed{18}$.", "18", "boxed"),
        ("\\boxed{\\frac{3}{4}} or \\boxed{0.75}", "0.75", "boxed"),
        ("\\fbox{x+1}", "x+1", "boxed"),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72", "gsm8k"),
        ("#### 1,000", "1,000", "gsm8k"),
        # the answer line wins over a boxed value and a GSM8K line
        ("\\boxed{3}\n#### 4\nAnswer: 5", "5", "answer_line"),
    ],
)
def test_the_final_answer_in_each_shape(text: str, answer: str, shape: str) -> None:
    assert parse_final_answer(text) == FinalAnswer(answer, shape)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("She has 3 apples and buys 4 more, so 7 in total.", "7"),
        ("The result is -12.", "-12"),
        ("That makes 1,250 in all.", "1,250"),
        ("Three quarters: 3/4", "3/4"),
        ("It is .5 of it", ".5"),
    ],
)
def test_the_last_number_only_when_asked(text: str, answer: str) -> None:
    assert parse_final_answer(text, last_number=True) == FinalAnswer(answer, "last_number")
    assert isinstance(parse_final_answer(text), ParseFailure)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I could not finish the calculation.",
        "Answer:",  # an empty answer line is no answer
        "\\boxed{",  # unclosed
        "The answer is seven",  # no colon, no number
        "version2 of x3",  # digits inside words are not numbers
    ],
)
def test_no_answer_is_a_failure_never_an_answer(text: str) -> None:
    assert isinstance(parse_final_answer(text, last_number=True), ParseFailure)


def test_the_solve_template_asks_for_the_line_its_parser_reads() -> None:
    t = get_template("solve")
    assert t.purpose == "solve" and t.variables == ("problem",)
    assert get_parser(t.parser) is parse_final_answer
    (message,) = t.render(problem="What is 2 + 2?")
    assert "What is 2 + 2?" in message["content"] and "Answer: <final answer>" in message["content"]
    assert parse_final_answer(format_solution("2 + 2 = 4", "4")) == FinalAnswer("4", "answer_line")
