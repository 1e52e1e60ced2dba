"""The mirror queue's admin endpoints: its dead letters shown, retried and dropped.

- ``GET /_proxy/mirror`` (``?limit=``, default 100): ``{"pending", "dead", "delivered",
  "retried", "skipped_too_large", "dropped", "letters": [...]}``; each letter has ``id``,
  ``feature``, ``target``, ``method``, ``path_qs``, ``attempts``, ``reason``, ``stamp_ms`` and
  ``created_at``.
- ``POST /_proxy/mirror/{id}/retry``: the letter goes back to pending with fresh attempts
  (``{"retried": n}``); ``DELETE /_proxy/mirror/{id}``: it is deleted (``{"dropped": n}``).
  ``{id}`` is a letter's id, or ``all`` for every dead letter.

Reads follow the admin read rules, retry and drop are writes (the admin token); a letter that
is not dead (delivered, pending, unknown) is ``404 not_found``, a malformed id ``400``, a proxy
without a mirror queue ``404 mirror_disabled``. Every action is logged by the queue. The handlers
are given the queue alone, and registered from :data:`ROUTES` by :mod:`banyan.proxy.admin`.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from banyan.proxy.admin_access import Route, error, reply
from banyan.proxy.mirror import MirrorQueue

MAX_LIMIT = 1000


def letter_of(text: str) -> int | None:
    """The letter an ``{id}`` names: its number, None for ``all``; ValueError otherwise."""
    if text == "all":
        return None
    if not text.isdigit() or len(text) > 18:
        raise ValueError(f"{text!r} is not a dead letter's id (a number) or 'all'")
    return int(text)


def _queue(mirror: MirrorQueue | None) -> MirrorQueue | None:
    return mirror if mirror is not None and mirror.engine is not None else None


def _disabled(request: web.Request) -> web.Response:
    return error(request, 404, "mirror_disabled", "this proxy runs no mirror queue")


async def listing(request: web.Request, mirror: MirrorQueue | None) -> web.Response:
    queue = _queue(mirror)
    if queue is None:
        return _disabled(request)
    limit = request.query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
        return error(request, 400, "validation_error", f"limit: a number from 1 to {MAX_LIMIT}")
    stats = asdict(await queue.stats())
    return reply(request, {**stats, "letters": await queue.dead_letters(int(limit))})


async def _act(request: web.Request, mirror: MirrorQueue | None, action: str) -> web.Response:
    queue = _queue(mirror)
    if queue is None:
        return _disabled(request)
    try:
        letter = letter_of(request.match_info["id"])
    except ValueError as exc:
        return error(request, 400, "validation_error", str(exc))
    if action == "retry":
        count = await queue.retry_dead(letter)
    else:
        count = await queue.drop_dead(letter)
    if letter is not None and count == 0:
        return error(request, 404, "not_found", f"no dead letter {letter}")
    done = "retried" if action == "retry" else "dropped"
    return reply(request, {"id": request.match_info["id"], done: count})


async def retry(request: web.Request, mirror: MirrorQueue | None) -> web.Response:
    return await _act(request, mirror, "retry")


async def drop(request: web.Request, mirror: MirrorQueue | None) -> web.Response:
    return await _act(request, mirror, "drop")


ROUTES = (
    Route("GET", "/_proxy/mirror", lambda request, state: listing(request, state.mirror)),
    Route(
        "POST",
        "/_proxy/mirror/{id}/retry",
        lambda request, state: retry(request, state.mirror),
        write=True,
    ),
    Route(
        "DELETE",
        "/_proxy/mirror/{id}",
        lambda request, state: drop(request, state.mirror),
        write=True,
    ),
)
