"""Tests of banyan.backends.model.structured: schema instances are valid, deterministic and
relevant."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banyan.backends.common.agents.catalog import default_registry
from banyan.backends.model.generate import Draw
from banyan.backends.model.structured import instance, json_mode_object

TEXT = "Explain how volcanoes erupt when magma pressure builds under the crust."

SCHEMAS: dict[str, dict[str, Any]] = {
    "flat": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 3, "maxLength": 40},
            "summary": {"type": "string", "maxLength": 12},
            "question": {"type": "string"},
            "score": {"type": "integer", "minimum": 10, "maximum": 12},
            "ratio": {"type": "number", "minimum": 0.5, "maximum": 0.75},
            "done": {"type": "boolean"},
            "mood": {"enum": ["calm", "busy"]},
            "kind": {"const": "lesson"},
            "note": {"type": ["string", "null"]},
            "nothing": {"type": "null"},
        },
        "required": ["title", "summary", "score", "ratio", "done", "mood", "kind"],
        "additionalProperties": False,
    },
    "refs_and_unions": {
        "$defs": {
            "step": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "minutes": {"$ref": "#/$defs/mins"}},
                "required": ["name", "minutes"],
            },
            "mins": {"type": "integer", "minimum": 5, "maximum": 60, "multipleOf": 5},
        },
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2},
            "either": {"anyOf": [{"type": "integer", "maximum": 0}, {"type": "string"}]},
            "one": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
            "merged": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
                ]
            },
        },
        "required": ["steps", "either", "one", "merged"],
    },
    "arrays": {
        "type": "array",
        "minItems": 5,
        "maxItems": 6,
        "uniqueItems": True,
        "items": {"type": "string", "enum": ["a", "b", "c", "d", "e", "f", "g"]},
    },
    "tuple": {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "string", "format": "email"}],
        "minItems": 2,
        "maxItems": 2,
    },
    "formats": {
        "type": "object",
        "properties": {
            "at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "link": {"type": "string", "format": "uri"},
            "key": {"type": "string", "format": "uuid"},
            "long": {"type": "string", "minLength": 60},
        },
    },
    "numbers": {
        "type": "object",
        "properties": {
            "exclusive": {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5},
            "upper_only": {"type": "integer", "maximum": -10},
            "lower_only": {"type": "number", "minimum": 100},
            "step": {"type": "number", "multipleOf": 0.25, "minimum": 1, "maximum": 2},
            "open": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.1},
        },
        "required": ["exclusive", "upper_only", "lower_only", "step", "open"],
    },
    "untyped": {"properties": {"x": {"items": {"type": "integer"}}}, "required": ["x", "y"]},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_instances_validate_for_many_seeds(name: str) -> None:
    schema = SCHEMAS[name]
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    seen = set()
    for seed in range(25):
        value = instance(schema, Draw(f"seed-{seed}"), TEXT)
        errors = [e.message for e in validator.iter_errors(value)]
        assert not errors, (value, errors)
        seen.add(repr(value))
    assert len(seen) > 1  # the digest drives the values


def test_instance_is_deterministic() -> None:
    schema = SCHEMAS["refs_and_unions"]
    assert instance(schema, Draw("x"), TEXT) == instance(schema, Draw("x"), TEXT)


def test_strings_use_words_of_the_message() -> None:
    value = instance(
        {"type": "object", "properties": {"topic": {"type": "string"}}}, Draw("t"), TEXT
    )
    assert any(w in value["topic"].lower() for w in ("volcanoes", "erupt", "magma", "crust"))


def test_counts_in_the_prompt_size_arrays() -> None:
    schema = {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": {"type": "string"}, "maxItems": 20}},
    }
    value = instance(schema, Draw("q"), TEXT, prompt="Write 7 multiple-choice questions about it")
    assert len(value["questions"]) == 7
    capped = instance(schema, Draw("q"), TEXT, prompt="Write 70 questions")
    assert len(capped["questions"]) == 20


def test_every_agent_schema_of_the_catalogue_is_served() -> None:
    registry = default_registry()
    for name in registry.names():
        schema = registry.get(name).output_schema
        value = instance(schema, Draw(name), TEXT)
        jsonschema.validate(value, schema)


def test_odd_schemas_degrade_gracefully() -> None:
    assert isinstance(instance("not a schema", Draw("x"), TEXT), str)
    assert isinstance(instance({"$ref": "http://elsewhere/schema"}, Draw("x"), TEXT), str)
    assert isinstance(instance({"$ref": "#"}, Draw("x"), TEXT), str)  # self-reference ends
    assert instance({"type": "object"}, Draw("x"), TEXT) == {}


def test_json_mode_schema_in_fences() -> None:
    system = 'Answer as ```json\n{"type": "object", "properties": {"level": {"type": "integer", '
    system += '"minimum": 1, "maximum": 3}}, "required": ["level"]}\n```'
    value = json_mode_object(Draw("a"), TEXT, system)
    assert set(value) == {"level"} and 1 <= value["level"] <= 3


def test_json_mode_example_in_fences_is_mirrored() -> None:
    system = 'Like ```json\n{"title": "x", "n": 1, "r": 0.5, "ok": true, "tags": ["a"], '
    system += '"none": null, "empty": []}\n```'
    value = json_mode_object(Draw("a"), TEXT, system)
    assert set(value) == {"title", "n", "r", "ok", "tags", "none", "empty"}
    assert isinstance(value["title"], str) and isinstance(value["n"], int)
    assert isinstance(value["r"], float) and isinstance(value["ok"], bool)
    assert len(value["tags"]) == 2 and value["none"] is None and value["empty"] == []


def test_json_mode_keys_phrase_and_fallback() -> None:
    assert set(json_mode_object(Draw("a"), TEXT, "Reply with keys: topic, hint")) == {
        "topic",
        "hint",
    }
    broken = json_mode_object(Draw("a"), TEXT, "```json\n{broken\n```")
    assert list(broken) == ["answer"] and isinstance(broken["answer"], str)
    assert list(json_mode_object(Draw("a"), TEXT, "")) == ["answer"]


def _leaf_schemas() -> st.SearchStrategy[dict[str, Any]]:
    bounded_int = st.tuples(st.integers(-50, 50), st.integers(0, 40)).map(
        lambda t: {"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]}
    )
    bounded_number = st.tuples(st.floats(-10, 10), st.floats(0.01, 5)).map(
        lambda t: {"type": "number", "minimum": t[0], "maximum": t[0] + t[1]}
    )
    text = st.tuples(st.integers(0, 20), st.integers(0, 30)).map(
        lambda t: {"type": "string", "minLength": t[0], "maxLength": t[0] + t[1]}
    )
    enum = st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    )
    simple = st.sampled_from(
        [{"type": "boolean"}, {"type": "null"}, {"type": ["integer", "null"]}, {"type": "string"}]
    )
    return st.one_of(bounded_int, bounded_number, text, enum, simple)


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        names = st.text("abcdefghij_", min_size=1, max_size=8)
        objects = st.dictionaries(names, inner, max_size=4).map(
            lambda props: {"type": "object", "properties": props, "required": sorted(props)}
        )
        arrays = st.tuples(inner, st.integers(0, 3), st.integers(0, 3)).map(
            lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
        )
        unions = st.lists(inner, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches})
        return st.one_of(objects, arrays, unions)

    return st.recursive(_leaf_schemas(), extend, max_leaves=12)


@settings(max_examples=100, deadline=None)
@given(schema=_schemas(), digest=st.text(max_size=8), text=st.text(max_size=60))
def test_any_generated_schema_gets_a_valid_instance(
    schema: dict[str, Any], digest: str, text: str
) -> None:
    value = instance(schema, Draw(digest), text)
    jsonschema.Draft202012Validator(schema).validate(value)
