"""What every record shares (ste_core.records._base): a JSON round trip, content hashes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ste_core import ChatRequest
from ste_core.records import FineTuneSpec, content_hash


def test_records_round_trip_through_json() -> None:
    req = ChatRequest.of("m", [{"role": "user", "content": "{x} $y [[A]]"}], n=3, stop=["\n"])
    assert ChatRequest.model_validate_json(req.model_dump_json()) == req
    spec = FineTuneSpec(base_model="b", suffix="s" * 40)
    assert FineTuneSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError):
        FineTuneSpec(base_model="b", suffix="s" * 41)


def test_content_hash_is_order_independent_for_dict_keys() -> None:
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash("a", "b") != content_hash("b", "a")
