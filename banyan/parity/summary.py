"""The parity report's data (schema ``banyan.parity/v1``), built from the store's rows.

:func:`report_rows` reads the counters, fields, latency buckets, examples, noise, skips and
rollbacks (since an hour, for one feature or all); :func:`build_report` and
:func:`add_skips_and_rollbacks` turn them into the report that :mod:`banyan.parity.report`
renders.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select

from banyan.parity.tables import (
    HOUR,
    counters,
    examples,
    fields,
    latency,
    noise,
    percentile_from_buckets,
    rollbacks,
    skips,
)


def add_skips_and_rollbacks(
    data: dict[str, Any], skip_rows: Iterable[Any], rollback_rows: list[dict[str, Any]]
) -> None:
    """Each feature's skips by reason and the guard rollbacks (newest first) into report
    ``data``; a feature with nothing but rollbacks gets an entry of its own."""
    by_name = {f["feature"]: f for f in data["features"]}

    def entry(name: str) -> dict[str, Any]:
        if name not in by_name:
            by_name[name] = {
                "feature": name,
                "compared": 0,
                "matched": 0,
                "mismatched": 0,
                "errors": 0,
                "skipped": 0,
                "latency": {},
                "match_rate": None,
                "mismatch_rate": None,
                "error_rate": None,
                "endpoints": [],
                "noise": [],
            }
            data["features"].append(by_name[name])
        return by_name[name]

    for feature in data["features"]:
        feature.setdefault("skip_reasons", {})
        feature.setdefault("rollbacks", [])
    for name, reason, count in skip_rows:
        entry(name).setdefault("skip_reasons", {})[reason] = int(count or 0)
    for row in rollback_rows:
        entry(row["feature"]).setdefault("rollbacks", []).append(
            {k: row[k] for k in ("at", "rule", "observed", "limit", "samples", "message")}
        )
    data["features"].sort(key=lambda f: f["feature"])


def example_of(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "feature": row["feature"],
        "endpoint": row["endpoint"],
        "path": row["path"],
        "kind": row["kind"],
        "at": row["at"],
        "method": row["method"],
        "url": row["url"],
        "request": json.loads(row["request"]),
        "primary_backend": row["primary_backend"],
        "candidate_backend": row["candidate_backend"],
        "primary": json.loads(row["primary_answer"]),
        "candidate": json.loads(row["candidate_answer"]),
        "differences": json.loads(row["differences"]),
    }


def build_report(
    count_rows: Iterable[Any],
    field_rows: Iterable[Any],
    latency_rows: Iterable[Any],
    example_rows: list[dict[str, Any]],
    noise_rows: Iterable[Any],
    *,
    noise_threshold: int = 2,
) -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = {}
    _add_counts(features, count_rows)
    _add_fields(features, field_rows, example_rows)
    _add_latency(features, latency_rows)
    noise_by_feature: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, endpoint, path, count in noise_rows:
        if int(count) >= noise_threshold:
            noise_by_feature[name].append({"endpoint": endpoint, "path": path, "count": int(count)})
    out = [_finished(features[name], noise_by_feature.get(name, [])) for name in sorted(features)]
    return {"schema": "banyan.parity/v1", "generated_at": time.time(), "features": out}


def _feature_entry(features: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return features.setdefault(
        name,
        {
            "feature": name,
            "compared": 0,
            "matched": 0,
            "mismatched": 0,
            "errors": 0,
            "skipped": 0,
            "endpoints": {},
            "latency": {},
        },
    )


def _add_counts(features: dict[str, dict[str, Any]], count_rows: Iterable[Any]) -> None:
    for name, endpoint, compared, matched, mismatched, errors, skipped in count_rows:
        entry = _feature_entry(features, name)
        endpoint_entry = entry["endpoints"].setdefault(
            endpoint, {"endpoint": endpoint, "top_fields": []}
        )
        for key, value in (
            ("compared", compared),
            ("matched", matched),
            ("mismatched", mismatched),
            ("errors", errors),
            ("skipped", skipped),
        ):
            endpoint_entry[key] = int(value or 0)
            entry[key] += int(value or 0)


def _add_fields(
    features: dict[str, dict[str, Any]],
    field_rows: Iterable[Any],
    example_rows: list[dict[str, Any]],
) -> None:
    by_path: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in example_rows:
        by_path[(row["feature"], row["endpoint"], row["path"])].append(example_of(row))
    for name, endpoint, path, kind, count in field_rows:
        endpoint_entry = _feature_entry(features, name)["endpoints"].setdefault(
            endpoint, {"endpoint": endpoint, "top_fields": [], "compared": 0, "mismatched": 0}
        )
        endpoint_entry["top_fields"].append(
            {
                "path": path,
                "kind": kind,
                "count": int(count),
                "examples": [
                    e for e in by_path.get((name, endpoint, path), []) if e["kind"] == kind
                ],
            }
        )


def _add_latency(features: dict[str, dict[str, Any]], latency_rows: Iterable[Any]) -> None:
    buckets: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for name, backend, bucket, count in latency_rows:
        buckets[(name, backend)][int(bucket)] = int(count)
    for (name, backend), values in buckets.items():
        _feature_entry(features, name)["latency"][backend] = {
            "count": sum(values.values()),
            "p50": percentile_from_buckets(values, 0.50),
            "p95": percentile_from_buckets(values, 0.95),
            "p99": percentile_from_buckets(values, 0.99),
        }


def _finished(entry: dict[str, Any], noise_found: list[dict[str, Any]]) -> dict[str, Any]:
    """A feature's entry with its rates, its endpoints sorted and its learned noise."""
    compared = entry["compared"]
    judged = compared - entry["errors"]
    endpoints = []
    for endpoint_entry in sorted(entry["endpoints"].values(), key=lambda e: e["endpoint"]):
        answered = endpoint_entry.get("compared", 0) - endpoint_entry.get("errors", 0)
        endpoint_entry["mismatch_rate"] = (
            round(endpoint_entry.get("mismatched", 0) / answered, 6) if answered > 0 else 0.0
        )
        endpoint_entry["error_fields"] = [
            f for f in endpoint_entry["top_fields"] if f["kind"] == "error"
        ]
        endpoint_entry["top_fields"] = [
            f for f in endpoint_entry["top_fields"] if f["kind"] != "error"
        ]
        endpoint_entry["top_fields"].sort(key=lambda f: (-f["count"], f["path"]))
        endpoints.append(endpoint_entry)
    return {
        **{k: v for k, v in entry.items() if k != "endpoints"},
        # rates over the answered comparisons: a candidate error is no verdict on parity
        "match_rate": round(entry["matched"] / judged, 6) if judged else None,
        "mismatch_rate": round(entry["mismatched"] / judged, 6) if judged else None,
        "error_rate": round(entry["errors"] / compared, 6) if compared else None,
        "endpoints": endpoints,
        "noise": sorted(noise_found, key=lambda n: (n["endpoint"], n["path"])),
    }


@dataclass(frozen=True, slots=True)
class ReportRows:
    """What a report is built from: the store's rows since an hour, for a feature or all."""

    counts: list[Any]
    fields: list[Any]
    latency: list[Any]
    examples: list[dict[str, Any]]
    noise: list[Any]
    skips: list[Any]
    rollbacks: list[dict[str, Any]]


async def report_rows(conn: Any, feature: str | None, since: float | None) -> ReportRows:
    """Read the rows of a report (counters by the hour from ``since``'s hour; examples and
    rollbacks from ``since`` itself, newest first; all the learned noise)."""
    since_hour = int(since) // HOUR * HOUR if since else 0
    return ReportRows(
        counts=await _counts(conn, feature, since_hour),
        fields=await _fields(conn, feature, since_hour),
        latency=await _latency(conn, feature, since_hour),
        examples=await _newest(conn, examples, feature, since or 0),
        noise=await _noise(conn, feature),
        skips=await _skips(conn, feature, since_hour),
        rollbacks=await _newest(conn, rollbacks, feature, since or 0),
    )


def _where(table: Any, column: str, since: float, feature: str | None) -> Any:
    return and_(*([table.c[column] >= since] + ([table.c.feature == feature] if feature else [])))


async def _counts(conn: Any, feature: str | None, since_hour: int) -> list[Any]:
    query = (
        select(
            counters.c.feature,
            counters.c.endpoint,
            func.sum(counters.c.compared),
            func.sum(counters.c.matched),
            func.sum(counters.c.mismatched),
            func.sum(counters.c.errors),
            func.sum(counters.c.skipped),
        )
        .where(_where(counters, "hour", since_hour, feature))
        .group_by(counters.c.feature, counters.c.endpoint)
    )
    return list((await conn.execute(query)).all())


async def _fields(conn: Any, feature: str | None, since_hour: int) -> list[Any]:
    query = (
        select(
            fields.c.feature,
            fields.c.endpoint,
            fields.c.path,
            fields.c.kind,
            func.sum(fields.c.count),
        )
        .where(_where(fields, "hour", since_hour, feature))
        .group_by(fields.c.feature, fields.c.endpoint, fields.c.path, fields.c.kind)
    )
    return list((await conn.execute(query)).all())


async def _latency(conn: Any, feature: str | None, since_hour: int) -> list[Any]:
    query = (
        select(latency.c.feature, latency.c.backend, latency.c.bucket, func.sum(latency.c.count))
        .where(_where(latency, "hour", since_hour, feature))
        .group_by(latency.c.feature, latency.c.backend, latency.c.bucket)
    )
    return list((await conn.execute(query)).all())


async def _skips(conn: Any, feature: str | None, since_hour: int) -> list[Any]:
    query = (
        select(skips.c.feature, skips.c.reason, func.sum(skips.c.count))
        .where(_where(skips, "hour", since_hour, feature))
        .group_by(skips.c.feature, skips.c.reason)
    )
    return list((await conn.execute(query)).all())


async def _newest(conn: Any, table: Any, feature: str | None, since: float) -> list[dict[str, Any]]:
    query = select(table).where(_where(table, "at", since, feature)).order_by(table.c.id.desc())
    return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def _noise(conn: Any, feature: str | None) -> list[Any]:
    query = select(noise.c.feature, noise.c.endpoint, noise.c.path, noise.c.count).where(
        *([noise.c.feature == feature] if feature else [])
    )
    return list((await conn.execute(query)).all())
