"""What the local backend tests share (`from tests.backends.local.local_support import ...`):
judge examples to train on, and a LocalInference on the CPU."""

from __future__ import annotations

from ste_core.records import DPOExample, Message, Order, SFTExample

PROMPT = (
    Message(role="system", content="You are a judge."),
    Message(role="user", content="Which response is better? [A] Paris. [B] Rome."),
)


def sft_examples(n: int = 4) -> list[SFTExample]:
    return [
        SFTExample(
            messages=PROMPT,
            completion=f"Response A answers the question {i}. [[A]]",
            pair_id=f"p{i}",
            order=Order.AB,
        )
        for i in range(n)
    ]


def dpo_examples(n: int = 4) -> list[DPOExample]:
    return [
        DPOExample(
            messages=PROMPT,
            chosen=f"A is correct {i}. [[A]]",
            rejected=f"B is better {i}. [[B]]",
            pair_id=f"p{i}",
            order=Order.AB,
        )
        for i in range(n)
    ]


def backend(**options):
    from ste_backends.local import LocalInference

    return LocalInference(device="cpu", **options)
