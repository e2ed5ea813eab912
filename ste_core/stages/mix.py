"""Stage `mix` (the mixed recipe): the iteration's training pairs from both recipes, by ratio.

With `data.recipe = "mixed"`, stage `worse` writes the instruction recipe's pairs to
iter_i/instruction_pairs.jsonl and stage `solve` the verifiable recipe's to
iter_i/verifiable_pairs.jsonl; this stage writes iter_i/pairs.jsonl (what the judge reads) with
as many pairs as the two files allow while a share `data.verifiable_ratio` of them comes from
problems. Which pairs of the larger side are left out is decided by a seeded hash of each pair's
id (stable across runs and resumes, independent of file order); the kept pairs keep their input
order, instruction pairs first. Left-out pairs are counted (`over_ratio`), never judged: judging
is where a pair costs most (both orders, N samples each).

The other recipes write pairs.jsonl directly (`recipe_pairs_name`), and this stage is off.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ste_core.records import Funnel, PairRecipe, ResponsePair, content_hash
from ste_core.run.io import read_rows, write_jsonl
from ste_core.stages.base import Counts, Stage, Step

if TYPE_CHECKING:
    from ste_core.config import Config

__all__ = ["STAGE", "MixCounts", "mix_sizes", "recipe_pairs_name"]


def recipe_pairs_name(config: Config, recipe: PairRecipe) -> str:
    """The iter_i/ file `recipe`'s pairs go to: pairs.jsonl (the judge's input), unless the
    recipes are mixed; then each has its own file and this stage writes pairs.jsonl."""
    if config.data.recipe != "mixed":
        return "pairs.jsonl"
    return "instruction_pairs.jsonl" if recipe == "instructions" else "verifiable_pairs.jsonl"


class MixCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "instruction_pairs": "instruction pairs",
        "verifiable_pairs": "verifiable pairs",
        "kept_instructions": "instruction pairs kept",
        "kept_verifiable": "verifiable pairs kept",
        "over_ratio": "left out to keep data.verifiable_ratio",
    }

    instruction_pairs: int = 0
    verifiable_pairs: int = 0
    kept_instructions: int = 0
    kept_verifiable: int = 0
    over_ratio: int = 0

    def funnel(self) -> Funnel:
        return Funnel(
            pairs=self.kept_instructions + self.kept_verifiable,
            drops={"over_ratio": self.over_ratio} if self.over_ratio else {},
        )


def mix_sizes(instruction_pairs: int, verifiable_pairs: int, ratio: float) -> tuple[int, int]:
    """(instruction pairs, verifiable pairs) to keep: the most pairs such that the verifiable
    share is `ratio` (rounded to whole pairs), never more than either side has."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be between 0 and 1 (exclusive), got {ratio}")
    if verifiable_pairs / ratio <= instruction_pairs / (1.0 - ratio):
        # problems are the scarce side: keep them all
        instructions = round(verifiable_pairs * (1.0 - ratio) / ratio)
        return min(instruction_pairs, instructions), verifiable_pairs
    verifiable = round(instruction_pairs * ratio / (1.0 - ratio))
    return instruction_pairs, min(verifiable_pairs, verifiable)


def _kept_ids(path: Path, keep: int, seed: int) -> set[str]:
    ids = (p.id for p in read_rows(path, ResponsePair))
    return set(heapq.nsmallest(keep, ids, key=lambda i: content_hash("mix", seed, i)))


def _count(path: Path) -> int:
    return sum(1 for _ in read_rows(path, ResponsePair))


async def mix(step: Step) -> MixCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config
    assert cfg.data.verifiable_ratio is not None  # the config refuses "mixed" without it
    sides = {
        recipe: ctx.rundir.iter_file(i, recipe_pairs_name(cfg, recipe))
        for recipe in ("instructions", "verifiable")
    }
    n_inst, n_ver = _count(sides["instructions"]), _count(sides["verifiable"])
    k_inst, k_ver = mix_sizes(n_inst, n_ver, cfg.data.verifiable_ratio)
    keep = _kept_ids(sides["instructions"], k_inst, cfg.run.seed) | _kept_ids(
        sides["verifiable"], k_ver, cfg.run.seed
    )

    def kept() -> Iterator[ResponsePair]:
        pairs = chain.from_iterable(read_rows(p, ResponsePair) for p in sides.values())
        return (p for p in pairs if p.id in keep)

    write_jsonl(ctx.rundir.iter_file(i, "pairs.jsonl"), kept())
    return MixCounts(
        instruction_pairs=n_inst,
        verifiable_pairs=n_ver,
        kept_instructions=k_inst,
        kept_verifiable=k_ver,
        over_ratio=n_inst + n_ver - k_inst - k_ver,
    )


def _mixed(config: Config) -> bool:
    return config.data.recipe == "mixed"


STAGE = Stage(
    name="mix",
    scope="iteration",
    run=mix,
    counts=MixCounts,
    needs=("worse", "solve"),
    enabled=_mixed,
    enabled_when='data.recipe = "mixed"',
    summary="the pairs of both recipes, data.verifiable_ratio of them from problems",
)
