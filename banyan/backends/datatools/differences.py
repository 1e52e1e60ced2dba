"""One difference between the legacy and the new store, as ``banyan data verify`` reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

DiffKind = Literal["missing_in_new", "only_in_new", "differs"]


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    key: tuple[Any, ...]
    kind: DiffKind
    columns: tuple[str, ...] = ()

    def describe(self) -> str:
        key = ",".join(str(k) for k in self.key)
        if self.kind == "differs":
            return f"{self.table} {key}: differs in {', '.join(self.columns)}"
        where = "legacy only (missing in new)" if self.kind == "missing_in_new" else "new only"
        return f"{self.table} {key}: {where}"
