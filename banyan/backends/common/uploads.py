"""Reading a document upload (``POST /api/documents``, multipart) the same way on both backends.

Parts: ``file`` (required, one) and ``title`` (optional text). Checks, first failure answers:
not multipart (``body: must be multipart/form-data``), an unknown part (``<name>: is not a known
field``, names sorted), ``file: is required``, a second ``file``, one without a file name or
with U+0000 in it (``file: is invalid``), over
:data:`~banyan.backends.common.documents.MAX_UPLOAD_BYTES` (413),
``file: must not be empty``, a type that is not accepted (415), then the title (no U+0000, then
1..200; default the file name). The file is read in chunks and never held beyond the limit; a
body over :data:`DRAIN_LIMIT` is refused (413) without reading it to its end.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from banyan.backends.common import documents
from banyan.backends.common import validate as v
from banyan.backends.common.errors import ValidationError

TITLE = v.string(min_len=1, max_len=200)
MAX_TITLE_PART = 64 * 1024
DRAIN_LIMIT = 4 * documents.MAX_UPLOAD_BYTES  # beyond this a body is refused without reading on
FIELDS = ("file", "title")


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    media_type: str
    data: bytes
    title: str

    @property
    def size(self) -> int:
        return len(self.data)

    def fingerprint_fields(self) -> dict[str, Any]:
        """What an ``Idempotency-Key`` replay must repeat: the title and the file itself."""
        return {
            "title": self.title,
            "filename": self.filename,
            "media_type": self.media_type,
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }


async def _read_limited(part: BodyPartReader, limit: int) -> tuple[bytes, bool]:
    """The part's bytes up to ``limit``; the rest is read and dropped. ``True`` if it was over."""
    kept = bytearray()
    over = False
    seen = 0
    while chunk := await part.read_chunk(65536):
        seen += len(chunk)
        if seen > DRAIN_LIMIT:
            documents.check_size(seen)
        if over or len(kept) + len(chunk) > limit:
            over = True
            continue
        kept.extend(chunk)
    return bytes(kept), over


async def read_upload(request: web.Request) -> Upload:
    if request.content_type != "multipart/form-data":
        raise ValidationError("body: must be multipart/form-data")
    if (request.content_length or 0) > DRAIN_LIMIT:
        documents.check_size(request.content_length or 0)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise ValidationError("body: must be multipart/form-data") from None
    unknown: set[str] = set()
    files: list[tuple[str, str | None, bytes, bool]] = []
    title_raw: str | None = None
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                unknown.add("(nested multipart)")
                continue
            name = part.name or "(unnamed)"
            if name == "file":
                data, over = await _read_limited(part, documents.MAX_UPLOAD_BYTES)
                content_type = part.headers.get("Content-Type")
                files.append((part.filename or "", content_type, data, over))
            elif name == "title":
                raw, over = await _read_limited(part, MAX_TITLE_PART)
                title_raw = raw.decode("utf-8", errors="replace") if not over else "x" * 201
            else:
                unknown.add(name)
                await _read_limited(part, 0)
    except ValueError:
        raise ValidationError("body: must be multipart/form-data") from None
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: is not a known field")
    if not files:
        raise ValidationError("file: is required")
    filename, content_type, data, over = files[0]
    filename = posixpath.basename(filename.replace("\\", "/")).strip()[:255]
    if len(files) > 1 or not filename or "\x00" in filename:
        raise ValidationError("file: is invalid")
    if over:
        documents.check_size(documents.MAX_UPLOAD_BYTES + 1)
    if not data:
        raise ValidationError("file: must not be empty")
    media_type = documents.accepted_type(filename, content_type)
    if title_raw is not None and "\x00" in title_raw:  # PostgreSQL text cannot hold it
        raise ValidationError("title: must not contain U+0000")
    title = TITLE(title_raw, "title") if title_raw is not None else filename[:200]
    return Upload(filename=filename, media_type=media_type, data=data, title=title)
