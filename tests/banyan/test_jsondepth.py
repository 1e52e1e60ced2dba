"""banyan/jsondepth.py: depth found without parsing, and a parse that refuses deep texts."""

from __future__ import annotations

import pytest

from banyan.jsondepth import TooDeep, loads_shallow, nesting_depth


def test_depth_counts_brackets_outside_strings_only() -> None:
    text = b'{"a": [[{"b": "[[[[[[\\"]]"}], [1]]}'
    assert nesting_depth(text, 3) == 4  # the exact depth once the limit is passed
    assert nesting_depth(text, 2) == 3  # a run of openers past the limit says so at once
    assert nesting_depth(text, 12) == 0  # too few brackets to pass the limit: not scanned


def test_a_run_of_openers_is_refused_without_parsing() -> None:
    assert nesting_depth(b"[" * 100_000, 64) == 65
    with pytest.raises(TooDeep, match="deeper than 128"):
        loads_shallow("[" * 100_000)
    with pytest.raises(TooDeep):
        loads_shallow(b'{"a":' * 200 + b"1" + b"}" * 200)


def test_shallow_texts_parse_and_garbage_is_a_value_error() -> None:
    assert loads_shallow('{"a": [1, {"b": "\\u00e9"}]}') == {"a": [1, {"b": "é"}]}
    assert loads_shallow(b"[" * 5 + b"]" * 5) == [[[[[]]]]]
    with pytest.raises(ValueError):
        loads_shallow("{not json")
