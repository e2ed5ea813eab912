"""Stage `training_data` (step 7 of the method): SFT and DPO examples from the kept judgements,
or GRPO prompts from the pairs, then the training file of the iteration's method in the
fine-tune backend's own format.

* SFT: for each (pair, order) kept `for_sft`, input = the judge prompt for (x, A, B) in that
  order, target = the kept (correct) judgement text.
* DPO: for each (pair, order) kept `for_dpo`, same prompt; chosen = a correct judgement,
  rejected = a wrong one, a tie or one without a verdict: up to `num_pairs` distinct
  (chosen, rejected) combinations drawn at random (seeded) from correct x wrong, as Meta's
  `prepare_dpo_data` draws them (facebookresearch/RAM, projects/self_taught_evaluator/src).
* Rows are written in a seeded random order (every SFT row, and every DPO row, on its own key),
  not pair by pair: the two orders of a pair do not sit side by side in a training batch.
* GRPO (`finetune.method = "grpo"`): no judgements are needed; each pair gives the judge prompt
  in both orders with its known label (`grpo_examples`), in pair order: the trainer samples and
  rewards the judgements itself (`ste_core.training.rewards`), and its sampler keeps a pair's
  two orders together.

`examples_for_pair` is the pure step (one pair, its judgements, its kept entries).
`build_examples` streams a whole iteration: the pairs and the judgement texts it needs are parked
in a temporary SQLite file, and so is one small row per training example (its seeded sort key
and sample indices), which SQLite sorts; examples are then built one at a time in that order.
Memory therefore stays bounded by the kept entries' indices, not by the texts or the rows.

Files (under iter_i/): pairs.jsonl + judgements.jsonl + selected.jsonl -> sft.jsonl + dpo.jsonl
-> train.<backend>.<method>.jsonl; GRPO: pairs.jsonl -> grpo.jsonl -> train.<backend>.grpo.jsonl.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ste_core.errors import SteError
from ste_core.records import (
    DPOExample,
    FineTuneMethod,
    Funnel,
    GRPOExample,
    Judgement,
    Kept,
    Order,
    ResponsePair,
    SFTExample,
    content_hash,
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
    "dpo_combinations",
    "examples_for_pair",
    "grpo_examples",
    "training_file",
]


def dpo_combinations(k: Kept, *, seed: int, num_pairs: int) -> list[tuple[int, int]]:
    """Up to `num_pairs` distinct (chosen, rejected) sample indices of `k`, drawn at random
    (seeded by `seed` and the entry) from every correct x wrong combination: Meta's
    `all_pairs` shuffled and cut to `num_pairs`. Empty unless `k.for_dpo`."""
    if not k.for_dpo or not k.rejected or num_pairs < 1:
        return []
    # One sha256 of the entry, then a cheap hash per combination: 64 samples per order make
    # up to 1,024 combinations, ranked without building a JSON blob for each.
    base = content_hash("dpo", seed, k.pair_id, k.order.value)

    def rank(c: int, w: int) -> bytes:
        return hashlib.blake2b(f"{base}:{c}:{w}".encode(), digest_size=8).digest()

    combos = [(c, w) for c in k.chosen for w in k.rejected]
    return sorted(combos, key=lambda cw: rank(*cw))[:num_pairs]


def _sft_example(pair: ResponsePair, order: Order, target: str, template: Template) -> SFTExample:
    return SFTExample(
        messages=judge_messages(template, pair, order),
        completion=target,
        pair_id=pair.id,
        order=order,
    )


def _dpo_example(
    pair: ResponsePair, order: Order, chosen: str, rejected: str, template: Template
) -> DPOExample:
    return DPOExample(
        messages=judge_messages(template, pair, order),
        chosen=chosen,
        rejected=rejected,
        pair_id=pair.id,
        order=order,
    )


def examples_for_pair(
    pair: ResponsePair,
    kept: Iterable[Kept],
    texts: Mapping[tuple[Order, int], str],
    *,
    template: Template,
    num_pairs: int = 1,
    seed: int = 0,
) -> tuple[list[SFTExample], list[DPOExample]]:
    """SFT and DPO examples of one pair. `texts[(order, sample_index)]` = judgement text."""
    sft: list[SFTExample] = []
    dpo: list[DPOExample] = []
    for k in kept:
        if k.for_sft:
            sft.append(_sft_example(pair, k.order, texts[(k.order, k.sample_index)], template))
        for c, w in dpo_combinations(k, seed=seed, num_pairs=num_pairs):
            good, bad = texts[(k.order, c)], texts[(k.order, w)]
            dpo.append(_dpo_example(pair, k.order, good, bad, template))
    return sft, dpo


def grpo_examples(pair: ResponsePair, *, template: Template) -> list[GRPOExample]:
    """The GRPO prompts of one pair: the judge prompt in both orders, with the known label.

    Both orders always (whatever `judge.orders` says): the consistency reward compares them."""
    return [
        GRPOExample(
            messages=judge_messages(template, pair, order),
            label=order.correct_verdict,
            pair_id=pair.id,
            order=order,
            parser=template.parser,
            verdict_rule=template.verdict_rule,
        )
        for order in (Order.AB, Order.BA)
    ]


def _sft_row_key(seed: int, k: Kept) -> str:
    return content_hash("sft-row", seed, k.pair_id, k.order.value)


def _dpo_row_key(seed: int, k: Kept, combo: tuple[int, int]) -> str:
    return content_hash("dpo-row", seed, k.pair_id, k.order.value, *combo)


def build_examples(
    pairs: Iterable[ResponsePair],
    judgements: Iterable[object],
    kept: Iterable[Kept],
    *,
    template: Template,
    num_pairs: int,
    seed: int,
    workdir: Path,
) -> Iterator[SFTExample | DPOExample]:
    """Stream every SFT example, then every DPO example, each kind in a seeded random order.

    `workdir` holds the temporary join file (removed at the end). Kept entries whose pair is not
    in `pairs` yield nothing.
    """
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
        db.execute("CREATE TABLE p (pair_id TEXT PRIMARY KEY, json TEXT)")
        # One row per training example to come: its seeded sort key and sample indices.
        db.execute(
            "CREATE TABLE ex (kind TEXT, sort_key TEXT, pair_id TEXT, ord TEXT, "
            "chosen INTEGER, rejected INTEGER)"
        )
        need: dict[tuple[str, str], set[int]] = {}
        for k in kept:
            units: list[tuple[str, str, str, str, int, int]] = []
            if k.for_sft:
                units.append(
                    ("sft", _sft_row_key(seed, k), k.pair_id, k.order.value, k.sample_index, -1)
                )
            for combo in dpo_combinations(k, seed=seed, num_pairs=num_pairs):
                units.append(
                    ("dpo", _dpo_row_key(seed, k, combo), k.pair_id, k.order.value, *combo)
                )
            db.executemany("INSERT INTO ex VALUES (?,?,?,?,?,?)", units)
            wanted = need.setdefault((k.pair_id, k.order.value), set())
            wanted.update(i for u in units for i in u[4:] if i >= 0)
        rows = (
            (j.pair_id, Order(j.order).value, j.sample_index, j.text)
            for j in judgements
            if isinstance(j, Judgement)
            and j.sample_index in need.get((j.pair_id, Order(j.order).value), ())
        )
        db.executemany("INSERT OR REPLACE INTO t VALUES (?,?,?,?)", rows)
        pair_ids = {pid for pid, _ in need}
        del need
        db.executemany(
            "INSERT OR REPLACE INTO p VALUES (?,?)",
            ((p.id, p.model_dump_json()) for p in pairs if p.id in pair_ids),
        )
        db.commit()
        yield from _ordered_examples(db, "sft", template)
        yield from _ordered_examples(db, "dpo", template)
    finally:
        db.close()
        db_path.unlink(missing_ok=True)


def _ordered_examples(
    db: sqlite3.Connection, kind: str, template: Template
) -> Iterator[SFTExample | DPOExample]:
    # A second cursor reads the pair and the texts while the ordered one is open.
    lookup = db.cursor()

    def text(pair_id: str, order: str, sample: int) -> str:
        found = lookup.execute(
            "SELECT text FROM t WHERE pair_id = ? AND ord = ? AND sample = ?",
            (pair_id, order, sample),
        ).fetchone()
        if found is None:
            raise SteError(
                f"no judgement text for pair {pair_id}, order {order}, sample {sample}: "
                "selected.jsonl does not match judgements.jsonl; re-run the select stage"
            )
        return str(found[0])

    units = db.execute(
        "SELECT ex.pair_id, ex.ord, ex.chosen, ex.rejected, p.json FROM ex "
        "JOIN p ON p.pair_id = ex.pair_id WHERE ex.kind = ? ORDER BY ex.sort_key",
        (kind,),
    )
    for pair_id, order, chosen, rejected, pair_json in units:
        pair = ResponsePair.model_validate_json(pair_json)
        o = Order(order)
        if kind == "sft":
            yield _sft_example(pair, o, text(pair_id, order, chosen), template)
        else:
            good, bad = text(pair_id, order, chosen), text(pair_id, order, rejected)
            yield _dpo_example(pair, o, good, bad, template)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


class TrainingDataCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "sft": "SFT examples",
        "dpo": "DPO pairs",
        "grpo": "GRPO prompts",
        "training_rows": "rows in the training file",
    }

    sft: int = 0
    dpo: int = 0
    grpo: int = 0
    #: rows of the training file the fine-tune backend wrote (the configured method's)
    training_rows: int = 0

    def funnel(self) -> Funnel:
        if self.grpo:
            return Funnel(grpo_prompts=self.grpo)
        return Funnel(sft_examples=self.sft, dpo_examples=self.dpo)


def training_file(ctx: RunContext, i: int) -> Path:
    """The training file of iteration i, in the fine-tune backend's format."""
    cfg = ctx.config.finetune
    return ctx.rundir.iter_file(i, f"train.{cfg.backend}.{cfg.method_at(i).value}.jsonl")


def _write_training_file(
    ctx: RunContext,
    i: int,
    examples: Rows[SFTExample] | Rows[DPOExample] | Rows[GRPOExample],
    method: FineTuneMethod,
) -> int:
    path = training_file(ctx, i)
    # The backend writes its own format; the rename makes the file appear whole or not at all.
    tmp = path.with_name(path.name + ".tmp")
    written = ctx.finetune_backend().write_training_file(examples, method, tmp)
    tmp.replace(path)
    return int(written)


async def grpo_training_data(step: Step) -> TrainingDataCounts:
    """GRPO: the judge prompts of every pair, both orders, with their labels."""
    ctx, i = step.ctx, step.iteration
    rundir = ctx.rundir
    template = ctx.template(ctx.config.judge.template)
    source = rundir.iter_file(i, "grpo.jsonl")
    with jsonl_writer(source) as w:
        for n, pair in enumerate(read_rows(rundir.iter_file(i, "pairs.jsonl"), ResponsePair)):
            for example in grpo_examples(pair, template=template):
                w.write(example)
            if n % 256 == 0:
                await asyncio.sleep(0)  # a long synchronous loop: let a cancel (Ctrl-C) in
    if w.count == 0:
        raise SteError(
            f"iteration {i}: no pairs to train GRPO on; see {rundir.iter_file(i, 'pairs.jsonl')} "
            "and the funnel counts of the baseline and worse stages."
        )
    written = _write_training_file(ctx, i, read_rows(source, GRPOExample), FineTuneMethod.GRPO)
    return TrainingDataCounts(grpo=w.count, training_rows=written)


async def training_data(step: Step) -> TrainingDataCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config
    method = cfg.finetune.method_at(i)
    if method is FineTuneMethod.GRPO:
        return await grpo_training_data(step)
    rundir = ctx.rundir
    template = ctx.template(cfg.judge.template)
    n_sft = n_dpo = 0
    with (
        jsonl_writer(rundir.iter_file(i, "sft.jsonl")) as ws,
        jsonl_writer(rundir.iter_file(i, "dpo.jsonl")) as wd,
    ):
        for n, example in enumerate(
            build_examples(
                read_rows(rundir.iter_file(i, "pairs.jsonl"), ResponsePair),
                read_judgements(rundir.iter_file(i, "judgements.jsonl")),
                read_rows(rundir.iter_file(i, "selected.jsonl"), Kept),
                template=template,
                num_pairs=cfg.finetune.dpo_pairs_per_prompt,
                seed=cfg.run.seed,
                workdir=rundir.iter_dir(i),
            )
        ):
            if isinstance(example, SFTExample):
                ws.write(example)
                n_sft += 1
            else:
                wd.write(example)
                n_dpo += 1
            if n % 256 == 0:
                await asyncio.sleep(0)  # a long synchronous loop: let a cancel (Ctrl-C) in
    n_examples = n_sft if method.value == "sft" else n_dpo
    if n_examples == 0:
        raise SteError(
            f"iteration {i}: no {method.value.upper()} training examples (sft {n_sft}, dpo "
            f"{n_dpo}); the judge got no pair right, or (DPO) never wrong. See "
            f"{rundir.iter_file(i, 'judgements.jsonl')} and the funnel counts."
        )
    source = rundir.iter_file(i, f"{method.value}.jsonl")
    examples: Rows[SFTExample] | Rows[DPOExample] = (
        read_rows(source, SFTExample) if method.value == "sft" else read_rows(source, DPOExample)
    )
    written = _write_training_file(ctx, i, examples, method)
    return TrainingDataCounts(sft=n_sft, dpo=n_dpo, training_rows=written)


STAGE = Stage(
    name="training_data",
    scope="iteration",
    run=training_data,
    counts=TrainingDataCounts,
    # select at an iteration trained on judgements; at a GRPO iteration (no select) the pairs
    needs=("select", "worse"),
    summary="SFT and DPO examples of the kept judgements (GRPO: the judge prompts of the "
    "pairs); the backend's training file",
)
