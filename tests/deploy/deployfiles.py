"""What the deployment checks read: the files under ``deploy/`` parsed (compose, Kubernetes
manifests, Dockerfile, HAProxy config), and what the ``banyan`` package itself accepts (each
command's options, the environment variables its code reads), asked of the package, not copied."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from banyan.ports import free_port
from banyan.proxy.cli import COMMANDS
from banyan.proxy.cli import main as banyan_main

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
PACKAGE = REPO / "banyan"
FLAGS_MOUNT = "/etc/banyan"
FLAGS_PATH = f"{FLAGS_MOUNT}/flags.yaml"

# Named by the deployment (issue 18) and built by another change in parallel: a check that finds
# one of these missing from the package is an expected failure (xfail, listed by `pytest -ra`)
# until it lands; every other missing name fails.
PENDING: dict[str, str] = {}


def require(name: str, present: bool, where: str) -> None:
    """Fail unless ``present``; a name still being built elsewhere is an expected failure."""
    if present:
        return
    if name in PENDING:
        pytest.xfail(f"{name} ({where}): {PENDING[name]}")
    pytest.fail(f"{where}: {name} is not known to the banyan package")


# -- banyan itself ---------------------------------------------------------------------------------


@cache
def command_options(command: str) -> frozenset[str]:
    """The ``--options`` that ``banyan COMMAND --help`` lists."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        banyan_main([command, "--help"])
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out.getvalue())) - {"--help"}


@cache
def _package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py")))


def package_reads(name: str) -> bool:
    """Whether the package's code names ``name`` as a string (``os.environ.get("NAME")``...)."""
    source = _package_source()
    return f'"{name}"' in source or f"'{name}'" in source


def options_of(argv: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]


def option_value(argv: list[str], option: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def is_banyan_command(argv: list[str]) -> bool:
    return bool(argv) and argv[0] in COMMANDS


def loopback_flags(path: Path) -> Path:
    """The compose flag file written to ``path`` with its backends on closed loopback ports, for
    a proxy started in a test (no lookup of the compose host names)."""
    text = (DEPLOY / "flags" / "flags.yaml").read_text(encoding="utf-8")
    for port in (8001, 8002):
        text = text.replace(f"http://haproxy:{port}", f"http://127.0.0.1:{free_port()}")
    path.write_text(text, encoding="utf-8")
    return path


# -- compose ---------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    """deploy/compose.yaml with anchors and merge keys resolved (as compose resolves them)."""
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def banyan_services() -> dict[str, dict[str, Any]]:
    """The services that run the banyan image (their command is a banyan command)."""
    return {
        name: spec
        for name, spec in services().items()
        if "build" in spec and is_banyan_command(spec.get("command") or [])
    }


def services_of_role(role: str) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in banyan_services().items() if spec["command"][0] == role}


def environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def env_example() -> dict[str, str]:
    """NAME=VALUE lines of deploy/env.example (comments and blank lines skipped)."""
    pairs: dict[str, str] = {}
    for line in (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"env.example: {line!r} is not NAME=VALUE"
            pairs[name.strip()] = value.strip()
    return pairs


def expand(text: str, values: dict[str, str]) -> str:
    """``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` replaced as compose does."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        value = values.get(name)
        empty = value is None or (value == "" and (operator or "").startswith(":"))
        if operator in {":-", "-"} and empty:
            return expand(argument, values)
        if operator in {":?", "?"} and empty:
            raise KeyError(f"{name}: {argument}")
        return value or ""

    return INTERPOLATION.sub(one, text)


def expand_all(node: Any, values: dict[str, str]) -> Any:
    """Every string in a parsed document expanded (compose interpolates before validating)."""
    if isinstance(node, dict):
        return {key: expand_all(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [expand_all(value, values) for value in node]
    return expand(node, values) if isinstance(node, str) else node


def example_values() -> dict[str, str]:
    """env.example as a filled-in .env would give it: each empty secret a stand-in value."""
    raw = {name: value or f"stand-in-{name.lower()}" for name, value in env_example().items()}
    return {name: expand(value, raw) for name, value in raw.items()}


def port_of(argv: list[str]) -> int:
    value = option_value(argv, "--port")
    assert value is not None, f"{argv}: no --port"
    return int(value)


# -- Kubernetes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    file: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"


@cache
def k8s_documents() -> tuple[Document, ...]:
    documents: list[Document] = []
    for path in sorted(K8S.glob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if body:
                documents.append(Document(path.name, body))
    return tuple(documents)


def of_kind(kind: str) -> list[Document]:
    return [doc for doc in k8s_documents() if doc.kind == kind]


def deployment(name: str) -> Document:
    (found,) = [doc for doc in of_kind("Deployment") if doc.name == name]
    return found


def pod_spec(doc: Document) -> dict[str, Any]:
    return dict(doc.body["spec"]["template"]["spec"])


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env") or []}


# -- Dockerfile ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """deploy/Dockerfile's instructions, line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        joined = (pending + line.strip()).strip()
        pending = ""
        name, _, args = joined.partition(" ")
        instructions.append(Instruction(name.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return tuple(instructions)


def instructions(name: str) -> list[Instruction]:
    return [item for item in dockerfile() if item.name == name]


def image_env() -> dict[str, str]:
    """The image's ENV NAME=VALUE pairs."""
    env: dict[str, str] = {}
    for item in instructions("ENV"):
        for pair in item.args.split():
            name, sep, value = pair.partition("=")
            assert sep, f"ENV {item.args!r}: use NAME=VALUE"
            env[name] = value
    return env


# -- HAProxy ---------------------------------------------------------------------------------------

SECTION_KEYWORDS = {"global", "defaults", "frontend", "backend", "listen", "resolvers"}


@dataclass
class Section:
    kind: str
    name: str
    lines: list[list[str]] = field(default_factory=list)

    def directives(self, *words: str) -> list[list[str]]:
        """Lines starting with ``words`` (e.g. ``("timeout", "tunnel")``)."""
        return [line for line in self.lines if line[: len(words)] == list(words)]


@cache
def haproxy() -> tuple[Section, ...]:
    sections: list[Section] = []
    for raw in (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        words = shlex.split(text)
        if words[0] in SECTION_KEYWORDS:
            sections.append(Section(words[0], words[1] if len(words) > 1 else ""))
        else:
            assert sections, f"haproxy.cfg: {text!r} before any section"
            sections[-1].lines.append(words)
    return tuple(sections)


def haproxy_sections(kind: str) -> dict[str, Section]:
    return {section.name: section for section in haproxy() if section.kind == kind}
