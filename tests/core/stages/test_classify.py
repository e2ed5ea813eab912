"""The classify stage (ste_core.stages.classify): categories, quotas, a balanced pick."""

from __future__ import annotations

from ste_core.records import ChatRequest, Instruction, SamplingParams
from ste_core.stages.classify import classify_instructions, pick_balanced, quotas
from ste_prompts import format_category, get_template
from tests.core.stages.scripted import Scripted, _sched


async def test_classify_then_balanced_pick() -> None:
    labels = {"math": "math", "code": "coding", "logic": "reasoning", "poem": "writing"}

    def answer(req: ChatRequest) -> str:
        text = req.messages[-1].content
        word = next(w for w in labels if f"{w} task" in text)
        if word == "poem" and "7" in text:
            return "I cannot decide."
        return format_category(labels[word], "hard" if "1" in text else "easy")

    insts = [Instruction.from_text(f"{w} task {i}") for w in labels for i in range(8)]
    got = [
        r
        async for r in classify_instructions(
            _sched(Scripted(answer)),
            insts,
            model="c",
            template=get_template("classify_category"),
            params=SamplingParams(),
        )
    ]
    done = [r for r in got if isinstance(r, Instruction)]
    assert len(done) == 31 and len(got) == 32
    counts = {c: sum(1 for r in done if r.category == c) for c in labels.values()}
    assert counts == {"math": 8, "coding": 8, "reasoning": 8, "writing": 7}
    wanted = quotas(counts, ["math", "reasoning", "writing"], per_category=5, balance=True)
    assert wanted == {"math": 5, "reasoning": 5, "writing": 5}
    picked = list(pick_balanced(done, wanted, seed=0))
    assert len(picked) == 15
    assert picked == list(pick_balanced(list(reversed(done)), wanted, seed=0))
    hard = list(pick_balanced(done, {"math": 8}, seed=0, difficulties=["hard"]))
    assert [i.text for i in hard] == ["math task 1"]
    assert quotas(counts, ["math", "writing"], per_category=None, balance=True) == {
        "math": 7,
        "writing": 7,
    }
    assert quotas(counts, ["math", "writing"], per_category=None, balance=False) == {
        "math": 8,
        "writing": 7,
    }
    # A chosen category that never occurs does not empty the selection.
    assert quotas(counts, ["math", "roleplay"], per_category=None, balance=True) == {
        "math": 8,
        "roleplay": 0,
    }
