"""Parity reports for people: text for a terminal, a self-contained HTML page for QA, JSON.

The HTML page shows, per feature: compared count, match and mismatch rates, errors, latency
percentiles per backend; per endpoint: mismatch rate and the top differing fields, each with its
example diffs side by side (primary and candidate answers, the differing values highlighted);
learned noise in its own section. Every value is escaped; the page loads nothing from outside.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def render_text(data: dict[str, Any]) -> str:
    lines = [f"Banyan parity report ({_when(data['generated_at'])})", ""]
    if not data["features"]:
        lines.append("No comparisons recorded yet.")
    for feature in data["features"]:
        lines.append(
            f"{feature['feature']}: {feature['compared']} compared, match {_pct(feature['match_rate'])}, "
            f"mismatch {_pct(feature['mismatch_rate'])}, errors {feature['errors']}, skipped {feature['skipped']}"
        )
        for backend, figures in sorted(feature["latency"].items()):
            lines.append(
                f"  latency {backend}: p50 {_ms(figures['p50'])}  p95 {_ms(figures['p95'])}  "
                f"p99 {_ms(figures['p99'])}  ({figures['count']} answers)"
            )
        reasons = feature.get("skip_reasons") or {}
        if reasons:
            lines.append("  skipped: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
        for rollback in feature.get("rollbacks") or []:
            lines.append(f"  ROLLED BACK at {_when(rollback['at'])}: {rollback['message']}")
        for endpoint in feature["endpoints"]:
            for failed in endpoint.get("error_fields", []):
                errors = sorted(
                    {str(e["candidate"]["error"]) for e in failed["examples"] if e["candidate"]}
                )
                lines.append(
                    f"  {endpoint['endpoint']}: {failed['count']} errors on {failed['path']}"
                    f" (not mismatches){': ' + '; '.join(errors) if errors else ''}"
                )
            if not endpoint.get("mismatched") and not endpoint["top_fields"]:
                continue
            lines.append(
                f"  {endpoint['endpoint']}: {endpoint.get('mismatched', 0)}/{endpoint.get('compared', 0)} "
                f"differ ({_pct(endpoint['mismatch_rate'])})"
            )
            for top in endpoint["top_fields"][:10]:
                lines.append(f"    {top['kind']:<8} {top['path']}  x{top['count']}")
                for example in top["examples"][:1]:  # the newest
                    for d in own_differences(example, top["path"], top["kind"])[:1]:
                        lines.append(
                            f"      e.g. #{example['id']} {example['method']} {example['url']}: "
                            f"{example['primary_backend']}={json.dumps(d['primary'], default=str)} "
                            f"{example['candidate_backend']}={json.dumps(d['candidate'], default=str)}"
                        )
        if feature["noise"]:
            lines.append("  learned noise (reported apart):")
            for item in feature["noise"]:
                lines.append(f"    {item['endpoint']} {item['path']} (seen {item['count']}x)")
        lines.append("")
    return "\n".join(lines)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, default=str))


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1f24;max-width:1200px}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ccd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #dde;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f4f8}.ok{color:#176f2c}.bad{color:#b3261e;font-weight:600}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:.5rem;margin:.3rem 0 1rem}
pre{background:#f7f7fa;padding:.5rem;overflow:auto;max-height:18rem;margin:0;white-space:pre-wrap}
mark{background:#ffe08a}.muted{color:#667}.kind{font-family:monospace}
"""


def render_html(data: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Banyan parity report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Banyan parity report</h1>",
        f"<p class='muted'>Generated {_e(_when(data['generated_at']))} · schema {_e(data['schema'])}</p>",
    ]
    if not data["features"]:
        parts.append(
            "<p>No comparisons recorded yet: put a feature in <code>shadow</code> mode.</p>"
        )
    if data["features"]:
        parts.extend(_overview_html(data["features"]))
    for f in data["features"]:
        parts.extend(_feature_html(f))
    parts.append("</body></html>")
    return "".join(parts)


def _overview_html(features: list[dict[str, Any]]) -> list[str]:
    """One row per feature: counts and rates, each linking to the feature's section."""
    parts = [
        "<table><tr><th>feature</th><th>compared</th><th>match rate</th><th>mismatch rate</th><th>errors</th><th>skipped</th></tr>"
    ]
    for f in features:
        cls = "ok" if not f["mismatched"] else "bad"
        parts.append(
            f"<tr><td><a href='#f-{_e(f['feature'])}'>{_e(f['feature'])}</a></td><td>{f['compared']}</td>"
            f"<td class='{cls}'>{_pct(f['match_rate'])}</td><td class='{cls}'>{_pct(f['mismatch_rate'])}</td>"
            f"<td>{f['errors']}</td><td>{f['skipped']}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _feature_html(f: dict[str, Any]) -> list[str]:
    """A feature's section: rollbacks, skips, latency, endpoints, differing fields, noise."""
    parts = [f"<h2 id='f-{_e(f['feature'])}'>{_e(f['feature'])}</h2>"]
    for rollback in f.get("rollbacks") or []:
        parts.append(
            f"<p class='bad'>Rolled back at {_e(_when(rollback['at']))}: "
            f"{_e(rollback['message'])}</p>"
        )
    reasons = f.get("skip_reasons") or {}
    if reasons:
        parts.append(
            "<p class='muted'>Skipped: "
            + ", ".join(f"{_e(r)} {n}" for r, n in sorted(reasons.items()))
            + "</p>"
        )
    if f["latency"]:
        parts.append(
            "<table><tr><th>backend</th><th>answers</th><th>p50</th><th>p95</th><th>p99</th></tr>"
        )
        for backend, figures in sorted(f["latency"].items()):
            parts.append(
                f"<tr><td>{_e(backend)}</td><td>{figures['count']}</td><td>{_ms(figures['p50'])}</td>"
                f"<td>{_ms(figures['p95'])}</td><td>{_ms(figures['p99'])}</td></tr>"
            )
        parts.append("</table>")
    parts.extend(_endpoints_html(f["endpoints"]))
    parts.extend(_noise_html(f["noise"]))
    return parts


def _endpoints_html(endpoints: list[dict[str, Any]]) -> list[str]:
    """The endpoints' table, then each endpoint's top differing fields with examples."""
    parts = [
        "<table><tr><th>endpoint</th><th>compared</th><th>mismatched</th><th>mismatch rate</th>"
        "<th>errors</th></tr>"
    ]
    for ep in endpoints:
        cls = "ok" if not ep.get("mismatched") else "bad"
        parts.append(
            f"<tr><td><code>{_e(ep['endpoint'])}</code></td><td>{ep.get('compared', 0)}</td>"
            f"<td>{ep.get('mismatched', 0)}</td><td class='{cls}'>{_pct(ep['mismatch_rate'])}</td>"
            f"<td>{ep.get('errors', 0)}</td></tr>"
        )
    parts.append("</table>")
    for ep in endpoints:
        if not ep["top_fields"]:
            continue
        parts.append(f"<h3>Differing fields · <code>{_e(ep['endpoint'])}</code></h3>")
        for top in ep["top_fields"][:20]:
            parts.append(
                f"<p><span class='kind'>{_e(top['kind'])}</span> <code>{_e(top['path'])}</code> "
                f"· {top['count']} times</p>"
            )
            for example in top["examples"][:3]:
                parts.append(_example_html(example, top["path"], top["kind"]))
    return parts


def _noise_html(noise: list[dict[str, Any]]) -> list[str]:
    parts = ["<h3>Learned noise</h3>"]
    if not noise:
        return [*parts, "<p class='muted'>None learned yet.</p>"]
    parts.append(
        "<p class='muted'>Fields that differ between two answers of the same backend; not counted as mismatches.</p><table><tr><th>endpoint</th><th>path</th><th>seen</th></tr>"
    )
    for item in noise:
        parts.append(
            f"<tr><td><code>{_e(item['endpoint'])}</code></td><td><code>{_e(item['path'])}</code></td><td>{item['count']}</td></tr>"
        )
    parts.append("</table>")
    return parts


def own_differences(example: dict[str, Any], path: str, kind: str) -> list[dict[str, Any]]:
    """The differences of ``example`` at the differing path ``path`` (a pattern, indices as
    ``[*]``) of kind ``kind``: each path's own values, not the first of the same kind."""

    def pattern(d: dict[str, Any]) -> str:
        return str(d.get("pattern") or re.sub(r"\[\d+\]", "[*]", str(d["path"])))

    return [d for d in example["differences"] if d["kind"] == kind and pattern(d) == path]


def _example_html(example: dict[str, Any], path: str, kind: str) -> str:
    chosen = own_differences(example, path, kind) or example["differences"][:1]
    rows = "".join(
        f"<tr><td><code>{_e(d['path'])}</code></td><td><mark>{_e(d['primary'])}</mark></td>"
        f"<td><mark>{_e(d['candidate'])}</mark></td></tr>"
        for d in chosen[:5]
    )
    primary, candidate = example["primary"], example["candidate"]
    return (
        f"<p class='muted'>Example #{example['id']}: {_e(example['method'])} <code>{_e(example['url'])}</code> "
        f"at {_e(_when(example['at']))} — replay with <code>banyan parity replay {example['id']}</code></p>"
        f"<table><tr><th>path</th><th>{_e(example['primary_backend'])} (primary)</th>"
        f"<th>{_e(example['candidate_backend'])} (candidate)</th></tr>{rows}</table>"
        "<div class='pair'>"
        f"<pre>{_e(example['primary_backend'])} · {primary['status']}\n{_e(primary['body'])}</pre>"
        f"<pre>{_e(example['candidate_backend'])} · {candidate['status']}\n{_e(candidate['body'])}</pre>"
        "</div>"
    )
