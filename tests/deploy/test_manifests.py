"""deploy/k8s/, checked offline: every document valid against the Kubernetes schemas bundled with
``kubernetes-validate`` (strict: unknown fields fail), and every name cross-referenced — Service
selectors and ports, probes, ConfigMaps and Secrets, the flag file the proxies mount, the options
and environment variables banyan reads, the drain timing, the disruption budget."""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from banyan.proxy.flags import FlagSet, load_flags
from banyan.serving import serve_forever
from tests.deploy.deployfiles import (
    DEPLOY,
    FLAGS_MOUNT,
    FLAGS_PATH,
    REPO,
    Document,
    command_options,
    container_env,
    deployment,
    instructions,
    is_banyan_command,
    k8s_documents,
    of_kind,
    option_value,
    options_of,
    package_reads,
    pod_spec,
    port_of,
    require,
)

# The oldest Kubernetes these manifests are meant for, and the newest the validator knows.
VERSIONS = ("1.29", latest_version())
SECRET = "banyan-secrets"  # created by the operator, never in the repository (docs: Deploying)
ROLES = ("proxy", "legacy", "new", "model")


def _containers() -> list[tuple[Document, dict[str, Any]]]:
    return [(doc, c) for doc in of_kind("Deployment") for c in pod_spec(doc)["containers"]]


def _port_names_and_numbers(container: dict[str, Any]) -> set[object]:
    ports = container.get("ports") or []
    return {p["containerPort"] for p in ports} | {p["name"] for p in ports if "name" in p}


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = ("readinessProbe", "livenessProbe", "startupProbe")
    return {name: container[name] for name in names if name in container}


def _deploying_section() -> str:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    match = re.search(r"^## Deploying\b.*?(?=^## |\Z)", text, re.M | re.S)
    assert match, "docs/operations.md has no 'Deploying' section"
    return match.group(0)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("doc", k8s_documents(), ids=str)
def test_every_document_is_valid_kubernetes(doc: Document, version: str) -> None:
    kubernetes_validate.validate(doc.body, version, strict=True)


def test_the_validator_can_fail() -> None:
    body = copy.deepcopy(deployment("proxy").body)
    body["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(body, VERSIONS[0], strict=True)
    with pytest.raises(SchemaNotFoundError):
        kubernetes_validate.validate({**body, "kind": "Deploymnt"}, VERSIONS[0], strict=True)


def test_everything_lives_in_the_banyan_namespace() -> None:
    assert [doc.name for doc in of_kind("Namespace")] == ["banyan"]
    for doc in k8s_documents():
        if doc.kind != "Namespace":
            assert doc.body["metadata"].get("namespace") == "banyan", str(doc)


def test_one_deployment_per_role_running_that_banyan_command() -> None:
    assert sorted(doc.name for doc in of_kind("Deployment")) == sorted(ROLES)
    images = set()
    for doc, container in _containers():
        args = container["args"]
        assert is_banyan_command(args) and args[0] == doc.name, str(doc)
        assert _port_names_and_numbers(container) >= {port_of(args)}, str(doc)
        assert option_value(args, "--host") == "0.0.0.0", f"{doc}: reachable from the pod IP"
        images.add(container["image"])
    assert len(images) == 1, f"one image for every role, got {images}"
    for name in ("proxy", "legacy", "new"):
        assert deployment(name).body["spec"]["replicas"] >= 2, name


def test_deployment_selectors_match_their_pods() -> None:
    for doc in of_kind("Deployment"):
        selector = doc.body["spec"]["selector"]["matchLabels"]
        labels = doc.body["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), str(doc)


def test_every_service_selects_one_deployment_and_one_of_its_ports() -> None:
    for service in of_kind("Service"):
        selector = service.body["spec"]["selector"]
        chosen = [
            doc
            for doc in of_kind("Deployment")
            if selector.items() <= doc.body["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(chosen) == 1, f"{service} selects {[str(d) for d in chosen]}"
        ports = set().union(
            *(_port_names_and_numbers(c) for c in pod_spec(chosen[0])["containers"])
        )
        for port in service.body["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in ports, f"{service}: {port}"


def test_probes_ask_ports_the_container_has() -> None:
    for doc, container in _containers():
        probes = _probes(container)
        assert {"readinessProbe", "livenessProbe"} <= set(probes), str(doc)
        for name, probe in probes.items():
            assert probe["httpGet"]["port"] in _port_names_and_numbers(container), f"{doc} {name}"


def test_every_configmap_and_secret_referenced_is_defined_or_documented() -> None:
    configmaps = {doc.name: doc.body.get("data") or {} for doc in of_kind("ConfigMap")}
    secrets_defined = {doc.name for doc in of_kind("Secret")}
    documented = _deploying_section()
    for doc, container in _containers():
        for item in container.get("env") or []:
            source = item.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                assert ref["key"] in configmaps[ref["name"]], f"{doc}: {ref}"
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                if ref["name"] not in secrets_defined:
                    assert f"`{ref['name']}`" in documented, f"{doc}: {ref['name']} undocumented"
                    assert f"`{ref['key']}`" in documented, f"{doc}: key {ref['key']} undocumented"
        assert not container.get("envFrom"), f"{doc}: name each variable"
    for doc in of_kind("Deployment"):
        for volume in pod_spec(doc).get("volumes") or []:
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, f"{doc}: {volume}"
            assert "secret" not in volume or volume["secret"]["secretName"] in secrets_defined


def test_secrets_are_referenced_never_written() -> None:
    assert not of_kind("Secret"), "secret values never go into the repository"
    for doc, container in _containers():
        for item in container.get("env") or []:
            if re.search(r"SECRET|TOKEN|PASSWORD|API_KEY|_DB$|DB_URL$", item["name"]):
                assert "secretKeyRef" in (item.get("valueFrom") or {}), f"{doc}: {item['name']}"


def test_proxy_and_backends_share_the_jwt_secret() -> None:
    """The proxy signs each write's time (X-Banyan-Stamp) with the secret the backends verify."""
    refs = set()
    for role in ("proxy", "legacy", "new"):
        (container,) = pod_spec(deployment(role))["containers"]
        ref = container_env(container)["BANYAN_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
        refs.add((ref["name"], ref["key"]))
    assert refs == {(SECRET, "jwt-secret")}


def test_proxy_is_ready_on_readyz_alive_on_healthz() -> None:
    (container,) = pod_spec(deployment("proxy"))["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("name", ["proxy", "legacy", "new"])
def test_pods_drain_before_they_are_killed(name: str) -> None:
    spec = pod_spec(deployment(name))
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    pause = int(command[1])
    assert pause >= 5, "endpoints need a few seconds to drop the pod everywhere"
    drain = inspect.signature(serve_forever).parameters["shutdown_timeout"].default
    assert spec["terminationGracePeriodSeconds"] > pause + drain


def test_proxy_mounts_the_flag_configmap_read_only_as_a_folder() -> None:
    spec = pod_spec(deployment("proxy"))
    (container,) = spec["containers"]
    assert option_value(container["args"], "--flags") == FLAGS_PATH
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == FLAGS_MOUNT]
    assert mount.get("readOnly") is True
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (configmap,) = [doc for doc in of_kind("ConfigMap") if doc.name == volume["configMap"]["name"]]
    assert Path(FLAGS_PATH).name in configmap.body["data"]


def _configmap_flags(tmp_path: Path) -> FlagSet:
    (configmap,) = of_kind("ConfigMap")
    path = tmp_path / "flags.yaml"
    path.write_text(configmap.body["data"]["flags.yaml"], encoding="utf-8")
    return load_flags(path)


def test_configmap_flags_name_the_backend_services(tmp_path: Path) -> None:
    flags = _configmap_flags(tmp_path)
    services = {doc.name: doc for doc in of_kind("Service")}
    for side in ("legacy", "new"):
        match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", flags.backends[side].url)
        assert match, f"backends.{side}: {flags.backends[side].url}"
        service = services[match.group(1)]
        assert service.body["spec"]["selector"] == {"app.kubernetes.io/name": side}
        assert int(match.group(2)) in {p["port"] for p in service.body["spec"]["ports"]}


def _features(flags: FlagSet) -> list[tuple[dict[str, Any], Any]]:
    """Each feature's settings; its rollout compared as a value (a step's line is no change)."""
    return [
        ({k: v for k, v in asdict(f).items() if k not in ("line", "rollout")}, f.rollout)
        for f in flags.features
    ]


def test_shipped_flag_files_carry_the_repository_features(tmp_path: Path) -> None:
    repository = load_flags(REPO / "flags.yaml")
    compose_flags = load_flags(DEPLOY / "flags" / "flags.yaml")
    for flags in (compose_flags, _configmap_flags(tmp_path)):
        assert _features(flags) == _features(repository)
        assert flags.default == repository.default


def test_the_disruption_budget_keeps_a_proxy_up() -> None:
    labels = deployment("proxy").body["spec"]["template"]["metadata"]["labels"]
    replicas = deployment("proxy").body["spec"]["replicas"]
    budgets = [
        doc
        for doc in of_kind("PodDisruptionBudget")
        if doc.body["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1
    assert 1 <= budgets[0].body["spec"]["minAvailable"] < replicas


def test_every_container_has_requests_and_limits() -> None:
    for doc, container in _containers():
        resources = container["resources"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound]), f"{doc}: {bound}"


def test_pods_run_as_the_image_user_without_privileges() -> None:
    (user,) = instructions("USER")
    uid = int(user.args.split(":")[0])
    for doc in of_kind("Deployment"):
        context = pod_spec(doc)["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, str(doc)
    for doc, container in _containers():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, str(doc)
        assert context["capabilities"]["drop"] == ["ALL"], str(doc)


def _cases(kind: str) -> list[tuple[str, str]]:
    cases = []
    for doc, container in _containers():
        names = options_of(container["args"]) if kind == "option" else container_env(container)
        cases += [(doc.name, name) for name in names]
    return cases


@pytest.mark.parametrize(("role", "option"), _cases("option"))
def test_every_argument_option_is_one_banyan_accepts(role: str, option: str) -> None:
    require(option, option in command_options(role), f"k8s {role}: banyan {role}")


@pytest.mark.parametrize(("role", "variable"), _cases("env"))
def test_every_environment_variable_is_read_by_banyan_or_expanded_in_args(
    role: str, variable: str
) -> None:
    (container,) = pod_spec(deployment(role))["containers"]
    expanded = f"$({variable})" in container["args"]
    require(variable, package_reads(variable) or expanded, f"k8s {role}")


def test_every_expanded_variable_is_defined_in_its_container() -> None:
    for doc, container in _containers():
        for arg in container["args"]:
            for name in re.findall(r"\$\((\w+)\)", arg):
                assert name in container_env(container), f"{doc}: $({name}) is undefined"
