"""Stage `training_data` (step 7 of the method): SFT and DPO examples from the kept judgements,
then the training file of the configured method in the fine-tune backend's own format.

* SFT: input = the judge prompt for (x, A, B) in the kept order, target = the kept (correct)
  judgement text.
* DPO: same prompt; chosen = a correct judgement, rejected = a wrong one, a tie or one without a
  verdict, up to `num_pairs` pairs per prompt. Correct samples are cycled in their seeded order so
  that several pairs use different chosen texts when there are several.

`examples_for_pair` is the pure step (one pair, its judgements, its kept entries). `build_examples`
streams a whole iteration: the judgement texts it needs are parked in a temporary SQLite file and
joined with the pairs file one pair at a time, so memory does not grow with the dataset.

Files (under iter_i/): pairs.jsonl + judgements.jsonl + selected.jsonl -> sft.jsonl + dpo.jsonl
-> train.<backend>.<method>.jsonl.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ste_core.errors import SteError
from ste_core.records import (
    DPOExample,
    Funnel,
    Judgement,
    Kept,
    Order,
    ResponsePair,
    SFTExample,
)
from ste_core.run.io import Rows, jsonl_writer, read_rows
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.judge import judge_messages, read_judgements

if TYPE_CHECKING:
    from ste_core.run.context import RunContext
    from ste_prompts import Template

__all__ = [
    "STAGE",
    "TrainingDataCounts",
    "build_examples",
    "examples_for_pair",
    "training_file",
]


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


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


class TrainingDataCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "sft": "SFT examples",
        "dpo": "DPO pairs",
        "training_rows": "rows in the training file",
    }

    sft: int = 0
    dpo: int = 0
    #: rows of the training file the fine-tune backend wrote (the configured method's)
    training_rows: int = 0

    def funnel(self) -> Funnel:
        return Funnel(sft_examples=self.sft, dpo_examples=self.dpo)


def training_file(ctx: RunContext, i: int) -> Path:
    """The training file of iteration i, in the fine-tune backend's format."""
    cfg = ctx.config.finetune
    return ctx.rundir.iter_file(i, f"train.{cfg.backend}.{cfg.method.value}.jsonl")


async def training_data(step: Step) -> TrainingDataCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config
    rundir = ctx.rundir
    template = ctx.template(cfg.judge.template)
    n_sft = n_dpo = 0
    with (
        jsonl_writer(rundir.iter_file(i, "sft.jsonl")) as ws,
        jsonl_writer(rundir.iter_file(i, "dpo.jsonl")) as wd,
    ):
        for sft, dpo in build_examples(
            read_rows(rundir.iter_file(i, "pairs.jsonl"), ResponsePair),
            read_judgements(rundir.iter_file(i, "judgements.jsonl")),
            read_rows(rundir.iter_file(i, "selected.jsonl"), Kept),
            template=template,
            num_pairs=cfg.finetune.dpo_pairs_per_prompt,
            workdir=rundir.iter_dir(i),
        ):
            for sft_ex in sft:
                ws.write(sft_ex)
            n_sft += len(sft)
            for dpo_ex in dpo:
                wd.write(dpo_ex)
            n_dpo += len(dpo)
            await asyncio.sleep(0)  # a long synchronous loop: let a cancel (Ctrl-C, SIGTERM) in
    method = cfg.finetune.method
    n_examples = n_sft if method.value == "sft" else n_dpo
    if n_examples == 0:
        raise SteError(
            f"iteration {i}: no {method.value.upper()} training examples (sft {n_sft}, dpo "
            f"{n_dpo}); the judge got no pair right, or (DPO) never wrong. See "
            f"{rundir.iter_file(i, 'judgements.jsonl')} and the funnel counts."
        )
    path = training_file(ctx, i)
    source = rundir.iter_file(i, f"{method.value}.jsonl")
    examples: Rows[SFTExample] | Rows[DPOExample] = (
        read_rows(source, SFTExample) if method.value == "sft" else read_rows(source, DPOExample)
    )
    # The backend writes its own format; the rename makes the file appear whole or not at all.
    tmp = path.with_name(path.name + ".tmp")
    written = ctx.finetune_backend().write_training_file(examples, method, tmp)
    tmp.replace(path)
    return TrainingDataCounts(sft=n_sft, dpo=n_dpo, training_rows=int(written))


STAGE = Stage(
    name="training_data",
    scope="iteration",
    run=training_data,
    counts=TrainingDataCounts,
    needs=("select",),
    summary="SFT and DPO examples of the kept judgements; the backend's training file",
)
