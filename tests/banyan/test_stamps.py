"""Tests of ``banyan.stamps``: made stamps verify for their request and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from banyan import stamps
from banyan.errors import ExpiredStamp, ForgedStamp, MalformedStamp, StampError
from banyan.stamps import (
    Stamp,
    binding_key,
    make_stamp,
    read_stamp,
)

SECRET = "s" * 48
USER = "0b5e7c2a-6a51-5c34-9e0e-3f1d2b3c4d5e"
NOW = 1_764_000_000_000
REQUEST = {"method": "POST", "target": "/api/sessions?x=1", "key": "key-1"}


def _read(header: str | None, **changes: object) -> Stamp | None:
    args: dict[str, object] = {"secret": SECRET, "now_ms": NOW, **REQUEST, **changes}
    return read_stamp(header, **args)  # type: ignore[arg-type]


def test_a_primary_stamp_verifies_for_its_request() -> None:
    header = make_stamp(secret=SECRET, ms=NOW - 5, **REQUEST)
    assert header.startswith(f"v1.{NOW - 5}.primary..")
    stamp = _read(header)
    assert stamp == Stamp(NOW - 5, "primary", None, "POST", "/api/sessions?x=1", "key-1")
    assert stamp is not None and not stamp.mirror


def test_a_mirror_stamp_names_its_user() -> None:
    header = make_stamp(secret=SECRET, ms=NOW, mirror=True, user=USER, **REQUEST)
    assert header.startswith(f"v1.{NOW}.mirror.{USER}.")
    stamp = _read(header)
    assert stamp is not None and stamp.mirror and stamp.user == USER and stamp.ms == NOW


def test_a_mirror_stamp_of_a_request_without_a_token_names_nobody() -> None:
    header = make_stamp(secret=SECRET, ms=NOW - 1, mirror=True, **REQUEST)
    assert header.startswith(f"v1.{NOW - 1}.mirror..")
    stamp = _read(header)
    assert stamp is not None and stamp.mirror and stamp.user is None
    with pytest.raises(ForgedStamp):
        _read(_with(header, 3, USER))  # a user added to it


def test_no_header_is_no_stamp() -> None:
    assert _read(None) is None


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"target": "/api/sessions?x=2"},
        {"target": "/api/sessions"},
        {"key": "key-2"},
        {"key": ""},
        {"secret": "t" * 48},
    ],
)
def test_a_stamp_is_bound_to_its_request_and_secret(change: dict[str, str]) -> None:
    header = make_stamp(secret=SECRET, ms=NOW, mirror=True, user=USER, **REQUEST)
    with pytest.raises(ForgedStamp):
        _read(header, **change)


def test_the_method_is_compared_without_case() -> None:
    header = make_stamp(secret=SECRET, ms=NOW, **REQUEST)
    stamp = _read(header, method="post")
    assert stamp is not None and stamp.method == "POST"


def _with(header: str, index: int, value: str) -> str:
    parts = header.split(".")
    parts[index] = value
    return ".".join(parts)


def test_changing_any_field_breaks_the_signature() -> None:
    primary = make_stamp(secret=SECRET, ms=NOW, **REQUEST)
    mirror = make_stamp(secret=SECRET, ms=NOW, mirror=True, user=USER, **REQUEST)
    other_user = "1b5e7c2a-6a51-5c34-9e0e-3f1d2b3c4d5e"
    forged = [
        _with(primary, 1, str(NOW + 1)),  # another time
        _with(mirror, 3, other_user),  # another user
        _with(_with(primary, 2, "mirror"), 3, USER),  # a primary turned mirror
        _with(_with(mirror, 2, "primary"), 3, ""),  # a mirror turned primary
    ]
    for header in forged:
        with pytest.raises(ForgedStamp):
            _read(header)


def test_fields_cannot_slide_into_each_other() -> None:
    """Length prefixes: the same characters split differently between target and key do not
    verify (a plain join of the fields would sign both the same)."""
    header = make_stamp(secret=SECRET, ms=NOW, method="POST", target="/a", key="bc")
    with pytest.raises(ForgedStamp):
        _read(header, target="/ab", key="c")


def test_a_primary_stamp_expires_outside_the_window() -> None:
    inside = make_stamp(secret=SECRET, ms=NOW - stamps.PRIMARY_WINDOW_MS, **REQUEST)
    assert _read(inside) is not None
    for ms in (NOW - stamps.PRIMARY_WINDOW_MS - 1, NOW + stamps.PRIMARY_WINDOW_MS + 1):
        with pytest.raises(ExpiredStamp):
            _read(make_stamp(secret=SECRET, ms=ms, **REQUEST))
    with pytest.raises(ExpiredStamp):
        _read(make_stamp(secret=SECRET, ms=NOW - 61_000, **REQUEST), window_ms=60_000)


def test_a_mirror_stamp_has_no_window() -> None:
    days = 30 * 24 * 3600 * 1000
    stamp = _read(make_stamp(secret=SECRET, ms=NOW - days, mirror=True, user=USER, **REQUEST))
    assert stamp is not None and stamp.ms == NOW - days


def test_a_forged_old_stamp_is_forged_not_expired() -> None:
    old = make_stamp(secret="t" * 48, ms=NOW - stamps.PRIMARY_WINDOW_MS - 1, **REQUEST)
    with pytest.raises(ForgedStamp):
        _read(old)


TARGET_AND_KEY = (b"/api/sessions?x=1", b"key-1")


def _signature(text: bytes) -> str:
    mac = hmac.new(SECRET.encode(), text, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1.1.primary.",
        "v1.1.primary..sig.extra",
        f"v2.{NOW}.primary..{'A' * 43}",
        f"v1.-{NOW}.primary..{'A' * 43}",
        f"v1.0{NOW}.primary..{'A' * 43}",
        f"v1.{NOW}x.primary..{'A' * 43}",
        f"v1.{2**53}.primary..{'A' * 43}",
        f"v1.{chr(0x661) * 3}.primary..{'A' * 43}",  # Arabic-Indic digits are not ASCII
        f"v1.{NOW}.shadow..{'A' * 43}",
        f"v1.{NOW}.primary.{USER}.{'A' * 43}",
        f"v1.{NOW}.mirror.{USER.upper()}.{'A' * 43}",
        f"v1.{NOW}.mirror.not-a-uuid.{'A' * 43}",
        f"v1.{NOW}.primary..{'A' * 42}",
        f"v1.{NOW}.primary..{'A' * 42}=",
        f"v1.{NOW}.primary..{'A' * 42}+",
        "v1." + "1" * 300,
    ],
)
def test_malformed_stamps_are_refused(header: str) -> None:
    with pytest.raises(MalformedStamp):
        _read(header)


def test_errors_carry_their_reason() -> None:
    assert issubclass(MalformedStamp, StampError) and MalformedStamp.reason == "malformed"
    assert ForgedStamp.reason == "forged" and ExpiredStamp.reason == "expired"
    assert issubclass(StampError, ValueError)


def test_the_signature_is_the_documented_hmac() -> None:
    """The wire form, recomputed by hand: a second implementation (the proxy's, another
    language's) can be checked against this."""
    header = make_stamp(secret=SECRET, ms=NOW, mirror=True, user=USER, **REQUEST)
    signed = b"banyan-stamp" + b"".join(
        b"%d:%s" % (len(p), p)
        for p in (b"v1", str(NOW).encode(), b"mirror", USER.encode(), b"POST", *TARGET_AND_KEY)
    )
    assert header.rsplit(".", 1)[1] == _signature(signed)


def test_make_stamp_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(ValueError):
        make_stamp(secret=SECRET, ms=-1, **REQUEST)
    with pytest.raises(ValueError):
        make_stamp(secret=SECRET, ms=2**53, **REQUEST)
    with pytest.raises(ValueError):
        make_stamp(secret=SECRET, ms=NOW, mirror=True, user="alice", **REQUEST)
    with pytest.raises(ValueError):
        make_stamp(secret=SECRET, ms=NOW, user=USER, **REQUEST)  # a primary stamp names nobody
    with pytest.raises(ValueError):
        make_stamp(secret="", ms=NOW, **REQUEST)
    with pytest.raises(ValueError):
        read_stamp("x", secret="", method="POST", target="/", key="", now_ms=NOW)


def test_the_seed_is_the_same_for_every_stamp_of_one_write() -> None:
    primary = _read(make_stamp(secret=SECRET, ms=NOW, **REQUEST))
    mirror = _read(make_stamp(secret=SECRET, ms=NOW, mirror=True, user=USER, **REQUEST))
    assert primary is not None and mirror is not None
    assert primary.seed == mirror.seed and len(primary.seed) == 64
    later = _read(make_stamp(secret=SECRET, ms=NOW + 1, **REQUEST))
    other = _read(make_stamp(secret=SECRET, ms=NOW, **{**REQUEST, "key": "key-2"}), key="key-2")
    assert later is not None and other is not None
    assert len({primary.seed, later.seed, other.seed}) == 3


def test_binding_key_prefers_the_idempotency_key() -> None:
    assert binding_key({"Idempotency-Key": "k", "X-Request-Id": "r"}) == "k"
    assert binding_key({"x-request-id": "r"}) == "r"
    assert binding_key({"idempotency-key": "k"}) == "k"
    assert binding_key({}) == ""


def test_targets_outside_ascii_sign_and_verify() -> None:
    target = "/api/whiteboard/r%C3%A9?q=\udcff"
    header = make_stamp(secret=SECRET, ms=NOW, method="POST", target=target, key="")
    assert _read(header, target=target, key="") is not None
