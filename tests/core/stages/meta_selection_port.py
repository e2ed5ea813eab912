"""A port of Meta's rejection sampling and DPO data preparation, for the selection tests to
compare against (`from tests.core.stages.meta_selection_port import ...`).

Source: facebookresearch/RAM, read at commit e6f051fbcfaef4cab69bf2ea1b25f500f94c0c64 (MIT
licence, Copyright (c) Meta Platforms, Inc. and affiliates):
* projects/self_taught_evaluator/src/prepare_sft_data.py (last changed in
  65b68338437e3183915f1207b14f00013106e9f4): `rejection_sampling`, `prepare_positive_data`;
* projects/self_taught_evaluator/src/prepare_dpo_data.py (last changed in
  4dc25ac8552e5b0a17bec03e717188e767c297e0): `prepare_dpo_data` with num_iter = 1 and no
  negative_generation_dir.

What is kept: the logic, the order of the shuffles and every decision. What is left out: file
reading, sharding, ids and prints. The input is what those scripts build from their files:
`judgements[input_key] = [(output, label), ...]` (one key per prompt, i.e. per (pair, order);
a missing sample is skipped, so it is not in the list) and `gold[input_key]` in
"model_a" / "model_b"; labels are those of the parser (`parse_judgement`: "model_a",
"model_b", "tie", None). The module-level `random.seed(42)` becomes an `rng` argument.
"""

from __future__ import annotations

import random
from collections import defaultdict

A_LABELS = ("model_a", "A")
B_LABELS = ("model_b", "B")


def rejection_sampling(
    outputs: list[tuple[str, str | None]],
    true_label: str,
    majority_voting: float | None,
    rng: random.Random,
) -> str | None:
    """prepare_sft_data.py `rejection_sampling`: a random correct output, or None. With
    `majority_voting` the key needs at least that fraction of correct outputs. (Meta's code
    raises IndexError for majority_voting = 0 and no correct output; so does this port.)"""
    rng.shuffle(outputs)
    positives = []
    for output, judgement in outputs:
        if judgement == true_label:
            if majority_voting is None:
                return output
            positives.append(output)
    if majority_voting is not None and len(positives) >= len(outputs) * majority_voting:
        return positives[0]
    return None


def prepare_positive_data(
    judgements: dict[str, list[tuple[str, str | None]]],
    gold: dict[str, str],
    majority_voting: float | None,
    rng: random.Random,
) -> dict[str, list[tuple[str, str]]]:
    """prepare_sft_data.py `prepare_positive_data`: the SFT (src, tgt) examples, label-balanced.
    Returns {"positive_a": [...], "positive_b": [...], "examples": [...]} (before and after
    the balance) with (input_key, output) tuples."""
    positive_a: list[tuple[str, str]] = []
    positive_b: list[tuple[str, str]] = []
    for input_key, outputs in judgements.items():
        if input_key not in gold:
            continue
        valid = rejection_sampling(outputs, gold[input_key], majority_voting, rng)
        if valid is None:
            continue
        if gold[input_key] in A_LABELS:
            positive_a.append((input_key, valid))
        elif gold[input_key] in B_LABELS:
            positive_b.append((input_key, valid))
    candidates_a, candidates_b = list(positive_a), list(positive_b)
    rng.shuffle(positive_a)
    rng.shuffle(positive_b)
    n = min(len(positive_a), len(positive_b))
    examples = positive_a[:n] + positive_b[:n]
    rng.shuffle(examples)
    return {"positive_a": candidates_a, "positive_b": candidates_b, "examples": examples}


def prepare_dpo_data(
    judgements: dict[str, list[tuple[str, str | None]]],
    gold: dict[str, str],
    num_pairs: int,
    rng: random.Random,
) -> dict[str, list]:
    """prepare_dpo_data.py `prepare_dpo_data` (num_iter = 1): positives are the outputs whose
    label is the gold one; negatives the rest (wrong label, tie, none). Keys with both kinds are
    label-balanced, then each key gives up to `num_pairs` (chosen, rejected) drawn from the
    shuffled positives x negatives. Returns {"eligible_a", "eligible_b", "keys", "examples"}
    (examples: (input_key, chosen, rejected))."""
    positives: dict[str, list[str]] = defaultdict(list)
    negatives: dict[str, list[str]] = defaultdict(list)
    positive_a: list[str] = []
    positive_b: list[str] = []
    for input_key, outputs in judgements.items():
        for output, judgement in outputs:
            if judgement is None or judgement == "tie" or judgement != gold[input_key]:
                negatives[input_key].append(output)
            else:
                positives[input_key].append(output)
                if judgement in A_LABELS:
                    positive_a.append(input_key)
                if judgement in B_LABELS:
                    positive_b.append(input_key)
    # Meta dedups with set(), whose order varies between processes; sorted() keeps the port
    # reproducible without changing which keys can be picked.
    positive_a = sorted({k for k in positive_a if k in negatives})
    positive_b = sorted({k for k in positive_b if k in negatives})
    eligible_a, eligible_b = list(positive_a), list(positive_b)
    n = min(len(positive_a), len(positive_b))
    rng.shuffle(positive_a)
    rng.shuffle(positive_b)
    valid_keys = positive_a[:n] + positive_b[:n]
    rng.shuffle(valid_keys)

    examples: list[tuple[str, str, str]] = []
    for input_key in valid_keys:
        if input_key not in gold or input_key not in negatives:
            continue
        all_pairs = [(c, r) for c in positives[input_key] for r in negatives[input_key]]
        rng.shuffle(all_pairs)
        for i in range(num_pairs):
            if i >= len(all_pairs):
                continue
            examples.append((input_key, *all_pairs[i]))
    return {
        "eligible_a": eligible_a,
        "eligible_b": eligible_b,
        "keys": valid_keys,
        "examples": examples,
    }
