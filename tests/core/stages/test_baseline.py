"""The baseline stage (ste_core.stages.baseline): responses and API errors."""

from __future__ import annotations

from typing import Any

from ste_core.errors import PermanentProviderError
from ste_core.records import Baseline, ChatRequest, Drop, Instruction, SamplingParams
from ste_core.stages.baseline import generate_baselines
from tests.core.stages.scripted import Scripted, _sched


async def test_baselines_and_api_errors() -> None:
    def answer(req: ChatRequest) -> Any:
        text = req.messages[-1].content
        if "fail" in text:
            return PermanentProviderError("bad request", provider="test", status=400)
        return "" if "empty" in text else f"answer to {text}"

    insts = [Instruction.from_text(t) for t in ("ok one", "please fail", "empty please")]
    got = [
        r
        async for r in generate_baselines(
            _sched(Scripted(answer)), insts, model="g", params=SamplingParams()
        )
    ]
    by = {r.instruction_id: r for r in got}
    assert isinstance(by[insts[0].id], Baseline) and by[insts[0].id].response == "answer to ok one"
    fail = by[insts[1].id]
    assert isinstance(fail, Drop) and fail.reason == "api_error"
    assert fail.error_type == "PermanentProviderError"
    assert by[insts[2].id].reason == "empty_baseline"  # type: ignore[union-attr]
