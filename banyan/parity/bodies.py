"""A response body made comparable: its ``Content-Encoding`` undone (gzip, deflate — zlib or
raw — and br), then read as JSON or as a server-sent event stream when it is one.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from typing import Any

from banyan.jsondepth import loads_shallow

MISSING = object()  # what parse_json gives for a body that is not JSON


def decode_body(body: bytes, headers: Mapping[str, str]) -> bytes:
    """Undo ``Content-Encoding`` (possibly several, applied in order)."""
    coding = headers.get("content-encoding")
    if not coding:  # most answers: nothing to undo
        return body
    encodings = [e.strip().lower() for e in coding.split(",") if e.strip()]
    for encoding in reversed(encodings):
        if encoding in ("gzip", "x-gzip"):
            body = gzip.decompress(body)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        elif encoding != "identity":
            raise ValueError(f"unsupported content-encoding {encoding!r}")
    return body


def parse_json(body: bytes, headers: Mapping[str, str]) -> Any:
    """The JSON value of a body, or ``MISSING`` when it is not JSON."""
    content_type = headers.get("content-type", "")
    if not body.strip() or ("json" not in content_type and body.lstrip()[:1] not in (b"{", b"[")):
        return MISSING
    try:
        return loads_shallow(body)
    except (ValueError, UnicodeDecodeError):
        return MISSING


def is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";")[0].strip().lower() == "text/event-stream"


def parse_events(body: bytes) -> list[dict[str, Any]]:
    """A server-sent event stream as a list of ``{"event", "data"[, "id"]}`` (``data`` is the
    parsed JSON when it is JSON, else the text; comments and retry hints are left out)."""
    events: list[dict[str, Any]] = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        name, data, ident = "message", [], None
        for line in block.split("\n"):
            field_name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field_name == "event":
                name = value
            elif field_name == "data":
                data.append(value)
            elif field_name == "id":
                ident = value
        if not data and ident is None:
            continue
        text = "\n".join(data)
        try:
            payload: Any = loads_shallow(text)
        except ValueError:
            payload = text
        event: dict[str, Any] = {"event": name, "data": payload}
        if ident is not None:
            event["id"] = ident
        events.append(event)
    return events
