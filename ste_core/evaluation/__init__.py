"""Evaluation of judges: scoring labelled pairs, RewardBench sections, intervals, paired tests
and run reports. See docs/evaluation.md.

Importing this package is cheap (pydantic and the standard library); matplotlib is imported only
when a report draws its plot.
"""

from ste_core.evaluation.paired import paired_comparison
from ste_core.evaluation.pairs_io import read_judgements, read_pairs, write_judgements
from ste_core.evaluation.report import ReportFiles, write_report
from ste_core.evaluation.rewardbench import EXAMPLE_COUNTS, EXAMPLE_COUNTS_PRE_0_1_3, SECTIONS
from ste_core.evaluation.scoring import score_pairs, single_order
from ste_core.records import EvalScore, PairedTest, RewardBenchScore, SectionScore, SubsetScore

__all__ = [
    "EXAMPLE_COUNTS",
    "EXAMPLE_COUNTS_PRE_0_1_3",
    "SECTIONS",
    "EvalScore",
    "PairedTest",
    "ReportFiles",
    "RewardBenchScore",
    "SectionScore",
    "SubsetScore",
    "paired_comparison",
    "read_judgements",
    "read_pairs",
    "score_pairs",
    "single_order",
    "write_judgements",
    "write_report",
]
