"""Request bodies of the core contract (docs/api.md), as validators both backends use."""

from __future__ import annotations

from banyan.backends.common import validate as v

MESSAGE_ROLES = ("user", "assistant", "system")
CONTEXT_MAX_BYTES = 65_536

REGISTER = v.obj(
    {
        "email": v.email(),
        "password": v.string(min_len=8, max_len=200, strip=False),
        "name": v.string(min_len=1, max_len=100),
    }
)
LOGIN = v.obj({"email": v.string(max_len=254), "password": v.string(max_len=200, strip=False)})
FOLDER = v.obj({"name": v.string(min_len=1, max_len=100)})
SESSION_CREATE = v.obj(
    {"title": v.string(min_len=1, max_len=200), "folder_id": v.nullable(v.string(max_len=36))},
    optional={"folder_id"},
)
SESSION_UPDATE = v.obj(
    {"title": v.string(min_len=1, max_len=200), "folder_id": v.nullable(v.string(max_len=36))},
    optional={"title", "folder_id"},
)
CONTEXT = v.obj({"context": v.json_object(max_bytes=CONTEXT_MAX_BYTES)})
MESSAGE = v.obj({"role": v.one_of(*MESSAGE_ROLES), "content": v.string(min_len=1, max_len=20_000)})
ASK = v.obj({"text": v.string(min_len=1, max_len=4000)})
