"""Argument validators the functions share (the router has already applied the contract rules)."""

from __future__ import annotations

from typing import Any

from banyan.backends.common import validate as v


def anything() -> v.Validator:
    def check(value: Any, path: str) -> Any:
        return value

    return check


CALLER = {"caller": v.json_object()}
KEY = {"idempotency_key": v.nullable(v.string(max_len=200))}
OPTIONAL_KEY = {"idempotency_key"}
