"""The shape of the package's imports (issue 16): no module-level import cycles anywhere under
``banyan``, and nothing uphill: parity (what compares answers) never imports the proxy (what
forwards them), and the backends never import the proxy or parity.

Read from the source with ``ast`` (module-level statements only; imports inside functions are
deliberate late bindings and imports under ``if TYPE_CHECKING:`` never run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import banyan

ROOT = Path(banyan.__file__).parent


def module_files() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(tree: ast.Module, known: dict[str, Path]) -> Iterator[str]:
    for node in tree.body:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in known:  # ``from package import module`` needs the module
                    yield child
                elif node.module in known:
                    yield node.module


def import_graph() -> dict[str, set[str]]:
    known = module_files()
    graph = {}
    for name, path in known.items():
        graph[name] = {dep for dep in imported(ast.parse(path.read_text()), known) if dep != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_nothing_imports_uphill() -> None:
    uphill = {
        "banyan.parity": ("banyan.proxy",),
        "banyan.backends": ("banyan.proxy", "banyan.parity"),
    }
    wrong = [
        f"{module} imports {dep}"
        for module, deps in import_graph().items()
        for lower, higher in uphill.items()
        if module.startswith(lower + ".") or module == lower
        for dep in deps
        if dep.startswith(higher)
    ]
    assert wrong == []


# ``banyan up`` starts the backends: it makes their secret by their own rules
LAUNCHERS = ("banyan.proxy.stack",)


def every_import(tree: ast.Module) -> Iterator[str]:
    """Every module a file imports, at any depth (late bindings included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_the_proxy_and_parity_know_the_application_only_through_its_interface() -> None:
    """Issue 16: the proxy (and parity, control, rollouts) read the application behind them
    through banyan.application, which the application plugs in; never its backends' code, not
    even in a function."""
    wrong = sorted(
        f"{name} imports {dep}"
        for name, path in module_files().items()
        if name.startswith(("banyan.proxy", "banyan.parity", "banyan.control", "banyan.rollout"))
        and name not in LAUNCHERS
        for dep in every_import(ast.parse(path.read_text()))
        if dep.startswith("banyan.backends")
    )
    assert wrong == []
