"""Tests for banyan/backends/common/tokens.py: issuing, pinning the algorithm, expiry, bearer
parsing."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from banyan.backends.common import tokens
from banyan.backends.common.errors import Unauthorized


def test_issue_then_verify_round_trips_claims() -> None:
    token, claims = tokens.issue("user-1", ttl=60)
    verified = tokens.verify(token)
    assert verified == claims
    assert verified.exp - verified.iat == 60
    assert len(verified.jti) == 32


def test_each_token_has_its_own_jti() -> None:
    assert tokens.issue("u")[1].jti != tokens.issue("u")[1].jti


def test_secret_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_JWT_SECRET", "s" * 40)
    token, _ = tokens.issue("u")
    monkeypatch.setenv("BANYAN_JWT_SECRET", "t" * 40)
    with pytest.raises(Unauthorized) as err:
        tokens.verify(token)
    assert err.value.code == "unauthorized"


def test_expired_token_has_its_own_code() -> None:
    token, _ = tokens.issue("u", now=time.time() - 7200, ttl=60)
    with pytest.raises(Unauthorized) as err:
        tokens.verify(token)
    assert err.value.code == "token_expired"


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_other_algorithms_are_refused(algorithm: str) -> None:
    now = int(time.time())
    payload = {"sub": "u", "jti": "j", "iat": now, "exp": now + 60}
    token = jwt.encode(payload, tokens.secret(), algorithm=algorithm)
    with pytest.raises(Unauthorized, match="algorithm"):
        tokens.verify(token)


def test_alg_none_is_refused() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "u", "jti": "j", "iat": now, "exp": now + 60}, None, algorithm="none"
    )
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_missing_claims_and_garbage_are_refused() -> None:
    token = jwt.encode({"sub": "u"}, tokens.secret(), algorithm="HS256")
    with pytest.raises(Unauthorized):
        tokens.verify(token)
    with pytest.raises(Unauthorized, match="malformed"):
        tokens.verify("not-a-token")
    now = int(time.time())
    numeric_sub = jwt.encode(
        {"sub": 5, "jti": "j", "iat": now, "exp": now + 9}, tokens.secret(), algorithm="HS256"
    )
    with pytest.raises(Unauthorized):
        tokens.verify(numeric_sub)


def test_bearer_parsing() -> None:
    assert tokens.bearer_from("Bearer abc") == "abc"
    assert tokens.bearer_from("bearer  abc ") == "abc"
    assert tokens.bearer_from(None, "q") == "q"
    with pytest.raises(Unauthorized, match="Bearer"):
        tokens.bearer_from("Basic abc")
    with pytest.raises(Unauthorized, match="missing"):
        tokens.bearer_from(None, None)


def test_a_remembered_token_still_expires() -> None:
    token, claims = tokens.issue("u", now=time.time() - 120, ttl=60)
    tokens._verified[token] = (tokens.secret(), claims)  # remembered while it was valid
    with pytest.raises(Unauthorized) as err:
        tokens.verify(token)
    assert err.value.code == "token_expired"


def test_a_remembered_token_is_checked_again_under_a_new_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANYAN_JWT_SECRET", "s" * 40)
    token, claims = tokens.issue("u")
    assert tokens.verify(token) == claims
    monkeypatch.setenv("BANYAN_JWT_SECRET", "t" * 40)
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_an_altered_remembered_token_is_refused() -> None:
    token, _ = tokens.issue("u")
    tokens.verify(token)
    head, body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(Unauthorized):
        tokens.verify(f"{head}.{body}.{flipped}")


def test_the_memory_of_tokens_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "REMEMBERED", 3)
    monkeypatch.setattr(tokens, "_verified", {})
    issued = [tokens.issue(f"u{i}")[0] for i in range(5)]
    for token in issued:
        tokens.verify(token)
    assert list(tokens._verified) == issued[2:]


@pytest.fixture
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANYAN_JWT_SECRET", raising=False)
    monkeypatch.delenv("BANYAN_DEV", raising=False)
    monkeypatch.setattr(tokens, "_dev_secret", None)


def test_without_a_secret_nothing_is_signed_or_checked(no_secret: None) -> None:
    with pytest.raises(tokens.MissingSecret, match="BANYAN_JWT_SECRET"):
        tokens.require_secret()
    with pytest.raises(tokens.MissingSecret):
        tokens.issue("u")
    with pytest.raises(tokens.MissingSecret):
        tokens.secret()


def test_the_old_built_in_secret_is_gone_from_the_code() -> None:
    source = Path(tokens.__file__).read_text()
    assert "banyan-dev-secret" not in source and "0123456789abcdef" not in source


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_dev_run_gets_a_random_secret_per_process(
    no_secret: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv("BANYAN_DEV", "1")
    tokens.require_secret(dev=how == "flag")
    first = tokens.secret()
    assert len(first) >= tokens.MIN_SECRET_CHARS
    token, claims = tokens.issue("u")
    assert tokens.verify(token) == claims
    monkeypatch.setattr(tokens, "_dev_secret", None)  # as if another process started
    tokens.require_secret(dev=True)
    assert tokens.secret() != first


@pytest.mark.parametrize("value", ["0", ""])
def test_banyan_dev_off_values_do_not_make_a_dev_run(
    no_secret: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BANYAN_DEV", value)
    with pytest.raises(tokens.MissingSecret):
        tokens.require_secret()


def test_a_short_secret_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_JWT_SECRET", "x" * (tokens.MIN_SECRET_CHARS - 1))
    with pytest.raises(tokens.MissingSecret, match="at least"):
        tokens.require_secret()
    monkeypatch.setenv("BANYAN_JWT_SECRET", "x" * tokens.MIN_SECRET_CHARS)
    tokens.require_secret()


def test_an_exported_secret_wins_over_a_dev_run(
    no_secret: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens.require_secret(dev=True)
    monkeypatch.setenv("BANYAN_JWT_SECRET", "e" * 40)
    assert tokens.secret() == "e" * 40
