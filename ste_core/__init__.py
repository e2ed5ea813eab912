"""ste: train an LLM-as-a-Judge without human labels (Self-Taught Evaluators).

The public API: what users and plugin authors import. Everything else under `ste_core` is
internal (the subpackages `engine`, `run`, `config`, `cli`, `testing` and the stage modules say
so) and may change between versions.

    from ste_core import Pipeline, load_config, run          # run the loop
    from ste_core import get_inference_backend, ChatRequest  # call a backend by name
    from ste_core import InferenceBackend, hookimpl          # write a plugin

Importing this is cheap: no provider SDK, torch or litellm is imported here; the backends that
need them are plugins, loaded through the `ste` entry-point group on first use. The loop itself
(`Pipeline`, `run`, `Config`, `load_config`, the stages) is imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ste_core.backends import (
    BackendOptions,
    BatchItem,
    FineTuneBackend,
    FineTuneCapabilities,
    FineTuneOutlook,
    InferenceBackend,
    InferenceCapabilities,
    option,
    secret,
)
from ste_core.errors import (
    AuthenticationError,
    BudgetExceeded,
    ConfigurationError,
    DataFileError,
    EvaluationFailed,
    FineTuneFailed,
    MissingDependencyError,
    PermanentProviderError,
    ProviderError,
    RateLimitError,
    SteError,
    TooManyFailures,
    TransientProviderError,
    UnknownBackendError,
)
from ste_core.hookspecs import (
    IterationEvent,
    RegisterAnswerCheckers,
    RegisterBackends,
    RegisterTemplates,
    RunEvent,
    StageEvent,
    hookimpl,
    hookspec,
)
from ste_core.plugins import (
    get_finetune_backend,
    get_host,
    get_inference_backend,
    list_backends,
    reset_host,
)
from ste_core.records import (
    Baseline,
    ChatRequest,
    Completion,
    DPOExample,
    DPOSpec,
    Drop,
    EvalScore,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    Funnel,
    Instruction,
    IterationMetrics,
    JobStatus,
    Judgement,
    Kept,
    LoRAConfig,
    Message,
    ModelRef,
    Order,
    Outcome,
    PairedTest,
    Resource,
    ResponsePair,
    RunManifest,
    SamplingParams,
    SFTExample,
    StageUsage,
    Usage,
)

if TYPE_CHECKING:
    from ste_core.answers import AnswerCheck
    from ste_core.config import Config, load_config
    from ste_core.pipeline import Pipeline, RunResult, run
    from ste_core.stages import STAGES, Counts, Stage, Step

__version__ = "0.1.0"

# The loop's modules import the config schema, the engine and every stage: loaded on first use
# so that `import ste_core` (a plugin, `ste --help`) stays cheap.
_LAZY = {
    "AnswerCheck": "ste_core.answers",
    "Config": "ste_core.config",
    "load_config": "ste_core.config",
    "Pipeline": "ste_core.pipeline",
    "RunResult": "ste_core.pipeline",
    "run": "ste_core.pipeline",
    "STAGES": "ste_core.stages",
    "Counts": "ste_core.stages",
    "Stage": "ste_core.stages",
    "Step": "ste_core.stages",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ste_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "STAGES",
    "AnswerCheck",
    "AuthenticationError",
    "BackendOptions",
    "Baseline",
    "BatchItem",
    "BudgetExceeded",
    "ChatRequest",
    "Completion",
    "Config",
    "ConfigurationError",
    "Counts",
    "DPOExample",
    "DPOSpec",
    "DataFileError",
    "Drop",
    "EvalScore",
    "EvaluationFailed",
    "FineTuneBackend",
    "FineTuneCapabilities",
    "FineTuneFailed",
    "FineTuneJobState",
    "FineTuneMethod",
    "FineTuneOutlook",
    "FineTuneSpec",
    "Funnel",
    "InferenceBackend",
    "InferenceCapabilities",
    "Instruction",
    "IterationEvent",
    "IterationMetrics",
    "JobStatus",
    "Judgement",
    "Kept",
    "LoRAConfig",
    "Message",
    "MissingDependencyError",
    "ModelRef",
    "Order",
    "Outcome",
    "PairedTest",
    "PermanentProviderError",
    "Pipeline",
    "ProviderError",
    "RateLimitError",
    "RegisterAnswerCheckers",
    "RegisterBackends",
    "RegisterTemplates",
    "Resource",
    "ResponsePair",
    "RunEvent",
    "RunManifest",
    "RunResult",
    "SFTExample",
    "SamplingParams",
    "Stage",
    "StageEvent",
    "StageUsage",
    "SteError",
    "Step",
    "TooManyFailures",
    "TransientProviderError",
    "UnknownBackendError",
    "Usage",
    "get_finetune_backend",
    "get_host",
    "get_inference_backend",
    "hookimpl",
    "hookspec",
    "list_backends",
    "load_config",
    "option",
    "reset_host",
    "run",
    "secret",
]
