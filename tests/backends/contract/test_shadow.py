"""The shadow targets' pieces: the derived flag file and the parity verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from banyan.backends.contract.shadow import (
    REPOSITORY_FLAGS,
    parity_problems,
    shadow_flags,
    wait_on_both,
)
from banyan.proxy.flags import parse_flags


def test_every_repository_feature_is_shadowed_with_its_parity_rules() -> None:
    shipped = yaml.safe_load(REPOSITORY_FLAGS.read_text())["features"]
    text = shadow_flags("http://127.0.0.1:1", "http://127.0.0.1:2", "new")
    flags = parse_flags(text, "shadow.yaml")
    assert [f.name for f in flags.features] == list(shipped)
    assert flags.default == "new"
    for feature in flags.features:
        assert (feature.mode, feature.primary, feature.writes) == ("shadow", "new", "mirror")
        assert feature.parity.sample == 100
        assert feature.guards.max_mismatch_rate is None  # a tripped guard would stop the run
        rules = shipped[feature.name].get("parity", {})
        assert list(feature.parity.ignore) == rules.get("ignore", [])
        assert list(feature.parity.unordered) == rules.get("unordered", [])
        assert feature.parity.noise_sample == rules.get("noise_sample", 10.0)
    with pytest.raises(ValueError, match="primary"):
        shadow_flags("http://a", "http://b", "both")


def test_a_custom_source_is_read(tmp_path: Path) -> None:
    source = tmp_path / "f.yaml"
    source.write_text("version: 1\nbackends: {legacy: http://x, new: http://y}\nfeatures:\n")
    assert "features: {}" in shadow_flags("http://a", "http://b", "legacy", source)


def _endpoint(name: str, mismatched: int = 0, errors: int = 0, **top: Any) -> dict[str, Any]:
    fields = []
    if top:
        difference = {"path": top["concrete"], "primary": 1, "candidate": 2}
        example = {"method": "GET", "url": "/api/x/1", "differences": [difference]}
        fields = [{"path": top["path"], "kind": "changed", "count": 1, "examples": [example]}]
    return {
        "endpoint": name,
        "compared": 3,
        "mismatched": mismatched,
        "errors": errors,
        "top_fields": fields,
    }


def test_the_verdict_names_mismatches_errors_and_silent_features() -> None:
    report = {
        "features": [
            {
                "feature": "folders",
                "compared": 6,
                "endpoints": [
                    _endpoint("GET /api/x/*", 1, path="$.items[*].a", concrete="$.items[2].a"),
                    _endpoint("GET /api/y", 0, 2),
                    _endpoint("GET /api/z"),
                ],
            }
        ]
    }
    status = {
        "features": {
            "folders": {"requests": {"legacy": 3, "new": 0}},
            "quizzes": {"requests": {"legacy": 2, "new": 0}},
            "live": {"requests": {"legacy": 4, "new": 0}},
            "jobs": {"requests": {"legacy": 0, "new": 0}},
        }
    }
    problems = parity_problems(report, status, exempt={"live": "no tap"})
    assert problems == [
        "folders GET /api/x/*: 1 mismatched, 0 candidate errors of 3 compared\n"
        "    changed at $.items[*].a x1 (e.g. GET /api/x/1: primary 1, candidate 2)",
        "folders GET /api/y: 0 mismatched, 2 candidate errors of 3 compared",
        "quizzes: the suite sent it 2 requests but none was compared",
    ]
    assert parity_problems({"features": []}, {"features": {}}) == []
    assert "live: the suite sent it 4 requests" in parity_problems(report, status)[-2]


async def test_waiting_on_both_backends_is_a_no_op_elsewhere() -> None:
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as client:
        await wait_on_both(client, "/api/documents/1", lambda body: True)  # never connects
