"""deploy/Dockerfile, read offline (no container engine here): python:3.11-slim, the package
installed with pip from the repository, a numeric non-root user, ``banyan`` as entrypoint, and a
HEALTHCHECK whose command is run here against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tomllib
from pathlib import Path

from banyan.ports import free_port
from banyan.proxy.app import create_app
from banyan.serving import serve
from tests.deploy.deployfiles import (
    DEPLOY,
    REPO,
    banyan_services,
    dockerfile,
    image_env,
    instructions,
    is_banyan_command,
    loopback_flags,
    of_kind,
    pod_spec,
    port_of,
)


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def _healthcheck_argv() -> list[str]:
    (check,) = instructions("HEALTHCHECK")
    _, sep, command = check.args.partition("CMD ")
    assert sep, "HEALTHCHECK has no CMD"
    return _exec_form(command)


def test_one_stage_on_python_311_slim() -> None:
    froms = instructions("FROM")
    assert [item.args for item in froms] == ["python:3.11-slim"]
    assert dockerfile()[0].name == "FROM"


def test_runs_as_a_numeric_non_root_user_after_installing() -> None:
    names = [item.name for item in dockerfile()]
    users = instructions("USER")
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets Kubernetes verify runAsNonRoot"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    last_run = max(i for i, name in enumerate(names) if name == "RUN")
    assert names.index("USER") > last_run, "every RUN after USER would lack root for pip"
    created = " ".join(item.args for item in instructions("RUN"))
    assert f"--uid {uid}" in created, "the user the image switches to is created in it"


def test_installs_the_package_with_pip_from_the_repository() -> None:
    runs = [item.args for item in instructions("RUN")]
    assert any("pip install ." in run for run in runs), runs
    copied = []
    for item in instructions("COPY"):
        *sources, _target = item.args.split()
        copied += [source for source in sources if not source.startswith("--")]
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["readme"] in copied, "pip needs the readme pyproject.toml names"
    assert {"pyproject.toml", "banyan"} <= set(copied)


def test_build_context_ignore_file_keeps_what_the_image_copies() -> None:
    rules = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "ignore everything (the .venv above all), then re-include"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for item in instructions("COPY"):
        *sources, _target = item.args.split()
        for source in sources:
            assert source in kept, f"COPY {source} but the ignore file leaves it out"


def test_entrypoint_is_the_console_script_and_cmd_a_banyan_command() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    argv = _exec_form(entrypoint.args)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert argv == ["banyan"] and "banyan" in scripts
    (cmd,) = instructions("CMD")
    assert is_banyan_command(_exec_form(cmd.args))


def test_the_image_exposes_every_port_a_role_listens_on() -> None:
    exposed = {int(port) for item in instructions("EXPOSE") for port in item.args.split()}
    listening = {port_of(spec["command"]) for spec in banyan_services().values()}
    for doc in of_kind("Deployment"):
        listening |= {port_of(c["args"]) for c in pod_spec(doc)["containers"]}
    assert listening == exposed


def test_healthcheck_asks_healthz() -> None:
    argv = _healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert "HEALTHCHECK_URL" in argv[2]
    assert image_env()["HEALTHCHECK_URL"].endswith("/healthz")
    exposed = {int(port) for item in instructions("EXPOSE") for port in item.args.split()}
    assert int(image_env()["HEALTHCHECK_URL"].rsplit(":", 1)[1].split("/")[0]) in exposed


async def _run(argv: list[str], url: str) -> int:
    command = [sys.executable, *argv[1:]]
    env = {**os.environ, "HEALTHCHECK_URL": url}
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_command_passes_on_a_live_proxy_and_fails_otherwise(
    tmp_path: Path,
) -> None:
    flags = loopback_flags(tmp_path / "flags.yaml")
    argv = _healthcheck_argv()
    async with serve(create_app(flags, health_interval=60)) as url:
        assert await _run(argv, url + "/healthz") == 0
        assert await _run(argv, url + "/_proxy/no-such-page") != 0
    assert await _run(argv, f"http://127.0.0.1:{free_port()}/healthz") != 0
