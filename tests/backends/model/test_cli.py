"""``banyan model`` as a real process: prints its address, answers, stops on SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from banyan.backends.model.cli import build_parser

ROOT = Path(__file__).resolve().parents[3]


def test_model_command_serves_on_port_zero() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "banyan.proxy.cli", "model", "--port", "0", "--seed", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("banyan model listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        models = httpx.get(url + "/v1/models", timeout=10).json()
        assert "banyan-tutor-1" in [m["id"] for m in models["data"]]
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_parser_defaults_and_checks() -> None:
    parser = build_parser()
    args = parser.parse_args([])
    assert args.port == 8003 and args.host == "127.0.0.1" and args.fail_rate == 0.0
    args = parser.parse_args(["--fail-rate", "0.25", "--token-delay-ms", "5", "--api-key", "k"])
    assert args.fail_rate == 0.25 and args.token_delay_ms == 5 and args.api_key == "k"
    for bad in (["--fail-rate", "2"], ["--malformed-rate", "-1"], ["--latency-ms", "-3"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
