"""The proxy's settings (banyan/proxy/settings.py): defaults, every variable read, a bad value
refused by name, and the settings handed to the app rather than read again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.client_timeouts import ClientTimeouts
from banyan.errors import SettingsError
from banyan.proxy.admission import AdmissionLimits
from banyan.proxy.app import create_app
from banyan.proxy.limits import Limits
from banyan.proxy.settings import SETTINGS, Settings
from banyan.proxy.state import STATE

FLAGS = (
    "version: 1\nbackends:\n  legacy: http://127.0.0.1:9\n  new: http://127.0.0.1:9\n"
    "features:\n  all:\n    routes: ['/api/**']\n    mode: legacy\ndefault: legacy\n"
)


def flag_file(folder: Path) -> Path:
    path = folder / "flags.yaml"
    path.write_text(FLAGS)
    return path


EVERY = {
    "BANYAN_FLAGS": "/etc/banyan/flags.yaml",
    "BANYAN_FLAGS_MAX_BYTES": "1000",
    "BANYAN_MAX_HEADER_BYTES": "4096",
    "BANYAN_MAX_FIELD_BYTES": "2048",
    "BANYAN_MAX_HEADERS": "10",
    "BANYAN_MAX_TARGET_BYTES": "512",
    "BANYAN_MAX_WEBSOCKETS": "50",
    "BANYAN_MAX_REQUESTS": "70",
    "BANYAN_CLIENT_HEADER_TIMEOUT": "5",
    "BANYAN_CLIENT_BODY_TIMEOUT": "7.5",
    "BANYAN_KEEPALIVE_TIMEOUT": "20",
    "BANYAN_ADMIN_TOKEN": "admin-token",
    "BANYAN_JWT_SECRET": "s" * 40,
    "BANYAN_PARITY_DB": "postgresql+asyncpg://h/parity",
    "BANYAN_MIRROR_DB": "postgresql+asyncpg://h/mirror",
    "BANYAN_AUDIT_LOG": "/var/log/banyan/audit.jsonl",
    "BANYAN_ROLLOUTS": "/var/lib/banyan/rollouts.json",
    "BANYAN_CONTROL_DB": "postgresql://h/control",
    "BANYAN_CONTROL_SCHEMA": "other",
    "BANYAN_LOG_LEVEL": "WARNING",
}


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({name: "" for name in EVERY}) == Settings()
    defaults = Settings()
    assert (defaults.flags, defaults.flags_max_bytes) == ("flags.yaml", 4 * 1024 * 1024)
    assert defaults.limits == Limits() and defaults.admission == AdmissionLimits()
    assert defaults.client_timeouts == ClientTimeouts(header=60, body=60, keepalive=75)
    assert defaults.admin_token is None and defaults.stamp_secret is None
    assert (defaults.control_schema, defaults.log_level) == ("banyan_control", "info")


def test_every_variable_is_read() -> None:
    assert Settings.from_env(EVERY) == Settings(
        flags="/etc/banyan/flags.yaml",
        flags_max_bytes=1000,
        limits=Limits(
            max_header_bytes=4096, max_field_bytes=2048, max_headers=10, max_target_bytes=512
        ),
        admission=AdmissionLimits(max_websockets=50, max_requests=70),
        client_timeouts=ClientTimeouts(header=5, body=7.5, keepalive=20),
        admin_token="admin-token",
        stamp_secret="s" * 40,
        parity_db="postgresql+asyncpg://h/parity",
        mirror_db="postgresql+asyncpg://h/mirror",
        audit_log=Path("/var/log/banyan/audit.jsonl"),
        rollouts=Path("/var/lib/banyan/rollouts.json"),
        control_db="postgresql://h/control",
        control_schema="other",
        log_level="warning",
    )


def test_the_module_docstring_lists_every_variable() -> None:
    from banyan.proxy import settings

    assert all(f"``{name}``" in (settings.__doc__ or "") for name in EVERY)


BAD = [
    ("BANYAN_FLAGS_MAX_BYTES", "lots", "must be a whole number of bytes"),
    ("BANYAN_MAX_HEADER_BYTES", "-1", "must be positive"),
    ("BANYAN_MAX_HEADERS", "many", "must be a whole number"),
    ("BANYAN_MAX_WEBSOCKETS", "0", "must be positive (at least 1)"),
    ("BANYAN_MAX_REQUESTS", "1.5", "must be a whole number"),
    ("BANYAN_CLIENT_HEADER_TIMEOUT", "soon", "must be a number of seconds"),
    ("BANYAN_CLIENT_BODY_TIMEOUT", "0", "must be positive"),
    ("BANYAN_KEEPALIVE_TIMEOUT", "nan", "must be positive"),
    ("BANYAN_LOG_LEVEL", "loud", "must be one of debug, info"),
]


@pytest.mark.parametrize(("name", "value", "problem"), BAD)
def test_a_bad_value_is_refused_by_name(name: str, value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**EVERY, name: value})
    assert refused.value.name == name
    assert str(refused.value).startswith(f"{name} {problem}") and repr(value) in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_banyan_proxy_refuses_to_start_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from banyan.proxy.server_cli import main

    flags = flag_file(tmp_path)
    monkeypatch.setenv("BANYAN_LOG_LEVEL", "loud")
    assert main(["--flags", str(flags)]) == 1
    assert "BANYAN_LOG_LEVEL must be one of debug, info" in capsys.readouterr().err


async def test_the_app_uses_the_settings_it_is_given(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "from-the-environment")  # not read: settings given
    audit = tmp_path / "elsewhere.jsonl"
    settings = Settings(admin_token="given", audit_log=audit, limits=Limits(max_headers=7))
    async with make_stack(settings=settings) as stack, httpx.AsyncClient(base_url=stack.url) as c:
        ours = {"Authorization": "Bearer given"}
        assert (await c.get("/_proxy/status", headers=ours)).status_code == 200
        theirs = {"Authorization": "Bearer from-the-environment"}
        assert (await c.get("/_proxy/status", headers=theirs)).status_code == 401
        assert stack.state.limits.max_headers == 7 and stack.state.audit.path == audit
        assert not stack.state.stamper.enabled


def test_without_settings_the_app_reads_the_environment_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = flag_file(tmp_path)
    monkeypatch.setenv("BANYAN_JWT_SECRET", "j" * 40)
    monkeypatch.setenv("BANYAN_MAX_REQUESTS", "9")
    app = create_app(flags)
    assert app[SETTINGS].stamp_secret == "j" * 40 and app[STATE].stamper.enabled
    assert app[STATE].admission.limits.max_requests == 9
