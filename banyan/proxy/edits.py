"""The flag edits one proxy made itself (admin API, guard rollback, rollout step): audited once.

Per application, never process-wide: whoever edits on the proxy's behalf runs the edit (in a
worker thread, :mod:`banyan.proxy.flag_edit`) and then hands its ``changes`` to
:meth:`EditJournal.record` back on the event loop. The journal writes one audit line per changed
feature and remembers the new digest, so the reload that follows is not audited a second time as
a change "from the file" (:mod:`banyan.proxy.flag_reactions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from banyan.proxy.audit import AuditLog


class EditJournal:
    """This proxy's own edits: their audit lines, and the digests they produced."""

    def __init__(self, audit: AuditLog | None = None) -> None:
        self.audit = audit
        self._digests: set[str] = set()

    def record(self, changes: Iterable[dict[str, Any]], *, reason: str | None = None) -> None:
        """Audit ``changes`` (one per feature, as :class:`~banyan.proxy.flag_edit.EditResult`
        holds them); ``reason`` says why, when the edit itself does not (a guard's breach)."""
        for change in changes:
            self._digests.add(change["digest"])
            if self.audit is not None:
                self.audit.append(
                    source=change.get("source", "cli"),
                    feature=change["feature"],
                    before=change.get("before"),
                    after=change.get("after"),
                    digest=change["digest"],
                    reason=reason or change.get("reason"),
                )

    def made_here(self, digest: str) -> bool:
        """Whether the flags of ``digest`` came from an edit recorded here (asked once per
        reload: the answer is forgotten as it is given)."""
        if digest in self._digests:
            self._digests.discard(digest)
            return True
        return False
