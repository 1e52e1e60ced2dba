"""The Banyan console as shipped: the committed build in ``dist/``, served by the proxy at
``/_proxy/ui/`` (:mod:`banyan.proxy.console`).

The sources live in ``console/`` (TypeScript and CSS, bundled by esbuild, pinned by
``console/package-lock.json``); ``npm run build`` there writes ``dist/index.html``,
``dist/assets/*`` (content-hashed names) and ``dist/build.json`` (the digest of the sources and
of every built file), read with :func:`banyan.webapp.load_assets` like the web app's build.
``tests/console/test_build.py`` fails when the sources changed without a rebuild.
"""

from __future__ import annotations

from pathlib import Path

DIST = Path(__file__).parent / "dist"
SOURCES = Path(__file__).resolve().parents[2] / "console"  # only in a checkout, not an install
