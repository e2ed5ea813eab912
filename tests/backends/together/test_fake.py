"""The fake Together (ste_backends/together/fake.py) as the real SDK sees it.

The cassette tests exercise its files, fine-tunes, endpoints and batches through the backend;
these check what they take for granted: Together's chat shape and the presigned upload's auth.
(tests/core/testing/fake_provider/test_main.py starts these routes from the command line.)
"""

from __future__ import annotations

import httpx
import pytest
import together

from ste_backends.together.fake import TogetherFake

MSG = [{"role": "user", "content": "Explain how tides depend on the moon"}]


async def test_chat_parses_with_together_sdk() -> None:
    with TogetherFake() as p:
        # together 3.x: base_url is the host; the SDK adds /v1/... itself
        c = together.AsyncTogether(api_key="test-key", base_url=p.url, max_retries=0)
        r = await c.chat.completions.create(model="fake-acc80", messages=MSG, n=2, seed=7)
        assert len(r.choices) == 2 and r.choices[0].message.content
        assert r.usage.total_tokens > 0
        await c.close()
        async with httpx.AsyncClient() as h:
            raw = await h.post(p.url + "/v1/chat/completions", json={"model": "m", "messages": MSG})
    # Together's shape, not the generic fake's OpenAI one
    body = raw.json()
    assert not body["id"].startswith("chatcmpl-") and "system_fingerprint" not in body
    assert body["prompt"] == [] and body["choices"][0]["seed"] is None
    assert [c.seed for c in r.choices] == [7, 7]


async def test_presigned_upload_needs_no_api_key_but_the_api_does(tmp_path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
    )
    with TogetherFake(api_key="sekrit") as p:
        good = together.AsyncTogether(api_key="sekrit", base_url=p.url, max_retries=0)
        uploaded = await good.files.upload(data, purpose="fine-tune")
        assert uploaded.id and p.counter["files_presigned_put"] == 1
        await good.close()
        bad = together.AsyncTogether(api_key="wrong", base_url=p.url, max_retries=0)
        with pytest.raises(together.AuthenticationError):
            await bad.files.upload(data, purpose="fine-tune")
        await bad.close()
