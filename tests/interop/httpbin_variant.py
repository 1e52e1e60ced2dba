"""httpbin as a candidate with three known differences, for the interop parity test.

A WSGI middleware around httpbin's app (it runs in httpbin's own venv, so it imports nothing of
Banyan): ``/json`` says "Sample Slide Shaw", an answer setting three cookies sets only the first
and the last, and ``/redirect-to`` points ``Location`` one query further. Served by gunicorn as
``httpbin_variant:app``.
"""

from __future__ import annotations

from typing import Any

from httpbin import app as httpbin_app


def app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ.get("PATH_INFO", "")

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        cookies = [h for h in headers if h[0].lower() == "set-cookie"]
        if len(cookies) == 3:
            headers = [h for h in headers if h is not cookies[1]]
        if path.startswith("/redirect-to"):
            headers = [(n, v + "?v=2" if n.lower() == "location" else v) for n, v in headers]
        return start_response(status, headers, exc_info)

    body = httpbin_app(environ, start)
    if path != "/json":
        return body
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return [data.replace(b"Sample Slide Show", b"Sample Slide Shaw")]
