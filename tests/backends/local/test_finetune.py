"""LocalFineTune on a tiny random model: SFT/DPO steps, progress, cancel, serve. (Its training
files: test_training_data.py.)

Every job runs the real worker subprocess (TRL + PEFT) for one or two optimizer steps.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from ste_backends.local.jobs import JobFiles
from ste_core.errors import ConfigurationError, DataFileError
from ste_core.records import (
    ChatRequest,
    DPOSpec,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    JobStatus,
    LoRAConfig,
    Message,
    Order,
    SFTExample,
)
from tests.backends.local.local_support import dpo_examples, sft_examples


def spec_for(model: Path, method: str = "sft", **changes) -> FineTuneSpec:
    values = {
        "base_model": str(model),
        "method": FineTuneMethod(method),
        "lora": LoRAConfig(r=4, alpha=8, dropout=0.0),
        "batch_size": 2,
        "learning_rate": 1e-3,
        "max_length": 256,
        "seed": 1,
        **changes,
    }
    return FineTuneSpec(**values)


def finetuner(tmp_path: Path, **options):
    from ste_backends.local import LocalFineTune

    options.setdefault("max_steps", 1)
    return LocalFineTune(device="cpu", output_dir=tmp_path / "jobs", **options)


async def wait_for(ft, job_id: str, done, limit_s: float = 150.0) -> FineTuneJobState:
    deadline = time.monotonic() + limit_s
    while True:
        state = await ft.poll(job_id)
        if done(state):
            return state
        assert time.monotonic() < deadline, f"timed out; last state {state}"
        await asyncio.sleep(0.2)


@pytest.mark.local_model
@pytest.mark.timeout(300)
async def test_sft_then_continue_with_dpo_and_serve(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ste_backends.local import LocalFineTune, LocalInference
    from ste_backends.local.models import MODEL_CACHE

    ft = finetuner(tmp_path)
    train = tmp_path / "sft.jsonl"
    # One example whose prompt alone is longer than max_length: TRL cuts its judgement off
    # entirely and drops it; the backend must say so, not train on it silently.
    long = SFTExample(
        messages=(Message(role="user", content="very long question " * 200),),
        completion="[[A]]",
        pair_id="long",
        order=Order.AB,
    )
    ft.write_training_file([*sft_examples(4), long], FineTuneMethod.SFT, train)
    first = await ft.submit(spec_for(tiny_model_dir), train)
    assert first.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert Path(first.job_id).parent == (tmp_path / "jobs").resolve()

    state = await wait_for(ft, first.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events)
    assert state.progress == 1.0
    assert any(e.startswith("step 1/1 loss=") for e in state.events), state.events
    # What the worker's status file says reaches the typed state the progress bar shows.
    assert (state.step, state.total_steps, state.phase) == (1, 1, "succeeded")
    assert state.loss is not None and state.loss > 0
    assert any("1 of 5 examples are longer than max_length" in e for e in state.events)
    assert any("TRL dropped 1 of 5 examples" in e for e in state.events)
    # How fast it went, as the Trainer and TRL counted it (benchmarks/training_speed.py).
    status = json.loads((Path(first.job_id) / "status.json").read_text())
    assert status["train_runtime_s"] > 0 and status["steps_per_second"] > 0
    assert status["train_tokens"] > 4 * 5  # the 4 examples kept, prompts included
    assert status["tokens_per_second"] == pytest.approx(
        status["train_tokens"] / status["train_runtime_s"]
    )
    ref = state.model
    assert ref is not None and ref.inference_backend == "local"
    assert ref.base_model == str(tiny_model_dir)
    adapter = Path(ref.model)
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir) and config["r"] == 4

    # A new backend instance (a resumed run) polls the same job from its directory alone.
    resumed = await LocalFineTune(device="cpu").poll(first.job_id)
    assert resumed.status is JobStatus.SUCCEEDED and resumed.model == ref

    # The adapter is served by path: LocalInference attaches it to its base model.
    async with ft.serve(ref) as served:
        assert served == ref
        inf = LocalInference(device="cpu")
        out = await inf.complete(
            ChatRequest.of(
                served.model,
                [{"role": "user", "content": "hi"}],
                max_tokens=4,
                n=2,
                temperature=1.0,
                seed=2,
            )
        )
        assert len(out.texts) == 2 and out.usage.completion_tokens <= 8
        (loaded,) = MODEL_CACHE._models.values()
        assert loaded.adapter_dir == str(adapter.resolve())  # noqa: ASYNC240
        from peft import PeftModel

        assert isinstance(loaded.model, PeftModel)
    assert MODEL_CACHE.loaded_names() == []  # serve's exit freed it

    # init_from = previous: DPO continues training this adapter (loaded trainable).
    dpo_file = tmp_path / "dpo.jsonl"
    ft.write_training_file(dpo_examples(4), FineTuneMethod.DPO, dpo_file)
    cont = await ft.submit(spec_for(tiny_model_dir, "dpo", from_model=ref.model), dpo_file)
    state = await wait_for(ft, cont.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events)
    assert any(e.startswith("continuing adapter ") for e in state.events)
    assert any(e.startswith("step 1/1 loss=") for e in state.events), state.events
    assert state.model is not None and state.model.base_model == str(tiny_model_dir)
    new_adapter = Path(state.model.model)
    assert new_adapter != adapter and (new_adapter / "adapter_model.safetensors").is_file()
    assert not (new_adapter / "ref").exists()  # DPO's frozen reference copy is not saved
    await ft.aclose()


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_dpo_from_the_seed_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    ft = finetuner(tmp_path, max_steps=2)
    path = tmp_path / "dpo.jsonl"
    ft.write_training_file(dpo_examples(4), FineTuneMethod.DPO, path)
    job = await ft.submit(spec_for(tiny_model_dir, "dpo"), path)
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events)
    steps = [e for e in state.events if re.match(r"step \d+/\d+ loss=", e)]
    assert [e.split()[1] for e in steps] == ["1/2", "2/2"]
    assert any("new LoRA adapter r=4" in e for e in state.events)
    assert state.model is not None
    assert Path(state.model.model, "adapter_config.json").is_file()  # noqa: ASYNC240


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_cancel_stops_a_running_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ste_backends.local.jobs import pid_alive

    ft = finetuner(tmp_path, max_steps=100_000, cancel_grace_seconds=30)
    path = tmp_path / "sft.jsonl"
    ft.write_training_file(sft_examples(4), FineTuneMethod.SFT, path)
    job = await ft.submit(spec_for(tiny_model_dir), path)
    running = await wait_for(ft, job.job_id, lambda s: s.status.terminal or (s.progress or 0) > 0)
    assert running.status is JobStatus.RUNNING, (running.message, running.events)
    assert running.phase == "training" and running.total_steps == 100_000, running
    assert running.step is not None and running.step >= 1
    pid = JobFiles(job.job_id).worker_pid()

    state = await ft.cancel(job.job_id)
    assert state.status is JobStatus.CANCELLED
    assert "cancelled" in (state.message or "")
    assert not pid_alive(pid)
    assert not (Path(job.job_id) / "adapter").exists()
    assert (await ft.cancel(job.job_id)).status is JobStatus.CANCELLED  # idempotent


@pytest.mark.local_model
@pytest.mark.timeout(120)
async def test_a_worker_that_dies_is_reported_failed(tiny_model_dir: Path, tmp_path: Path) -> None:
    ft = finetuner(tmp_path)
    path = tmp_path / "sft.jsonl"
    ft.write_training_file(sft_examples(2), FineTuneMethod.SFT, path)
    job = await ft.submit(spec_for(tiny_model_dir), path)
    pid = JobFiles(job.job_id).worker_pid()
    os.kill(pid, signal.SIGKILL)
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal, limit_s=60)
    assert state.status is JobStatus.FAILED
    assert "exited" in (state.message or "") and "worker.log" in (state.message or "")


async def test_submit_rejects_what_it_cannot_do(tmp_path: Path) -> None:
    tiny_model_dir = tmp_path / "model"
    ft = finetuner(tmp_path)
    path = tmp_path / "sft.jsonl"
    ft.write_training_file(sft_examples(2), FineTuneMethod.SFT, path)
    with pytest.raises(ConfigurationError, match="LoRA adapters only"):
        await ft.submit(spec_for(tiny_model_dir, lora=None), path)
    with pytest.raises(ConfigurationError, match="Unknown fine-tune spec option"):
        await ft.submit(spec_for(tiny_model_dir, options={"n_epochs": 3}), path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigurationError, match="holds no examples"):
        await ft.submit(spec_for(tiny_model_dir), empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(path.read_text() + "{cut off\n")
    with pytest.raises(DataFileError, match=r"broken\.jsonl:3: not valid JSON"):
        await ft.submit(spec_for(tiny_model_dir), broken)
    with pytest.raises(ConfigurationError, match="No local fine-tune job"):
        await ft.poll(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match=r"epochs \(local option\): unknown key"):
        finetuner(tmp_path, epochs=3)
    assert await ft.estimate_cost(spec_for(tiny_model_dir), path) == 0.0
    assert not (tmp_path / "jobs").exists()  # nothing was started


def test_the_outlook_is_free_and_needs_no_endpoint(tmp_path: Path) -> None:
    outlook = finetuner(tmp_path).outlook(spec_for(tmp_path / "model"))
    assert outlook.job_cost_usd == 0.0 and outlook.dedicated_endpoint is False


@pytest.mark.local_model
@pytest.mark.timeout(240)
async def test_dpo_with_an_nll_term_adds_the_weighted_nll(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """[finetune.dpo] nll_weight: the first step's loss is the DPO term (ln 2: the fresh LoRA
    adapter leaves the policy equal to its reference) plus nll_weight times the chosen answer's
    mean per-token NLL, computed here from the model itself."""
    import math

    ft = finetuner(tmp_path)
    path = tmp_path / "dpo.jsonl"
    ft.write_training_file(dpo_examples(1), FineTuneMethod.DPO, path)
    spec = spec_for(tiny_model_dir, "dpo", batch_size=1, dpo=DPOSpec(nll_weight=0.5))
    job = await ft.submit(spec, path)
    state = await wait_for(ft, job.job_id, lambda s: s.status.terminal)
    assert state.status is JobStatus.SUCCEEDED, (state.message, state.events)
    assert state.loss == pytest.approx(math.log(2) + 0.5 * chosen_nll(tiny_model_dir, path), 1e-5)


def chosen_nll(model_dir: Path, dpo_file: Path) -> float:
    """The mean NLL of the first row's chosen answer after its prompt (ChatML rendering)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    row = json.loads(dpo_file.read_text().splitlines()[0])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)

    def ids(messages: list[dict[str, str]], prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompt = ids(row["prompt"], True)
    full = torch.tensor([ids(row["prompt"] + row["chosen"], False)])
    with torch.no_grad():
        logps = torch.log_softmax(model(full).logits[0, :-1].float(), dim=-1)
    token_logps = logps.gather(1, full[0, 1:, None])[:, 0]
    return -token_logps[len(prompt) - 1 :].mean().item()


def test_dpo_settings_become_trl_loss_types() -> None:
    from ste_backends.local.train_worker import dpo_loss_args

    assert dpo_loss_args({}) == {"loss_type": ["sigmoid"]}
    assert dpo_loss_args(DPOSpec(nll_weight=0.25).model_dump()) == {
        "loss_type": ["sigmoid", "sft"],
        "loss_weights": [1.0, 0.25],
    }
    normalised = DPOSpec(normalize_logratios_by_length=True, nll_weight=1.0).model_dump()
    assert dpo_loss_args(normalised) == {
        "loss_type": ["sigmoid_norm", "sft"],
        "loss_weights": [1.0, 1.0],
    }


async def test_simpo_is_refused_locally(tmp_path: Path) -> None:
    ft = finetuner(tmp_path)
    path = tmp_path / "dpo.jsonl"
    ft.write_training_file(dpo_examples(2), FineTuneMethod.DPO, path)
    spec = spec_for(tmp_path / "model", "dpo", dpo=DPOSpec(simpo_gamma=0.5))
    with pytest.raises(ConfigurationError, match="does not train SimPO"):
        await ft.submit(spec, path)
    assert not (tmp_path / "jobs").exists()
