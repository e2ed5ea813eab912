"""A deterministic test judge backend, registered through the plugin host like any plugin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from ste_core import hookimpl
from ste_core.backends import BackendOptions, InferenceBackend, InferenceCapabilities, option
from ste_core.errors import PermanentProviderError
from ste_core.plugins import get_host, reset_host
from ste_core.records import ChatRequest, Completion, Usage


class RuleJudge(InferenceBackend):
    """Reads the rendered judge prompt and answers by rule, so scores are known in advance.

    Chosen responses contain "GOOD", rejected ones "BAD". The judge picks the position of GOOD
    (correct), except: "ALWAYS_A" in the prompt -> [[A]]; "NOVERDICT" -> no marker; "FAILME" ->
    a permanent provider error (a Drop after the scheduler gives up). Option
    `always_a=true` makes every answer [[A]] (tests `--option`).
    """

    class Options(BackendOptions):
        always_a: bool = option(False, changes_results=True, help="answer [[A]] to everything")

    options: Options
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(max_n=None)
    calls: ClassVar[list[ChatRequest]] = []

    async def complete(self, request: ChatRequest) -> Completion:
        RuleJudge.calls.append(request)
        prompt = "\n".join(m.content for m in request.messages)
        if "FAILME" in prompt:
            raise PermanentProviderError("refused", provider="rulejudge", status=400)
        if self.options.always_a or "ALWAYS_A" in prompt:
            text = "Both fine. [[A]]"
        elif "NOVERDICT" in prompt:
            text = "I cannot decide."
        else:
            text = "A is better. [[A]]" if prompt.find("GOOD") < prompt.find("BAD") else "[[B]]"
        n = request.params.n
        return Completion(texts=(text,) * n, usage=Usage(prompt_tokens=10, completion_tokens=3))


class _Plugin:
    @hookimpl
    def register_backends(self, register: Any) -> None:
        register("rulejudge", inference=RuleJudge)


@pytest.fixture
def rule_judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RuleJudge]]:
    monkeypatch.setenv("STE_PLUGINS", "")  # no entry-point plugins: isolated and fast
    reset_host()
    get_host().register_plugin(_Plugin())
    RuleJudge.calls = []
    yield RuleJudge
    reset_host()
