"""Step 7 of the method: SFT and DPO examples from the kept judgements.

* SFT: input = the judge prompt for (x, A, B) in the kept order, target = the kept (correct)
  judgement text.
* DPO: same prompt; chosen = a correct judgement, rejected = a wrong one, a tie or one without a
  verdict, up to `num_pairs` pairs per prompt. Correct samples are cycled in their seeded order so
  that several pairs use different chosen texts when there are several.

`examples_for_pair` is the pure step (one pair, its judgements, its kept entries). `build_examples`
streams a whole iteration: the judgement texts it needs are parked in a temporary SQLite file and
joined with the pairs file one pair at a time, so memory does not grow with the dataset.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ste_core.records import DPOExample, Judgement, Order, ResponsePair, SFTExample
from ste_core.stages.judge import judge_messages
from ste_core.stages.select import Kept

if TYPE_CHECKING:
    from ste_prompts import Template

__all__ = ["build_examples", "examples_for_pair"]


def examples_for_pair(
    pair: ResponsePair,
    kept: Iterable[Kept],
    texts: Mapping[tuple[Order, int], str],
    *,
    template: Template,
    num_pairs: int = 1,
) -> tuple[list[SFTExample], list[DPOExample]]:
    """SFT and DPO examples of one pair. `texts[(order, sample_index)]` = judgement text."""
    sft: list[SFTExample] = []
    dpo: list[DPOExample] = []
    for k in kept:
        messages = judge_messages(template, pair, k.order)
        sft.append(
            SFTExample(
                messages=messages,
                completion=texts[(k.order, k.sample_index)],
                pair_id=pair.id,
                order=k.order,
            )
        )
        for j, bad in enumerate(k.rejected[:num_pairs]):
            good = k.chosen[j % len(k.chosen)]
            dpo.append(
                DPOExample(
                    messages=messages,
                    chosen=texts[(k.order, good)],
                    rejected=texts[(k.order, bad)],
                    pair_id=pair.id,
                    order=k.order,
                )
            )
    return sft, dpo


def _needed(k: Kept, num_pairs: int) -> set[int]:
    rejected = k.rejected[:num_pairs]
    chosen = {k.chosen[j % len(k.chosen)] for j in range(len(rejected))} | {k.sample_index}
    return chosen | set(rejected)


def build_examples(
    pairs: Iterable[ResponsePair],
    judgements: Iterable[object],
    kept: Iterable[Kept],
    *,
    template: Template,
    num_pairs: int,
    workdir: Path,
) -> Iterator[tuple[list[SFTExample], list[DPOExample]]]:
    """Stream (sft, dpo) example lists pair by pair, in the pairs' order.

    `workdir` holds the temporary join file (removed at the end). Pairs without kept entries yield
    nothing.
    """
    by_pair: dict[str, list[Kept]] = {}
    for k in kept:
        by_pair.setdefault(k.pair_id, []).append(k)
    need: dict[tuple[str, str], set[int]] = {
        (k.pair_id, k.order.value): _needed(k, num_pairs) for ks in by_pair.values() for k in ks
    }
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "_training_join.sqlite"
    db_path.unlink(missing_ok=True)
    db = sqlite3.connect(str(db_path))
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute(
            "CREATE TABLE t (pair_id TEXT, ord TEXT, sample INTEGER, text TEXT, "
            "PRIMARY KEY (pair_id, ord, sample))"
        )
        rows = (
            (j.pair_id, Order(j.order).value, j.sample_index, j.text)
            for j in judgements
            if isinstance(j, Judgement)
            and j.sample_index in need.get((j.pair_id, Order(j.order).value), ())
        )
        db.executemany("INSERT OR REPLACE INTO t VALUES (?,?,?,?)", rows)
        db.commit()
        del need
        for pair in pairs:
            ks = by_pair.get(pair.id)
            if not ks:
                continue
            texts = {
                (Order(o), s): t
                for o, s, t in db.execute(
                    "SELECT ord, sample, text FROM t WHERE pair_id = ?", (pair.id,)
                )
            }
            yield examples_for_pair(pair, ks, texts, template=template, num_pairs=num_pairs)
    finally:
        db.close()
        db_path.unlink(missing_ok=True)
