"""Together Batch API lines (ste_backends/together/batch.py): custom ids, result and error lines."""

from __future__ import annotations

import json

from ste_backends.together.batch import (
    _line_error,
    custom_id_for,
    parse_result_lines,
    write_batch_input,
)
from ste_backends.together.fake import _inspect
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest


def _req(i: int) -> ChatRequest:
    return ChatRequest.of("m", [{"role": "user", "content": f"q{i}"}], n=2, seed=i)


def test_custom_ids_are_short_unique_and_stable(tmp_path):
    reqs = [_req(i) for i in range(50)] + [_req(0)]  # a duplicate request gets its own id
    ids = write_batch_input(reqs, tmp_path / "in.jsonl")
    assert len(set(ids)) == len(ids) and all(len(i) <= 64 for i in ids)
    assert ids == write_batch_input(reqs, tmp_path / "again.jsonl")
    assert ids[3] == custom_id_for(3, reqs[3])
    first = json.loads((tmp_path / "in.jsonl").read_text().splitlines()[0])
    assert first["custom_id"] == ids[0] and first["body"]["n"] == 2
    assert first["body"]["messages"] == [{"role": "user", "content": "q0"}]
    assert _inspect((tmp_path / "in.jsonl").read_bytes(), "batch-api")[1] is None


def test_error_lines_map_to_typed_errors():
    line = {
        "custom_id": "c",
        "response": {"status_code": 400, "body": {"error": {"message": "bad max_tokens"}}},
    }
    err = _line_error(line)
    assert isinstance(err, PermanentProviderError) and "bad max_tokens" in str(err)
    assert isinstance(
        _line_error({"custom_id": "c", "error": {"message": "worker died"}}),
        TransientProviderError,
    )
    assert isinstance(
        _line_error({"custom_id": "c", "response": {"status_code": 503, "body": {}}}),
        TransientProviderError,
    )


def test_garbled_result_lines_are_reported_not_dropped():
    lines = list(parse_result_lines(b'{"custom_id": "a"}\n\nnot json\n'))
    assert lines[0] == {"custom_id": "a"} and "_unparsable" in lines[1]
