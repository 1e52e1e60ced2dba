"""Deterministic JSON answers for structured output: schema instances and JSON-mode objects.

:func:`instance` builds a value valid for a JSON Schema subset (object/properties/required, array
with items/minItems/maxItems, string with enum/const/minLength/maxLength/format, integer and number
with bounds and multipleOf, boolean, null, type lists, ``$defs``/``$ref``, anyOf/oneOf (first
branch), allOf (merged)). Strings are built from the key words of the conversation so answers look
relevant. :func:`json_mode_object` serves ``response_format: {"type": "json_object"}``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from banyan.backends.model.generate import Draw, keywords

_FENCED_JSON = re.compile(r"```json\s*(.*?)```", re.DOTALL)
_KEYS_PHRASE = re.compile(r"keys:\s*([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)")
_LONG_TEXT_HINTS = ("summary", "detail", "explanation", "feedback", "description", "answer", "text")
_SHORT_TEXT_HINTS = ("title", "name", "topic", "label", "keyword", "heading")
_FALLBACK_WORDS = ("practice", "concepts", "examples", "review", "reasoning", "basics")
_SENTENCES = (
    "{A} is explained through a worked example about {b}.",
    "Focus on how {a} relates to {b}.",
    "Review {a} first, then practise {b}.",
    "{A} matters because it builds on {b}.",
    "Compare {a} with {b} and note the differences.",
)
_MAX_DEPTH = 12


class Context:
    """What string generation may draw on: the conversation's key words and counts it mentions."""

    def __init__(self, text: str, root: dict[str, Any], prompt: str = "") -> None:
        self.prompt = prompt or text
        self.words = keywords(text, limit=12) or list(_FALLBACK_WORDS)
        self.root = root

    def count_for(self, name: str) -> int | None:
        """A number the prompt puts before ``name`` ("5 multiple-choice questions" -> 5)."""
        if not name:
            return None
        pattern = rf"\b(\d{{1,3}})\s+(?:[\w-]+\s+){{0,2}}{re.escape(name)}\b"
        match = re.search(pattern, self.prompt, re.IGNORECASE)
        return int(match.group(1)) if match else None


def instance(schema: Any, draw: Draw, text: str, prompt: str = "") -> Any:
    """A deterministic value valid for ``schema``, with strings drawn from ``text``'s key words.

    ``prompt`` (the whole conversation) is searched for counts such as "3 questions".
    """
    root = schema if isinstance(schema, dict) else {}
    return _value(root, draw, Context(text, root, prompt), name="", depth=0)


def _resolve(schema: dict[str, Any], ctx: Context) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < _MAX_DEPTH:
        ref = schema["$ref"]
        target: Any = ctx.root
        if not isinstance(ref, str) or not ref.startswith("#"):
            return {}
        for step in [p for p in ref[1:].split("/") if p]:
            step = step.replace("~1", "/").replace("~0", "~")
            target = target.get(step, {}) if isinstance(target, dict) else {}
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest} if isinstance(target, dict) else rest
        seen += 1
    if "allOf" in schema and isinstance(schema["allOf"], list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if not isinstance(part, dict):
                continue
            part = _resolve(part, ctx)
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = [*merged.get("required", []), *value]
                else:
                    merged.setdefault(key, value)
        schema = merged
    return schema


def _kind(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        return str(non_null[0]) if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _value(schema: Any, draw: Draw, ctx: Context, *, name: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, ctx)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return draw.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            rest = {k: v for k, v in schema.items() if k != key}
            return _value({**rest, **branches[0]}, draw, ctx, name=name, depth=depth + 1)
    kind = _kind(schema)
    if kind == "object":
        return _object(schema, draw, ctx, depth)
    if kind == "array":
        return _array(schema, draw, ctx, name=name, depth=depth)
    if kind == "integer":
        return _integer(schema, draw)
    if kind == "number":
        return _number(schema, draw)
    if kind == "boolean":
        return draw.integer(0, 1) == 1
    if kind == "null":
        return None
    return _string(schema, draw, ctx, name=name)


def _object(schema: dict[str, Any], draw: Draw, ctx: Context, depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    out: dict[str, Any] = {}
    for key, sub in properties.items():
        out[key] = _value(sub, draw.child(key), ctx, name=key, depth=depth + 1)
    for key in schema.get("required", []) or []:
        if key not in out:
            out[key] = _string({}, draw.child(key), ctx, name=key)
    return out


def _array(schema: dict[str, Any], draw: Draw, ctx: Context, *, name: str, depth: int) -> list[Any]:
    low = int(schema.get("minItems", 0) or 0)
    high_raw = schema.get("maxItems")
    high = int(high_raw) if isinstance(high_raw, int) else max(low, 3)
    wanted = ctx.count_for(name)
    if wanted is None:
        wanted = draw.integer(max(low, min(2, high)), max(low, min(4, high)))
    count = min(max(wanted, low), high)
    given = schema.get("prefixItems")
    prefix: list[Any] = given if isinstance(given, list) else []
    items = schema.get("items", {})
    out: list[Any] = []
    singular = name[:-1] if name.endswith("s") else name
    for index in range(count):
        sub = prefix[index] if index < len(prefix) else items
        child = draw.child(f"{name}[{index}]")
        value = _value(sub, child, ctx, name=singular, depth=depth + 1)
        tries = 0  # distinct items read better (and uniqueItems needs them)
        while value in out and tries < 8:
            value = _value(sub, child, ctx, name=singular, depth=depth + 1)
            tries += 1
        out.append(value)
    return out


def _bounds(schema: dict[str, Any], default_low: float, default_high: float) -> tuple[float, float]:
    low = schema.get("minimum", default_low)
    high = schema.get("maximum", default_high)
    if "minimum" not in schema and "maximum" in schema:
        low = min(default_low, high)
    if "maximum" not in schema and "minimum" in schema:
        high = max(default_high, low)
    return float(low), float(high)


def _integer(schema: dict[str, Any], draw: Draw) -> int:
    low_f, high_f = _bounds(schema, 1, 5)
    low, high = math.ceil(low_f), math.floor(high_f)
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low, math.floor(schema["exclusiveMinimum"]) + 1)
        high = max(high, low)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high, math.ceil(schema["exclusiveMaximum"]) - 1)
        low = min(low, high)
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        first = math.ceil(low / step) * step
        last = math.floor(high / step) * step
        return first if last < first else first + step * draw.integer(0, (last - first) // step)
    return draw.integer(low, high)


def _number(schema: dict[str, Any], draw: Draw) -> float:
    low, high = _bounds(schema, 0, 1)
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = max(low, float(schema["exclusiveMinimum"]))
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = min(high, float(schema["exclusiveMaximum"]))
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        first = math.ceil(low / step)
        last = math.floor(high / step)
        return float(step * (first if last < first else draw.integer(first, last)))
    value = round(low + (high - low) * (0.1 + 0.8 * draw.unit()), 2)
    return min(max(value, low), high) if value not in (low, high) else (low + high) / 2


def _phrase(draw: Draw, ctx: Context, words: int) -> str:
    picked: list[str] = []
    for _ in range(words):
        word = draw.choice(ctx.words)
        if word not in picked:
            picked.append(word)
    return " ".join(picked)


def _sentence(draw: Draw, ctx: Context) -> str:
    a = draw.choice(ctx.words)
    b = draw.choice([w for w in ctx.words if w != a] or list(_FALLBACK_WORDS))
    return draw.choice(_SENTENCES).format(a=a, b=b, A=a[:1].upper() + a[1:])


def _formatted(fmt: str, draw: Draw, ctx: Context) -> str | None:
    if fmt == "date-time":
        return f"2025-01-{draw.integer(1, 28):02d}T{draw.integer(0, 23):02d}:00:00Z"
    if fmt == "date":
        return f"2025-01-{draw.integer(1, 28):02d}"
    if fmt == "email":
        return f"{ctx.words[0].lower()}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{ctx.words[0].lower()}"
    if fmt == "uuid":
        h = "".join(f"{draw.integer(0, 15):x}" for _ in range(32))
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"
    return None


def _string(schema: dict[str, Any], draw: Draw, ctx: Context, *, name: str) -> str:
    fmt = schema.get("format")
    special = _formatted(fmt, draw, ctx) if isinstance(fmt, str) else None
    lowered = name.lower()
    if special is not None:
        text = special
    elif any(hint in lowered for hint in _LONG_TEXT_HINTS):
        text = _sentence(draw, ctx)
    elif any(hint in lowered for hint in _SHORT_TEXT_HINTS):
        text = _phrase(draw, ctx, draw.integer(1, 3)).capitalize()
    elif lowered in ("question", "prompt"):
        text = f"What is the role of {draw.choice(ctx.words)} in {draw.choice(ctx.words)}?"
    else:
        text = _phrase(draw, ctx, draw.integer(1, 2))
    min_len = int(schema.get("minLength", 0) or 0)
    max_len = schema.get("maxLength")
    while len(text) < min_len:
        text += " " + draw.choice(ctx.words)
    if isinstance(max_len, int) and len(text) > max_len:
        text = text[:max_len].rstrip() or text[:max_len]
        if len(text) < min_len:  # pragma: no cover - only when maxLength < minLength
            text = text.ljust(min_len, "x")
    return text


def _schema_in_prompt(system_text: str) -> Any:
    for block in _FENCED_JSON.findall(system_text):
        try:
            return json.loads(block)
        except ValueError:
            continue
    return None


def _looks_like_schema(value: Any) -> bool:
    return isinstance(value, dict) and (
        "properties" in value or value.get("type") in ("object", "array")
    )


def _mirror_example(example: Any, draw: Draw, ctx: Context, name: str = "") -> Any:
    """A value shaped like an example object (same keys, same kinds of values)."""
    if isinstance(example, dict):
        return {k: _mirror_example(v, draw.child(k), ctx, k) for k, v in example.items()}
    if isinstance(example, list):
        return (
            [_mirror_example(example[0], draw.child(str(i)), ctx, name) for i in range(2)]
            if example
            else []
        )
    if isinstance(example, bool):
        return draw.integer(0, 1) == 1
    if isinstance(example, int):
        return draw.integer(1, 5)
    if isinstance(example, float):
        return round(draw.unit(), 2)
    if example is None:
        return None
    return _string({}, draw, ctx, name=name)


def json_mode_object(draw: Draw, user_text: str, system_text: str) -> dict[str, Any]:
    """The answer for ``response_format: json_object``.

    A JSON block fenced with ```json in the system prompt is taken as a schema (or, when it is not
    one, as an example to mirror); the phrase ``keys: a, b`` names string keys; otherwise the answer
    is ``{"answer": <sentence>}``.
    """
    ctx = Context(user_text, {}, f"{system_text}\n{user_text}")
    found = _schema_in_prompt(system_text)
    if _looks_like_schema(found):
        ctx.root = found
        value = _value(found, draw, ctx, name="", depth=0)
        if isinstance(value, dict):
            return value
    elif isinstance(found, dict):
        mirrored = _mirror_example(found, draw, ctx)
        assert isinstance(mirrored, dict)
        return mirrored
    phrase = _KEYS_PHRASE.search(system_text)
    if phrase:
        keys = [k.strip() for k in phrase.group(1).split(",")]
        return {k: _string({}, draw.child(k), ctx, name=k) for k in keys}
    return {"answer": _sentence(draw, ctx)}
