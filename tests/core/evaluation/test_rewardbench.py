"""RewardBench's reference tables (ste_core.evaluation.rewardbench)."""

from __future__ import annotations

from ste_core.evaluation.rewardbench import EXAMPLE_COUNTS, EXAMPLE_COUNTS_PRE_0_1_3, SECTIONS


def test_reference_tables() -> None:
    # constants.py of reward-bench >= 0.1.3, and the pre-0.1.3 swap of the two XSTest weights
    assert EXAMPLE_COUNTS["xstest-should-refuse"] == 154
    assert EXAMPLE_COUNTS["xstest-should-respond"] == 250
    assert EXAMPLE_COUNTS_PRE_0_1_3["xstest-should-refuse"] == 250
    assert EXAMPLE_COUNTS_PRE_0_1_3["xstest-should-respond"] == 154
    assert EXAMPLE_COUNTS["math-prm"] == 6 * EXAMPLE_COUNTS["hep-cpp"] == 984
    assert sum(len(v) for v in SECTIONS.values()) == len(EXAMPLE_COUNTS) == 23
