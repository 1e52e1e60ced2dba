"""Session-wide test settings: the JWT secret every backend a test starts shares.

Backends refuse to start without ``BANYAN_JWT_SECRET`` (docs/operations.md, "Security model"), so
the test process sets a random one before anything is imported or started; backends created
in-process read it, and processes started by tests inherit it. A secret already exported (to run
the tests against servers started by hand) is kept.
"""

from __future__ import annotations

import os
import secrets

os.environ.setdefault("BANYAN_JWT_SECRET", secrets.token_urlsafe(48))
