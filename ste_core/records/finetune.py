"""Records of fine-tuning: what to train, a job's state, and the model it produced."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from ste_core.records._base import Record

__all__ = [
    "DPOSpec",
    "FineTuneJobState",
    "FineTuneMethod",
    "FineTuneSpec",
    "GRPORewardWeights",
    "GRPOSpec",
    "JobStatus",
    "LoRAConfig",
    "ModelRef",
]


class FineTuneMethod(StrEnum):
    SFT = "sft"
    DPO = "dpo"
    GRPO = "grpo"


class LoRAConfig(Record):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] | Literal["all-linear"] = "all-linear"


class DPOSpec(Record):
    """The shape of the DPO loss beyond its beta (`[finetune.dpo]` in a config).

    The defaults are plain DPO. `nll_weight` adds the chosen answers' negative log-likelihood
    (per token) times this weight: DPO+NLL, as in Meta's released Self-Taught Evaluator (Together
    calls it `rpo_alpha`). A backend refuses what it cannot train, naming the key.
    """

    nll_weight: float = Field(0.0, ge=0.0, description="weight of the chosen answers' NLL term")
    normalize_logratios_by_length: bool = Field(
        False, description="divide each answer's log-ratio by its token count"
    )
    simpo_gamma: float | None = Field(
        None, ge=0.0, description="SimPO's target margin: reference-free, length-normalised"
    )


class GRPORewardWeights(Record):
    """How much each GRPO reward counts (`ste_core.training.rewards` defines them)."""

    #: +1 when the final verdict names the better response
    correct: float = Field(1.0, ge=0.0)
    #: +1 when this completion and its partner in the other order (same pair, same batch) are
    #: both correct (J1's position-consistency reward)
    consistency: float = Field(1.0, ge=0.0)
    #: +1 when one verdict is given, in the last line
    format: float = Field(0.25, ge=0.0)


class GRPOSpec(Record):
    """GRPO settings (`[finetune.grpo]`): the rollouts and the rewards of one training job."""

    num_generations: int = Field(4, ge=2, description="completions sampled per prompt")
    max_completion_length: int = Field(1024, ge=1, description="tokens per sampled judgement")
    beta: float = Field(0.001, ge=0.0, description="KL coefficient (0: no reference model)")
    temperature: float = Field(1.0, gt=0.0, le=2.0)
    rewards: GRPORewardWeights = GRPORewardWeights()
    use_vllm: bool | None = Field(
        None, description="generate with vLLM (None: when vLLM is installed and a GPU is present)"
    )
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = Field(
        None, description="a running `trl vllm-serve` (vllm_mode = 'server')"
    )

    def check_batch(self, batch_size: int, gradient_accumulation_steps: int) -> None:
        """Raise ValueError unless a generation batch (batch_size x gradient_accumulation_steps
        completions per process) holds whole pairs: both orders, num_generations completions
        each. Then no batch, and no process of several, ever holds half a pair."""
        rows = batch_size * gradient_accumulation_steps
        whole = 2 * self.num_generations
        if rows % whole:
            raise ValueError(
                f"method grpo: finetune.batch_size x gradient_accumulation_steps = {rows} "
                f"completions per generation batch must be a multiple of 2 x "
                f"finetune.grpo.num_generations = {whole} (both orders of each pair, "
                f"{self.num_generations} completions each); e.g. batch_size = {whole}"
            )


class FineTuneSpec(Record):
    """Everything a fine-tune backend needs to start a job, provider-neutral.

    `options` carries provider-specific knobs (e.g. Together's W&B project or hardware); backends
    document which keys they read and reject unknown ones.
    """

    base_model: str
    method: FineTuneMethod = FineTuneMethod.SFT
    from_model: str | None = Field(
        None, description="Continue from this fine-tuned model (init_from='previous')."
    )
    lora: LoRAConfig | None = LoRAConfig()
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int | Literal["max"] = 8
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=16)
    dpo_beta: float = Field(0.1, gt=0)
    dpo: DPOSpec = DPOSpec()

    #: the GRPO settings; set for method grpo only
    grpo: GRPOSpec | None = None
    suffix: str | None = Field(None, max_length=40)
    seed: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class ModelRef(Record):
    """A model a backend can run: a provider model name, an endpoint, or a local adapter path.

    `inference_backend` names the backend that can serve it (the fine-tune backend's own choice);
    `options` are extra inference-backend options it needs (e.g. a dedicated endpoint's base URL).
    """

    model: str
    inference_backend: str | None = None
    base_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class FineTuneJobState(Record):
    """A job as its backend last saw it. `phase`, `step`, `total_steps` and `loss` are what the
    progress display shows; a backend fills those its provider tells (all optional)."""

    job_id: str
    status: JobStatus
    provider_status: str | None = None
    message: str | None = None
    progress: float | None = Field(None, ge=0.0, le=1.0)
    events: tuple[str, ...] = ()
    model: ModelRef | None = None
    #: the job's price: the provider's final figure, or its estimate while the job runs
    cost_usd: float | None = None
    #: what the job is doing now, in words ("loading model", "training", "uploading", ...)
    phase: str | None = None
    step: int | None = Field(None, ge=0)
    total_steps: int | None = Field(None, ge=0)
    #: the training loss last logged
    loss: float | None = None
    #: other training metrics last logged, by name (GRPO: "reward", "reward/<function>", "kl")
    metrics: dict[str, float] = Field(default_factory=dict)
