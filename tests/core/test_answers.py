"""Answer checkers (ste_core.answers) and their registry: built-ins, plugins, unknown names."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ste_core import AnswerCheck, ConfigurationError, hookimpl
from ste_core.answers import check_numeric, check_string, normalise_answer, to_number
from ste_core.plugins import PluginHost, PluginWarning, get_answer_checker


@pytest.mark.parametrize(
    ("solution", "reference"),
    [
        ("Answer: 42", "42"),
        ("Answer: 42.", "42"),
        ("\\boxed{42}", "42"),
        ("Natalia sold 24 in May.\n#### 72", "72"),
        ("Answer: -5", "-5"),
        ("Answer: \u22125", "-5"),  # a Unicode minus sign
        ("Answer: 3.50", "3.5"),
        ("Answer: 0.1", ".1"),
        ("Answer: 1,234,567", "1234567"),
        ("Answer: $1,250.00", "1250"),
        ("Answer: 18 dollars", "18"),
        ("Answer: 18 \\text{ dollars}", "18"),
        ("Answer: 3/4", "0.75"),
        ("Answer: \\frac{3}{4}", "3/4"),
        ("\\boxed{\\dfrac{1}{3}}", "1/3"),
        ("Answer: 25%", "25"),
        ("Answer: 25\\%", "0.25"),
        ("Answer: 40 percent", "0.4"),
        ("Answer: 0.4", "40%"),
        ("Answer: x = 5", "5"),
        ("Answer: 2 + 3 = 5", "5"),
        ("She has 3, then 4 more: 7 in total.", "7"),  # the last number, no answer line
        ("Answer: 333333.4", "333333.3"),  # within the relative tolerance of 1e-6
        # a GSM8K reference: its "#### " line is the answer, not its working
        ("Answer: 72", "48/2 = <<48/2=24>>24 clips in May.\n#### 72"),
    ],
)
def test_numeric_correct(solution: str, reference: str) -> None:
    assert check_numeric(solution, reference).status == "correct"


@pytest.mark.parametrize(
    ("solution", "reference"),
    [
        ("Answer: 41", "42"),
        ("Answer: 5", "-5"),
        ("Answer: 0.33", "1/3"),  # a rounded answer is not the exact one
        ("Answer: 1,234", "12,34"),
        ("Answer: 25", "0.25"),  # no percent sign: 25 is not a quarter
        ("\\boxed{8}", "7"),
        ("Answer: 2 + 3 = 6", "5"),
        ("Answer: 42\n#### 41", "41"),  # the answer line wins over a GSM8K line
    ],
)
def test_numeric_incorrect(solution: str, reference: str) -> None:
    check = check_numeric(solution, reference)
    assert check.status == "incorrect" and not check.correct


@pytest.mark.parametrize(
    "solution",
    [
        "",
        "I could not finish the calculation.",
        "Answer: seven",  # an answer line with no number: not a wrong number, no number
        "Answer: 7/0",
    ],
)
def test_no_answer_is_unparseable_never_correct(solution: str) -> None:
    check = check_numeric(solution, "7")
    assert check.status == "unparseable" and not check.correct


@pytest.mark.parametrize("reference", ["", "blue", "n/a"])
def test_a_reference_without_a_number_is_bad(reference: str) -> None:
    assert check_numeric("Answer: 7", reference) == AnswerCheck("bad_reference")


def test_to_number_is_exact() -> None:
    assert to_number("1/3") == (Fraction(1, 3), False)
    assert to_number("-2,500.25 kg") == (Fraction(-10001, 4), False)
    assert to_number("12.5%") == (Fraction(25, 2), True)
    assert to_number("none") is None


@pytest.mark.parametrize(
    ("solution", "reference", "status"),
    [
        ("Answer: Paris", "paris", "correct"),
        ("Answer: The Pacific Ocean.", "Pacific ocean", "correct"),
        ("Answer: \\text{Jupiter}", "jupiter", "correct"),
        ("\\boxed{(B)}", "B", "correct"),
        ("Answer:   New   York  ", "new york", "correct"),
        ("Answer: Caf\u00e9", "Cafe\u0301", "correct"),  # one Unicode form
        ("Answer: Mars", "Jupiter", "incorrect"),
        ("Answer: 7", "8", "incorrect"),
        # no last-number guess for strings: a solution without an answer line is unparseable
        ("The planet is Mars, number 4.", "4", "unparseable"),
        ("Answer: ...", "x", "unparseable"),
        ("Answer: Mars", "!!", "bad_reference"),
    ],
)
def test_string_checker(solution: str, reference: str, status: str) -> None:
    assert check_string(solution, reference).status == status


def test_normalise_answer() -> None:
    assert normalise_answer("  The  \\textbf{Big} Apple! ") == "big apple"
    assert normalise_answer("$\\boxed{A}$") == "a"


# -- the registry -----------------------------------------------------------------------------


def _parity(solution: str, reference: str) -> AnswerCheck:
    said = solution.strip().rsplit(" ", 1)[-1]
    if not said.isdigit():
        return AnswerCheck("unparseable")
    same = int(said) % 2 == int(reference) % 2
    return AnswerCheck("correct" if same else "incorrect", said)


class ParityPlugin:
    @hookimpl
    def register_answer_checkers(self, register) -> None:  # type: ignore[no-untyped-def]
        register("parity", _parity)


def test_a_plugin_registers_a_checker_by_name() -> None:
    host = PluginHost()
    host.register_plugin(ParityPlugin(), name="parity-plugin")
    checker = host.answer_checker("parity")
    assert checker("so it is 9", "3").correct
    assert host.checker_owner["parity"] == "parity-plugin"


def test_a_taken_checker_name_is_refused_with_a_warning() -> None:
    class Thief:
        @hookimpl
        def register_answer_checkers(self, register) -> None:  # type: ignore[no-untyped-def]
            register("parity", check_string)

    host = PluginHost()
    host.register_plugin(ParityPlugin(), name="first")
    with pytest.warns(PluginWarning, match="answer checker 'parity', which first already"):
        host.register_plugin(Thief(), name="second")
    assert host.answer_checker("parity") is _parity


def test_built_in_checkers_and_an_unknown_name() -> None:
    assert get_answer_checker("numeric") is check_numeric
    assert get_answer_checker("string") is check_string
    with pytest.raises(ConfigurationError) as err:
        get_answer_checker("numerc")
    message = str(err.value)
    assert 'did you mean "numeric"' in message and "Registered checkers: numeric, string" in message
