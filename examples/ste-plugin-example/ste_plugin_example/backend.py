"""`example-rules`: a tiny offline inference backend.

It answers judge prompts (any prompt that asks for `[[A]]` or `[[B]]`) with a verdict chosen by a
fixed rule: a coin flip seeded by the prompt, the request seed and the sample index (`rule =
"coin"`, the default), or always the same side (`"always-a"`, `"always-b"`: handy to see position
bias in a report). Anything else gets a short echo. It is a template for a real provider backend:
map your SDK's responses to `Completion`, its errors to `ste_core.errors` types, and declare what
the provider can do in `capabilities`.
"""

from __future__ import annotations

import hashlib
import time
from typing import ClassVar, Literal

from ste_core import (
    BackendOptions,
    ChatRequest,
    Completion,
    InferenceBackend,
    InferenceCapabilities,
    Usage,
    option,
)


class RuleJudgeOptions(BackendOptions):
    """The `[judge.options]` table. Validated before a run starts; a wrong key or value is a
    one-line error naming it. An option that changes the answers (`changes_results=True`)
    enters `describe()`, and so the request cache key; one that only changes how an answer is
    obtained (a timeout, a concurrency hint) does not, so changing it keeps the cache."""

    rule: Literal["coin", "always-a", "always-b"] = option(
        "coin",
        changes_results=True,
        help="'coin': a coin flip seeded by the prompt, seed and sample index; 'always-a' / "
        "'always-b': always the same side",
    )
    # A real backend declares its key like this (read from the environment only, never from a
    # config file, never printed):
    #     api_key: SecretStr | None = secret(env="MYPROVIDER_API_KEY", help="the API key")


class RuleJudgeInference(InferenceBackend):
    Options = RuleJudgeOptions
    options: RuleJudgeOptions
    # max_n=1: the core repeats a request instead of asking for n>1 choices.
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(
        max_n=1, batch=False, suggested_concurrency=64
    )
    # Nothing to install. A real backend lists its SDK, e.g. ("mysdk",), and its pip extra.
    requires: ClassVar[tuple[str, ...]] = ()

    async def complete(self, request: ChatRequest) -> Completion:
        start = time.perf_counter()
        prompt = request.messages[-1].content
        text = self._answer(prompt, request)
        return Completion(
            texts=(text,),
            finish_reasons=("stop",),
            usage=Usage(prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4),
            model=request.model,
            latency_s=time.perf_counter() - start,
        )

    def _answer(self, prompt: str, request: ChatRequest) -> str:
        if "[[A]]" not in prompt or "[[B]]" not in prompt:
            return f"A short answer to: {prompt[:200]}"
        if self.options.rule == "always-a":
            return "I always pick the first answer. [[A]]"
        if self.options.rule == "always-b":
            return "I always pick the second answer. [[B]]"
        key = f"{prompt}|{request.params.seed}|{request.sample_index}".encode()
        pick = "A" if hashlib.sha256(key).digest()[0] % 2 == 0 else "B"
        return f"A coin decides. [[{pick}]]"
