"""Inference records (ste_core.records.inference): requests and completions validate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ste_core import ChatRequest, Completion


def test_sampling_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        ChatRequest.of("m", [{"role": "user", "content": "x"}], temperature=-1)
    with pytest.raises(ValidationError):
        ChatRequest.of("m", [{"role": "user", "content": "x"}], n=0)
    with pytest.raises(ValidationError):
        ChatRequest.of("m", [{"role": "robot", "content": "x"}])


def test_completion_needs_a_reason_per_text() -> None:
    with pytest.raises(ValidationError):
        Completion(texts=("a", "b"), finish_reasons=("stop",))
