"""TogetherFineTune: SFT / DPO fine-tuning on Together, and serving the result (see serving.py)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from ste_core.backends import FineTuneBackend, FineTuneCapabilities, FineTuneOutlook
from ste_core.errors import BudgetExceeded, ConfigurationError, TransientProviderError
from ste_core.records import (
    DPOExample,
    DPOSpec,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    GRPOExample,
    JobStatus,
    ModelRef,
    Resource,
    SFTExample,
)

from .client import PROVIDER, make_client
from .errors import map_error
from .formats import validate_training_file, write_training_file
from .options import TogetherFineTuneOptions
from .serving import ProgressCallback, locate, reap_endpoint, serve_model
from .states import job_status

#: FineTuneSpec.options keys this backend reads (anything else is rejected, naming the key).
TRAINING_OPTIONS: dict[str, str] = {
    "n_checkpoints": "checkpoints saved during training (default 1)",
    "n_evals": "evaluations on the validation file (default 1 when one is given, else 0)",
    "warmup_ratio": "learning-rate warmup fraction",
    "lr_scheduler_type": "'cosine' (default) or 'linear'",
    "min_lr_ratio": "final / peak learning rate",
    "scheduler_num_cycles": "cosine cycles",
    "weight_decay": "weight decay",
    "max_grad_norm": "gradient clipping (0 disables)",
    "train_on_inputs": "SFT only: true, false or 'auto' (default 'auto': mask the prompt)",
    "packing": "sequence packing (default true)",
    "wandb": "true to log to Weights & Biases (key from env WANDB_API_KEY)",
    "wandb_project_name": "W&B project (implies wandb)",
    "wandb_name": "W&B run name",
    "wandb_entity": "W&B entity",
    "wandb_base_url": "W&B server URL",
    "hf_output_repo_name": "push the result to this Hugging Face repo (token from env HF_TOKEN)",
}
#: Together's DPO knobs that are typed settings of `[finetune.dpo]` (DPOSpec), not job options.
DPO_SETTINGS: dict[str, str] = {
    "rpo_alpha": "nll_weight",
    "simpo_gamma": "simpo_gamma",
    "dpo_normalize_logratios_by_length": "normalize_logratios_by_length",
}
SECRET_OPTIONS = {"wandb_api_key", "wandb_key", "hf_api_token", "api_key"}


class TogetherFineTune(FineTuneBackend):
    """Fine-tune a judge on Together and make the result callable (serverless or dedicated).

    Options: `TogetherFineTuneOptions` (`ste backends --options together` lists them): the
    connection as for TogetherInference, a cost guard, a held-out validation file, and how a
    fine-tuned model is served. `progress`, a callable receiving a dict per serving step, is
    for code, not config files.
    """

    name: ClassVar[str] = PROVIDER
    Options = TogetherFineTuneOptions
    options: TogetherFineTuneOptions
    capabilities: ClassVar[FineTuneCapabilities] = FineTuneCapabilities(
        methods=frozenset({FineTuneMethod.SFT, FineTuneMethod.DPO}),
        continue_from_previous=True,
        lora=True,
        full=True,
    )
    requires: ClassVar[tuple[str, ...]] = ("together",)

    def __init__(
        self,
        options: TogetherFineTuneOptions | None = None,
        /,
        *,
        progress: ProgressCallback | None = None,
        **values: Any,
    ) -> None:
        super().__init__(options, **values)
        self.progress = progress
        self._client = make_client(self.options)
        self._uploaded: dict[tuple[str, str], str] = {}
        self._limits: dict[str, Any] = {}
        self._seen_events: dict[str, set[tuple[str, str, str]]] = {}
        self._estimates: dict[str, float] = {}

    async def aclose(self) -> None:
        await self._client.close()

    # -- training files ----------------------------------------------------------------------

    def write_training_file(
        self,
        examples: Iterable[SFTExample] | Iterable[DPOExample] | Iterable[GRPOExample],
        method: FineTuneMethod,
        path: Path,
    ) -> int:
        """SFT: conversational `messages` lines; DPO: input / preferred / non-preferred lines."""
        return write_training_file(examples, method, path)

    async def _upload(self, path: Path, method: FineTuneMethod) -> str:
        """Upload a training file once per content (cached by sha256); return its file id."""
        key = _file_key(path)
        if key not in self._uploaded:
            validate_training_file(path, method)
            try:
                uploaded = await self._client.files.upload(path, purpose="fine-tune")
            except Exception as exc:
                raise map_error(exc, what=f"upload of {path.name}") from exc
            self._uploaded[key] = uploaded.id
        return self._uploaded[key]

    async def _model_limits(self, model: str) -> Any:
        if model not in self._limits:
            try:
                self._limits[model] = await self._client.fine_tuning.model_limits(model_name=model)
            except Exception as exc:
                raise map_error(exc, what=f"fine-tuning limits of {model}") from exc
        return self._limits[model]

    # -- request building --------------------------------------------------------------------

    def _check_options(self, spec: FineTuneSpec) -> dict[str, Any]:
        options = dict(spec.options)
        secret = SECRET_OPTIONS & set(options)
        if secret:
            raise ConfigurationError(
                f"together: option(s) {sorted(secret)} would put a secret in the config. Set "
                "WANDB_API_KEY / HF_TOKEN in the environment instead; they are read from there "
                "and never recorded."
            )
        moved = sorted(DPO_SETTINGS.keys() & options.keys())
        if moved:
            keys = ", ".join(f"{DPO_SETTINGS[k]} (for {k})" for k in moved)
            raise ConfigurationError(
                f"together: {', '.join(moved)} are no job options; set them in the [finetune.dpo] "
                f"table instead: {keys}"
            )
        unknown = set(options) - set(TRAINING_OPTIONS)
        if unknown:
            known = ", ".join(sorted(TRAINING_OPTIONS))
            raise ConfigurationError(
                f"together: unknown fine-tune option(s) {sorted(unknown)}. Known: {known}"
            )
        if spec.method is FineTuneMethod.DPO and "train_on_inputs" in options:
            raise ConfigurationError("together: train_on_inputs only applies to SFT")
        return options

    def _check_limits(self, spec: FineTuneSpec, limits: Any) -> None:
        """Fail before any paid step, with Together's own limits in the message."""
        name = spec.base_model
        if spec.epochs > limits.max_num_epochs:
            raise ConfigurationError(
                f"{name}: epochs={spec.epochs} exceeds Together's maximum {limits.max_num_epochs}"
            )
        if not limits.min_learning_rate <= spec.learning_rate <= limits.max_learning_rate:
            raise ConfigurationError(
                f"{name}: learning_rate={spec.learning_rate} is outside Together's range "
                f"[{limits.min_learning_rate}, {limits.max_learning_rate}]"
            )
        if spec.lora is None:
            if not limits.supports_full_training or limits.full_training is None:
                raise ConfigurationError(
                    f"{name} supports only LoRA fine-tuning on Together; set a [lora] section"
                )
            bounds = limits.full_training
        else:
            if spec.lora.r > limits.lora_training.max_rank:
                raise ConfigurationError(
                    f"{name}: LoRA r={spec.lora.r} exceeds Together's maximum rank "
                    f"{limits.lora_training.max_rank}"
                )
            bounds = limits.lora_training
        if spec.batch_size != "max":
            high = (
                bounds.max_batch_size_dpo
                if spec.method is FineTuneMethod.DPO
                else bounds.max_batch_size
            )
            if not bounds.min_batch_size <= spec.batch_size <= high:
                raise ConfigurationError(
                    f"{name}: batch_size={spec.batch_size} is outside Together's range "
                    f'[{bounds.min_batch_size}, {high}] for {spec.method.value}; use "max" '
                    "to let Together choose"
                )
        if "max_length" in spec.model_fields_set:
            high = (
                limits.max_seq_length_dpo
                if spec.method is FineTuneMethod.DPO
                else limits.max_seq_length_sft
            )
            if not limits.min_max_seq_length <= spec.max_length <= high:
                raise ConfigurationError(
                    f"{name}: max_length={spec.max_length} is outside Together's range "
                    f"[{limits.min_max_seq_length}, {high}]"
                )

    def _create_kwargs(
        self,
        spec: FineTuneSpec,
        options: dict[str, Any],
        training_id: str,
        validation_id: str | None,
        limits: Any,
        checkpoint: str | None,
    ) -> dict[str, Any]:
        """Arguments for `fine_tuning.create` (and, minus secrets, for the price estimate)."""
        kw: dict[str, Any] = {
            "training_file": training_id,
            "model": None if checkpoint else spec.base_model,
            "from_checkpoint": checkpoint,
            "model_limits": limits,
            "n_epochs": spec.epochs,
            "learning_rate": spec.learning_rate,
            "batch_size": spec.batch_size,
            "training_method": spec.method.value,
            "suffix": spec.suffix,
            "random_seed": spec.seed,
            "n_checkpoints": options.get("n_checkpoints", 1),
        }
        if validation_id:
            kw["validation_file"] = validation_id
            kw["n_evals"] = options.get("n_evals", 1)
        elif "n_evals" in options:
            kw["n_evals"] = options["n_evals"]
        if spec.gradient_accumulation_steps > 1:
            kw["gradient_accumulation_steps"] = spec.gradient_accumulation_steps
        if "max_length" in spec.model_fields_set:
            kw["max_seq_length"] = spec.max_length
        if checkpoint:
            # Continuing: Together inherits the parent's training type (LoRA rank etc.).
            kw["lora"] = None
        elif spec.lora is None:
            kw["lora"] = False
        else:
            modules = spec.lora.target_modules
            kw.update(
                lora=True,
                lora_r=spec.lora.r,
                lora_alpha=spec.lora.alpha,
                lora_dropout=spec.lora.dropout,
                lora_trainable_modules=modules if isinstance(modules, str) else ",".join(modules),
            )
        if spec.method is FineTuneMethod.SFT:
            kw["train_on_inputs"] = options.get("train_on_inputs", "auto")
        else:
            kw["dpo_beta"] = spec.dpo_beta
            kw.update(_dpo_loss_kwargs(spec.dpo))
        for key in (
            "warmup_ratio",
            "lr_scheduler_type",
            "min_lr_ratio",
            "scheduler_num_cycles",
            "weight_decay",
            "max_grad_norm",
            "packing",
        ):
            if key in options:
                kw[key] = options[key]
        return kw

    def _secret_kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        """W&B / HF settings; the keys come from the environment only and are never recorded."""
        kw: dict[str, Any] = {}
        wandb_keys = [k for k in options if k.startswith("wandb_")]
        if options.get("wandb") or wandb_keys:
            key = os.environ.get("WANDB_API_KEY")
            if not key:
                raise ConfigurationError(
                    "together: W&B logging was requested but WANDB_API_KEY is not set in the "
                    "environment"
                )
            kw["wandb_api_key"] = key
            for k in wandb_keys:
                kw[k] = options[k]
        if options.get("hf_output_repo_name"):
            token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
            if not token:
                raise ConfigurationError(
                    "together: hf_output_repo_name needs a Hugging Face token in env HF_TOKEN"
                )
            kw["hf_output_repo_name"] = options["hf_output_repo_name"]
            kw["hf_api_token"] = token
        return kw

    async def _checkpoint_for(self, spec: FineTuneSpec) -> str | None:
        """Together's `from_checkpoint` for init_from='previous', or a clear refusal."""
        if not spec.from_model:
            return None
        wanted = spec.from_model
        try:
            if wanted.startswith("ft-"):
                jobs = [await self._client.fine_tuning.retrieve(wanted)]
            else:
                jobs = list((await self._client.fine_tuning.list()).data or [])
        except Exception as exc:
            raise map_error(exc, what="looking up the previous fine-tune job") from exc
        for job in jobs:
            if job.id != wanted and getattr(job, "x_model_output_name", None) != wanted:
                continue
            if job_status(job.status) is not JobStatus.SUCCEEDED:
                raise ConfigurationError(
                    f"init_from='previous': job {job.id} that produced {wanted} is "
                    f"'{job.status}', not completed, so Together has no final checkpoint to "
                    "continue from."
                )
            if job.model and job.model != spec.base_model:
                raise ConfigurationError(
                    f"init_from='previous': {wanted} was trained from {job.model}, not from "
                    f"base_model {spec.base_model}; Together continues a checkpoint only on its "
                    "own base model. Use the same base model or init_from='seed'."
                )
            return str(job.id)
        raise ConfigurationError(
            f"init_from='previous' cannot continue from '{wanted}': Together's from_checkpoint "
            "only accepts checkpoints of fine-tuning jobs in this account, and no completed job "
            "produced that model. Use init_from='seed' (the paper's setting) or fine-tune "
            "the previous model's job again."
        )

    # -- cost --------------------------------------------------------------------------------

    async def estimate_cost(self, spec: FineTuneSpec, training_file: Path) -> float | None:
        """USD from Together's price-estimate route (uploads the file if needed); None if
        Together gives no estimate for this job."""
        estimate, _ = await self._estimate(spec, training_file)
        return estimate

    def outlook(self, spec: FineTuneSpec) -> FineTuneOutlook:
        """Together prices a job only from its uploaded training file (unknown before it
        exists); `serving` says whether a dedicated endpoint is made ("auto" decides when
        serving: serverless where Together hosts the adapter's base model)."""
        dedicated = {"dedicated": True, "serverless": False}.get(self.options.serving)
        return FineTuneOutlook(job_cost_usd=None, dedicated_endpoint=dedicated)

    async def _validation_id(self, method: FineTuneMethod) -> str | None:
        """The uploaded id of the `validation_file` option, if it is set."""
        path = self.options.validation_file
        return await self._upload(path, method) if path is not None else None

    async def _estimate(self, spec: FineTuneSpec, training_file: Path) -> tuple[float | None, Any]:
        options = self._check_options(spec)
        training_id = await self._upload(training_file, spec.method)
        validation_id = await self._validation_id(spec.method)
        limits = await self._model_limits(spec.base_model)
        checkpoint = await self._checkpoint_for(spec)
        kw = self._create_kwargs(spec, options, training_id, validation_id, limits, checkpoint)
        from together.lib.resources.fine_tuning import create_finetune_request

        build = {k: v for k, v in kw.items() if k not in ("model_limits",)}
        try:
            request, training_type, training_method = create_finetune_request(limits, **build)
        except ValueError as exc:
            raise ConfigurationError(f"together: invalid fine-tune settings: {exc}") from exc
        try:
            result = await self._client.fine_tuning.estimate_price(
                training_file=training_id,
                **({"from_checkpoint": checkpoint} if checkpoint else {}),
                **({"validation_file": validation_id} if validation_id else {}),
                model=request.model or "",
                n_epochs=request.n_epochs,
                n_evals=request.n_evals or 0,
                training_type=training_type,
                training_method=training_method,
            )
        except Exception as exc:
            raise map_error(exc, what="fine-tune price estimate") from exc
        if getattr(result, "estimation_available", False) is not True:
            return None, result
        price = getattr(result, "estimated_total_price", None)
        return (float(price) if price is not None else None), result

    # -- jobs --------------------------------------------------------------------------------

    async def submit(self, spec: FineTuneSpec, training_file: Path) -> FineTuneJobState:
        """Validate, upload, check the price, create the job; return its first state."""
        options = self._check_options(spec)
        secrets = self._secret_kwargs(options)
        limits = await self._model_limits(spec.base_model)
        self._check_limits(spec, limits)
        estimate: float | None = None
        max_cost = self.options.max_cost_usd
        if max_cost is not None:
            estimate, raw = await self._estimate(spec, training_file)
            if estimate is None:
                reason = getattr(raw, "unavailable_reason", "no estimate")
                raise BudgetExceeded(
                    f"Together gave no price estimate for this fine-tune ({reason}), so "
                    f"max_cost_usd={max_cost} cannot be checked. Remove max_cost_usd "
                    "to submit without this guard."
                )
            if estimate > max_cost:
                raise BudgetExceeded(
                    f"The fine-tune is estimated at ${estimate:.2f} by Together, over "
                    f"max_cost_usd=${max_cost:.2f}. Lower epochs or data, or raise "
                    "the limit."
                )
            if getattr(raw, "allowed_to_proceed", True) is False:
                raise BudgetExceeded(
                    f"Together says the account cannot pay for this fine-tune (estimated "
                    f"${estimate:.2f}, credit limit ${getattr(raw, 'user_limit', '?')})."
                )
        training_id = await self._upload(training_file, spec.method)
        validation_id = await self._validation_id(spec.method)
        checkpoint = await self._checkpoint_for(spec)
        kw = self._create_kwargs(spec, options, training_id, validation_id, limits, checkpoint)
        try:
            job = await self._client.fine_tuning.create(**kw, **secrets)
        except ValueError as exc:  # the SDK's own client-side validation
            raise ConfigurationError(f"together: invalid fine-tune settings: {exc}") from exc
        except Exception as exc:
            raise map_error(exc, what="fine-tune create") from exc
        if estimate is not None:
            self._estimates[job.id] = estimate
        note = (
            f"continuing from checkpoint {checkpoint} (LoRA settings inherited from that job)"
            if checkpoint
            else None
        )
        return self._state(job, events=(), message=note)

    async def find_job(self, spec: FineTuneSpec, *, created_after: datetime) -> str | None:
        """The newest live job with this spec's suffix (which names run and iteration) created
        at or after `created_after`, from Together's job list; None without a suffix."""
        if not spec.suffix:
            return None
        try:
            jobs = (await self._client.fine_tuning.list()).data or []
        except Exception as exc:
            raise map_error(exc, what="listing fine-tune jobs") from exc
        matches = [
            job
            for job in jobs
            if job.suffix == spec.suffix
            and _aware(job.created_at) >= _aware(created_after)
            and job_status(job.status) not in (JobStatus.FAILED, JobStatus.CANCELLED)
        ]
        if not matches:
            return None
        return str(max(matches, key=lambda job: _aware(job.created_at)).id)

    async def poll(self, job_id: str) -> FineTuneJobState:
        """Current state with only the events not reported before, progress and any error text."""
        try:
            job = await self._client.fine_tuning.retrieve(job_id)
            events = list((await self._client.fine_tuning.list_events(job_id)).data or [])
        except Exception as exc:
            raise map_error(exc, what=f"polling fine-tune job {job_id}") from exc
        return self._state(job, events=events)

    async def cancel(self, job_id: str) -> FineTuneJobState:
        """Ask Together to stop the job (state becomes cancel_requested, then cancelled)."""
        try:
            job = await self._client.fine_tuning.cancel(job_id)
        except Exception as exc:
            raise map_error(exc, what=f"cancelling fine-tune job {job_id}") from exc
        return self._state(job, events=())

    def _state(
        self, job: Any, *, events: list[Any] | tuple[Any, ...], message: str | None = None
    ) -> FineTuneJobState:
        provider_status = str(getattr(job.status, "value", job.status) or "")
        status = job_status(provider_status)
        seen = self._seen_events.setdefault(job.id, set())
        new_lines: list[str] = []
        for ev in events:
            key = (str(ev.created_at), str(ev.type), str(ev.message))
            if key in seen:
                continue
            seen.add(key)
            new_lines.append(f"{ev.created_at} [{ev.type}] {ev.message}")
        progress = _progress(status, events)
        step, total_steps = _steps(events)
        if status is JobStatus.FAILED:
            message = _error_text(events) or (
                f"Together reported '{provider_status}' without an error message; see "
                f"`together fine-tuning list-events {job.id}`"
            )
        elif status is JobStatus.CANCELLED:
            message = message or "cancelled"
        model = None
        if status is JobStatus.SUCCEEDED:
            output = getattr(job, "x_model_output_name", None)
            if not output:
                raise TransientProviderError(
                    f"Together job {job.id} is completed but has no output model name yet",
                    provider=PROVIDER,
                )
            model = ModelRef(
                model=output,
                inference_backend=self.name,
                base_model=getattr(job, "model", None),
                metadata=_model_metadata(job),
            )
        return FineTuneJobState(
            job_id=job.id,
            status=status,
            provider_status=provider_status,
            message=message,
            progress=progress,
            events=tuple(new_lines),
            model=model,
            cost_usd=self._estimates.get(job.id),
            # Together's own words: pending, queued, running, compressing, uploading, ...
            phase=provider_status or None,
            step=step,
            total_steps=total_steps,
        )

    # -- serving -----------------------------------------------------------------------------

    def serve(self, model: ModelRef) -> contextlib.AbstractAsyncContextManager[ModelRef]:
        """Make `model` callable: serverless where Together serves it, else a dedicated endpoint
        (recorded in `resources`; the one a dead session left serving `model` is reused) that is
        stopped and deleted on exit (success, error or cancellation)."""
        return serve_model(
            self._client, model, self.options, self.resources, progress=self.progress
        )

    async def resource_state(self, resource: Resource) -> str | None:
        """The state of an endpoint's deployment at Together (`NO_DEPLOYMENT` when it holds
        none), or None when the endpoint no longer exists; a fine-tune job's, by the base."""
        if resource.kind != "endpoint":
            return await super().resource_state(resource)
        found = await locate(self._client, self.resources, resource)
        return found.state if found is not None else None

    async def reap(self, resource: Resource) -> str:
        """Delete the endpoint (its deployments first) and end its entry with its cost; cancel
        a fine-tune job (the base's)."""
        if resource.kind != "endpoint":
            return await super().reap(resource)
        return await reap_endpoint(
            self._client,
            self.resources,
            resource,
            retry_interval_s=self.options.endpoint_poll_interval_s,
        )


def _aware(moment: datetime) -> datetime:
    """Together's timestamps are UTC; one without a zone is read as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _file_key(path: Path) -> tuple[str, str]:
    """(absolute path, sha256): the same content at the same path is uploaded once."""
    return str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest()


def _steps(events: list[Any] | tuple[Any, ...]) -> tuple[int | None, int | None]:
    """(step, total steps) of the newest event that tells them."""
    for ev in reversed(list(events)):  # Together lists events oldest first
        step, total = getattr(ev, "step", None), getattr(ev, "total_steps", None)
        if isinstance(step, int) and isinstance(total, int) and total > 0:
            return max(0, min(step, total)), total
    return None, None


def _progress(status: JobStatus, events: list[Any] | tuple[Any, ...]) -> float | None:
    if status is JobStatus.SUCCEEDED:
        return 1.0
    step, total = _steps(events)
    return step / total if step is not None and total else None


def _error_text(events: list[Any] | tuple[Any, ...]) -> str | None:
    for ev in reversed(list(events)):
        level = str(getattr(ev, "level", "") or "")
        if str(ev.type) == "job_error" or level.endswith("error"):
            return str(ev.message)
    return None


def _model_metadata(job: Any) -> dict[str, Any]:
    training_type = getattr(job, "training_type", None)
    meta: dict[str, Any] = {
        "job_id": job.id,
        "training_type": getattr(training_type, "type", None),
        "model_object_id": getattr(job, "api_model_object_id", None),
        "model_object_name": getattr(job, "api_model_object_name", None),
        "adapter_object_id": getattr(job, "adapter_object_id", None),
    }
    return {k: v for k, v in meta.items() if v is not None}


def _dpo_loss_kwargs(dpo: DPOSpec) -> dict[str, Any]:
    """`fine_tuning.create`'s DPO loss arguments; defaults are left out (plain DPO).

    The SDK turns simpo_gamma > 0 into reference-free DPO with length-normalised log-ratios.
    """
    kw: dict[str, Any] = {}
    if dpo.nll_weight > 0:
        kw["rpo_alpha"] = dpo.nll_weight
    if dpo.normalize_logratios_by_length:
        kw["dpo_normalize_logratios_by_length"] = True
    if dpo.simpo_gamma is not None:
        kw["simpo_gamma"] = dpo.simpo_gamma
    return kw
