"""A request or socket refused at an admission limit: counted, and logged once per burst."""

from __future__ import annotations

import time
from dataclasses import asdict

from banyan.logs import get_logger
from banyan.proxy.admission import Admission
from banyan.proxy.metrics import ProxyMetrics

log = get_logger("proxy")

QUIET_SECONDS = 10.0  # one log line per limit at most this often


class Refusals:
    def __init__(self, metrics: ProxyMetrics, admission: Admission) -> None:
        self.metrics = metrics
        self.admission = admission
        self._logged: dict[str, float] = {}

    def __call__(self, limit: str) -> None:
        self.metrics.refused.inc(limit)
        now = time.monotonic()
        if now - self._logged.get(limit, float("-inf")) >= QUIET_SECONDS:
            self._logged[limit] = now
            log.warning(
                "limit_reached",
                limit=limit,
                websockets=self.admission.websockets,
                requests=self.admission.requests,
                limits=asdict(self.admission.limits),
            )
