"""How a model failure reaches a client: ``banyan.backends.common.llm`` errors as contract errors.

A timeout is ``504 upstream_timeout``; every other failure to get a usable answer (provider down,
rate limited after retries, refused request, malformed output) is ``502 upstream_failed`` with a
message that says which.
"""

from __future__ import annotations

from banyan.backends.common.errors import ApiError, UpstreamFailed, UpstreamTimeout
from banyan.backends.common.llm import LLMError


def api_error(exc: LLMError) -> ApiError:
    if exc.code == "llm_timeout":
        return UpstreamTimeout(exc.message)
    return UpstreamFailed(exc.message)
