"""The local backend's training files (ste_backends/local/training_data.py): TRL's
prompt-completion and preference formats (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ste_core.errors import ConfigurationError
from ste_core.records import FineTuneMethod
from tests.backends.local.local_support import PROMPT, dpo_examples, sft_examples


def test_sft_file_is_trl_prompt_completion(tmp_path: Path) -> None:
    from ste_backends.local import LocalFineTune

    path = tmp_path / "sft.jsonl"
    assert LocalFineTune().write_training_file(sft_examples(2), FineTuneMethod.SFT, path) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {
        "prompt": [
            {"role": "system", "content": "You are a judge."},
            {"role": "user", "content": PROMPT[1].content},
        ],
        "completion": [
            {"role": "assistant", "content": "Response A answers the question 0. [[A]]"}
        ],
    }


def test_dpo_file_is_trl_preference(tmp_path: Path) -> None:
    from ste_backends.local.training_data import write_jsonl

    path = tmp_path / "dpo.jsonl"
    assert write_jsonl(dpo_examples(3), FineTuneMethod.DPO, path) == 3
    row = json.loads(path.read_text().splitlines()[2])
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert row["chosen"] == [{"role": "assistant", "content": "A is correct 2. [[A]]"}]
    assert row["rejected"] == [{"role": "assistant", "content": "B is better 2. [[B]]"}]
    with pytest.raises(ConfigurationError, match="needs DPO examples"):
        write_jsonl(sft_examples(1), FineTuneMethod.DPO, tmp_path / "bad.jsonl")


def test_grpo_file_is_trl_prompt_only_with_the_reward_columns(tmp_path: Path) -> None:
    from ste_backends.local.training_data import write_jsonl
    from ste_core.records import GRPOExample, Order

    examples = [
        GRPOExample(
            messages=PROMPT,
            label=order.correct_verdict,
            pair_id="p0",
            order=order,
            verdict_rule="final",
        )
        for order in (Order.AB, Order.BA)
    ]
    path = tmp_path / "grpo.jsonl"
    assert write_jsonl(examples, FineTuneMethod.GRPO, path) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[1] == {
        "prompt": [
            {"role": "system", "content": "You are a judge."},
            {"role": "user", "content": PROMPT[1].content},
        ],
        "label": "B",
        "pair_id": "p0",
        "order": "BA",
        "parser": "verdict",
        "verdict_rule": "final",
    }
    with pytest.raises(ConfigurationError, match="needs GRPO examples"):
        write_jsonl(sft_examples(1), FineTuneMethod.GRPO, tmp_path / "bad.jsonl")
