"""Together's training file formats (JSONL), written and validated here.

SFT uses the conversational format: `{"messages": [{"role", "content"}, ...]}` ending with the
assistant turn that is trained on (with train_on_inputs="auto" Together masks the other turns).

DPO uses the preference format: `{"input": {"messages": [...]}, "preferred_output": [one assistant
message], "non_preferred_output": [one assistant message]}`.

Both are documented at docs.together.ai (fine-tuning data preparation; preference fine-tuning).
`validate_training_file` checks a file against those rules line by line, so a bad file fails
here with the line number instead of minutes later in Together's validation queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ste_core.errors import ConfigurationError, DataFileError
from ste_core.records import DPOExample, FineTuneMethod, GRPOExample, SFTExample
from ste_core.run.io import jsonl_writer, read_rows

ROLES = ("system", "user", "assistant", "tool")


def sft_line(example: SFTExample) -> dict[str, Any]:
    """One conversational-format line: the judge prompt then the kept judgement."""
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    messages.append({"role": "assistant", "content": example.completion})
    return {"messages": messages}


def dpo_line(example: DPOExample) -> dict[str, Any]:
    """One preference-format line (exactly one assistant message per output)."""
    return {
        "input": {"messages": [{"role": m.role, "content": m.content} for m in example.messages]},
        "preferred_output": [{"role": "assistant", "content": example.chosen}],
        "non_preferred_output": [{"role": "assistant", "content": example.rejected}],
    }


def write_training_file(
    examples: Iterable[SFTExample] | Iterable[DPOExample] | Iterable[GRPOExample],
    method: FineTuneMethod,
    path: Path,
) -> int:
    """Stream examples to `path` in Together's format for `method`; return the count written."""
    method = FineTuneMethod(method)
    if method not in (FineTuneMethod.SFT, FineTuneMethod.DPO):
        raise ConfigurationError(
            f"Together fine-tunes with sft or dpo, not {method.value!r}; train {method.value} "
            'with finetune.backend = "local"'
        )
    expected = SFTExample if method is FineTuneMethod.SFT else DPOExample
    with jsonl_writer(path) as w:
        for ex in examples:
            if not isinstance(ex, expected):
                raise ConfigurationError(
                    f"{method.value} training file needs {expected.__name__} records, got "
                    f"{type(ex).__name__} (example {w.count + 1})"
                )
            w.write(sft_line(ex) if isinstance(ex, SFTExample) else dpo_line(ex))
        if w.count == 0:  # raised inside the block: no empty file is left behind
            raise ConfigurationError(
                f"No {method.value} examples to write to {path}: the training set is empty "
                "(check the rejection-sampling funnel in the run report)."
            )
    return w.count


def validate_training_file(path: Path, method: FineTuneMethod) -> int:
    """Check every line of `path` against Together's format for `method`; return line count.

    Raises DataFileError naming the first bad line (`path:line: ...`) and what is wrong with it.
    """
    method = FineTuneMethod(method)
    check = _sft_problem if method is FineTuneMethod.SFT else _dpo_problem
    rows = read_rows(path, format="jsonl")
    n = 0
    for obj in rows:
        problem = check(obj)
        if problem:
            raise DataFileError(f"{path}:{rows.line}: not in Together's format: {problem}")
        n += 1
    if n == 0:
        raise ConfigurationError(f"Training file {path} is empty.")
    return n


def _messages_problem(messages: Any, where: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"{where} must be a non-empty list of messages"
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"{where}[{i}] must be an object"
        if m.get("role") not in ROLES:
            return f"{where}[{i}].role must be one of {', '.join(ROLES)}"
        if not isinstance(m.get("content"), str):
            return f"{where}[{i}].content must be a string"
    return None


def _sft_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict) or "messages" not in obj:
        return 'each line must be an object with a "messages" list'
    extra = set(obj) - {"messages", "tools"}
    if extra:
        return f"unexpected keys {sorted(extra)}"
    problem = _messages_problem(obj["messages"], "messages")
    if problem:
        return problem
    if obj["messages"][-1]["role"] != "assistant":
        return "the last message must be the assistant turn to train on"
    return None


def _dpo_problem(obj: Any) -> str | None:
    required = {"input", "preferred_output", "non_preferred_output"}
    if not isinstance(obj, dict) or not required <= set(obj):
        return f"each line must be an object with keys {sorted(required)}"
    extra = set(obj) - required
    if extra:
        return f"unexpected keys {sorted(extra)}"
    inp = obj["input"]
    if not isinstance(inp, dict) or "messages" not in inp:
        return 'input must be an object with a "messages" list'
    problem = _messages_problem(inp["messages"], "input.messages")
    if problem:
        return problem
    for key in ("preferred_output", "non_preferred_output"):
        out = obj[key]
        problem = _messages_problem(out, key)
        if problem:
            return problem
        if len(out) != 1 or out[0]["role"] != "assistant":
            return f"{key} must hold exactly one assistant message"
    if obj["preferred_output"][0]["content"] == obj["non_preferred_output"][0]["content"]:
        return "preferred and non-preferred outputs are identical"
    return None
