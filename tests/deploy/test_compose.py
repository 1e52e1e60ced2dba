"""deploy/compose.yaml, checked offline: valid against the Compose specification (the
``compose-spec`` parser), every name it uses defined, every command option and environment
variable known to banyan, secrets only by reference, and the replicas the deployment promises."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from banyan.proxy.flags import load_flags
from banyan.serving import serve_forever
from tests.deploy.deployfiles import (
    DEPLOY,
    FLAGS_MOUNT,
    FLAGS_PATH,
    INTERPOLATION,
    banyan_services,
    command_options,
    compose,
    env_example,
    environment,
    example_values,
    expand,
    expand_all,
    image_env,
    option_value,
    options_of,
    package_reads,
    port_of,
    require,
    services,
    services_of_role,
)

PROXY_ENV = (
    "BANYAN_CONTROL_DB",
    "BANYAN_ADMIN_TOKEN",
    "BANYAN_PARITY_DB",
    "BANYAN_MIRROR_DB",
    "BANYAN_JWT_SECRET",  # the proxy stamps writes with the backends' secret
)
# Names whose value is a secret or a database URL (which carries the password).
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|^BANYAN_\w+_DB$|DB_URL$")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def _resolved() -> dict[str, Any]:
    """The file as compose sees it with a filled-in .env: merge keys resolved (compose-spec
    reads none) and every ${VARIABLE} interpolated."""
    resolved = expand_all(compose(), example_values())
    assert isinstance(resolved, dict)
    return resolved


def test_follows_the_compose_specification() -> None:
    parsed = PyCompose.from_yaml(yaml.safe_dump(_resolved(), sort_keys=False))
    assert set(parsed.service_names()) == set(services())


def test_the_specification_check_can_fail() -> None:
    broken = _resolved()
    broken["services"]["proxy-1"]["stop_grace_period"] = "soon"
    with pytest.raises(ValueError, match="stop_grace_period"):
        PyCompose.from_yaml(yaml.safe_dump(broken))


def test_a_missing_variable_stops_compose() -> None:
    values = example_values()
    del values["BANYAN_JWT_SECRET"]
    with pytest.raises(KeyError, match="BANYAN_JWT_SECRET"):
        expand_all(compose(), values)


def test_every_depends_on_names_a_service() -> None:
    for name, spec in services().items():
        for needed in spec.get("depends_on") or {}:
            assert needed in services(), f"{name} depends on unknown service {needed}"
            assert needed != name


def test_start_order_has_no_cycle() -> None:
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        for needed in services()[name].get("depends_on") or {}:
            visit(needed, (*path, name))

    for name in services():
        visit(name, ())


@pytest.mark.parametrize("role", ["legacy", "new", "proxy"])
def test_a_second_replica_starts_once_the_first_is_healthy(role: str) -> None:
    # Replicas creating an empty database's tables at the same instant collide: one exits.
    first, *others = sorted(services_of_role(role))
    for name in others:
        assert services()[name]["depends_on"][first] == {"condition": "service_healthy"}


def test_every_named_volume_is_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, spec in services().items():
        for volume in spec.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
            else:
                assert (DEPLOY / source).resolve().exists(), f"{name}: {source} is missing"


def test_two_replicas_of_each_backend_and_of_the_proxy() -> None:
    for role in ("legacy", "new", "proxy"):
        assert len(services_of_role(role)) == 2, role
    assert len(services_of_role("model")) == 1
    assert {"postgres", "redis", "haproxy"} <= set(services())


def test_backends_run_on_postgresql_and_redis() -> None:
    values = example_values()
    for role in ("legacy", "new"):
        for name, spec in services_of_role(role).items():
            argv = spec["command"]
            db = option_value(argv, "--db") or ""
            assert INTERPOLATION.fullmatch(db), f"{name}: --db by reference, never literal"
            assert expand(db, values).startswith("postgresql+asyncpg://"), name
            assert (option_value(argv, "--redis") or "").startswith("redis://redis:"), name
            assert {"postgres", "redis", "model"} <= set(spec["depends_on"]), name


def test_proxies_read_the_mounted_flags_and_the_shared_stores() -> None:
    for name, spec in services_of_role("proxy").items():
        argv = spec["command"]
        assert option_value(argv, "--flags") == FLAGS_PATH, name
        assert INTERPOLATION.fullmatch(option_value(argv, "--control-db") or ""), name
        assert set(PROXY_ENV) <= set(environment(spec)), name
        mounts = [volume.split(":") for volume in spec["volumes"]]
        assert ["./flags", FLAGS_MOUNT, "ro"] in mounts, f"{name}: flags folder read-only"
    load_flags(DEPLOY / "flags" / Path(FLAGS_PATH).name)


def _option_cases() -> list[tuple[str, str]]:
    return [
        (name, option)
        for name, spec in banyan_services().items()
        for option in options_of(spec["command"])
    ]


@pytest.mark.parametrize(("service", "option"), _option_cases())
def test_every_command_option_is_one_banyan_accepts(service: str, option: str) -> None:
    command = banyan_services()[service]["command"][0]
    require(option, option in command_options(command), f"compose {service}: banyan {command}")


def _env_cases() -> list[tuple[str, str]]:
    return [(name, var) for name, spec in banyan_services().items() for var in environment(spec)]


@pytest.mark.parametrize(("service", "variable"), _env_cases())
def test_every_environment_variable_is_read_by_banyan_or_the_image(
    service: str, variable: str
) -> None:
    read = package_reads(variable) or variable in image_env()
    require(variable, read, f"compose {service}")


def test_secrets_are_references_never_values() -> None:
    for name, spec in services().items():
        for variable, value in environment(spec).items():
            if SECRET_NAME.search(variable):
                assert INTERPOLATION.fullmatch(value), f"{name}: {variable} is a literal"
    text = yaml.safe_dump(compose())  # every value, no comments
    assert not CREDENTIALS_IN_URL.search(INTERPOLATION.sub("", text)), "a URL with a password"
    assert ".env" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()


def test_every_referenced_variable_is_listed_in_env_example_without_secret_values() -> None:
    text = yaml.safe_dump(compose())
    listed = env_example()
    optional = {m.group(1) for m in re.finditer(r"\$\{(\w+):-[^}]*\}", text)}
    for variable in {m.group(1) for m in INTERPOLATION.finditer(text)} - optional:
        assert variable in listed, f"{variable} is not in env.example"
    for variable, value in listed.items():
        if SECRET_NAME.search(variable) and not variable.endswith(("_DB", "_DB_URL")):
            assert value == "", f"env.example gives {variable} a value"
        assert not CREDENTIALS_IN_URL.search(INTERPOLATION.sub("", value)), variable


def test_healthchecks_ask_each_service_on_its_own_port() -> None:
    for name, spec in banyan_services().items():
        url = environment(spec)["HEALTHCHECK_URL"]
        assert url == f"http://127.0.0.1:{port_of(spec['command'])}/healthz", name
    for name in ("postgres", "redis"):
        assert services()[name]["healthcheck"]["test"], name


def test_proxies_get_longer_to_stop_than_they_take_to_drain() -> None:
    drain = inspect.signature(serve_forever).parameters["shutdown_timeout"].default
    for name, spec in services_of_role("proxy").items():
        assert _duration(spec["stop_grace_period"]) > drain, name


def test_only_the_balancer_is_published() -> None:
    published = {name for name, spec in services().items() if spec.get("ports")}
    assert published == {"haproxy"}
