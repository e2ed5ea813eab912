"""Together's training file formats (ste_backends/together/formats.py): writing and validating."""

from __future__ import annotations

import json

import pytest

from ste_backends.together.fake import _inspect
from ste_backends.together.formats import validate_training_file, write_training_file
from ste_core.errors import ConfigurationError, DataFileError
from ste_core.records import DPOExample, FineTuneMethod, Message, Order, SFTExample

PROMPT = (Message(role="system", content="Judge."), Message(role="user", content="A or B?"))
SFT = [SFTExample(messages=PROMPT, completion="[[A]]", pair_id="p", order=Order.AB)]
DPO = [DPOExample(messages=PROMPT, chosen="[[A]]", rejected="[[B]]", pair_id="p", order=Order.AB)]
# The example line from Together's preference fine-tuning docs (docs.together.ai).
DOCS_DPO_LINE = {
    "input": {
        "messages": [
            {"role": "assistant", "content": "Hello, how can I assist you today?"},
            {"role": "user", "content": "Can you tell me about the rise of the Roman Empire?"},
        ]
    },
    "preferred_output": [{"role": "assistant", "content": "The Roman Empire rose from ..."}],
    "non_preferred_output": [{"role": "assistant", "content": "It rose due to strength."}],
}
DOCS_SFT_LINE = {
    "messages": [
        {"role": "system", "content": "This is a system prompt."},
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I'm doing well, thank you! How can I help you?"},
    ]
}


def test_sft_file_is_conversational_format(tmp_path):
    path = tmp_path / "sft.jsonl"
    assert write_training_file(SFT, FineTuneMethod.SFT, path) == 1
    line = json.loads(path.read_text())
    assert line == {
        "messages": [
            {"role": "system", "content": "Judge."},
            {"role": "user", "content": "A or B?"},
            {"role": "assistant", "content": "[[A]]"},
        ]
    }
    assert validate_training_file(path, FineTuneMethod.SFT) == 1
    assert _inspect(path.read_bytes(), "fine-tune") == ("conversation", None, 1)


def test_dpo_file_is_preference_format(tmp_path):
    path = tmp_path / "dpo.jsonl"
    write_training_file(DPO, FineTuneMethod.DPO, path)
    line = json.loads(path.read_text())
    assert set(line) == {"input", "preferred_output", "non_preferred_output"}
    assert line["preferred_output"] == [{"role": "assistant", "content": "[[A]]"}]
    assert line["non_preferred_output"] == [{"role": "assistant", "content": "[[B]]"}]
    assert line["input"]["messages"][-1] == {"role": "user", "content": "A or B?"}
    assert validate_training_file(path, FineTuneMethod.DPO) == 1
    assert _inspect(path.read_bytes(), "fine-tune") == ("preference_openai", None, 1)


@pytest.mark.parametrize(
    ("method", "line"),
    [(FineTuneMethod.SFT, DOCS_SFT_LINE), (FineTuneMethod.DPO, DOCS_DPO_LINE)],
)
def test_validator_accepts_the_documented_examples(tmp_path, method, line):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert validate_training_file(path, method) == 1


def _mutated(line: dict, **changes: object) -> dict:
    out = json.loads(json.dumps(line))
    out.update(changes)
    return out


@pytest.mark.parametrize(
    ("method", "line", "match"),
    [
        (FineTuneMethod.SFT, {"prompt": "x", "completion": "y"}, "messages"),
        (
            FineTuneMethod.SFT,
            {"messages": [{"role": "user", "content": "only a question"}]},
            "last message",
        ),
        (FineTuneMethod.SFT, {"messages": [{"role": "judge", "content": "x"}]}, "role"),
        (FineTuneMethod.DPO, DOCS_SFT_LINE, "keys"),
        (
            FineTuneMethod.DPO,
            _mutated(DOCS_DPO_LINE, preferred_output=[{"role": "assistant", "content": "a"}] * 2),
            "exactly one assistant",
        ),
        (
            FineTuneMethod.DPO,
            _mutated(DOCS_DPO_LINE, non_preferred_output=[{"role": "user", "content": "a"}]),
            "exactly one assistant",
        ),
        (
            FineTuneMethod.DPO,
            _mutated(DOCS_DPO_LINE, non_preferred_output=DOCS_DPO_LINE["preferred_output"]),
            "identical",
        ),
    ],
)
def test_validator_rejects_bad_lines_with_the_line_number(tmp_path, method, line, match):
    path = tmp_path / "bad.jsonl"
    good = DOCS_SFT_LINE if method is FineTuneMethod.SFT else DOCS_DPO_LINE
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataFileError, match=r"bad\.jsonl:2: not in Together's format") as info:
        validate_training_file(path, method)
    assert match in str(info.value)


def test_validator_names_a_line_that_is_not_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(DOCS_SFT_LINE) + "\n\n{truncated\n")
    with pytest.raises(DataFileError, match=r"bad\.jsonl:3: not valid JSON"):
        validate_training_file(path, FineTuneMethod.SFT)


def test_wrong_record_type_and_empty_sets_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="DPOExample"):
        write_training_file(SFT, FineTuneMethod.DPO, tmp_path / "x.jsonl")
    with pytest.raises(ConfigurationError, match="empty"):
        write_training_file([], FineTuneMethod.SFT, tmp_path / "y.jsonl")
    with pytest.raises(
        ConfigurationError, match=r"not 'grpo'; train grpo with finetune\.backend = \"local\""
    ):
        write_training_file(SFT, FineTuneMethod.GRPO, tmp_path / "z.jsonl")
    assert list(tmp_path.iterdir()) == []  # neither a partial nor an empty file is left
