"""Tests for banyan/proxy/flags/rollout.py: the ``rollout:`` block of a feature, its typed model,
and a ``file:line`` error for every mistake."""

from __future__ import annotations

import pytest

from banyan.proxy.flags import FlagError, parse_flags
from banyan.proxy.flags.rollout import (
    Analysis,
    Rollout,
    RolloutStep,
    format_duration,
    parse_duration,
)

HEAD = (
    "version: 1\n"
    "backends: {legacy: http://a, new: http://b}\n"
    "features:\n"
    "  sessions:\n"
    "    routes: [/api/sessions/**]\n"
)  # the rollout key is on line 6

EXAMPLE = """\
    rollout:
      steps:                       # list of one-key mappings, in order
        - mirror: {}
        - shadow: {for: 10m}       # durations 30s, 10m, 2h
        - canary: {percent: 10, for: 10m}
        - canary: {percent: 50, for: 30m}
        - new: {}
      analysis: {max_mismatch_rate: 0.01, max_error_rate: 0.01, max_status_shift: 0.01,
                 max_latency_ratio: 1.5, min_samples: 200}
"""


def rollout_of(block: str) -> Rollout | None:
    feature = parse_flags(HEAD + block, "flags.yaml").feature("sessions")
    assert feature is not None
    return feature.rollout


def test_the_issue_example_parses_into_steps_and_analysis() -> None:
    rollout = rollout_of(EXAMPLE)
    assert rollout == Rollout(
        steps=(
            RolloutStep("mirror", line=8),
            RolloutStep("shadow", duration=600, line=9),
            RolloutStep("canary", percent=10, duration=600, line=10),
            RolloutStep("canary", percent=50, duration=1800, line=11),
            RolloutStep("new", line=12),
        ),
        analysis=Analysis(0.01, 0.01, 0.01, 1.5, 200),
    )
    assert [s.label for s in rollout.steps] == [
        "mirror",
        "shadow",
        "canary 10%",
        "canary 50%",
        "new",
    ]


def test_absent_block_defaults_and_gates_switched_off() -> None:
    assert rollout_of("") is None
    rollout = rollout_of(
        "    rollout:\n"
        "      steps: [{shadow: {for: 1.5s}}, {canary: {percent: 0.5}}, {new: null}]\n"
        "      analysis: {max_latency_ratio: null, min_samples: 5}\n"
    )
    assert rollout is not None
    assert [(s.kind, s.percent, s.duration) for s in rollout.steps] == [
        ("shadow", 0.0, 1.5),
        ("canary", 0.5, 0.0),
        ("new", 0.0, 0.0),
    ]
    assert rollout.analysis == Analysis(0.01, 0.01, 0.01, None, 5)


def test_durations_read_and_shown() -> None:
    assert [parse_duration(t) for t in ("30s", "10m", "2h", " 1.5s", "10", "1d", "m")] == [
        30,
        600,
        7200,
        1.5,
        None,
        None,
        None,
    ]
    assert [format_duration(s) for s in (7200, 600, 30, 90, 1.5)] == [
        "2h",
        "10m",
        "30s",
        "90s",
        "1.5s",
    ]


ERRORS = [
    ("    rollout: [mirror]\n", 6, "rollout: expected a mapping, got a list"),
    ("    rollout: {analysis: {}}\n", 6, "rollout: missing 'steps'"),
    ("    rollout: {steps: []}\n", 6, "rollout.steps: expected a non-empty list"),
    ("    rollout: {steps: {mirror: {}}}\n", 6, "rollout.steps: expected a non-empty list"),
    ("    rollout: {stages: []}\n", 6, "unknown key 'stages' (allowed: steps, analysis)"),
    ("    rollout:\n      steps:\n        - mirror\n", 8, "steps[0]: a step is a one-key mapping"),
    (
        "    rollout:\n      steps:\n        - {mirror: {}, new: {}}\n",
        8,
        "steps[0]: a step is a one-key mapping",
    ),
    (
        "    rollout:\n      steps:\n        - blue: {}\n",
        8,
        "steps[0]: unknown key 'blue' (allowed: mirror, shadow, canary, new)",
    ),
    (
        "    rollout:\n      steps:\n        - shadow: {for: 10}\n",
        8,
        "steps[0].shadow.for: int 10 is not a duration like 30s, 10m or 2h",
    ),
    (
        "    rollout:\n      steps:\n        - shadow: {for: 0s}\n",
        8,
        "steps[0].shadow.for: '0s' must be above 0",
    ),
    (
        "    rollout:\n      steps:\n        - shadow: {for: 31d}\n",
        8,
        "not a duration",
    ),
    (
        "    rollout:\n      steps:\n        - shadow: {for: 800h}\n",
        8,
        "at most 30 days",
    ),
    (
        "    rollout:\n      steps:\n        - shadow: {percent: 5}\n",
        8,
        "steps[0].shadow: unknown key 'percent' (allowed: for)",
    ),
    (
        "    rollout:\n      steps:\n        - canary: {for: 1m}\n",
        8,
        "steps[0].canary: missing 'percent'",
    ),
    (
        "    rollout:\n      steps:\n        - canary:\n            percent: 0\n",
        9,
        "steps[0].canary.percent: 0 is outside (0, 100]",
    ),
    (
        "    rollout:\n      steps:\n        - new: {for: 1m}\n",
        8,
        "steps[0].new: unknown key 'for'",
    ),
    (
        "    rollout:\n      steps:\n        - mirror: {}\n        - new: {}\n"
        "        - shadow: {}\n",
        9,
        "rollout.steps[1]: 'new' can only be the last step",
    ),
    (
        "    rollout:\n      steps: [new: {}]\n      analysis: {max_error_rate: 2}\n",
        8,
        "analysis.max_error_rate: 2 is outside [0, 1]",
    ),
    (
        "    rollout:\n      steps: [new: {}]\n      analysis: {min_samples: 0}\n",
        8,
        "analysis.min_samples: 0 is outside [1, inf)",
    ),
    (
        "    rollout:\n      steps: [new: {}]\n      analysis: {max_latency_ratio: 0}\n",
        8,
        "analysis.max_latency_ratio: 0 is outside (0, inf)",
    ),
    (
        "    rollout:\n      steps: [new: {}]\n      analysis: {window: 3}\n",
        8,
        "analysis: unknown key 'window'",
    ),
]


@pytest.mark.parametrize(("block", "line", "reason"), ERRORS)
def test_every_mistake_names_its_line(block: str, line: int, reason: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags(HEAD + block, "flags.yaml")
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"flags.yaml:{line}: features.sessions.rollout")


def test_a_step_moved_to_another_line_is_the_same_setting() -> None:
    from banyan.proxy.audit import diff_flagsets

    block = "    rollout: {steps: [shadow: {for: 1m}, new: {}]}\n"
    before = parse_flags(HEAD + block, "f")
    after = parse_flags(HEAD.replace("features:\n", "# a comment\nfeatures:\n") + block, "f")
    assert after.features[0].rollout.steps[0].line == before.features[0].rollout.steps[0].line + 1
    assert diff_flagsets(before, after) == []
    changed = parse_flags(HEAD + block.replace("1m", "2m"), "f")
    [(name, old, new)] = diff_flagsets(before, changed)
    assert name == "sessions"
    assert (
        old["rollout"]["steps"][0]["duration"] == 60
        and new["rollout"]["steps"][0]["duration"] == 120
    )
