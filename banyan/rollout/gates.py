"""A rollout step's evidence and its verdict: the gates of ``analysis`` over the step's window.

:class:`StepWindow` is a :class:`~banyan.proxy.guards.FeatureGuard` attached to the proxy's guard
board for the length of one step, so it is fed exactly what the feature's guard is fed (answers on
the request path, shadow comparisons) from the moment the step's flags apply; it also counts a
shadowed request the candidate failed (no answer or a 5xx) as an error of new. :func:`judge`
turns it into gates, each ``{"name", "observed", "limit", "ok", "judged", "samples"}``: a gate is
judged once its own evidence reaches ``min_samples``, and only a judged gate can fail. The step's
samples are its comparisons in shadow and new's answers in canary; a ``mirror`` or ``new`` step
has no gates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from banyan.proxy.flags import GuardConfig
from banyan.proxy.flags.rollout import Analysis, RolloutStep
from banyan.proxy.guards import FeatureGuard

WINDOW = 100_000  # a step's window is the whole step (bounded all the same)
JUDGED_KINDS = frozenset({"shadow", "canary"})


class StepWindow(FeatureGuard):
    def __init__(self, feature: str, analysis: Analysis) -> None:
        config = GuardConfig(
            max_mismatch_rate=analysis.max_mismatch_rate,
            max_error_rate=analysis.max_error_rate,
            max_latency_ratio=analysis.max_latency_ratio,
            max_status_shift=analysis.max_status_shift,
            window=WINDOW,
        )
        super().__init__(feature, config, min_samples=analysis.min_samples)
        self.comparisons = 0

    def observe_comparison(self, outcome: str) -> None:
        self.comparisons += 1
        super().observe_comparison(outcome)

    def observe_pair(self, legacy_status: int, new_status: int) -> None:
        super().observe_pair(legacy_status, new_status)
        if legacy_status and 0 < legacy_status < 500:  # legacy served it: new's failure is new's
            self._new_failed.append(new_status == 0 or new_status >= 500)

    def counts(self) -> dict[str, int]:
        return {
            "comparisons": self.comparisons,
            "parity": len(self._mismatch),
            "new": len(self._new_failed),
            "status": self.status_shift()[1],
            "latency": min(len(self._latency["legacy"]), len(self._latency["new"])),
        }


@dataclass
class Verdict:
    gates: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    enough: bool = True  # min_samples reached (or the step has no gates)
    breached: dict[str, Any] | None = None

    @property
    def reason(self) -> str | None:
        gate = self.breached
        if gate is None:
            return None
        reason = (
            f"gate {gate['name']} failed: observed {gate['observed']:.4g} > limit "
            f"{gate['limit']:g} over {gate['samples']} samples"
        )
        return reason + medians_of(gate)


def medians_of(gate: dict[str, Any]) -> str:
    """`` (medians: new 9.3 ms, legacy 3 ms)`` for a latency gate that has both, else ``""``."""
    medians = gate.get("medians_ms") or {}
    if medians.get("new") is None or medians.get("legacy") is None:
        return ""
    return f" (medians: new {medians['new']:.3g} ms, legacy {medians['legacy']:.3g} ms)"


def judge(window: StepWindow | None, step: RolloutStep, analysis: Analysis) -> Verdict:
    if step.kind not in JUDGED_KINDS or window is None:
        return Verdict()
    counts = window.counts()
    rates = window.rates()
    samples = counts["comparisons"] if step.kind == "shadow" else counts["new"]
    verdict = Verdict(samples=samples, enough=samples >= analysis.min_samples)
    verdict.gates.append(
        {
            "name": "min_samples",
            "observed": samples,
            "limit": analysis.min_samples,
            "ok": verdict.enough,
            "judged": True,
            "samples": samples,
        }
    )
    candidates: list[tuple[str, float | None, float | int | None, int]] = [
        ("max_mismatch_rate", analysis.max_mismatch_rate, rates["mismatch_rate"], counts["parity"]),
        ("max_error_rate", analysis.max_error_rate, rates["error_rate"], counts["new"]),
        ("max_status_shift", analysis.max_status_shift, rates["status_shift"], counts["status"]),
        (
            "max_latency_ratio",
            analysis.max_latency_ratio,
            rates["latency_ratio"],
            counts["latency"],
        ),
    ]
    for name, limit, observed, evidence in candidates:
        if limit is None or (name == "max_mismatch_rate" and step.kind != "shadow"):
            continue  # off, or no comparisons in this kind of step
        judged = observed is not None and evidence >= analysis.min_samples
        ok = not judged or float(observed or 0.0) <= limit
        gate: dict[str, Any] = {
            "name": name,
            "observed": observed,
            "limit": limit,
            "ok": ok,
            "judged": judged,
            "samples": evidence,
        }
        if name == "max_latency_ratio":
            gate["medians_ms"] = window.latency_medians()
        verdict.gates.append(gate)
        if not ok and verdict.breached is None:
            verdict.breached = gate
    return verdict
