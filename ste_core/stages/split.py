"""Stage `split`: held-out eval instructions and training instructions, stable by content hash.

The split is deterministic: an instruction's place depends only on (seed, its content hash), never
on file order. The eval set is the `eval_size` instructions with the smallest split key, the train
set the next `train_size` (or all the rest). Both are found with bounded heaps, so a split holds
at most eval_size + train_size instructions in memory, whatever the pool's size. Instructions of
reused eval pairs (`evaluation.pairs_path`) go to neither side: they must not leak into training.

Files: data/instructions.jsonl (or data/filtered.jsonl with [filter]) -> data/eval.jsonl +
data/train.jsonl.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ste_core.errors import ConfigurationError
from ste_core.records import Funnel, Instruction, content_hash
from ste_core.run.io import count_lines, read_rows, write_jsonl
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.load import normalise_text

__all__ = ["STAGE", "Split", "SplitCounts", "split_instructions", "split_key"]


class SplitCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "pool": "instructions in the pool",
        "eval": "held out for evaluation",
        "train": "for training",
        "excluded_eval_overlap": "left out (also in the eval set)",
    }

    pool: int = 0
    eval: int = 0
    train: int = 0
    excluded_eval_overlap: int = 0

    def funnel(self) -> Funnel:
        return Funnel(eval_instructions=self.eval, train_instructions=self.train)


def split_key(instruction_id: str, seed: int) -> str:
    """The sort key that decides an instruction's split (stable: content hash and seed only)."""
    return content_hash("split", seed, instruction_id)


@dataclass
class Split:
    """The eval instructions (a list, small) and the train instructions (a re-iterable).

    `excluded` counts the instructions left out because of `exclude_ids`; with `train_size=None`
    it is final once `train()` has been iterated.
    """

    eval: list[Instruction]
    train: Callable[[], Iterator[Instruction]]
    _excluded: list[int] = field(default_factory=lambda: [0], repr=False)

    @property
    def excluded(self) -> int:
        return self._excluded[0]


def split_instructions(
    source: Callable[[], Iterable[Instruction]],
    *,
    eval_size: int,
    train_size: int | None,
    seed: int,
    exclude_ids: Iterable[str] = (),
) -> Split:
    """Split the pool produced by `source()` (called once or twice; it must give the same items).

    eval = the `eval_size` instructions with the smallest `split_key`; train = the next
    `train_size` of them (sorted by key), or with `train_size=None` every other instruction in
    source order. Instructions whose id is in `exclude_ids` (e.g. the instructions of reused eval
    pairs) go to neither side.
    """
    excluded = frozenset(exclude_ids)
    counter = [0]

    def candidates() -> Iterator[Instruction]:
        counter[0] = 0
        for inst in source():
            if inst.id in excluded:
                counter[0] += 1
                continue
            yield inst

    def key(inst: Instruction) -> str:
        return split_key(inst.id, seed)

    if train_size is not None:
        both = heapq.nsmallest(eval_size + train_size, candidates(), key=key)
        eval_part, train_part = both[:eval_size], both[eval_size:]
        return Split(eval=eval_part, train=lambda: iter(train_part), _excluded=counter)

    eval_part = heapq.nsmallest(eval_size, candidates(), key=key) if eval_size else []
    eval_ids = frozenset(i.id for i in eval_part)

    def train() -> Iterator[Instruction]:
        return (i for i in candidates() if i.id not in eval_ids)

    return Split(eval=eval_part, train=train, _excluded=counter)


async def split(step: Step) -> SplitCounts:
    ctx = step.ctx
    cfg = ctx.config
    rundir = ctx.rundir
    pool = rundir.data("filtered" if cfg.filter.enabled else "instructions")
    exclude: set[str] = set()
    eval_size = cfg.evaluation.eval_size
    if cfg.evaluation.pairs_path:
        # Reused eval pairs: their instructions must not leak into training.
        eval_size = 0
        for p in ctx.read_pairs_file(cfg.evaluation.pairs_path, "evaluation.pairs_path"):
            exclude.add(Instruction.from_text(normalise_text(p.instruction)).id)
    result = split_instructions(
        lambda: read_rows(pool, Instruction),
        eval_size=eval_size,
        train_size=cfg.data.train_size,
        seed=cfg.run.seed,
        exclude_ids=exclude,
    )
    write_jsonl(rundir.data("eval"), result.eval)
    n_train = write_jsonl(rundir.data("train"), result.train())
    pool_size = count_lines(pool)
    if eval_size and len(result.eval) < eval_size:
        ctx.reporter.warning(
            f"split: only {len(result.eval)} eval instructions (evaluation.eval_size = "
            f"{eval_size}); the pool has {pool_size}"
        )
    if n_train == 0:
        raise ConfigurationError(
            f"split: no training instructions left: the pool has {pool_size}, of which "
            f"{len(result.eval)} went to eval and {result.excluded} were excluded (they are in "
            "the reused eval pairs). Add instructions or lower evaluation.eval_size."
        )
    ctx.store.set_state(
        "split",
        {"eval_ids": [i.id for i in result.eval], "train": n_train, "seed": cfg.run.seed},
    )
    return SplitCounts(
        pool=pool_size,
        eval=len(result.eval),
        train=n_train,
        excluded_eval_overlap=result.excluded,
    )


STAGE = Stage(
    name="split",
    scope="run",
    run=split,
    counts=SplitCounts,
    # classify applies only when [filter] is enabled; then split reads its filtered.jsonl
    needs=("load", "classify"),
    summary="held-out eval instructions and training ones, stable by content hash",
)
