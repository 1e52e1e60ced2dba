"""``banyan up`` as a real process: every available part starts, answers, and stops together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from banyan.proxy import stack
from banyan.testing import free_port


def test_plan_follows_the_flag_file(tmp_path: Path) -> None:
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        "version: 1\nbackends:\n  legacy: http://127.0.0.1:9101\n"
        "  new: {url: 'http://127.0.0.1:9102'}\nfeatures: {}\ndefault: legacy\n"
    )
    args = stack.build_parser().parse_args(["--flags", str(flags), "--port", "0"])
    parts = {p.name: p for p in stack.plan(args)}
    assert "proxy" in parts and "model" in parts
    if "legacy" in parts:
        assert "9101" in parts["legacy"].argv and "9102" in parts["new"].argv
        assert parts["legacy"].env["OPENAI_BASE_URL"].endswith(":8003/v1")
    assert (tmp_path / ".banyan").is_dir()


def test_missing_flag_file_is_an_error(tmp_path: Path) -> None:
    assert stack.main(["--flags", str(tmp_path / "nope.yaml")]) == 2


def test_up_starts_and_stops_the_stack(tmp_path: Path) -> None:
    flags = tmp_path / "flags.yaml"
    legacy, new = free_port(), free_port()
    flags.write_text(
        f"version: 1\nbackends:\n  legacy: http://127.0.0.1:{legacy}\n  new: http://127.0.0.1:{new}\n"
        "features:\n  all:\n    routes: ['/api/**']\n    mode: legacy\ndefault: legacy\n"
    )
    port, model_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "banyan.proxy.cli", "up", "--flags", str(flags), "--port", str(port),
         "--model-port", str(model_port), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "ready" in line:
                break
        assert any("proxy" in line and str(port) in line for line in lines), lines
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{model_port}/healthz", timeout=10).status_code == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            # the tutor reaches the model server `up` started; the whiteboard has its tables
            signed = client.post(
                "/api/auth/register",
                json={"email": "up@example.com", "password": "p" * 10, "name": "Up"},
            )
            client.headers["Authorization"] = f"Bearer {signed.json()['token']}"
            session = client.post("/api/sessions", json={"title": "Up"}).json()
            asked = client.post(f"/api/sessions/{session['id']}/ask", json={"text": "Hi?"})
            assert asked.status_code == 200, asked.text
            assert asked.json()["answer"]["content"]
            board = client.get("/api/whiteboard/up-room")
            assert board.json() == {"room": "up-room", "doc": {}}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
