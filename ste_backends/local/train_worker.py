"""The training worker: `python -m ste_backends.local.train_worker <job dir>`.

Runs in its own process, started by `LocalFineTune.submit`. A subprocess (rather than a thread)
because training memory is fully returned to the system when it exits, and because it can be
stopped at any moment: SIGTERM (from `cancel`) and SIGINT (Ctrl-C in the terminal, which reaches
the whole foreground process group) raise an exception in the training loop, the worker records
"cancelled" and exits without writing an adapter. If the parent process dies, the worker notices
within a second and stops too, so training never outlives `ste`; a watchdog thread ends the
worker when the training loop cannot notice a signal (`watchdog.py`).

Reads job.json, writes status.json / events.jsonl (see `jobs.py`) and, on success, the LoRA
adapter plus tokenizer into `<job dir>/adapter`.

Under `accelerate launch` (several processes, see `launch.py`) every rank runs this module: rank 0
alone writes status, events and the adapter; another rank that fails writes its error for rank 0
and the backend to report. Every rank also watches ste's own pid, since its parent is the launcher.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from ste_backends.local import launch
from ste_backends.local.jobs import JobFiles
from ste_backends.local.watchdog import CANCELLED_EXIT, Watchdog, record_cancelled, record_failed


class Cancelled(BaseException):
    """Raised in the main thread by SIGTERM: stop training now."""


_watchdog = Watchdog()


def _on_sigterm(signum: int, frame: Any) -> None:
    if not _watchdog.finishing:
        raise Cancelled(f"cancelled (signal {signum})")


def main(argv: list[str] | None = None) -> int:
    """Train the job in argv[0]; exit code 0 on success, 1 on failure, 130 when cancelled."""
    signal.signal(signal.SIGTERM, _on_sigterm)  # before the slow imports
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ste_backends.local.train_worker <job dir>", file=sys.stderr)
        return 2
    rank = launch.rank()
    files = JobFiles(args[0], writes=rank == 0)
    try:
        job = files.read_job()
    except (OSError, ValueError) as exc:
        print(f"cannot read {files.job}: {exc}", file=sys.stderr)
        return 1
    _watchdog.start(files, job.get("owner_pid"))
    if launch.launched():
        # ste tracks the launcher's pid (worker.pid); the ranks' own are for a forced stop.
        launch.rank_pid_file(files.dir, rank).write_text(str(os.getpid()), encoding="utf-8")
        files.update_status(status="running", message="loading model")
    else:
        files.update_status(status="running", message="loading model", pid=os.getpid())
    try:
        return _train_and_record(job, files, rank)
    finally:
        launch.rank_pid_file(files.dir, rank).unlink(missing_ok=True)


def _train_and_record(job: dict[str, Any], files: JobFiles, rank: int) -> int:
    try:
        result = train(job, files)
    except (Cancelled, KeyboardInterrupt) as exc:
        if not _watchdog.finish():
            return CANCELLED_EXIT  # the watchdog records the end and exits
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
        return record_cancelled(files, reason)
    except BaseException as exc:
        if not _watchdog.finish():
            return 1
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        if rank != 0:
            launch.rank_error_file(files.dir, rank).write_text(message, encoding="utf-8")
            return 1
        return record_failed(files, message)
    _watchdog.finish()
    files.add_event(f"saved adapter to {result['adapter_dir']}")
    files.update_status(status="succeeded", message="training finished", **result)
    return 0


def train(job: dict[str, Any], files: JobFiles) -> dict[str, Any]:
    """Run SFT, DPO or GRPO with a LoRA adapter as `job` says; return the status fields for
    success."""
    from datasets import Dataset, disable_progress_bars
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    from ste_backends.local.devices import resolve_device, training_precision
    from ste_backends.local.models import adapter_base_model, not_found_message
    from ste_core.hub import cache_only
    from ste_core.run.io import read_rows

    disable_progress_bars()  # per-example bars would drown worker.log; events carry progress
    hf_logging.disable_progress_bar()
    seed = int(job["seed"])
    set_seed(seed)
    device = resolve_device(job["device"])
    load_dtype, bf16, fp16 = training_precision(device, job["dtype"])

    # init_from: a previous adapter is loaded trainable and trained further; anything else gets
    # a fresh LoRA adapter on the base model.
    from_model: str | None = job.get("from_model")
    previous_base = adapter_base_model(from_model) if from_model else None
    if previous_base is not None:
        base_model = previous_base
        if previous_base != job["base_model"]:
            files.add_event(
                f"note: previous adapter's base is {previous_base}, spec says {job['base_model']}; "
                "using the adapter's base"
            )
    else:
        base_model = from_model or job["base_model"]
    # An adapter written by this backend carries the tokenizer it was trained with.
    tokenizer_source = base_model
    if from_model is not None and previous_base is not None:
        own = Path(from_model) / "tokenizer_config.json"
        tokenizer_source = from_model if own.is_file() else base_model
    hub_options = {
        "trust_remote_code": job["trust_remote_code"],
        "local_files_only": cache_only(base_model),
    }
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, **hub_options)
        model: Any = AutoModelForCausalLM.from_pretrained(
            base_model, dtype=load_dtype, **hub_options
        )
    except OSError as exc:
        raise RuntimeError(not_found_message(base_model, exc)) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    peft_config = None
    if previous_base is not None and from_model is not None:
        with warnings.catch_warnings():
            # peft calls a transformers property deprecated in v5; nothing for users to do.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            model = PeftModel.from_pretrained(model, from_model, is_trainable=True)
        files.add_event(f"continuing adapter {from_model}")
    else:
        lora = job["lora"]
        target = lora["target_modules"]
        peft_config = LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=target if isinstance(target, str) else list(target),
            task_type="CAUSAL_LM",
        )
        files.add_event(f"new LoRA adapter r={lora['r']} alpha={lora['alpha']} on {base_model}")

    train_rows = list(read_rows(job["training_file"]))
    if not train_rows:
        raise ValueError(f"the training file {job['training_file']} has no examples")
    train_dataset = Dataset.from_list(train_rows)

    # GRPO keeps prompts whole and bounds what it samples: max_length does not apply.
    if files.writes and job["method"] != "grpo":
        _report_long_examples(files, tokenizer, train_rows, job["max_length"])
    common: dict[str, Any] = {
        "output_dir": str(files.trainer),
        "num_train_epochs": job["epochs"],
        "max_steps": job["max_steps"] if job.get("max_steps") else -1,
        "per_device_train_batch_size": job["batch_size"],
        "gradient_accumulation_steps": job["gradient_accumulation_steps"],
        "learning_rate": job["learning_rate"],
        "max_length": job["max_length"],
        "seed": seed,
        "data_seed": seed,
        "logging_steps": job["logging_steps"],
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "bf16": bf16,
        "fp16": fp16,
        "use_cpu": device == "cpu",
        "dataloader_pin_memory": device.startswith("cuda"),
        # Under DDP: every trainable (LoRA) weight takes part in each forward pass, so the extra
        # search for unused ones only costs time.
        "ddp_find_unused_parameters": False,
        **job.get("extra_args", {}),
    }
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name
    # warns); TRL turns it on by default, so always say explicitly what we want.
    checkpointing_key = (
        "activation_checkpointing"
        if "activation_checkpointing" in getattr(TrainingArguments, "__dataclass_fields__", {})
        else "gradient_checkpointing"
    )
    common[checkpointing_key] = job["gradient_checkpointing"]
    callback = _progress_callback(files)
    trainer_cls: Any
    trainer: Any
    if job["method"] == "grpo":
        from ste_backends.local.grpo import grpo_trainer

        trainer = grpo_trainer(
            job,
            files,
            model=model,
            tokenizer=tokenizer,
            peft_config=peft_config,
            train_dataset=train_dataset,
            common=common,
            callbacks=[callback],
        )
    elif job["method"] == "sft":
        from trl import SFTConfig, SFTTrainer

        # prompt-completion data: the loss covers the judgement (completion) only.
        config: Any = SFTConfig(**common, completion_only_loss=True, packing=False)
        trainer_cls = SFTTrainer
    elif job["method"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**common, beta=job["dpo_beta"], **dpo_loss_args(job.get("dpo", {})))
        trainer_cls = DPOTrainer
    else:
        raise ValueError(f"unknown method {job['method']!r}")
    if job["method"] != "grpo":
        trainer = trainer_cls(
            model=model,
            args=config,
            train_dataset=train_dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback],
        )

    used = len(trainer.train_dataset)
    if used == 0:
        raise ValueError(
            f"all {len(train_rows)} examples are longer than max_length={job['max_length']} "
            "tokens, so none has a target left to learn; raise [finetune] max_length"
        )
    if used < len(train_rows):
        files.add_event(
            f"warning: TRL dropped {len(train_rows) - used} of {len(train_rows)} examples whose "
            "target was cut off entirely by max_length"
        )
    world_size = trainer.accelerator.num_processes
    precision = (
        "bf16 mixed" if bf16 else "fp16 mixed" if fp16 else str(load_dtype).removeprefix("torch.")
    )
    files.update_status(
        message="training", examples=used, device=device, precision=precision, world_size=world_size
    )
    output = trainer.train()
    files.update_status(message="saving the adapter")
    _save_adapter(trainer, tokenizer, files.adapter, main=files.writes)
    if os.environ.get(launch.DIGEST_ENV) == "1":
        _write_rank_digest(trainer, files.dir)
    return {
        "adapter_dir": str(files.adapter.resolve()),
        "base_model": base_model,
        "train_loss": getattr(output, "training_loss", None),
        "step": trainer.state.global_step,
        **throughput(output, trainer.state.log_history),
    }


def throughput(output: Any, log_history: list[dict[str, Any]]) -> dict[str, float]:
    """How fast training went, for status.json (and benchmarks/training_speed.py): the
    Trainer's own runtime and steps per second, and the tokens TRL counted (`num_tokens`, all
    ranks together, prompts included) per second, where it logs them (SFT, GRPO)."""
    metrics = getattr(output, "metrics", None) or {}
    out: dict[str, float] = {}
    runtime = metrics.get("train_runtime")
    if isinstance(runtime, (int, float)) and runtime > 0:
        out["train_runtime_s"] = float(runtime)
        steps = metrics.get("train_steps_per_second")
        if isinstance(steps, (int, float)):
            out["steps_per_second"] = float(steps)
        tokens = [
            e["num_tokens"] for e in log_history if isinstance(e.get("num_tokens"), (int, float))
        ]
        if tokens:
            out["train_tokens"] = float(tokens[-1])
            out["tokens_per_second"] = float(tokens[-1]) / float(runtime)
    return out


def dpo_loss_args(dpo: dict[str, Any]) -> dict[str, Any]:
    """TRL DPOConfig arguments for `[finetune.dpo]` (a DPOSpec dump; {} is plain DPO).

    DPO+NLL is TRL's loss_type ["sigmoid", "sft"] weighted [1, nll_weight]: the DPO term plus
    nll_weight times the chosen answers' mean per-token NLL. "sigmoid_norm" is DPO on log-ratios
    divided by each answer's token count (Together's dpo_normalize_logratios_by_length).
    """
    dpo_term = "sigmoid_norm" if dpo.get("normalize_logratios_by_length") else "sigmoid"
    nll_weight = float(dpo.get("nll_weight") or 0.0)
    if nll_weight > 0:
        return {"loss_type": [dpo_term, "sft"], "loss_weights": [1.0, nll_weight]}
    return {"loss_type": [dpo_term]}


def _save_adapter(trainer: Any, tokenizer: Any, adapter: Path, *, main: bool) -> None:
    if _sharded(trainer):
        # FSDP / ZeRO-3 shard the weights: every rank takes part in gathering them, and the
        # Trainer writes on the main process only. The frozen "ref" copy is not the result.
        trainer.save_model(str(adapter))
        if main:
            shutil.rmtree(adapter / "ref", ignore_errors=True)
    elif main:
        # Only the trained adapter ("default"); DPO on a continued adapter also holds a frozen
        # "ref" copy that is not part of the result.
        trainer.model.save_pretrained(str(adapter), selected_adapters=["default"])
    if main:
        tokenizer.save_pretrained(str(adapter))


def _sharded(trainer: Any) -> bool:
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def adapter_digest(state_dict: dict[str, Any]) -> str:
    """sha256 over an adapter's tensors (names and bytes, in name order)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _write_rank_digest(trainer: Any, job_dir: Path) -> None:
    """rank-N.json: this rank's world size and the digest of its trained adapter weights."""
    from peft import get_peft_model_state_dict

    model = trainer.accelerator.unwrap_model(trainer.model)
    digest = adapter_digest(get_peft_model_state_dict(model, adapter_name="default"))
    record = {
        "rank": launch.rank(),
        "world_size": trainer.accelerator.num_processes,
        "adapter_sha256": digest,
    }
    (job_dir / f"rank-{launch.rank()}.json").write_text(json.dumps(record), encoding="utf-8")


def _report_long_examples(
    files: JobFiles, tokenizer: Any, rows: list[dict[str, Any]], max_length: int | None
) -> None:
    """Say how many examples exceed max_length (their end, i.e. the judgement, is cut off)."""
    if not max_length:
        return
    longest_per_example = []
    for row in rows:
        targets = [row[k] for k in ("completion", "chosen", "rejected") if k in row]
        # tokenize=False then encode: apply_chat_template(tokenize=True) returns a dict in
        # transformers 5 but a list in 4.x.
        lengths = [
            len(
                tokenizer(
                    tokenizer.apply_chat_template(row["prompt"] + target, tokenize=False),
                    add_special_tokens=False,
                )["input_ids"]
            )
            for target in targets
        ]
        longest_per_example.append(max(lengths))
    over = sum(1 for n in longest_per_example if n > max_length)
    files.update_status(longest_example_tokens=max(longest_per_example), over_max_length=over)
    if over:
        files.add_event(
            f"warning: {over} of {len(rows)} examples are longer than max_length={max_length} "
            f"tokens (longest {max(longest_per_example)}); their end is cut off. Raise "
            "[finetune] max_length if memory allows."
        )


def _progress_callback(files: JobFiles) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        """Mirror the Trainer's progress into status.json and events.jsonl."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            files.update_status(step=0, max_steps=state.max_steps)
            files.add_event(f"training started: {state.max_steps} steps")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            files.update_status(step=state.global_step, max_steps=state.max_steps)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            logs = logs or {}
            shown = {
                k: v
                for k, v in logs.items()
                if k
                in (
                    "loss",
                    "learning_rate",
                    "grad_norm",
                    "rewards/accuracies",
                    "rewards/margins",
                    "train_loss",
                )
                and isinstance(v, (int, float))
            }
            metrics = grpo_metrics(logs)
            shown.update(metrics)
            if not shown:
                return
            text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
            files.add_event(f"step {state.global_step}/{state.max_steps} {text}")
            if "loss" in shown:
                files.update_status(loss=shown["loss"])
            if metrics:
                files.update_status(metrics=metrics)

    return Progress()


def grpo_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """GRPO's logged means, named for people: "reward" (weighted sum), "reward/<function>"
    per reward function, "kl" (only logged when beta > 0)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)):
            continue
        if key in ("reward", "kl"):
            out[key] = float(value)
        elif key.startswith("rewards/") and key.endswith("/mean"):
            out["reward/" + key[len("rewards/") : -len("/mean")]] = float(value)
    return out


if __name__ == "__main__":
    sys.exit(main())
