"""The contract's HTTP routes, each mapped onto a function."""

from __future__ import annotations

from typing import Any

from banyan.backends.common import quizzes, rules
from banyan.backends.common.agents import catalog, endpoints
from banyan.backends.common.whiteboard.service import SNAPSHOT_BODY
from banyan.backends.new.runtime.http import HttpRouter


def install(router: HttpRouter) -> None:
    r = router.route
    r("POST", "/api/auth/register", "auth.register", auth=False, body=rules.REGISTER)
    r("POST", "/api/auth/login", "auth.login", auth=False, body=rules.LOGIN)
    r("POST", "/api/auth/logout", "auth.logout")
    r("GET", "/api/auth/me", "auth.me")
    r("GET", "/api/folders", "folders.list")
    r("POST", "/api/folders", "folders.create", body=rules.FOLDER)
    r("PATCH", "/api/folders/{id}", "folders.rename", body=rules.FOLDER)
    r("DELETE", "/api/folders/{id}", "folders.delete")
    r("GET", "/api/sessions", "sessions.list", query=True)
    r("POST", "/api/sessions", "sessions.create", body=rules.SESSION_CREATE)
    r("GET", "/api/sessions/{id}", "sessions.get")
    r("PATCH", "/api/sessions/{id}", "sessions.update", body=rules.SESSION_UPDATE)
    r("DELETE", "/api/sessions/{id}", "sessions.delete")
    r("GET", "/api/sessions/{id}/context", "contexts.get")
    r("PUT", "/api/sessions/{id}/context", "contexts.put", body=rules.CONTEXT)
    r("GET", "/api/sessions/{id}/messages", "messages.list", query=True)
    r("POST", "/api/sessions/{id}/messages", "messages.append", body=rules.MESSAGE)
    r("GET", "/api/whiteboard/{room}/snapshots", "whiteboard.snapshots.list")
    r("POST", "/api/whiteboard/{room}/snapshots", "whiteboard.snapshots.create", body=SNAPSHOT_BODY)
    r("POST", "/api/whiteboard/{room}/snapshots/{id}/restore", "whiteboard.snapshots.restore")
    r("GET", "/api/agents", "agents.list")
    r("POST", "/api/agents/analyze", "agents.analyze", body=catalog.ANALYZER.validate_input)
    r("POST", "/api/agents/plan", "agents.plan", body=catalog.PLANNER.validate_input)
    r(
        "POST",
        "/api/agents/session-analysis",
        "agents.session_analysis",
        body=endpoints.SESSION_ANALYSIS,
    )
    r("POST", "/api/agents/run", "agents.run", body=catalog.RUN_INPUT)
    r("GET", "/api/documents", "documents.list", query=True)
    r("GET", "/api/documents/{id}", "documents.get")
    r("DELETE", "/api/documents/{id}", "documents.delete")
    r("GET", "/api/jobs/{id}", "jobs.get")
    r("POST", "/api/quizzes", "quizzes.create", body=quizzes.check_create)
    r("GET", "/api/quizzes/{id}", "quizzes.read")
    r("POST", "/api/quizzes/{id}/attempts", "quizzes.attempt", body=_attempt_body)
    r("POST", "/api/analytics/events", "analytics.ingest", body=_raw_body)
    r("GET", "/api/analytics/summary", "analytics.summary", query=True)


def _attempt_body(raw: Any) -> dict[str, Any]:
    return {"answers": quizzes.check_attempt(raw)}


def _raw_body(raw: Any) -> dict[str, Any]:
    """The body as it came (an analytics batch is validated against the time it arrives)."""
    return {"body": raw}
