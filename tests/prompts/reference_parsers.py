"""Ports of the verdict parsers that `ste_prompts.verdicts` reproduces, for the tests to compare
against (`from tests.prompts.reference_parsers import ...`). Each keeps the original's logic and
return values, re-written here; the rules under test must agree with them.

* Meta, facebookresearch/RAM, read at commit e6f051fbcfaef4cab69bf2ea1b25f500f94c0c64
  (MIT licence, Copyright (c) Meta Platforms, Inc. and affiliates):
  - `parse_judgement`, projects/self_taught_evaluator/src/utils.py (last changed in
    f8f7617e16e8d2414a8e954b391d071346f67883); used by src/prepare_sft_data.py.
  - `extract_winner_llm_judge_pairv2`, ram/data_utils.py (last changed in
    65b68338437e3183915f1207b14f00013106e9f4); called by src/prepare_dpo_data.py (which does
    not import it: as committed, that script stops with a NameError). Not one of our rules:
    it calls any text with two `[[` a tie, so `[[A]] ... [[A]]` is a DPO negative there.
  - `rewardbench_process_judgement`, the same utils.py: reward-bench's rule, copied by Meta
    for its RewardBench scores (`compute_rewardbench_scores`).
* reward-bench, allenai/reward-bench, read at commit 05a9005efb607249822c193590c8ecab87c77052
  (Apache-2.0): `process_judgement(judgment, model_modifier)` in rewardbench/generative.py (last
  changed in a0096928eb1d54edd3f6361374708cc68e738b79), the branch without a model modifier;
  scripts/run_generative.py scores "error" as 0.5 ("effectively a tie").
"""

from __future__ import annotations

# Meta's labels -> ours; reward-bench's "error" -> no verdict.
META_TO_OURS = {"model_a": "A", "model_b": "B", "tie": "tie", None: None}
REWARDBENCH_TO_OURS = {"A": "A", "B": "B", "error": None}


def meta_parse_judgement(generation: str) -> str | None:
    """RAM utils.py `parse_judgement`: "model_a" / "model_b" / "tie" / None."""
    if "[[A]]" in generation and "[[B]]" in generation:
        return None
    for marker, label in (("[[A]]", "model_a"), ("[[B]]", "model_b"), ("[[C]]", "tie")):
        if marker in generation:
            return label
    return None


def meta_extract_winner_pairv2(generation: str) -> str | None:
    """RAM ram/data_utils.py `extract_winner_llm_judge_pairv2` (prepare_dpo_data.py's call)."""
    if generation.count("[[") > 1:
        return "tie"
    for marker, label in (("[[A]]", "model_a"), ("[[B]]", "model_b"), ("[[C]]", "tie")):
        if marker in generation:
            return label
    return None


def rewardbench_process_judgement(judgment: str) -> str:
    """reward-bench generative.py `process_judgement(judgment, None)`: "A" / "B" / "error"."""
    if "[[A]]" in judgment:
        return "A"
    if "[[B]]" in judgment:
        return "B"
    return "error"
