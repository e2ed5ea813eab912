"""Run-level data steps: load the instructions, classify them (optional filter), split them.

Files (under data/): instructions.jsonl -> [classified, classify_failures, filtered].jsonl ->
train.jsonl + eval.jsonl.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from ste_core.data import LoadReport, load_instructions, normalise_text, split_instructions
from ste_core.errors import ConfigurationError
from ste_core.records import Instruction
from ste_core.rundir import count_lines, jsonl_writer, read_jsonl
from ste_core.runtime import RunContext
from ste_core.stages.classify import (
    ClassifyFailure,
    category_counts,
    classify_instructions,
    classify_request,
    pick_balanced,
    quotas,
)
from ste_core.stages.ordering import in_input_order
from ste_core.steps.common import check_budget, read_external_pairs

__all__ = ["classify", "load", "split"]


async def load(ctx: RunContext) -> dict[str, int]:
    """Stage `load`: read, normalise and de-duplicate [data] into data/instructions.jsonl."""
    report = LoadReport()
    with jsonl_writer(ctx.rundir.data("instructions")) as w:
        for inst in load_instructions(ctx.config.data, report):
            w.write(inst)
            if report.kept % 1000 == 0:
                ctx.reporter.progress(report.kept)
                await asyncio.sleep(0)  # a long synchronous loop: let a cancel (Ctrl-C, SIGTERM) in
    counts = report.counts()
    for reason, where in report.examples.items():
        ctx.reporter.warning(
            f"load: dropped {report.dropped[reason]} row(s) as {reason} (first: {where})"
        )
    if report.kept == 0:
        raise ConfigurationError(
            f"data: no instructions left after loading ({counts}); check data.path, the "
            "field settings and data.max_chars"
        )
    return counts


async def classify(ctx: RunContext) -> dict[str, int]:
    """Stage `classify` ([filter] enabled): a category per instruction by the generator model,
    then a (balanced) subset of the chosen categories in data/filtered.jsonl."""
    cfg = ctx.config
    f = cfg.filter
    rundir = ctx.rundir
    scheduler = ctx.scheduler("generator")
    template = ctx.template(f.template)
    model = f.model or cfg.generator.model
    params = cfg.generator.params.to_params().model_copy(
        update={"temperature": 0.0, "top_p": 1.0, "max_tokens": f.max_tokens}
    )
    source = rundir.data("instructions")

    def instructions() -> Iterator[Instruction]:
        return read_jsonl(source, Instruction)

    descriptions = f.category_descriptions
    categories_text = None
    if descriptions is not None:
        from ste_prompts import format_categories

        categories_text = format_categories(descriptions)
    check_budget(
        ctx,
        scheduler,
        (
            classify_request(
                i,
                model=model,
                template=template,
                categories_text=categories_text,
                params=params,
            )
            for i in instructions()
        ),
        "classify",
    )
    counts = {"instructions": 0, "classified": 0, "api_errors": 0, "parse_errors": 0}
    ctx.reporter.progress(0, count_lines(source))
    results = classify_instructions(
        scheduler,
        instructions(),
        model=model,
        template=template,
        params=params,
        categories=descriptions,
    )
    ordered = in_input_order(
        results,
        (i.id for i in instructions()),
        lambda r: r.instruction_id if isinstance(r, ClassifyFailure) else r.id,
    )
    classified = rundir.data("classified")
    with jsonl_writer(classified) as w, jsonl_writer(rundir.data("classify_failures")) as wf:
        async for r in ordered:
            counts["instructions"] += 1
            if isinstance(r, ClassifyFailure):
                counts["api_errors" if r.status == "api_error" else "parse_errors"] += 1
                wf.write(r)
            else:
                counts["classified"] += 1
                w.write(r)
    per_category = category_counts(read_jsonl(classified, Instruction), f.difficulties)
    wanted = quotas(per_category, f.categories, per_category=f.per_category, balance=f.balance)
    kept = 0
    with jsonl_writer(rundir.data("filtered")) as w:
        for inst in pick_balanced(
            read_jsonl(classified, Instruction),
            wanted,
            seed=cfg.run.seed,
            difficulties=f.difficulties,
        ):
            w.write(inst)
            kept += 1
    for c, n in sorted(per_category.items()):
        counts[f"category_{c}"] = n
    absent = [c for c in f.categories if per_category.get(c, 0) == 0]
    if absent:
        ctx.reporter.warning(
            f"filter: no instruction was classified as {', '.join(absent)}; the balanced "
            "subset uses the other chosen categories"
        )
    counts["kept"] = kept
    if kept == 0:
        raise ConfigurationError(
            f"filter: no instruction of the categories {f.categories} was found "
            f"(classified: {dict(per_category)}); change filter.categories or disable "
            "the filter"
        )
    return counts


async def split(ctx: RunContext) -> dict[str, int]:
    """Stage `split`: held-out eval instructions and training ones, stable by content hash."""
    cfg = ctx.config
    rundir = ctx.rundir
    pool = rundir.data("filtered" if cfg.filter.enabled else "instructions")
    exclude: set[str] = set()
    eval_size = cfg.evaluation.eval_size
    if cfg.evaluation.pairs_path:
        # Reused eval pairs: their instructions must not leak into training.
        eval_size = 0
        for p in read_external_pairs(ctx, cfg.evaluation.pairs_path, "evaluation.pairs_path"):
            exclude.add(Instruction.from_text(normalise_text(p.instruction)).id)
    result = split_instructions(
        lambda: read_jsonl(pool, Instruction),
        eval_size=eval_size,
        train_size=cfg.data.train_size,
        seed=cfg.run.seed,
        exclude_ids=exclude,
    )
    with jsonl_writer(rundir.data("eval")) as w:
        for inst in result.eval:
            w.write(inst)
    n_train = 0
    with jsonl_writer(rundir.data("train")) as w:
        for inst in result.train():
            w.write(inst)
            n_train += 1
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
    return {
        "pool": pool_size,
        "eval": len(result.eval),
        "train": n_train,
        "excluded_eval_overlap": result.excluded,
    }
