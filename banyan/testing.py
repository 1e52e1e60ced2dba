"""Moved: ``free_port`` is :mod:`banyan.ports`, ``serve`` is :mod:`banyan.serving`, ``ManualClock``
is ``tests/clock.py``. Kept only until the last importers are changed; then removed."""

from __future__ import annotations

from banyan.ports import free_port as free_port
from banyan.serving import serve as serve
