"""Training steps of iteration i: select judgements, build SFT/DPO data, fine-tune M_i.

Files (under iter_i/): judgements.jsonl -> selected.jsonl -> sft.jsonl + dpo.jsonl ->
train.<backend>.<method>.jsonl (the fine-tune backend's own format) -> the model in the store.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ste_core.errors import SteError
from ste_core.records import DPOExample, ResponsePair, SFTExample
from ste_core.rundir import count_lines, jsonl_writer, read_jsonl
from ste_core.runtime import RunContext
from ste_core.stages import select as selection
from ste_core.stages.finetune import run_finetune
from ste_core.stages.training_data import build_examples
from ste_core.steps.judging import read_judgements

__all__ = ["finetune", "select", "training_data", "training_file"]


def training_file(ctx: RunContext, i: int) -> Path:
    """The training file of iteration i, in the fine-tune backend's format."""
    cfg = ctx.config.finetune
    return ctx.rundir.iter_file(i, f"train.{cfg.backend}.{cfg.method.value}.jsonl")


async def select(ctx: RunContext, i: int) -> dict[str, int]:
    """Stage `select`: rejection sampling (correct judgements), agreement threshold, balance."""
    cfg = ctx.config
    result = selection.select(
        read_judgements(ctx.rundir.iter_file(i, "judgements.jsonl")),
        seed=cfg.run.seed,
        agreement_threshold=cfg.selection.agreement_threshold,
        balance=cfg.selection.balance_labels,
    )
    with jsonl_writer(ctx.rundir.iter_file(i, "selected.jsonl")) as w:
        for k in result.kept:
            w.write(k)
    return result.counts


async def training_data(ctx: RunContext, i: int) -> dict[str, int]:
    """Stage `training_data`: SFT and DPO examples of the kept judgements, then the training
    file of the configured method."""
    cfg = ctx.config
    rundir = ctx.rundir
    template = ctx.template(cfg.judge.template)
    n_sft = n_dpo = 0
    with (
        jsonl_writer(rundir.iter_file(i, "sft.jsonl")) as ws,
        jsonl_writer(rundir.iter_file(i, "dpo.jsonl")) as wd,
    ):
        for sft, dpo in build_examples(
            read_jsonl(rundir.iter_file(i, "pairs.jsonl"), ResponsePair),
            read_judgements(rundir.iter_file(i, "judgements.jsonl")),
            read_jsonl(rundir.iter_file(i, "selected.jsonl"), selection.Kept),
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
    model_cls: type[SFTExample] | type[DPOExample] = (
        SFTExample if method.value == "sft" else DPOExample
    )
    # The backend writes its own format; the rename makes the file appear whole or not at all.
    tmp = path.with_name(path.name + ".tmp")
    written = ctx.finetune_backend().write_training_file(read_jsonl(source, model_cls), method, tmp)
    tmp.replace(path)
    return {"sft": n_sft, "dpo": n_dpo, "training_rows": int(written)}


async def finetune(ctx: RunContext, i: int) -> dict[str, int]:
    """Stage `finetune`: submit (or re-attach to) the job of iteration i and wait for M_i."""
    cfg = ctx.config
    from_model = None
    if cfg.finetune.init_from == "previous" and i > 1:
        from_model = ctx.model_ref(i - 1).model
    spec = cfg.finetune_spec(i, from_model)
    ft = ctx.finetune_backend()
    manifest = ctx.manifest

    def submitted(job_id: str) -> None:
        manifest.upsert_job(
            {
                "iteration": i,
                "job_id": job_id,
                "status": "submitted",
                "base_model": spec.base_model,
                "from_model": from_model,
            }
        )
        manifest.save()
        ctx.reporter.info(f"iteration {i}: fine-tune job {job_id} submitted")

    result = await run_finetune(
        ft,
        spec,
        training_file(ctx, i),
        store=ctx.store,
        state_key=f"finetune/{i}",
        budget=ctx.budget,
        poll_interval_s=cfg.finetune.poll_interval_s,
        max_wait_s=cfg.finetune.max_wait_s,
        cancel_on_interrupt=cfg.finetune.cancel_on_interrupt,
        on_state=ctx.reporter.finetune_state,
        on_submitted=submitted,
    )
    ctx.store.set_state(f"model/{i}", result.model.model_dump(mode="json"))
    manifest.upsert_job(
        {
            "iteration": i,
            "job_id": result.job_id,
            "status": "succeeded",
            "model": result.model.model,
            "cost_usd": result.cost_usd,
        }
    )
    manifest.data["models"][f"iter_{i}"] = result.model.model
    if result.cost_usd and not result.resumed:
        manifest.add_cost("finetune", result.cost_usd)
    manifest.save()
    return {
        "training_rows": count_lines(training_file(ctx, i)),
        "resumed": int(result.resumed),
    }
