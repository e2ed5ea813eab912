"""Training files in TRL's conversational formats (JSON Lines, one example per line).

- SFT, prompt-completion: `{"prompt": [messages...], "completion": [{"role": "assistant", ...}]}`.
  TRL's SFTTrainer computes the loss on the completion only for this format.
- DPO, preference: `{"prompt": [messages...], "chosen": [assistant message],
  "rejected": [assistant message]}`.
- GRPO, prompt only: `{"prompt": [messages...], "label": "A"|"B", "pair_id", "order", "parser",
  "verdict_rule"}` (how the judge template reads a verdict);
  TRL's GRPOTrainer passes the extra columns to the reward functions (`grpo.py`).

Standard library only, so writing a file never needs torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ste_core.errors import ConfigurationError
from ste_core.records import DPOExample, FineTuneMethod, GRPOExample, Message, SFTExample
from ste_core.run.io import jsonl_writer


def _messages(messages: tuple[Message, ...]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def example_row(
    example: SFTExample | DPOExample | GRPOExample, method: FineTuneMethod
) -> dict[str, Any]:
    """One example as a TRL conversational row for `method`."""
    if method is FineTuneMethod.SFT:
        if not isinstance(example, SFTExample):
            raise ConfigurationError(
                f"method 'sft' needs SFT examples, got {type(example).__name__} "
                f"(pair {example.pair_id})."
            )
        return {"prompt": _messages(example.messages), "completion": _assistant(example.completion)}
    if method is FineTuneMethod.DPO:
        if not isinstance(example, DPOExample):
            raise ConfigurationError(
                f"method 'dpo' needs DPO examples, got {type(example).__name__} "
                f"(pair {example.pair_id})."
            )
        return {
            "prompt": _messages(example.messages),
            "chosen": _assistant(example.chosen),
            "rejected": _assistant(example.rejected),
        }
    if method is FineTuneMethod.GRPO:
        if not isinstance(example, GRPOExample):
            raise ConfigurationError(
                f"method 'grpo' needs GRPO examples, got {type(example).__name__} "
                f"(pair {example.pair_id})."
            )
        return {
            "prompt": _messages(example.messages),
            "label": example.label,
            "pair_id": example.pair_id,
            "order": example.order.value,
            "parser": example.parser,
            "verdict_rule": example.verdict_rule,
        }
    raise ConfigurationError(f"The local backend cannot train method {method!r}.")


def write_jsonl(
    examples: Iterable[SFTExample] | Iterable[DPOExample] | Iterable[GRPOExample],
    method: FineTuneMethod,
    path: Path,
) -> int:
    """Write `examples` to `path` (streamed, atomically replaced); return how many were written."""
    method = FineTuneMethod(method)
    with jsonl_writer(path) as w:
        for example in examples:
            w.write(example_row(example, method))
    return w.count
