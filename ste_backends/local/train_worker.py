"""The training worker: `python -m ste_backends.local.train_worker <job dir>`.

Runs in its own process, started by `LocalFineTune.submit`. A subprocess (rather than a thread)
because training memory is fully returned to the system when it exits, and because it can be
stopped at any moment: SIGTERM (from `cancel`) and SIGINT (Ctrl-C in the terminal, which reaches
the whole foreground process group) raise an exception in the training loop, the worker records
"cancelled" and exits without writing an adapter. If the parent process dies, the worker notices
within a second and stops too, so training never outlives `ste`.

Reads job.json, writes status.json / events.jsonl (see `jobs.py`) and, on success, the LoRA
adapter plus tokenizer into `<job dir>/adapter`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from ste_backends.local.jobs import JobFiles


class Cancelled(BaseException):
    """Raised in the main thread by SIGTERM: stop training now."""


_finishing = False


def _on_sigterm(signum: int, frame: Any) -> None:
    if not _finishing:
        raise Cancelled(f"cancelled (signal {signum})")


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv: list[str] | None = None) -> int:
    """Train the job in argv[0]; exit code 0 on success, 1 on failure, 130 when cancelled."""
    global _finishing
    signal.signal(signal.SIGTERM, _on_sigterm)  # before the slow imports
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ste_backends.local.train_worker <job dir>", file=sys.stderr)
        return 2
    files = JobFiles(args[0])
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    files.update_status(status="running", pid=os.getpid(), message="loading model")
    try:
        job = files.read_job()
        result = train(job, files)
    except (Cancelled, KeyboardInterrupt) as exc:
        _finishing = True
        reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
        files.add_event(f"cancelled: {reason}")
        files.update_status(status="cancelled", message=reason)
        return 130
    except BaseException as exc:
        _finishing = True
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        files.add_event(f"failed: {message}")
        files.update_status(status="failed", message=message)
        return 1
    _finishing = True
    files.add_event(f"saved adapter to {result['adapter_dir']}")
    files.update_status(status="succeeded", message="training finished", **result)
    return 0


def train(job: dict[str, Any], files: JobFiles) -> dict[str, Any]:
    """Run SFT or DPO with a LoRA adapter as `job` says; return the status fields for success."""
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
    if job["method"] == "sft":
        from trl import SFTConfig, SFTTrainer

        # prompt-completion data: the loss covers the judgement (completion) only.
        config: Any = SFTConfig(**common, completion_only_loss=True, packing=False)
        trainer_cls = SFTTrainer
    elif job["method"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**common, beta=job["dpo_beta"])
        trainer_cls = DPOTrainer
    else:
        raise ValueError(f"unknown method {job['method']!r}")
    trainer: Any = trainer_cls(
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
    files.update_status(message="training", examples=used, device=device)
    output = trainer.train()
    files.update_status(message="saving the adapter")
    # Only the trained adapter ("default"); DPO on a continued adapter also holds a frozen "ref"
    # copy that is not part of the result.
    trainer.model.save_pretrained(str(files.adapter), selected_adapters=["default"])
    tokenizer.save_pretrained(str(files.adapter))
    return {
        "adapter_dir": str(files.adapter.resolve()),
        "base_model": base_model,
        "train_loss": getattr(output, "training_loss", None),
        "step": trainer.state.global_step,
    }


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
            if not shown:
                return
            text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
            files.add_event(f"step {state.global_step}/{state.max_steps} {text}")
            if "loss" in shown:
                files.update_status(loss=shown["loss"])

    return Progress()


if __name__ == "__main__":
    sys.exit(main())
