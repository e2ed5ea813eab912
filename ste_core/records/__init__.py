"""Every record that flows through ste, in one place.

Records are typed pydantic models: they validate on the way in, serialise to JSON lines for the
run directory and read back unchanged. Most are frozen: a stage derives new records, it never
edits old ones.

- `inference`: a model call: Message, SamplingParams, ChatRequest, Usage, Completion, Outcome
- `items`: the method's data, in flow order: Instruction, Baseline, ResponsePair, Judgement, Kept,
  SFTExample, DPOExample, GRPOExample, and Drop (an item that produced nothing, and why)
- `finetune`: FineTuneSpec, DPOSpec, GRPOSpec, LoRAConfig, FineTuneJobState, JobStatus, ModelRef
- `scores`: EvalScore (and its parts), PairedTest
- `resources`: Resource (an endpoint or batch job in the run's ledger)
- `run`: Funnel, StageUsage, RunManifest, IterationMetrics (what the run store holds)
"""

from ste_core.records._base import Record, content_hash
from ste_core.records.finetune import (
    DPOSpec,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    GRPORewardWeights,
    GRPOSpec,
    JobStatus,
    LoRAConfig,
    ModelRef,
)
from ste_core.records.inference import (
    ChatRequest,
    Completion,
    Message,
    Outcome,
    SamplingParams,
    Usage,
)
from ste_core.records.items import (
    Baseline,
    DPOExample,
    Drop,
    DropReason,
    GRPOExample,
    Instruction,
    Judgement,
    Kept,
    Order,
    PairRecipe,
    ResponsePair,
    SFTExample,
    TrainingExample,
    Verdict,
    judgement_from_row,
)
from ste_core.records.resources import Resource, ResourceState
from ste_core.records.run import (
    BackendOrigin,
    CostTotals,
    EndpointRecord,
    FineTuneInfo,
    FineTuneJobRecord,
    Funnel,
    IterationMetrics,
    PairedResult,
    RunManifest,
    SessionRecord,
    StageUsage,
    UsageTotals,
)
from ste_core.records.scores import (
    BenchmarkFigure,
    BenchmarkResult,
    EvalScore,
    JudgeSelection,
    PairedTest,
    RewardBenchScore,
    SectionScore,
    SubsetScore,
)

__all__ = [
    "BackendOrigin",
    "Baseline",
    "BenchmarkFigure",
    "BenchmarkResult",
    "ChatRequest",
    "Completion",
    "CostTotals",
    "DPOExample",
    "DPOSpec",
    "Drop",
    "DropReason",
    "EndpointRecord",
    "EvalScore",
    "FineTuneInfo",
    "FineTuneJobRecord",
    "FineTuneJobState",
    "FineTuneMethod",
    "FineTuneSpec",
    "Funnel",
    "GRPOExample",
    "GRPORewardWeights",
    "GRPOSpec",
    "Instruction",
    "IterationMetrics",
    "JobStatus",
    "JudgeSelection",
    "Judgement",
    "Kept",
    "LoRAConfig",
    "Message",
    "ModelRef",
    "Order",
    "Outcome",
    "PairRecipe",
    "PairedResult",
    "PairedTest",
    "Record",
    "Resource",
    "ResourceState",
    "ResponsePair",
    "RewardBenchScore",
    "RunManifest",
    "SFTExample",
    "SamplingParams",
    "SectionScore",
    "SessionRecord",
    "StageUsage",
    "SubsetScore",
    "TrainingExample",
    "Usage",
    "UsageTotals",
    "Verdict",
    "content_hash",
    "judgement_from_row",
]
