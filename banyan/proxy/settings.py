"""Every environment-driven knob of the proxy process, read once at start.

:meth:`Settings.from_env` reads the variables below from the mapping it is given and checks
them all before anything starts: a bad value is one :class:`~banyan.errors.SettingsError` that
names the variable. ``banyan proxy`` builds it once (:mod:`banyan.proxy.server_cli`, where
command-line options then override it) and hands it to :func:`banyan.proxy.app.create_app`,
which passes each part to what uses it; nothing in the proxy reads ``os.environ`` afterwards.
Changing a variable therefore takes a restart.

==============================  ==========================================  ===================
variable                        what                                        default
==============================  ==========================================  ===================
``BANYAN_FLAGS``                the flag file                               ``flags.yaml``
``BANYAN_FLAGS_MAX_BYTES``      largest flag file read                      4 MiB
``BANYAN_MAX_HEADER_BYTES``     all header lines of one head                61440
``BANYAN_MAX_FIELD_BYTES``      one header line                             61440
``BANYAN_MAX_HEADERS``          header lines in one head                    128
``BANYAN_MAX_TARGET_BYTES``     a request target                            61440
``BANYAN_MAX_WEBSOCKETS``       open WebSockets before 503                  10000
``BANYAN_MAX_REQUESTS``         HTTP requests in flight before 503          4096
``BANYAN_CLIENT_HEADER_TIMEOUT``  seconds for a request head                60
``BANYAN_CLIENT_BODY_TIMEOUT``  seconds between two reads of a body         60
``BANYAN_KEEPALIVE_TIMEOUT``    seconds an idle client connection lives     75
``BANYAN_ADMIN_TOKEN``          bearer token of ``/_proxy/*``               none: loopback reads
``BANYAN_JWT_SECRET``           signs write stamps                          none: no stamps
``BANYAN_PARITY_DB``            the parity store's URL                      beside the flags
``BANYAN_MIRROR_DB``            the mirror queue's URL                      beside the flags
``BANYAN_AUDIT_LOG``            the audit log's path                        beside the flags
``BANYAN_ROLLOUTS``             the rollout records' file                   ``.banyan/``
``BANYAN_CONTROL_DB``           the control store (``--control-db``)        none
``BANYAN_CONTROL_SCHEMA``       its schema                                  ``banyan_control``
``BANYAN_LOG_LEVEL``            ``debug``, ``info``, ``warning``, ``error``  ``info``
==============================  ==========================================  ===================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from banyan.client_timeouts import ClientTimeouts
from banyan.control.db import CONTROL_DB_ENV, CONTROL_SCHEMA_ENV, DEFAULT_SCHEMA
from banyan.env import DEFAULT_FLAGS, FLAGS_ENV, choice, text, whole
from banyan.proxy.admission import AdmissionLimits
from banyan.proxy.flags.source import DEFAULT_MAX_BYTES, MAX_BYTES_ENV
from banyan.proxy.limits import Limits

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, slots=True)
class Settings:
    """The proxy's knobs; the defaults are those of an empty environment."""

    flags: str = DEFAULT_FLAGS
    flags_max_bytes: int = DEFAULT_MAX_BYTES
    limits: Limits = field(default_factory=Limits)
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    client_timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    admin_token: str | None = None
    stamp_secret: str | None = None
    parity_db: str | None = None
    mirror_db: str | None = None
    audit_log: Path | None = None
    rollouts: Path | None = None
    control_db: str | None = None
    control_schema: str = DEFAULT_SCHEMA
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Every variable read and checked (raises :class:`~banyan.errors.SettingsError`)."""
        audit, rollouts = text(environ, "BANYAN_AUDIT_LOG"), text(environ, "BANYAN_ROLLOUTS")
        return cls(
            flags=text(environ, FLAGS_ENV) or DEFAULT_FLAGS,
            flags_max_bytes=whole(environ, MAX_BYTES_ENV, DEFAULT_MAX_BYTES, unit="bytes"),
            limits=Limits.from_env(environ),
            admission=AdmissionLimits.from_env(environ),
            client_timeouts=ClientTimeouts.from_env(environ),
            admin_token=text(environ, "BANYAN_ADMIN_TOKEN"),
            stamp_secret=text(environ, "BANYAN_JWT_SECRET"),
            parity_db=text(environ, "BANYAN_PARITY_DB"),
            mirror_db=text(environ, "BANYAN_MIRROR_DB"),
            audit_log=Path(audit) if audit else None,
            rollouts=Path(rollouts) if rollouts else None,
            control_db=text(environ, CONTROL_DB_ENV),
            control_schema=text(environ, CONTROL_SCHEMA_ENV) or DEFAULT_SCHEMA,
            log_level=choice(environ, "BANYAN_LOG_LEVEL", "info", LOG_LEVELS),
        )


SETTINGS = web.AppKey("banyan_settings", Settings)  # the app's settings, for its handlers
