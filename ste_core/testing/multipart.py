"""multipart/form-data parsing shared by the fake provider (reading uploads) and the cassette
matchers (comparing uploads field by field, since the boundary is random per request)."""

from __future__ import annotations

import email.parser
import email.policy


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """{field: (filename or None, content)} of a multipart/form-data body.

    Raises ValueError when the body is not multipart although `content_type` says it is.
    """
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not msg.is_multipart():
        raise ValueError("declared multipart/form-data but the body is not multipart")
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True)
        out[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return out
