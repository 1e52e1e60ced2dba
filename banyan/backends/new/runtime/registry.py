"""Registering functions: ``@query``, ``@mutation`` and ``@action`` with argument validators.

A function is ``async def fn(ctx, args) -> value``. Its ``args`` declaration is a mapping of field
validators from ``banyan.backends.common.validate`` (so invalid arguments get the contract's exact
messages); fields listed in ``optional`` may be absent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from banyan.backends.common import validate as v

Kind = Literal["query", "mutation", "action"]
Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    kind: Kind
    handler: Handler
    check: Callable[[Any], dict[str, Any]]
    cache: bool = False  # only queries whose result depends on stored data alone (not the clock)
    fields: frozenset[str] = frozenset()  # the argument names it declares

    def accepts(self, name: str) -> bool:
        return name in self.fields


class Registry:
    def __init__(self) -> None:
        self.functions: dict[str, Function] = {}

    def _register(
        self,
        kind: Kind,
        name: str,
        args: Mapping[str, v.Validator],
        optional: Iterable[str],
        cache: bool = False,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            if name in self.functions:
                raise ValueError(f"function {name!r} is registered twice")
            check = v.obj(args, optional=set(optional))
            self.functions[name] = Function(name, kind, handler, check, cache, frozenset(args))
            return handler

        return decorate

    def query(
        self,
        name: str,
        args: Mapping[str, v.Validator] | None = None,
        optional: Iterable[str] = (),
        *,
        cache: bool = False,
    ) -> Callable[[Handler], Handler]:
        """A read; ``cache=True`` when its result depends on stored data alone."""
        return self._register("query", name, args or {}, optional, cache)

    def mutation(
        self, name: str, args: Mapping[str, v.Validator] | None = None, optional: Iterable[str] = ()
    ) -> Callable[[Handler], Handler]:
        return self._register("mutation", name, args or {}, optional)

    def action(
        self, name: str, args: Mapping[str, v.Validator] | None = None, optional: Iterable[str] = ()
    ) -> Callable[[Handler], Handler]:
        return self._register("action", name, args or {}, optional)

    def get(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise LookupError(f"no function named {name!r}") from None


registry = Registry()
query, mutation, action = registry.query, registry.mutation, registry.action
