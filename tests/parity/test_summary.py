"""The report's data built from the store's rows (banyan/parity/summary.py)."""

from __future__ import annotations

from banyan.parity.summary import add_skips_and_rollbacks, build_report


def test_rates_fields_latency_and_noise_come_from_the_rows() -> None:
    data = build_report(
        [("notes", "GET /api/notes", 10, 6, 2, 2, 1)],
        [
            ("notes", "GET /api/notes", "$.title", "changed", 2),
            ("notes", "GET /api/notes", "status", "error", 2),
        ],
        [("notes", "legacy", 10, 3), ("notes", "new", 20, 1)],
        [],
        [("notes", "GET /api/notes", "$.at", 3), ("notes", "GET /api/notes", "$.once", 1)],
    )
    assert data["schema"] == "banyan.parity/v1"
    (notes,) = data["features"]
    assert (notes["compared"], notes["match_rate"], notes["error_rate"]) == (10, 0.75, 0.2)
    (endpoint,) = notes["endpoints"]
    assert [f["path"] for f in endpoint["top_fields"]] == ["$.title"]
    assert [f["path"] for f in endpoint["error_fields"]] == ["status"]
    assert notes["latency"]["legacy"]["count"] == 3 and notes["latency"]["new"]["count"] == 1
    assert notes["noise"] == [{"endpoint": "GET /api/notes", "path": "$.at", "count": 3}]


def test_a_feature_with_only_a_rollback_gets_an_entry() -> None:
    data = build_report([], [], [], [], [])
    rollback = {
        "feature": "quizzes",
        "at": 5.0,
        "rule": "max_error_rate",
        "observed": 0.5,
        "limit": 0.1,
        "samples": 20,
        "message": "rolled back",
    }
    add_skips_and_rollbacks(data, [("quizzes", "body_too_large", 4)], [rollback])
    (quizzes,) = data["features"]
    assert quizzes["compared"] == 0 and quizzes["skip_reasons"] == {"body_too_large": 4}
    assert quizzes["rollbacks"][0]["rule"] == "max_error_rate"


def test_a_features_rates_are_over_all_its_endpoints() -> None:
    """The feature's rates divide by the feature's answered comparisons, not by those of the
    endpoint its loop saw last."""
    data = build_report(
        [
            ("notes", "GET /api/a", 10, 10, 0, 0, 0),
            ("notes", "GET /api/b", 3, 1, 1, 1, 0),
        ],
        [],
        [],
        [],
        [],
    )
    (notes,) = data["features"]
    assert (notes["compared"], notes["errors"]) == (13, 1)
    assert notes["match_rate"] == round(11 / 12, 6)
    assert notes["mismatch_rate"] == round(1 / 12, 6)
    assert [e["mismatch_rate"] for e in notes["endpoints"]] == [0.0, 0.5]
