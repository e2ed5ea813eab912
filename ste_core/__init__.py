"""ste: train an LLM-as-a-Judge without human labels (Self-Taught Evaluators).

The public API. Importing this is cheap: no provider SDK, torch or litellm is imported here; the
backends that need them are plugins, loaded through the `ste` entry-point group on first use.
"""

from ste_core.backends import (
    BatchItem,
    FineTuneBackend,
    FineTuneCapabilities,
    InferenceBackend,
    InferenceCapabilities,
)
from ste_core.errors import (
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    FineTuneFailed,
    MissingDependencyError,
    PermanentProviderError,
    ProviderError,
    RateLimitError,
    SteError,
    TransientProviderError,
    UnknownBackendError,
)
from ste_core.hookspecs import IterationEvent, RunEvent, StageEvent, hookimpl, hookspec
from ste_core.plugins import (
    get_finetune_backend,
    get_host,
    get_inference_backend,
    list_backends,
    reset_host,
)
from ste_core.records import (
    ChatRequest,
    Completion,
    DPOExample,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    Instruction,
    JobStatus,
    Judgement,
    LoRAConfig,
    Message,
    ModelRef,
    Order,
    ResponsePair,
    SamplingParams,
    SFTExample,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BatchItem",
    "BudgetExceeded",
    "ChatRequest",
    "Completion",
    "ConfigurationError",
    "DPOExample",
    "FineTuneBackend",
    "FineTuneCapabilities",
    "FineTuneFailed",
    "FineTuneJobState",
    "FineTuneMethod",
    "FineTuneSpec",
    "InferenceBackend",
    "InferenceCapabilities",
    "Instruction",
    "IterationEvent",
    "JobStatus",
    "Judgement",
    "LoRAConfig",
    "Message",
    "MissingDependencyError",
    "ModelRef",
    "Order",
    "PermanentProviderError",
    "ProviderError",
    "RateLimitError",
    "ResponsePair",
    "RunEvent",
    "SFTExample",
    "SamplingParams",
    "StageEvent",
    "SteError",
    "TransientProviderError",
    "UnknownBackendError",
    "Usage",
    "get_finetune_backend",
    "get_host",
    "get_inference_backend",
    "hookimpl",
    "hookspec",
    "list_backends",
    "reset_host",
]
