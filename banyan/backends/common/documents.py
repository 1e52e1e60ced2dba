"""Document processing shared by both backends: accepted uploads, text extraction and chunking.

Accepted types: ``text/plain`` (``.txt``), ``text/markdown`` (``.md``, ``.markdown``) and
``application/pdf`` (``.pdf``, read with pypdf). At most :data:`MAX_UPLOAD_BYTES`. The type is
taken from the part's ``Content-Type`` when it is one of these, else from the file name; anything
else is ``415 unsupported_media_type``. A PDF that cannot be read fails the processing job, not the
upload. Chunks are at most :data:`CHUNK_CHARS` characters, cut at paragraph or sentence ends when
possible, so both backends cut the same text into the same chunks.
"""

from __future__ import annotations

import io
import re

from banyan.backends.common.errors import PayloadTooLarge, UnsupportedMediaType

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
CHUNK_CHARS = 2000
SUMMARY_INPUT_CHARS = 12_000
TYPES = {"text/plain": "text", "text/markdown": "markdown", "application/pdf": "pdf"}
EXTENSIONS = {".txt": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
              ".pdf": "application/pdf"}  # fmt: skip


class ExtractionError(ValueError):
    """The file was accepted but its text could not be read."""


def accepted_type(filename: str, content_type: str | None) -> str:
    """The document's media type, or 415 when it is not one we process."""
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared in TYPES:
        return declared
    lowered = filename.lower()
    for ext, media in EXTENSIONS.items():
        if lowered.endswith(ext):
            return media
    raise UnsupportedMediaType("file: must be a .txt, .md or .pdf document")


def check_size(size: int) -> None:
    if size > MAX_UPLOAD_BYTES:
        raise PayloadTooLarge(f"file: must be at most {MAX_UPLOAD_BYTES} bytes")


def extract_text(media_type: str, data: bytes) -> str:
    if media_type == "application/pdf":
        return _pdf_text(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if media_type == "text/markdown":
        text = _strip_markdown(text)
    return _normalise(text)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise ExtractionError(f"the PDF could not be read: {exc}") from exc
    return _normalise("\n\n".join(pages))


_MD_RULES = [
    (re.compile(r"```.*?```", re.S), " "),
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]*", re.M), ""),
    (re.compile(r"^[ \t]{0,3}>[ \t]?", re.M), ""),
    (re.compile(r"^[ \t]*[-*+][ \t]+", re.M), ""),
    (re.compile(r"(\*\*|__|\*|_)(\S.*?\S|\S)\1"), r"\2"),
]


def _strip_markdown(text: str) -> str:
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return text


def _normalise(text: str) -> str:
    # U+0000 is dropped: PostgreSQL text cannot hold it, and both stores must keep the same text
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def chunk(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into chunks of at most ``size`` characters at natural boundaries."""
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, size):
        candidate = f"{current}\n\n{piece}" if current else piece
        if len(candidate) <= size:
            current = candidate
            continue
        if current:
            chunks.append(current)
        current = piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, size: int) -> list[str]:
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        if len(paragraph) <= size:
            out.append(paragraph)
            continue
        sentence_buf = ""
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            while len(sentence) > size:
                out.append(sentence[:size])
                sentence = sentence[size:]
            candidate = f"{sentence_buf} {sentence}".strip()
            if len(candidate) <= size:
                sentence_buf = candidate
            else:
                out.append(sentence_buf)
                sentence_buf = sentence
        if sentence_buf:
            out.append(sentence_buf)
    return [p for p in out if p]


def summary_input(chunks: list[str]) -> str:
    """What the summariser reads: the first chunks up to :data:`SUMMARY_INPUT_CHARS`."""
    text = ""
    for item in chunks:
        if len(text) + len(item) + 2 > SUMMARY_INPUT_CHARS:
            break
        text = f"{text}\n\n{item}" if text else item
    return text or (chunks[0][:SUMMARY_INPUT_CHARS] if chunks else "")
