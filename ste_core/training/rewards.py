"""The GRPO rewards of judge training: rules on the judgements the judge samples.

Each function scores a batch of sampled judgements (one reward per completion, in the batch's
order) from their verdicts, as the judge template's verdict parser reads them, and the known
label of each prompt (the verdict that names the better response in the order shown):

* `correct_rewards`: 1 when the verdict is the label, else 0 (a tie or no verdict is wrong).
* `consistency_rewards`: J1's position-consistency reward. Both orders of a pair are sampled in
  the same batch; the k-th completion of one order and the k-th of the other are partners, and
  both get 1 when both are correct, else 0. A completion whose pair has no partner for it in the
  batch gets None (not scored: the batch split the pair; the GRPO sampler must not do that).
* `format_rewards`: 1 when the judgement gives one verdict, in its last line: the last non-empty
  line holds a verdict and the text before it holds none; else 0.

The fine-tune backend turns these into its trainer's reward functions and weighs them with
`[finetune.grpo.rewards]` (`GRPORewardWeights`). Pure Python: no torch, no ste_backends.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "REWARDS",
    "consistency_rewards",
    "correct_rewards",
    "format_reward",
    "format_rewards",
]

#: the reward names, in the order the trainer weighs them (the fields of GRPORewardWeights)
REWARDS = ("correct", "consistency", "format")


def correct_rewards(verdicts: Sequence[str | None], labels: Sequence[str]) -> list[float]:
    """1.0 where the verdict is the label (the better response), else 0.0."""
    _same_length(verdicts=verdicts, labels=labels)
    return [1.0 if v == label else 0.0 for v, label in zip(verdicts, labels, strict=True)]


def consistency_rewards(
    verdicts: Sequence[str | None],
    labels: Sequence[str],
    pair_ids: Sequence[str],
    orders: Sequence[str],
) -> list[float | None]:
    """1.0 for a completion that is correct and whose partner in the other order is correct.

    Partners: the k-th completion (in batch order) of a pair in one order and the k-th of the
    same pair in the other order. None for a completion without a partner in this batch."""
    _same_length(verdicts=verdicts, labels=labels, pair_ids=pair_ids, orders=orders)
    positions: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (pair, order) in enumerate(zip(pair_ids, orders, strict=True)):
        positions[(pair, order)].append(i)
    correct = correct_rewards(verdicts, labels)
    out: list[float | None] = [None] * len(verdicts)
    for (pair, order), mine in positions.items():
        others = [v for (p, o), v in positions.items() if p == pair and o != order]
        theirs = others[0] if len(others) == 1 else []
        for k, i in enumerate(mine):
            if k < len(theirs):
                out[i] = 1.0 if correct[i] and correct[theirs[k]] else 0.0
    return out


def format_reward(text: str, parse: Callable[[str], Any]) -> float:
    """1.0 when `text` gives one verdict, in its last non-empty line (see the module doc)."""
    lines = text.rstrip().splitlines()
    if not lines:
        return 0.0
    verdict = parse(text).verdict
    if verdict is None:
        return 0.0
    before = "\n".join(lines[:-1])
    return 1.0 if parse(lines[-1]).verdict == verdict and parse(before).verdict is None else 0.0


def format_rewards(texts: Sequence[str], parsers: Sequence[Callable[[str], Any]]) -> list[float]:
    """`format_reward` of each text with its prompt's verdict parser."""
    _same_length(texts=texts, parsers=parsers)
    return [format_reward(t, p) for t, p in zip(texts, parsers, strict=True)]


def _same_length(**columns: Sequence[Any]) -> None:
    lengths = {name: len(c) for name, c in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"reward inputs differ in length: {lengths}")
