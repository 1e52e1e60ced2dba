"""This process's file descriptors: how many it may open, how many are open.

Every socket a server holds is a descriptor, and past the soft ``RLIMIT_NOFILE`` ``accept()`` fails
with ``EMFILE`` — the event loop then stops accepting for a while and clients wait in the listen
backlog with no answer. :func:`raise_limit` lifts the soft limit to the hard one when a server
starts (the hard limit is the operator's to set: ``ulimit -Hn``, systemd ``LimitNOFILE``, a
container's ``nofile``). :func:`open_count` counts what is open cheaply enough to ask on every new
socket: ``stat("/proc/self/fd").st_size`` on Linux 6.2+ (microseconds), a directory listing on older
kernels (milliseconds with thousands open, so callers cache it).
"""

from __future__ import annotations

import os
import resource

_FD_DIR = "/proc/self/fd"


def soft_limit() -> int:
    """The soft limit on open descriptors (a large number when unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def raise_limit() -> tuple[int, int]:
    """Raise the soft limit to the hard limit; return (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # pragma: no cover - a platform capping below the hard limit
        return soft, soft
    return soft, hard


def count_is_cheap() -> bool:
    """Whether :func:`open_count` is a single ``stat`` here (Linux 6.2+)."""
    try:
        return os.stat(_FD_DIR).st_size > 0
    except OSError:  # pragma: no cover - no /proc
        return False


def open_count() -> int:
    """How many descriptors this process has open right now (0 when it cannot tell)."""
    try:
        size = os.stat(_FD_DIR).st_size
        if size > 0:
            return size
        return len(os.listdir(_FD_DIR)) - 1  # pragma: no cover - kernels before 6.2
    except OSError:  # pragma: no cover - no /proc
        return 0
