"""Generation steps: baseline responses, then worse responses, giving response pairs.

The same two passes make the frozen eval pairs (stage `eval_pairs`, from data/eval.jsonl) and
each iteration's training pairs (stages `baseline` and `worse`, from data/train.jsonl). Every
item that does not become a pair is written to a drops file and counted as `dropped_<reason>`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from ste_core.errors import SteError
from ste_core.records import Instruction, ResponsePair
from ste_core.rundir import count_lines, jsonl_writer, read_jsonl
from ste_core.runtime import RunContext
from ste_core.stages.generate import (
    Baseline,
    GenerationDrop,
    baseline_request,
    generate_baselines,
    generate_worse,
    worse_request,
)
from ste_core.stages.ordering import in_input_order
from ste_core.steps.common import check_budget, read_external_pairs

__all__ = ["baseline", "eval_pairs", "worse"]


async def eval_pairs(ctx: RunContext) -> dict[str, int]:
    """Stage `eval_pairs`: the frozen pairs every judge is scored on (or the reused ones)."""
    cfg = ctx.config
    rundir = ctx.rundir
    if cfg.evaluation.pairs_path:
        pairs = read_external_pairs(ctx, cfg.evaluation.pairs_path, "evaluation.pairs_path")
        with jsonl_writer(rundir.eval_pairs_path) as w:
            for p in pairs:
                w.write(p)
        return {"pairs": len(pairs), "reused": 1}
    data = rundir.data_dir
    b = await _baselines(
        ctx,
        rundir.data("eval"),
        data / "eval_baselines.jsonl",
        data / "eval_drops.jsonl",
        what="eval baselines",
    )
    w_counts = await _worse(
        ctx,
        data / "eval_baselines.jsonl",
        rundir.eval_pairs_path,
        data / "eval_worse_drops.jsonl",
        what="eval worse",
    )
    counts = {f"baseline_{k}": v for k, v in b.items()}
    counts.update({f"worse_{k}": v for k, v in w_counts.items()})
    counts["pairs"] = w_counts["pairs"]
    if counts["pairs"] == 0:
        raise SteError("eval_pairs: no eval pair survived generation; see data/eval_*drops.jsonl")
    return counts


async def baseline(ctx: RunContext, i: int) -> dict[str, int]:
    """Stage `baseline` of iteration i: a response to every training instruction."""
    rundir = ctx.rundir
    return await _baselines(
        ctx,
        rundir.data("train"),
        rundir.iter_file(i, "baselines.jsonl"),
        rundir.iter_file(i, "baseline_drops.jsonl"),
        what=f"iteration {i} baselines",
    )


async def worse(ctx: RunContext, i: int) -> dict[str, int]:
    """Stage `worse` of iteration i: a worse response per baseline -> iter_i/pairs.jsonl."""
    rundir = ctx.rundir
    drops = rundir.iter_file(i, "worse_drops.jsonl")
    counts = await _worse(
        ctx,
        rundir.iter_file(i, "baselines.jsonl"),
        rundir.iter_file(i, "pairs.jsonl"),
        drops,
        what=f"iteration {i} worse responses",
    )
    if counts["pairs"] == 0:
        raise SteError(f"iteration {i}: no pair survived generation ({counts}); see {drops}")
    return counts


async def _baselines(
    ctx: RunContext, source: Path, out: Path, drops_out: Path, *, what: str
) -> dict[str, int]:
    cfg = ctx.config.generator
    scheduler = ctx.scheduler("generator")
    params = cfg.params.to_params()

    def instructions() -> Iterator[Instruction]:
        return read_jsonl(source, Instruction)

    check_budget(
        ctx,
        scheduler,
        (baseline_request(i, model=cfg.model, params=params) for i in instructions()),
        what,
    )
    ctx.reporter.progress(0, count_lines(source))
    ordered = in_input_order(
        generate_baselines(scheduler, instructions(), model=cfg.model, params=params),
        (i.id for i in instructions()),
        lambda r: r.instruction_id,
    )
    return await _write_kept_and_drops(
        ordered, out, drops_out, seen="instructions", kept="baselines"
    )


async def _worse(
    ctx: RunContext, source: Path, out: Path, drops_out: Path, *, what: str
) -> dict[str, int]:
    cfg = ctx.config.generator
    scheduler = ctx.scheduler("generator")
    params = cfg.params.to_params()
    template = ctx.template(cfg.worse_template)

    def baselines() -> Iterator[Baseline]:
        return read_jsonl(source, Baseline)

    check_budget(
        ctx,
        scheduler,
        (worse_request(b, model=cfg.model, template=template, params=params) for b in baselines()),
        what,
    )
    ctx.reporter.progress(0, count_lines(source))
    ordered = in_input_order(
        generate_worse(scheduler, baselines(), model=cfg.model, template=template, params=params),
        (b.instruction_id for b in baselines()),
        lambda r: r.instruction_id,
    )
    return await _write_kept_and_drops(ordered, out, drops_out, seen="baselines", kept="pairs")


async def _write_kept_and_drops(
    results: AsyncIterator[Baseline | ResponsePair | GenerationDrop],
    out: Path,
    drops_out: Path,
    *,
    seen: str,
    kept: str,
) -> dict[str, int]:
    """Write results to `out` and drops to `drops_out`, counting `seen`, `kept` and
    `dropped_<reason>`."""
    counts = {seen: 0, kept: 0}
    with jsonl_writer(out) as w, jsonl_writer(drops_out) as wd:
        async for r in results:
            counts[seen] += 1
            if isinstance(r, GenerationDrop):
                key = f"dropped_{r.reason}"
                counts[key] = counts.get(key, 0) + 1
                wd.write(r)
            else:
                counts[kept] += 1
                w.write(r)
    return counts
