"""``banyan proxy`` as a real process: port 0, bad flags, several workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from banyan.ports import free_port
from banyan.proxy.server_cli import main


def _flags(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    port = free_port()
    path.write_text(
        f"version: 1\nbackends:\n  legacy: http://127.0.0.1:{port}\n  new: http://127.0.0.1:{port}\n"
        "features:\n  all:\n    routes: ['/api/**']\n    mode: legacy\ndefault: legacy\n"
    )
    return path


def _start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "banyan.proxy.cli", "proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "banyan proxy listening on http://127.0.0.1:" in line, line
    return process, line.rsplit(" ", 1)[1].strip()


def test_proxy_process_serves_and_stops(tmp_path: Path) -> None:
    process, url = _start(["--flags", str(_flags(tmp_path)), "--port", "0", "--no-access-log"])
    try:
        assert httpx.get(url + "/healthz", timeout=10).json()["service"] == "proxy"
        answer = httpx.get(url + "/api/x", timeout=10)
        assert answer.status_code == 502 and answer.headers["x-banyan-feature"] == "all"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0


def test_workers_share_one_port(tmp_path: Path) -> None:
    process, url = _start(["--flags", str(_flags(tmp_path)), "--port", "0", "--workers", "2"])
    try:
        for _ in range(10):
            assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_invalid_flags_refuse_to_start(tmp_path: Path, capsys: object) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    assert main(["--flags", str(bad)]) == 1


def test_shutdown_drains_an_in_flight_request(tmp_path: Path) -> None:
    import threading

    from aiohttp import web

    served = threading.Event()

    async def slow(_: web.Request) -> web.Response:
        import asyncio

        served.set()
        await asyncio.sleep(1.0)
        return web.json_response({"finished": True})

    app = web.Application()
    app.router.add_get("/api/slow", slow)
    port = free_port()
    runner_ready = threading.Event()

    def run_upstream() -> None:
        import asyncio

        async def main() -> None:
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runner_ready.set()
            await asyncio.sleep(8)
            await runner.cleanup()

        asyncio.run(main())

    thread = threading.Thread(target=run_upstream, daemon=True)
    thread.start()
    assert runner_ready.wait(10)
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        f"version: 1\nbackends:\n  legacy: http://127.0.0.1:{port}\n  new: http://127.0.0.1:{port}\n"
        "features:\n  all:\n    routes: ['/api/**']\n    mode: legacy\ndefault: legacy\n"
    )
    process, url = _start(["--flags", str(flags), "--port", "0"])
    result: dict[str, int] = {}

    def call() -> None:
        result["status"] = httpx.get(url + "/api/slow", timeout=20).status_code

    caller = threading.Thread(target=call)
    caller.start()
    assert served.wait(10)
    process.send_signal(signal.SIGTERM)
    caller.join(20)
    process.wait(timeout=30)
    assert result.get("status") == 200


def test_limit_options_reach_the_running_proxy(tmp_path: Path) -> None:
    import socket

    process, url = _start(
        ["--flags", str(_flags(tmp_path)), "--port", "0", "--client-header-timeout", "0.5"]
    )
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
            raw.sendall(b"GET /api/x HT")
            answer = b""
            while chunk := raw.recv(65536):  # until the proxy closes (the socket timeout fails)
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_limits_come_from_options_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from banyan.client_timeouts import ClientTimeouts
    from banyan.proxy.admission import AdmissionLimits
    from banyan.proxy.server_cli import admission_of, build_parser

    monkeypatch.setenv("BANYAN_MAX_WEBSOCKETS", "7")
    monkeypatch.setenv("BANYAN_CLIENT_BODY_TIMEOUT", "9")
    args = build_parser().parse_args(["--max-requests", "3", "--client-header-timeout", "2.5"])
    limits, timeouts = admission_of(args)
    assert limits == AdmissionLimits(max_websockets=7, max_requests=3)
    assert timeouts == ClientTimeouts(header=2.5, body=9, keepalive=75)
    args = build_parser().parse_args(["--max-websockets", "1", "--keepalive-timeout", "5"])
    assert admission_of(args)[0].max_websockets == 1 and admission_of(args)[1].keepalive == 5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--max-websockets", "0"])


def test_a_bad_limit_in_the_environment_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_MAX_REQUESTS", "lots")
    assert main(["--flags", str(_flags(tmp_path))]) == 1


def test_header_limits_come_from_options_and_the_environment(tmp_path: Path) -> None:
    os.environ["BANYAN_MAX_HEADERS"] = "6"
    try:
        process, url = _start(
            ["--flags", str(_flags(tmp_path)), "--port", "0", "--max-field-bytes", "1000"]
        )
    finally:
        del os.environ["BANYAN_MAX_HEADERS"]
    try:
        long_line = httpx.get(url + "/api/x", headers={"X-Long": "l" * 1500}, timeout=10)
        many = httpx.get(url + "/api/x", headers={f"X-{i}": "1" for i in range(8)}, timeout=10)
        fine = httpx.get(url + "/api/x", headers={"X-Long": "l" * 900}, timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert long_line.status_code == 431 and "--max-field-bytes" in long_line.text
    assert many.status_code == 431 and "--max-headers" in many.text
    assert fine.status_code == 502  # within the limits: forwarded (to a backend that is down)


def test_a_bad_limit_is_refused(tmp_path: Path) -> None:
    assert main(["--flags", str(_flags(tmp_path)), "--max-headers", "0"]) == 1


def test_a_flag_folder_it_cannot_write_does_not_stop_the_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = _flags(tmp_path)
    (tmp_path / ".banyan").write_text("not a folder")  # as unwritable as a read-only ConfigMap
    state = tmp_path / "state"  # where a deployment puts the proxy's own stores
    state.mkdir()
    monkeypatch.setenv("BANYAN_PARITY_DB", f"sqlite+aiosqlite:///{state / 'parity.db'}")
    monkeypatch.setenv("BANYAN_MIRROR_DB", f"sqlite+aiosqlite:///{state / 'mirror.db'}")
    monkeypatch.setenv("BANYAN_ROLLOUTS", str(state / "rollouts.json"))
    process, url = _start(["--flags", str(flags), "--port", "0", "--no-access-log"])
    try:
        assert httpx.get(url + "/healthz", timeout=10).json()["service"] == "proxy"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
