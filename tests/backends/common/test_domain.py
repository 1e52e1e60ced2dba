"""Tests for the shared domain modules: documents, quizzes and analytics."""

from __future__ import annotations

import pytest

from banyan.backends.common import analytics, documents, quizzes
from banyan.backends.common.errors import PayloadTooLarge, UnsupportedMediaType, ValidationError


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing ``text`` (hand-built, with a correct xref table)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_accepted_types() -> None:
    assert documents.accepted_type("a.bin", "text/plain; charset=utf-8") == "text/plain"
    assert documents.accepted_type("notes.MD", "application/octet-stream") == "text/markdown"
    assert documents.accepted_type("x.pdf", None) == "application/pdf"
    with pytest.raises(UnsupportedMediaType):
        documents.accepted_type("x.exe", "application/x-msdownload")
    documents.check_size(documents.MAX_UPLOAD_BYTES)
    with pytest.raises(PayloadTooLarge):
        documents.check_size(documents.MAX_UPLOAD_BYTES + 1)


def test_text_markdown_and_pdf_extraction() -> None:
    assert documents.extract_text("text/plain", b"a\r\n b\n\n\n c ") == "a b\n\nc"
    assert documents.extract_text("text/plain", "caf\xe9".encode("latin-1")) == "caf\xe9"
    markdown = b"# Title\n\nSome **bold** and [a link](http://x) and `code`.\n\n- item\n> quote"
    assert documents.extract_text("text/markdown", markdown) == (
        "Title\n\nSome bold and a link and code.\n\nitem quote"
    )
    assert "Photosynthesis" in documents.extract_text(
        "application/pdf", make_pdf("Photosynthesis makes sugar")
    )
    with pytest.raises(documents.ExtractionError):
        documents.extract_text("application/pdf", b"%PDF-1.4 broken")


def test_chunking_respects_size_and_boundaries() -> None:
    paragraphs = [f"Sentence number {i} is here." for i in range(200)]
    text = "\n\n".join(paragraphs)
    chunks = documents.chunk(text, size=300)
    assert all(len(c) <= 300 for c in chunks)
    assert "\n\n".join(chunks).replace("\n\n", " ").split() == text.replace("\n\n", " ").split()
    long = "word " * 400 + "end."
    assert all(len(c) <= 100 for c in documents.chunk(long, size=100))
    assert documents.chunk("") == []
    assert documents.summary_input(["a" * 10, "b" * 20_000]) == "a" * 10
    assert documents.summary_input([]) == ""


def test_quiz_scoring() -> None:
    questions = [
        {"question": "q1", "choices": ["a", "b", "c", "d"], "answer": 1, "explanation": "e1"},
        {"question": "q2", "choices": ["a", "b", "c", "d"], "answer": 3, "explanation": "e2"},
    ]
    result = quizzes.score(questions, quizzes.check_answers([1, 0], 2))
    assert result["score"] == 1 and result["total"] == 2 and result["percent"] == 50.0
    assert result["results"][1] == {
        "index": 1,
        "correct": False,
        "given": 0,
        "expected": 3,
        "explanation": "e2",
    }
    assert quizzes.public_questions(questions)[0] == {
        "index": 0,
        "question": "q1",
        "choices": ["a", "b", "c", "d"],
    }
    for bad, message in [
        ("x", "answers: must be a list"),
        ([1], "answers: must have 2 items"),
        ([1, True], r"answers\[1\]: must be between 0 and 3"),
        ([1, 4], r"answers\[1\]: must be between 0 and 3"),
    ]:
        with pytest.raises(ValidationError, match=message):
            quizzes.check_answers(bad, 2)
    assert quizzes.score([], [])["percent"] == 0.0


NOW = 1_700_000_000_000


def test_analytics_batches() -> None:
    events = analytics.parse_batch(
        {"events": [{"name": "page.view"}, {"name": "quiz_done", "at": "2023-11-14T20:00:00Z"}]},
        NOW,
    )
    assert events[0].at_ms == NOW and events[1].at_ms == 1_699_992_000_000
    cases = [
        ([], "body: must be a JSON object"),
        ({"x": 1}, "x: is not a known field"),
        ({}, "events: is required"),
        ({"events": 3}, "events: must be a list"),
        ({"events": []}, "events: must have between 1 and 500 items"),
        ({"events": [3]}, r"events\[0\]: must be an object"),
        ({"events": [{"name": "ok", "y": 1}]}, r"events\[0\].y: is not a known field"),
        ({"events": [{"name": "Bad Name"}]}, r"events\[0\].name: is invalid"),
        ({"events": [{"name": "a", "at": 5}]}, r"events\[0\].at: must be a string"),
        ({"events": [{"name": "a", "at": "nope"}]}, r"events\[0\].at: is invalid"),
        ({"events": [{"name": "a", "at": "2001-01-01T00:00:00Z"}]}, "within the last 7 days"),
        ({"events": [{"name": "a", "session_id": 1}]}, "session_id: must be a string"),
        ({"events": [{"name": "a", "properties": []}]}, "properties: must be an object"),
        ({"events": [{"name": "a", "properties": {"k": "v" * 5000}}]}, "at most 4096 bytes"),
    ]
    for body, message in cases:
        with pytest.raises(ValidationError, match=message):
            analytics.parse_batch(body, NOW)


def test_analytics_ranges_and_summaries() -> None:
    start, end = analytics.parse_range(
        {"from": "2023-11-14T10:30:00Z", "to": "2023-11-14T12:10:00Z"}, NOW
    )
    assert (end - start) == 3 * analytics.HOUR_MS
    default = analytics.parse_range({}, NOW)
    assert default[1] - default[0] >= 24 * analytics.HOUR_MS
    for query, message in [
        ({"to": "x"}, "to: is invalid"),
        ({"from": "x"}, "from: is invalid"),
        ({"from": "2023-11-15T00:00:00Z", "to": "2023-11-14T00:00:00Z"}, "from: must be before to"),
    ]:
        with pytest.raises(ValidationError, match=message):
            analytics.parse_range(query, NOW)
    body = analytics.summary_body(0, analytics.HOUR_MS * 2, [("b", 0, 2), ("a", 3_600_000, 1)])
    assert body["total"] == 3
    assert body["by_name"] == [{"name": "a", "count": 1}, {"name": "b", "count": 2}]
    assert [h["count"] for h in body["by_hour"]] == [2, 1]


def test_extracted_text_drops_nul_characters() -> None:
    # PostgreSQL text cannot hold U+0000; both stores keep the same text without it
    assert documents.extract_text("text/plain", b"a\x00b\x00\n\nc") == "ab\n\nc"
