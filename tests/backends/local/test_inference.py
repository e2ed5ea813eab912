"""LocalInference on a tiny random model: seeds, limits, stop strings, batching, errors.

The model's weights are random, so its text is noise: these tests assert on shapes, token counts,
finish reasons and determinism, never on what the text says.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from ste_core.errors import ConfigurationError
from ste_core.records import ChatRequest
from tests.backends.local.local_support import backend

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(180)]

MESSAGES = [
    {"role": "system", "content": "You are a judge."},
    {"role": "user", "content": "Which response is better, A or B? Explain briefly."},
]


def request(model: Path, **params) -> ChatRequest:
    params.setdefault("temperature", 1.0)
    params.setdefault("max_tokens", 12)
    return ChatRequest.of(str(model), MESSAGES, **params)


async def test_n_choices_are_seeded_and_reproducible(tiny_model_dir: Path) -> None:
    inf = backend()
    req = request(tiny_model_dir, n=3, seed=7, top_p=0.95)
    first = await inf.complete(req)
    again = await inf.complete(req)

    assert len(first.texts) == 3 and len(first.finish_reasons) == 3
    assert first.texts == again.texts  # identical request -> identical text
    assert len(set(first.texts)) >= 2  # choices are separate samples
    other_seed = await inf.complete(req.with_params(seed=8))
    assert other_seed.texts != first.texts
    # Choice k does not depend on n: asking for more choices extends the same samples.
    assert (await inf.complete(req.with_params(n=2))).texts == first.texts[:2]


async def test_usage_latency_and_throughput_are_reported(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    inf = backend()
    out = await inf.complete(request(tiny_model_dir, n=2, max_tokens=9))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert out.usage.prompt_tokens == len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert 2 <= out.usage.completion_tokens <= 2 * 9
    assert out.latency_s > 0 and out.cost_usd == 0.0 and out.model == str(tiny_model_dir)
    assert inf.stats.completion_tokens == out.usage.completion_tokens
    assert inf.stats.tokens_per_second > 0


async def test_greedy_when_temperature_is_zero(tiny_model_dir: Path) -> None:
    inf = backend()
    out = await inf.complete(request(tiny_model_dir, temperature=0.0, n=2, seed=1))
    assert out.texts[0] == out.texts[1]
    # The seed does not matter for greedy decoding.
    assert (await inf.complete(request(tiny_model_dir, temperature=0.0, seed=99))).texts[0] == (
        out.texts[0]
    )


async def test_max_tokens_is_respected(tiny_model_dir: Path) -> None:
    inf = backend()
    for limit in (1, 5, 17):
        out = await inf.complete(request(tiny_model_dir, max_tokens=limit, n=2, seed=3))
        assert out.usage.completion_tokens <= 2 * limit
        for reason in out.finish_reasons:
            assert reason in ("stop", "length")
        if out.finish_reasons == ("length", "length"):
            assert out.usage.completion_tokens == 2 * limit


async def test_stop_string_cuts_the_text_and_reports_stop(tiny_model_dir: Path) -> None:
    inf = backend()
    req = request(tiny_model_dir, max_tokens=40, seed=11)
    full = (await inf.complete(req)).texts[0]
    # A stop string taken from the middle of the unstopped text (ASCII, so decoding is stable).
    spots = [i for i in range(3, len(full) - 1) if full[i : i + 2].isascii() and full[i].isalpha()]
    assert spots, f"no ASCII letter in the sample: {full!r}"
    stop = full[spots[0] : spots[0] + 2]
    cut = await inf.complete(req.with_params(stop=(stop,)))
    assert cut.finish_reasons == ("stop",)
    assert cut.texts[0] == full[: full.find(stop)]
    assert stop not in cut.texts[0]
    assert cut.usage.completion_tokens < 40


async def test_batched_path_yields_every_item_once(tiny_model_dir: Path) -> None:
    from ste_backends.local import LocalInference

    assert LocalInference.capabilities.batch is True
    inf = backend(batch_size=3)
    requests = [
        ChatRequest.of(
            str(tiny_model_dir),
            [{"role": "user", "content": "word " * (1 + 3 * i)}],
            temperature=0.7 if i % 2 else 0.0,
            max_tokens=2 + i,
            n=1 + i % 3,
            seed=i,
        )
        for i in range(9)
    ]
    items = [item async for item in inf.complete_many(requests)]
    assert sorted(item.index for item in items) == list(range(9))
    for item in items:
        assert item.error is None and item.completion is not None
        want = requests[item.index].params
        assert len(item.completion.texts) == want.n
        assert item.completion.usage.completion_tokens <= want.n * want.max_tokens
    rows = sum(r.params.n for r in requests)
    assert inf.stats.rows == rows and inf.stats.batches >= -(-rows // 3)
    assert inf.stats.requests == 9


async def test_event_loop_stays_responsive_while_generating(tiny_model_dir: Path) -> None:
    inf = backend(batch_size=2)
    await inf.complete(request(tiny_model_dir, max_tokens=1))  # load outside the measurement
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.ensure_future(ticker())
    reqs = [request(tiny_model_dir, max_tokens=150, seed=i) for i in range(6)]
    items = [item async for item in inf.complete_many(reqs)]
    done.set()
    await task
    assert len(items) == 6
    assert ticks >= 5, "generation blocked the event loop"


def test_cancel_event_stops_a_batch(tiny_model_dir: Path) -> None:
    import torch

    from ste_backends.local.generation import GenerationCancelled, build_rows, run_batch
    from ste_backends.local.models import MODEL_CACHE

    loaded = MODEL_CACHE.get(str(tiny_model_dir), device="cpu", dtype=torch.float32)
    rows, errors, _ = build_rows(loaded, [(0, request(tiny_model_dir, max_tokens=5000))])
    assert not errors
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        run_batch(loaded, rows, cancel=cancel)


async def test_switching_models_frees_the_previous_one(
    tiny_model_dir: Path, other_tiny_model_dir: Path
) -> None:
    from ste_backends.local.models import MODEL_CACHE

    inf = backend()
    await inf.complete(request(tiny_model_dir, max_tokens=2))
    assert MODEL_CACHE.loaded_names() == [str(tiny_model_dir)]
    loads = MODEL_CACHE.loads
    await inf.complete(request(tiny_model_dir, max_tokens=2))
    assert MODEL_CACHE.loads == loads  # cached, not reloaded
    await inf.complete(request(other_tiny_model_dir, max_tokens=2))
    assert MODEL_CACHE.loaded_names() == [str(other_tiny_model_dir)]
    await inf.aclose()
    assert MODEL_CACHE.loaded_names() == []


async def test_missing_local_path_is_a_clear_configuration_error(tmp_path: Path) -> None:
    inf = backend()
    items = [i async for i in inf.complete_many([request(tmp_path / "no-such-model")])]
    assert len(items) == 1
    item = items[0]
    assert isinstance(item.error, ConfigurationError)
    assert "does not exist" in str(item.error)
    with pytest.raises(ConfigurationError):
        await inf.complete(request(tmp_path / "no-such-model"))


async def test_unreachable_hub_model_names_offline_mode() -> None:
    # local_files_only: never touch the network (this machine cannot reach the hub anyway).
    inf = backend(local_files_only=True)
    req = ChatRequest.of("someone/definitely-not-cached-model-xyz", MESSAGES, max_tokens=2)
    with pytest.raises(ConfigurationError) as info:
        await inf.complete(req)
    message = str(info.value)
    assert "HF_HUB_OFFLINE=1" in message and "local directory" in message
