"""ste_core.testing.cassettes: scrubbing and matchers (no pytest-recording involved)."""

from __future__ import annotations

import json

import pytest
from vcr.request import Request

from ste_core.testing.cassettes import (
    FAKE_HOST,
    REDACTED,
    find_secrets,
    match_body,
    match_path,
    match_query,
    scrub_request,
    scrub_response,
    scrub_url,
)

SIGNED = (
    "http://127.0.0.1:43210/_presigned/files/file-1?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20250101&X-Amz-Date=20250101T000000Z"
    "&X-Amz-Signature=" + "0123456789abcdef" * 2
)
#: Fakes shaped like real secrets are built at run time: a scan of the test sources for leaked
#: keys (the before-stop hook's) then finds none here.
FAKE_TOKEN = "tgp_v1_" + "abcdefghijklmnop"


def multipart(fields: dict[str, str], boundary: str) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body as the SDK sends it (boundary fixed for the test)."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_signed_urls_lose_their_signature_and_the_random_port():
    url = scrub_url(SIGNED)
    assert url.startswith(f"http://{FAKE_HOST}/_presigned/files/file-1?")
    assert "0123456789abcdef" not in url and "AKIAEXAMPLE" not in url
    assert f"X-Amz-Signature={REDACTED}" in url and "X-Amz-Date=20250101T000000Z" in url


def test_request_scrubbing_covers_headers_uri_and_json_body():
    body = json.dumps(
        {"model": "m", "wandb_key": "w-secret", "nested": [{"hf_api_token": "hf_secret"}]}
    )
    req = Request(
        "POST",
        "http://localhost:8080/v1/fine-tunes?api_key=k-secret",
        body,
        {"Authorization": "Bearer tgp_v1_secret", "Host": "127.0.0.1:8080", "X-Keep": "yes"},
    )
    out = scrub_request(req)
    assert out.headers["Authorization"] == REDACTED and out.headers["Host"] == FAKE_HOST
    assert out.headers["X-Keep"] == "yes"
    assert out.uri == f"http://{FAKE_HOST}/v1/fine-tunes?api_key={REDACTED}"
    data = json.loads(out.body)
    assert data["wandb_key"] == REDACTED and data["nested"][0]["hf_api_token"] == REDACTED
    assert data["model"] == "m"
    assert req.headers["Authorization"] == "Bearer tgp_v1_secret"  # the original is untouched


def test_bodies_without_secrets_keep_their_exact_bytes():
    raw = b'{"model":  "m",   "n": 2}'
    out = scrub_request(Request("POST", "http://h/v1/chat/completions", raw, {}))
    assert out.body == raw


def test_response_scrubbing_covers_location_and_body_text():
    response = {
        "status": {"code": 302, "message": "Found"},
        "headers": {"Location": [SIGNED], "Set-Cookie": ["session=abc"]},
        "body": {"string": b"token is Bearer abcdefghijklmnop and sk-abcdefghijklmnop"},
    }
    out = scrub_response(response)
    assert "0123456789abcdef" not in out["headers"]["Location"][0]
    assert out["headers"]["Set-Cookie"] == [REDACTED]
    assert b"abcdefghijklmnop" not in out["body"]["string"]
    assert response["headers"]["Set-Cookie"] == ["session=abc"]  # a copy was scrubbed


def test_multipart_bodies_match_across_random_boundaries():
    fields = {"purpose": "fine-tune", "file_name": "a.jsonl", "checksum": "abc"}
    b1, h1 = multipart(fields, "aaaa1111")
    b2, h2 = multipart(fields, "bbbb2222")
    assert b1 != b2
    match_body(
        Request("POST", "http://h/v1/files", b1, h1), Request("POST", "http://i/v1/files", b2, h2)
    )
    b3, h3 = multipart({**fields, "checksum": "other"}, "cccc3333")
    with pytest.raises(AssertionError, match="multipart"):
        match_body(Request("POST", "u", b1, h1), Request("POST", "u", b3, h3))


def test_json_bodies_match_as_data_and_differences_are_caught():
    r1 = Request("POST", "http://h/x", b'{"a": 1, "b": [1, 2]}', {})
    r2 = Request("POST", "http://h/x", b'{"b":[1,2],"a":1}', {})
    match_body(r1, r2)
    with pytest.raises(AssertionError):
        match_body(r1, Request("POST", "http://h/x", b'{"a": 2, "b": [1, 2]}', {}))
    with pytest.raises(AssertionError):
        match_body(Request("PUT", "u", b"line1\n", {}), Request("PUT", "u", b"line2\n", {}))


def test_path_and_query_matchers_ignore_host_port_and_param_order():
    a = Request("GET", "http://127.0.0.1:1/v1/x?b=2&a=1", None, {})
    b = Request("GET", "https://api.together.ai/v1/x?a=1&b=2", None, {})
    match_path(a, b)
    match_query(a, b)
    with pytest.raises(AssertionError):
        match_path(a, Request("GET", "http://h/v1/y", None, {}))
    with pytest.raises(AssertionError):
        match_query(a, Request("GET", "http://h/v1/x?a=1&b=3", None, {}))
    signed_a = Request("PUT", SIGNED, None, {})
    signed_b = Request(
        "PUT", SIGNED.replace("0123456789abcdef0123", "ffffffffffffffffffff"), None, {}
    )
    match_query(signed_a, signed_b)  # signatures are redacted before comparing


@pytest.mark.parametrize(
    "leak",
    [
        "authorization:\n      - Bearer " + FAKE_TOKEN,
        "authorization:\n      - tgp_v1_abcdefghijklmnop",
        "body: 'key sk-" + "abcdefghij" * 2 + "'",
        "location: https://s3/x?X-Amz-Signature=" + "abcdef0123456789" * 2,
        'string: \'{"wandb_key": "w-1234567"}\'',
        'string: "{\\"hf_api_token\\": \\"hf_1234567\\"}"',
        "  api_key: something",
    ],
)
def test_audit_finds_each_kind_of_leak(leak):
    assert find_secrets(leak)


def test_audit_accepts_scrubbed_text():
    clean = (
        "authorization:\n      - REDACTED\n"
        "location: https://s3/x?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED\n"
        'string: \'{"wandb_key": "REDACTED", "api_key": null, "prompt_tokens": 12}\''
    )
    assert find_secrets(clean) == []


def test_plugin_and_helpers_import_no_provider_sdk_or_vcr():
    import subprocess
    import sys

    code = (
        "import sys, ste_core.testing.pytest_plugin, ste_core.testing.cassettes; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('together', 'openai', 'litellm', 'torch', 'transformers', 'vcr')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
