"""Where the parity store is: one answer for the proxy, ``banyan up`` and ``banyan parity``.

``BANYAN_PARITY_DB`` when set; else ``.banyan/parity.db`` beside the flag file, which is where
``banyan up`` keeps its stores (its ``--data-dir`` default) and where ``banyan proxy`` run alone
writes too. A ``parity.db`` beside the flag file, where a proxy used to write, is still read when it
is the only store there. ``--db`` takes a URL or a file path (:func:`store_url`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from banyan.env import option_default

DATA_DIR = ".banyan"
FILE = "parity.db"


def _sqlite(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


def default_url(flags: str | Path) -> str:
    """The store the running stack writes, for the flag file ``flags``."""
    configured = option_default("BANYAN_PARITY_DB", "")
    return store_url(configured) if configured else beside(flags)


def beside(flags: str | Path) -> str:
    """The store in the data folder beside the flag file (or the former one, when only it is
    there), whatever ``BANYAN_PARITY_DB`` says."""
    here = Path(flags).resolve().parent
    current, former = here / DATA_DIR / FILE, here / FILE
    if not current.exists() and former.exists():
        return _sqlite(former)
    return _sqlite(current)


def store_url(text: str) -> str:
    """A store URL from ``--db``: an async SQLAlchemy URL as is, ``sqlite://`` and
    ``postgresql://`` given their async drivers, anything else a SQLite file path."""
    if "://" not in text:
        return _sqlite(Path(text).expanduser())
    scheme, rest = text.split("://", 1)
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    return text


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)
