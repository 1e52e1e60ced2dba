"""The contract's HTTP routes, each mapped onto a function."""

from __future__ import annotations

from backends.common import rules
from backends.new.runtime.http import HttpRouter


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
