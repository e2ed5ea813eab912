"""Cassette conventions: secret scrubbing and request matchers for VCR.py (no pytest needed).

Used by the `ste_cassettes` pytest plugin (`ste_core.testing.pytest_plugin`) and usable directly
with `vcr.VCR(...)`. Nothing here imports vcrpy or a provider SDK: matchers and filters work on
VCR.py's duck-typed request objects (`method`, `uri`, `body`, `headers`) and response dicts.

What is scrubbed (replaced by "REDACTED") before anything is written to a cassette:
- headers: Authorization, Proxy-Authorization, api-key / x-api-key, Cookie / Set-Cookie,
  X-Amz-Security-Token, OpenAI-Organization / OpenAI-Project;
- URL query parameters (in request URIs and in any URL inside headers or bodies, e.g. a presigned
  upload `Location`): X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, Signature,
  api_key / api-key / access_token / token;
- JSON body fields with secret names at any depth (api_key, wandb_key, wandb_api_key,
  hf_api_token, hf_token, access_token, refresh_token, client_secret, password, secret);
- free text: `Bearer <token>` and `sk-...` style keys.

Loopback hosts (127.0.0.1:PORT / localhost:PORT, i.e. the fake provider, whose port changes per
run) are rewritten to `FAKE_HOST` so re-recording gives a stable diff. Matching ignores scheme,
host and port altogether (`ste_path`), so a cassette recorded against the fake provider or against
the real API replays whatever base URL the test uses.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ste_core.testing.multipart import parse_multipart

REDACTED = "REDACTED"
#: where loopback URLs (the fake provider on a random port) are rewritten to in cassettes
FAKE_HOST = "fake-provider.invalid"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "openai-organization",
        "openai-project",
    }
)
SECRET_QUERY = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "signature",
        "api_key",
        "api-key",
        "access_token",
        "token",
    }
)
SECRET_JSON_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "wandb_key",
        "wandb_api_key",
        "hf_api_token",
        "hf_token",
        "access_token",
        "refresh_token",
        "client_secret",
        "password",
        "secret",
    }
)

_BEARER = re.compile(r"(?i)\b(bearer)\s+(?!REDACTED\b)[A-Za-z0-9._~+/=-]{8,}")
_SK_KEY = re.compile(r"\bsk-(?!REDACTED\b)[A-Za-z0-9_-]{8,}")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:" + "|".join(re.escape(q) for q in sorted(SECRET_QUERY)) + r")=)([^&\s\"'<>]+)"
)
_LOOPBACK = re.compile(r"(https?://)(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?")


# -- scrubbing -----------------------------------------------------------------------------------


def scrub_text(text: str) -> str:
    """Redact bearer tokens, sk- keys and secret URL query values in free text."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SK_KEY.sub(f"sk-{REDACTED}", text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def normalise_host(text: str) -> str:
    """Rewrite loopback URLs (any port) to `http://FAKE_HOST`."""
    return _LOOPBACK.sub(lambda m: m.group(1) + FAKE_HOST, text)


def scrub_url(url: str) -> str:
    """A URL with secret query values redacted and a loopback host normalised."""
    parts = urlsplit(normalise_host(url))
    if not parts.query:
        return urlunsplit(parts)
    pairs = [
        (k, REDACTED if k.lower() in SECRET_QUERY else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="/:")))


def scrub_json(obj: Any) -> Any:
    """A copy of a JSON value with secret-named fields redacted and strings scrubbed."""
    if isinstance(obj, dict):
        return {
            k: (
                REDACTED if k.lower() in SECRET_JSON_KEYS and v not in (None, "") else scrub_json(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [scrub_json(v) for v in obj]
    if isinstance(obj, str):
        return normalise_host(scrub_text(obj))
    return obj


def scrub_body(body: bytes | str | None) -> bytes | str | None:
    """Scrub a body: JSON (object or JSONL) field-wise, anything else as text; binary untouched."""
    if body is None or body == b"" or body == "":
        return body
    was_str = isinstance(body, str)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return body
    out = _scrub_json_text(text)
    if out is None:
        out = normalise_host(scrub_text(text))
    return out if was_str else out.encode("utf-8")


def _scrub_json_text(text: str) -> str | None:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return _rescrub(text, json.loads(text))
    except ValueError:
        pass
    lines = text.split("\n")
    try:  # JSONL (training files, batch input / output files)
        parsed = [json.loads(line) if line.strip() else None for line in lines]
    except ValueError:
        return None
    return "\n".join(
        line if p is None else _rescrub(line, p) for line, p in zip(lines, parsed, strict=True)
    )


def _rescrub(original: str, obj: Any) -> str:
    """The original text when it holds no secret (keep the wire bytes), else the scrubbed JSON."""
    scrubbed = scrub_json(obj)
    if scrubbed == obj:
        return original
    return json.dumps(scrubbed, ensure_ascii=False)


def scrub_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers with secret ones redacted and URLs / tokens in the others scrubbed."""
    out: dict[str, Any] = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            out[name] = [REDACTED] if isinstance(value, list) else REDACTED
        elif isinstance(value, list):
            out[name] = [_scrub_header_value(v) for v in value]
        else:
            out[name] = _scrub_header_value(value)
    return out


_LOOPBACK_AUTHORITY = re.compile(r"^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?$")


def _scrub_header_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if _LOOPBACK_AUTHORITY.match(value):  # the Host header of a request to the fake
        return FAKE_HOST
    if value.startswith(("http://", "https://")):
        return scrub_url(value)
    return normalise_host(scrub_text(value))


def scrub_request(request: Any) -> Any:
    """VCR `before_record_request`: a scrubbed copy (URI, headers, body). Also applied by VCR to
    live requests before matching, so matching compares scrubbed with scrubbed."""
    request = copy.deepcopy(request)
    request.uri = scrub_url(request.uri)
    request.headers = scrub_headers(dict(request.headers))
    body = request.body
    if isinstance(body, bytes | str):
        request.body = scrub_body(body)
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """VCR `before_record_response`: scrubbed headers (incl. Location URLs) and body."""
    response = copy.deepcopy(response)
    response["headers"] = scrub_headers(response.get("headers") or {})
    body = response.get("body") or {}
    if "string" in body:
        body["string"] = scrub_body(body["string"])
    return response


# -- matchers ------------------------------------------------------------------------------------


def match_path(r1: Any, r2: Any) -> None:
    """Same path, whatever the scheme, host and port (fake provider on a random port, or a real
    API behind any base URL)."""
    p1, p2 = urlsplit(r1.uri).path or "/", urlsplit(r2.uri).path or "/"
    if p1 != p2:
        raise AssertionError(f"{p1} != {p2}")


def match_query(r1: Any, r2: Any) -> None:
    """Same query parameters (order-insensitive), after redacting secret ones."""
    q1, q2 = _query(r1.uri), _query(r2.uri)
    if q1 != q2:
        raise AssertionError(f"{q1} != {q2}")


def _query(uri: str) -> list[tuple[str, str]]:
    pairs = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    return sorted((k, REDACTED if k.lower() in SECRET_QUERY else v) for k, v in pairs)


def match_body(r1: Any, r2: Any) -> None:
    """Same body: JSON compared as data, multipart/form-data compared field by field (the
    boundary is random per request), anything else byte for byte."""
    b1, b2 = _body_bytes(r1.body), _body_bytes(r2.body)
    if b1 == b2:
        return
    ct1, ct2 = _content_type(r1.headers), _content_type(r2.headers)
    if ct1.startswith("multipart/form-data") and ct2.startswith("multipart/form-data"):
        try:
            f1, f2 = parse_multipart(b1, ct1), parse_multipart(b2, ct2)
        except ValueError as exc:  # a matcher signals "no match" with AssertionError
            raise AssertionError(str(exc)) from exc
        if f1 != f2:
            raise AssertionError(f"multipart fields differ: {f1} != {f2}")
        return
    j1, j2 = _as_json(b1), _as_json(b2)
    if j1 is not _NOT_JSON and j1 == j2:
        return
    raise AssertionError(f"bodies differ: {b1[:200]!r} != {b2[:200]!r}")


def match_multipart(r1: Any, r2: Any) -> None:
    """Multipart bodies compared field by field; other bodies must be equal (like `match_body`)."""
    match_body(r1, r2)


_NOT_JSON = object()


def _as_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes):
        return body
    if hasattr(body, "read"):
        return body.read()
    return b"".join(body)


def _content_type(headers: Any) -> str:
    for name, value in dict(headers or {}).items():
        if name.lower() == "content-type":
            value = value[0] if isinstance(value, list) else value
            return str(value)
    return ""


#: Matchers to register on a VCR instance, by name.
MATCHERS = {
    "ste_path": match_path,
    "ste_query": match_query,
    "ste_body": match_body,
    "multipart": match_multipart,
}
MATCH_ON = ("method", "ste_path", "ste_query", "ste_body")


def register_matchers(vcr: Any) -> None:
    """Register the ste matchers on a `vcr.VCR` instance."""
    for name, fn in MATCHERS.items():
        vcr.register_matcher(name, fn)


def vcr_config(**overrides: Any) -> dict[str, Any]:
    """The keyword arguments for `VCR.use_cassette` / pytest-recording's `vcr_config`."""
    config: dict[str, Any] = {
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
        "match_on": MATCH_ON,
        "record_on_exception": False,
    }
    config.update(overrides)
    return config


# -- auditing ------------------------------------------------------------------------------------

_AUDIT_PATTERNS = {
    "bearer token": re.compile(r"(?i)bearer\s+(?!REDACTED\b)[A-Za-z0-9._~+/=-]{8,}"),
    "sk- key": re.compile(r"\bsk-(?!REDACTED\b)[A-Za-z0-9_-]{8,}"),
    "X-Amz-Signature value": re.compile(r"(?i)x-amz-signature=(?!REDACTED\b)[0-9a-z%]{8,}"),
    "X-Amz-Credential value": re.compile(r"(?i)x-amz-credential=(?!REDACTED\b)[0-9a-z%]{8,}"),
    # JSON inside a YAML string may have its quotes escaped (\"api_key\": \"...\")
    "secret JSON field": re.compile(
        r'(?i)\\?"(?:'
        + "|".join(sorted(SECRET_JSON_KEYS))
        + r')\\?"\s*:\s*\\?"(?!REDACTED\\?")[^"\\]+'
    ),
    "secret YAML field": re.compile(
        r"(?im)^\s*-?\s*(?:"
        + "|".join(sorted(SECRET_JSON_KEYS))
        + r"):\s*(?!REDACTED\b|null\b|''|\"\")\S+"
    ),
    "authorization header": re.compile(r"(?im)^\s*authorization:\s*\n\s*-\s*(?!REDACTED\b)\S+"),
}


def find_secrets(text: str) -> list[str]:
    """Names of secret kinds found in a cassette's text (empty when clean)."""
    return [name for name, pattern in _AUDIT_PATTERNS.items() if pattern.search(text)]


def audit_cassettes(paths: Iterable[Path]) -> dict[Path, list[str]]:
    """{cassette: [secret kinds]} for every cassette that leaks something."""
    leaks: dict[Path, list[str]] = {}
    for path in paths:
        found = find_secrets(path.read_text(encoding="utf-8", errors="replace"))
        if found:
            leaks[path] = found
    return leaks
