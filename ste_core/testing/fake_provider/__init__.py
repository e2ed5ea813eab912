"""A fake model provider for tests, cassette recording and benchmarks (stdlib only).

    from ste_core.testing.fake_provider import FakeProvider, FaultPlan

    with FakeProvider(latency_s=0.05, faults=FaultPlan(rate_limit_every=5)) as fake:
        client = openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="unused")
        ...
        assert fake.counter["chat"] == ...

It serves the OpenAI-compatible chat completion and model list. A provider's own API is a route
extension living with its backend: `ste_backends.together.fake.TogetherFake` (Together's files,
fine-tunes, endpoints and batches) and `ste_backends.openai.fake.OpenAIFake` (OpenAI's Files and
Batch API) are FakeProviders with those routes added.

Command line: `python -m ste_core.testing.fake_provider --help` (`--routes MODULE:FUNCTION` adds
a provider's routes). See server.py (routes, extension points), faults.py (FaultPlan) and model.py
(the scripted model's rules, including how a judge's accuracy follows from its model name).
"""

from ste_core.testing.fake_provider.faults import FaultAction, FaultPlan, error_body
from ste_core.testing.fake_provider.model import (
    ScriptedModel,
    TemplateMatcher,
    good_answer,
    model_accuracy,
    signature,
    signatures_in,
    strip_signatures,
)
from ste_core.testing.fake_provider.server import (
    DEFAULT_MODELS,
    FakeProvider,
    FakeRequest,
    FakeResponse,
    RouteExtension,
)

__all__ = [
    "DEFAULT_MODELS",
    "FakeProvider",
    "FakeRequest",
    "FakeResponse",
    "FaultAction",
    "FaultPlan",
    "RouteExtension",
    "ScriptedModel",
    "TemplateMatcher",
    "error_body",
    "good_answer",
    "model_accuracy",
    "signature",
    "signatures_in",
    "strip_signatures",
]
