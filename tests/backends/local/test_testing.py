"""The tiny models the local tests build (ste_backends/local/testing.py): one taught to answer
each pipeline template parses like a real judge's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ste_core.records import ChatRequest
from tests.backends.local.local_support import backend

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(180)]


@pytest.mark.timeout(300)
async def test_taught_tiny_model_writes_parseable_pipeline_answers(tmp_path: Path) -> None:
    """The helper the end-to-end tests use: a tiny model trained to answer each template."""
    from ste_backends.local.testing import PIPELINE_REPLIES, build_tiny_chat_model
    from ste_prompts import WorseResponse, get_template, parse_verdict, parse_worse_response

    model = str(build_tiny_chat_model(tmp_path / "taught", replies=PIPELINE_REPLIES))
    inf = backend()
    judge = get_template("judge_short").render(
        instruction="What is the capital of Spain?",
        response_a="Madrid is the capital of Spain. " * 5,
        response_b="Spain is in Europe. " * 5,
    )
    out = await inf.complete(
        ChatRequest.of(model, judge, temperature=0.7, top_p=0.9, n=32, max_tokens=40, seed=0)
    )
    verdicts = [parse_verdict(text).verdict for text in out.texts]
    # A judge that says both, never neither. Its verdicts are close to coin flips and the row
    # seeds depend on the model's path (a new temp dir per session), so the sample is large
    # enough that "all the same" (about 2 x 0.6**32 < 1e-6) cannot happen by chance.
    assert set(verdicts) == {"A", "B"}, out.texts

    worse = get_template("worse_response").render(
        instruction="Name a large planet.", baseline_response="Jupiter is a large planet."
    )
    greedy = await inf.complete(ChatRequest.of(model, worse, temperature=0.0, max_tokens=64))
    assert isinstance(parse_worse_response(greedy.texts[0]), WorseResponse), greedy.texts[0]

    plain = ChatRequest.of(model, [{"role": "user", "content": "Say hi."}], max_tokens=32)
    assert (await inf.complete(plain)).texts[0] in PIPELINE_REPLIES[None]
