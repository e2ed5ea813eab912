"""LocalFineTune: LoRA fine-tuning with TRL (SFT, DPO or GRPO) in a subprocess on this machine.

`submit` writes a job directory (see `jobs.py`) and starts `python -m
ste_backends.local.train_worker <job dir>`, or one worker per rank under `accelerate launch` when
the options ask for several processes or give an accelerate config (see `launch.py`); the job id
is the directory's absolute path, so `poll` works from any process, including a resumed run.
`poll` reads the worker's status file and events; `cancel` sends SIGTERM (the launcher forwards it
to every rank; SIGKILL to all of them after a grace period). The result is a LoRA adapter
directory, which LocalInference loads on top of its base model: `serve` has nothing to deploy and
only frees the in-process model cache afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, ClassVar

from ste_backends.local import launch
from ste_backends.local.jobs import JobFiles, pid_alive
from ste_backends.local.options import LocalFineTuneOptions
from ste_backends.local.requirements import ensure_installed
from ste_backends.local.training_data import write_jsonl
from ste_core.backends import FineTuneBackend, FineTuneCapabilities, FineTuneOutlook
from ste_core.errors import ConfigurationError
from ste_core.records import (
    DPOExample,
    DPOSpec,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    GRPOExample,
    GRPOSpec,
    JobStatus,
    ModelRef,
    SFTExample,
)
from ste_core.run.io import read_rows

EXTRA = "local"

#: FineTuneSpec.options keys the local backend passes to the TRL config; others are rejected.
SPEC_OPTIONS = ("lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm")


class LocalFineTune(FineTuneBackend):
    """LoRA SFT/DPO/GRPO with TRL on the local CPU/GPU.

    Options: `LocalFineTuneOptions` (`ste backends --options local` lists them).
    """

    name: ClassVar[str] = "local"
    Options = LocalFineTuneOptions
    options: LocalFineTuneOptions
    requires: ClassVar[tuple[str, ...]] = (
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
    )
    extra: ClassVar[str | None] = EXTRA
    capabilities: ClassVar[FineTuneCapabilities] = FineTuneCapabilities(
        methods=frozenset({FineTuneMethod.SFT, FineTuneMethod.DPO, FineTuneMethod.GRPO}),
        continue_from_previous=True,
        lora=True,
        full=False,
        outlives_interrupt=False,  # the worker stops with ste (see _spawn_worker)
    )

    def __init__(self, options: LocalFineTuneOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        ensure_installed(self.name, EXTRA, self.requires)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- files -----------------------------------------------------------------------------

    def write_training_file(
        self,
        examples: Iterable[SFTExample] | Iterable[DPOExample] | Iterable[GRPOExample],
        method: FineTuneMethod,
        path: Path,
    ) -> int:
        """TRL conversational JSONL: SFT prompt/completion, DPO prompt/chosen/rejected, GRPO
        prompt with its label (see training_data.py)."""
        return write_jsonl(examples, method, path)

    async def estimate_cost(self, spec: FineTuneSpec, training_file: Path) -> float | None:
        """Nothing to pay: training runs on this machine."""
        return 0.0

    def outlook(self, spec: FineTuneSpec) -> FineTuneOutlook:
        """Free, and served in this process: no endpoint."""
        return FineTuneOutlook(job_cost_usd=0.0, dedicated_endpoint=False)

    # -- jobs ------------------------------------------------------------------------------

    async def submit(self, spec: FineTuneSpec, training_file: Path) -> FineTuneJobState:
        """Write the job directory and start the training worker process."""
        job = self._job_config(spec, Path(training_file))
        files = JobFiles(self._new_job_dir(spec, Path(training_file)))
        files.write_job(job)
        if self.options.free_inference_memory:
            from ste_backends.local.models import release_models

            await asyncio.to_thread(release_models)
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        if job["device"].startswith("cuda:"):
            env["CUDA_VISIBLE_DEVICES"] = job["device"].split(":", 1)[1]
            job["device"] = "cuda"
            files.write_job(job)
        # The worker owns status.json from its first instruction; write "queued" before it starts
        # so the two processes never overwrite each other.
        files.update_status(status="queued", message="starting the training worker")
        command = launch.worker_command(files.dir, job["launcher"])
        proc = await asyncio.to_thread(
            launch.spawn_worker, command, files.log, env, launched=bool(job["launcher"])
        )
        files.pid_file.write_text(str(proc.pid))
        job_id = str(files.dir)
        self._procs[job_id] = proc
        files.add_event(
            f"submitted {job['method']} on {job['from_model'] or job['base_model']} "
            f"({job['examples']} examples), {self._how(bool(job['launcher']))} {proc.pid}, "
            f"log {files.log}"
        )
        return await self.poll(job_id)

    async def poll(self, job_id: str) -> FineTuneJobState:
        """The job's state from its status file; a worker that died silently counts as failed."""
        files = self._files(job_id)
        status = files.read_status()
        if not JobStatus(status.get("status", "queued")).terminal and not self._alive(
            job_id, status
        ):
            status = files.read_status()  # it may have finished between the two reads
            if not JobStatus(status.get("status", "queued")).terminal:
                code = self._exit_code(job_id)
                how = f" with code {code}" if code is not None else ""
                errors = launch.rank_errors(files.dir)
                tail = "\n".join(errors) or files.log_tail()
                status = files.update_status(
                    status="failed",
                    message=f"the training worker exited{how} without finishing; see {files.log}"
                    + (f":\n{tail}" if tail else ""),
                )
        return self._state(job_id, files, status)

    async def cancel(self, job_id: str) -> FineTuneJobState:
        """SIGTERM the worker (it records 'cancelled'); SIGKILL it after the grace period."""
        files = self._files(job_id)
        status = files.read_status()
        if JobStatus(status.get("status", "queued")).terminal:
            return self._state(job_id, files, status)
        pid = files.worker_pid(status)
        if pid and self._alive(job_id, status):
            # A launcher forwards SIGTERM to every rank.
            launch.stop([pid], signal.SIGTERM)
            # Waiting on another process's exit: there is no event to await, so poll briefly.
            deadline = time.monotonic() + self.options.cancel_grace_seconds
            while self._alive(job_id, status) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if self._alive(job_id, status):
                launch.stop([pid, *launch.rank_pids(files.dir)], signal.SIGKILL)
                while self._alive(job_id, status):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        status = files.read_status()
        if not JobStatus(status.get("status", "queued")).terminal:
            files.add_event("cancelled")
            status = files.update_status(status="cancelled", message="cancelled")
        return self._state(job_id, files, status)

    def serve(self, model: ModelRef) -> contextlib.AbstractAsyncContextManager[ModelRef]:
        """Nothing to deploy (LocalInference loads adapters by path); frees it from memory after."""
        return _serve_adapter(model)

    async def aclose(self) -> None:
        """Cancel jobs this instance started that are still running, and wait for their
        processes to exit: when ste returns (after Ctrl-C too), no worker is left training or
        still writing its last status."""
        for job_id, proc in list(self._procs.items()):
            state = await self.poll(job_id)
            if not state.status.terminal:
                await self.cancel(job_id)
            await asyncio.to_thread(_wait_or_kill, proc, self.options.cancel_grace_seconds)
        self._procs.clear()

    # -- internals ---------------------------------------------------------------------------

    def _job_config(self, spec: FineTuneSpec, training_file: Path) -> dict[str, Any]:
        method = FineTuneMethod(spec.method)
        if method not in self.capabilities.methods:
            raise ConfigurationError(f"The local backend cannot train method '{method}'.")
        if spec.lora is None:
            raise ConfigurationError(
                "The local backend trains LoRA adapters only; set a [finetune.lora] section "
                "(r, alpha, dropout, target_modules) instead of lora = none."
            )
        unknown = sorted(set(spec.options) - set(SPEC_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"Unknown fine-tune spec option(s) for the local backend: {', '.join(unknown)}. "
                f"Allowed: {', '.join(SPEC_OPTIONS)}."
            )
        if not training_file.is_file():
            raise ConfigurationError(f"Training file {training_file} does not exist.")
        examples = sum(1 for _ in read_rows(training_file))
        if examples == 0:
            raise ConfigurationError(f"Training file {training_file} holds no examples.")
        if spec.from_model is not None and not _exists_or_hub_id(spec.from_model):
            raise ConfigurationError(
                f"from_model {spec.from_model!r} (init_from = 'previous') is neither an existing "
                "adapter directory nor a model id."
            )
        if method is FineTuneMethod.DPO:
            _check_dpo(spec.dpo)
        opts = self.options
        launcher = launch.launcher_args(opts.processes, _accelerate_config(opts.accelerate_config))
        if launcher and opts.device.startswith("cuda:"):
            raise ConfigurationError(
                f"device = '{opts.device}' names one GPU but processes = {opts.processes} (or an "
                "accelerate_config) trains on several; use device = 'cuda' and choose the GPUs "
                "with CUDA_VISIBLE_DEVICES."
            )
        on_cuda = opts.device.startswith("cuda") or (opts.device == "auto" and _cuda_available())
        gradient_checkpointing = opts.gradient_checkpointing
        if gradient_checkpointing is None:
            gradient_checkpointing = on_cuda
        grpo = _grpo_settings(spec, opts, on_cuda) if method is FineTuneMethod.GRPO else {}
        return {
            "method": method.value,
            "base_model": _absolute_if_path(spec.base_model),
            "from_model": _absolute_if_path(spec.from_model) if spec.from_model else None,
            "lora": spec.lora.model_dump(mode="json"),
            "epochs": spec.epochs,
            "learning_rate": spec.learning_rate,
            "batch_size": opts.max_batch_size if spec.batch_size == "max" else spec.batch_size,
            "gradient_accumulation_steps": spec.gradient_accumulation_steps,
            "max_length": spec.max_length,
            "dpo_beta": spec.dpo_beta,
            "dpo": spec.dpo.model_dump(mode="json"),
            "seed": spec.seed if spec.seed is not None else 0,
            "training_file": str(training_file.resolve()),
            "examples": examples,
            "device": opts.device,
            "dtype": opts.dtype,
            "max_steps": opts.max_steps,
            "logging_steps": opts.logging_steps,
            "gradient_checkpointing": bool(gradient_checkpointing),
            "trust_remote_code": opts.trust_remote_code,
            "extra_args": dict(spec.options),
            "launcher": launcher,
            # ste's pid: every worker stops when it goes, also ranks whose parent is the launcher
            "owner_pid": os.getpid(),
            **grpo,
        }

    def _how(self, launched: bool) -> str:
        if not launched:
            return "worker pid"
        n = self.options.processes
        ranks = f"{n} processes" if n > 1 else f"processes from {self.options.accelerate_config}"
        return f"under accelerate launch ({ranks}), launcher pid"

    def _new_job_dir(self, spec: FineTuneSpec, training_file: Path) -> Path:
        parent = self.options.output_dir or training_file.parent
        suffix = f"-{spec.suffix}" if spec.suffix else ""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"local-{FineTuneMethod(spec.method).value}{suffix}-{stamp}-{uuid.uuid4().hex[:6]}"
        return (parent / name).resolve()

    def _files(self, job_id: str) -> JobFiles:
        files = JobFiles(job_id)
        if not files.exists():
            raise ConfigurationError(
                f"No local fine-tune job at {job_id} (the job id is the job directory; it holds "
                "job.json). Was the directory moved or deleted?"
            )
        return files

    def _alive(self, job_id: str, status: dict[str, Any]) -> bool:
        """Whether the worker (or the launcher) runs, or any rank of a launched job does."""
        proc = self._procs.get(job_id)
        files = JobFiles(job_id)
        if any(pid_alive(pid) for pid in launch.rank_pids(files.dir)):
            return True
        if proc is not None:
            return proc.poll() is None  # also reaps our own child
        return pid_alive(files.worker_pid(status))

    def _exit_code(self, job_id: str) -> int | None:
        proc = self._procs.get(job_id)
        return proc.poll() if proc is not None else None

    def _state(self, job_id: str, files: JobFiles, status: dict[str, Any]) -> FineTuneJobState:
        job_status = JobStatus(status.get("status", "queued"))
        step, max_steps = status.get("step"), status.get("max_steps")
        progress = None
        if job_status is JobStatus.SUCCEEDED:
            progress = 1.0
        elif isinstance(step, int) and isinstance(max_steps, int) and max_steps > 0:
            progress = min(1.0, step / max_steps)
        model = None
        if job_status is JobStatus.SUCCEEDED:
            model = ModelRef(
                model=status["adapter_dir"],
                inference_backend="local",
                base_model=status.get("base_model"),
                metadata={
                    "job_dir": str(files.dir),
                    "train_loss": status.get("train_loss"),
                    "steps": step,
                },
            )
        loss = status.get("loss")
        return FineTuneJobState(
            job_id=job_id,
            status=job_status,
            provider_status=status.get("status"),
            message=status.get("message"),
            progress=progress,
            events=tuple(files.read_events()),
            model=model,
            cost_usd=0.0,
            # The worker's message is its phase while it lives ("loading model", "training").
            phase=job_status.value if job_status.terminal else status.get("message"),
            step=step if isinstance(step, int) else None,
            total_steps=max_steps if isinstance(max_steps, int) and max_steps > 0 else None,
            loss=float(loss) if isinstance(loss, (int, float)) else None,
            metrics=status.get("metrics") or {},
        )


def _grpo_settings(spec: FineTuneSpec, opts: LocalFineTuneOptions, on_cuda: bool) -> dict[str, Any]:
    """The job's GRPO fields: the spec's settings and whether to generate with vLLM."""
    grpo = spec.grpo or GRPOSpec()
    batch_size = opts.max_batch_size if spec.batch_size == "max" else spec.batch_size
    try:
        grpo.check_batch(batch_size, spec.gradient_accumulation_steps)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    have_vllm = importlib.util.find_spec("vllm") is not None
    use_vllm = grpo.use_vllm if grpo.use_vllm is not None else have_vllm and on_cuda
    if use_vllm and not have_vllm:
        raise ConfigurationError(
            "finetune.grpo.use_vllm = true, but vLLM is not installed here: pip install vllm, "
            "or leave use_vllm unset to generate with transformers"
        )
    if use_vllm and not on_cuda:
        raise ConfigurationError(
            "finetune.grpo.use_vllm = true needs a CUDA GPU; leave it unset on this machine"
        )
    return {"grpo": grpo.model_dump(mode="json"), "use_vllm": use_vllm}


@contextlib.asynccontextmanager
async def _serve_adapter(model: ModelRef) -> AsyncIterator[ModelRef]:
    try:
        yield model
    finally:
        from ste_backends.local.models import release_models

        await asyncio.to_thread(release_models, model.model)


def _absolute_if_path(name: str) -> str:
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _exists_or_hub_id(name: str) -> bool:
    if Path(name).expanduser().exists():
        return True
    return not name.startswith(("/", "./", "../", "~"))


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _check_dpo(dpo: DPOSpec) -> None:
    if dpo.simpo_gamma is not None:
        raise ConfigurationError(
            "finetune.dpo.simpo_gamma: the local backend does not train SimPO (TRL's DPOTrainer "
            "has no reference-free SimPO loss). Remove simpo_gamma, or use the together backend."
        )


def _accelerate_config(path: Path | None) -> Path | None:
    if path is None:
        return None
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        raise ConfigurationError(
            f"accelerate_config: {resolved} is not a file. Write one with `accelerate config "
            "--config_file PATH` (DeepSpeed, FSDP or multi-GPU), or leave accelerate_config unset."
        )
    return resolved


def _wait_or_kill(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
