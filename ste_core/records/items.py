"""The method's records, in the order they flow: instructions, baselines, response pairs,
judgements, kept judgements, training examples; and `Drop`, an item that produced nothing.

Every stage reads records of one kind and writes records of the next; all are pydantic models so
they validate on the way in, serialise to JSONL for the run directory, and read back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from ste_core.records._base import Record, content_hash
from ste_core.records.inference import Message, Usage

__all__ = [
    "Baseline",
    "DPOExample",
    "Drop",
    "DropReason",
    "GRPOExample",
    "Instruction",
    "Judgement",
    "Kept",
    "Order",
    "PairRecipe",
    "ResponsePair",
    "SFTExample",
    "TrainingExample",
    "Verdict",
    "judgement_from_row",
]


class Instruction(Record):
    """One unlabelled user instruction, or a problem with its reference `answer` (the verifiable
    recipe). `id` is a content hash of the text: same text, same id."""

    id: str
    text: str
    source: str | None = None
    category: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    answer: str | None = None

    @model_serializer(mode="wrap")
    def _no_answer_key_for_instructions(self, handler: SerializerFunctionWrapHandler) -> Any:
        # An instruction without a reference answer is written as it always was.
        data = handler(self)
        if data.get("answer") is None:
            data.pop("answer", None)
        return data

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> Instruction:
        return cls(id=content_hash(text)[:16], text=text, **kwargs)


class Baseline(Record):
    """The generator's answer y_w to an instruction x."""

    instruction_id: str
    instruction: str
    response: str
    finish_reason: str | None = None
    model: str = ""


class Order(StrEnum):
    """Which response the judge saw first. AB: the better response is shown as A."""

    AB = "AB"
    BA = "BA"

    @property
    def correct_verdict(self) -> Literal["A", "B"]:
        return "A" if self is Order.AB else "B"


Verdict = Literal["A", "B", "tie"]

#: The recipe that made a synthetic pair: "instructions" (baseline vs. an answer to a modified
#: instruction) or "verifiable" (a right vs. a wrong solution of a problem).
PairRecipe = Literal["instructions", "verifiable"]


class ResponsePair(Record):
    """An instruction with a known-better (`chosen`) and known-worse (`rejected`) response.

    For synthetic pairs `recipe` says how they were made: with "instructions", `rejected`
    answers `modified_instruction`; with "verifiable", `chosen` is a solution whose final answer
    is the reference and `rejected` one whose final answer is not. For labelled benchmarks
    (RewardBench, user files) `recipe` and `modified_instruction` are None and `subset` names
    the source.
    """

    id: str
    instruction: str
    chosen: str
    rejected: str
    modified_instruction: str | None = None
    subset: str | None = None
    instruction_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    recipe: PairRecipe | None = None

    @model_validator(mode="after")
    def _responses_differ(self) -> ResponsePair:
        if self.chosen.strip() == self.rejected.strip():
            raise ValueError(f"pair {self.id}: chosen and rejected responses are identical")
        return self

    def shown(self, order: Order) -> tuple[str, str]:
        """(response_a, response_b) as the judge sees them in `order`."""
        return (self.chosen, self.rejected) if order is Order.AB else (self.rejected, self.chosen)


class Judgement(Record):
    """One sampled judge output for a pair shown in one order."""

    pair_id: str
    order: Order
    sample_index: int
    text: str
    verdict: Verdict | None
    judge_model: str
    template: str
    parse_reason: str = ""
    usage: Usage = Usage()
    #: the output was cut off at max_tokens (its verdict is read accordingly, see
    #: `ste_prompts.Template.parse_output`)
    truncated: bool = False

    @property
    def sample(self) -> tuple[str, Order, int]:
        """(pair id, order, sample index): which judge sample this is."""
        return self.pair_id, self.order, self.sample_index

    @property
    def correct(self) -> bool:
        return self.verdict == self.order.correct_verdict

    @property
    def picked_chosen(self) -> float:
        """1 if the judge picked the better response, 0 if the worse, 0.5 for tie or no verdict."""
        if self.verdict in ("A", "B"):
            return 1.0 if self.correct else 0.0
        return 0.5


DropReason = Literal[
    "api_error",  # the request failed after the scheduler's retries (never a parse issue)
    "parse_error",  # the model answered, the answer lacks what the template asked for
    "truncated",  # the answer hit max_tokens before its end
    "empty_baseline",  # the generator answered with nothing
    "identical",  # the worse response equals the baseline: no signal in such a pair
    "same_instruction",  # the "modified" instruction is the original one
    "no_correct_solution",  # none of a problem's sampled solutions has the reference answer
    "no_incorrect_solution",  # every readable solution of a problem has the reference answer
    "bad_reference",  # the checker cannot read the problem's reference answer
]


class Drop(Record):
    """An item that produced nothing, and why: counted by reason in its stage's funnel.

    It names its item by whichever key the item has (an instruction, or a judge sample of a
    pair in one order); keys that do not apply are left out of the JSON, so every drops file
    holds one shape. In a judgements file a Drop stands where a judgement could not be made: it
    scores 0.5 and counts as an error, never as a verdict.
    """

    instruction_id: str | None = None
    pair_id: str | None = None
    order: Order | None = None
    sample_index: int | None = None
    stage: str
    reason: DropReason
    error_type: str | None = None
    message: str = ""
    text: str | None = Field(None, description="the model's text, for answers that did not parse")

    @model_validator(mode="after")
    def _a_judge_sample_is_named_whole(self) -> Drop:
        named = (self.pair_id, self.order, self.sample_index)
        if any(v is not None for v in named) and any(v is None for v in named):
            raise ValueError("a judge sample's drop needs pair_id, order and sample_index")
        return self

    @model_serializer(mode="wrap")
    def _omit_keys_that_do_not_apply(self, handler: SerializerFunctionWrapHandler) -> Any:
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def sample(self) -> tuple[str, Order, int]:
        """(pair id, order, sample index) of the judge sample that produced no judgement."""
        if self.pair_id is None or self.order is None or self.sample_index is None:
            raise ValueError(f"this drop ({self.stage}: {self.reason}) names no judge sample")
        return self.pair_id, self.order, self.sample_index


def judgement_from_row(row: Mapping[str, Any]) -> Judgement | Drop:
    """A row of a judgements file: a Judgement, or a Drop where a sample produced none.

    Rows written before `Drop` existed carried `error_type` and no `text`; they are read as the
    api_error drops they were.
    """
    if "reason" in row:
        return Drop.model_validate(row)
    if "error_type" in row and "text" not in row:
        return Drop.model_validate({"stage": "judge", "reason": "api_error", **row})
    return Judgement.model_validate(row)


class Kept(Record):
    """A kept (pair, order): `chosen` = correct sample indices in seeded order (the first one is
    the SFT target), `rejected` = wrong / tie / no-verdict sample indices in seeded order (DPO).

    SFT and DPO balance their labels over different sets (DPO only over the orders that have a
    wrong sample, as Meta's data preparation does), so `for_sft` / `for_dpo` say which training
    data an entry feeds. Files written before they existed fed both."""

    pair_id: str
    order: Order
    chosen: tuple[int, ...]
    rejected: tuple[int, ...] = ()
    for_sft: bool = True
    for_dpo: bool = True

    @property
    def label(self) -> str:
        """The correct verdict of this example ("A" or "B")."""
        return self.order.correct_verdict

    @property
    def sample_index(self) -> int:
        return self.chosen[0]


class SFTExample(Record):
    """Input = judge prompt messages, target = a kept (correct) judgement."""

    messages: tuple[Message, ...]
    completion: str
    pair_id: str
    order: Order


class DPOExample(Record):
    """Same prompt; chosen = a correct judgement, rejected = a wrong / tie / unparsable one."""

    messages: tuple[Message, ...]
    chosen: str
    rejected: str
    pair_id: str
    order: Order


class GRPOExample(Record):
    """A judge prompt to sample judgements for (GRPO): no target text, only the known label.

    `label` is the verdict that names the better response in `order`; `parser` and
    `verdict_rule` are the judge template's, which the rewards read the sampled judgements with.
    """

    messages: tuple[Message, ...]
    label: Literal["A", "B"]
    pair_id: str
    order: Order
    parser: str = "verdict"
    verdict_rule: str | None = None


TrainingExample = SFTExample | DPOExample | GRPOExample
