"""Encodings as French senders write them, decided once per file, decoded line by line.

Why a pre-scan: a PMSI export from a Windows hospital is Latin-1, from another UTF-8 with a
BOM, from a third plain UTF-8, and nothing in the file says which. Decoding a Latin-1 file as
UTF-8 fails; decoding a UTF-8 file as Latin-1 silently turns "é" into "Ã©" in names, which
splits one person into two pseudonyms. So the whole file is scanned first (streamed, 256 KiB at
a time, no line kept) and one decision is taken:

* a UTF-8 BOM: UTF-8;
* every line decodes as UTF-8: UTF-8;
* no line has UTF-8 multibyte characters and some do not decode: Latin-1 if the spec allows
  it (``latin1_fallback: true``), else UTF-8 — and each undecodable line is ENCODING_INVALID;
* lines of both kinds: a mixed file; UTF-8, and the Latin-1 lines are ENCODING_INVALID
  (guessing per line would let one sender's typo decide how a name is spelled).

Latin-1 text with C1 control characters (bytes 0x80-0x9F: Windows-1252 "œ", "€" and curly
quotes sent as Latin-1) is refused per line: those bytes are never text in Latin-1.

An explicit encoding in the spec skips the decision; lines it cannot decode are refused.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

__all__ = ["FileEncoding", "Oversize", "detect_encoding", "iter_lines"]

_CHUNK = 1 << 18
_MAX_CARRY = 1 << 20  # a "line" longer than this is scanned in pieces, cut between characters
_C1 = re.compile("[\x80-\x9f]")
_UTF8_NAMES = frozenset({"utf-8", "utf-8-sig"})


@dataclass(frozen=True, slots=True)
class FileEncoding:
    """How to decode one file: codec, bytes to skip at the start (BOM), and why."""

    codec: str
    start: int
    decision: Literal["bom", "utf-8", "latin-1", "mixed", "not-utf-8", "declared"]

    def decode(self, raw: bytes) -> str | None:
        """One line's text, or None when it does not decode in this file's encoding."""
        if raw.isascii():
            return raw.decode("ascii")
        try:
            text = raw.decode(self.codec)
        except UnicodeDecodeError:
            return None
        if self.codec == "latin-1" and _C1.search(text):
            return None
        return text


def detect_encoding(stream: BinaryIO, encoding: str = "auto", *, latin1_fallback: bool = False) -> FileEncoding:
    """The encoding decision for a seekable binary stream (left at position 0)."""
    stream.seek(0)
    bom = stream.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
    stream.seek(0)
    if encoding != "auto":
        codec = codecs.lookup(encoding).name
        codec = "latin-1" if codec == "iso8859-1" else codec
        return FileEncoding(
            "utf-8" if codec in _UTF8_NAMES else codec, 3 if bom and codec in _UTF8_NAMES else 0, "declared"
        )
    if bom:
        return FileEncoding("utf-8", 3, "bom")
    utf8_seen, bad_seen = _scan(stream)
    stream.seek(0)
    if not bad_seen:
        return FileEncoding("utf-8", 0, "utf-8")
    if utf8_seen:
        return FileEncoding("utf-8", 0, "mixed")
    if latin1_fallback:
        return FileEncoding("latin-1", 0, "latin-1")
    return FileEncoding("utf-8", 0, "not-utf-8")


def _scan(stream: BinaryIO) -> tuple[bool, bool]:
    """(some line has UTF-8 multibyte characters, some line is not UTF-8), stopping once both are known."""
    utf8_seen = bad_seen = False
    carry = b""
    while True:
        chunk = stream.read(_CHUNK)
        block = carry + chunk
        if not block:
            break
        cut = block.rfind(b"\n") + 1
        if chunk and cut == 0 and len(block) < _MAX_CARRY:
            carry = block
            continue
        if not chunk:
            cut = len(block)
        elif cut == 0:  # a long line: cut before a UTF-8 lead byte, never inside a character
            cut = len(block)
            while cut > len(block) - 4 and block[cut - 1] & 0xC0 == 0x80:
                cut -= 1
            if block[cut - 1] >= 0xC0:
                cut -= 1
        carry, block = block[cut:], block[:cut]
        utf8, bad = _classify(block, final=not chunk)
        utf8_seen, bad_seen = utf8_seen or utf8, bad_seen or bad
        if (utf8_seen and bad_seen) or not chunk:
            break
    return utf8_seen, bad_seen


def _classify(block: bytes, *, final: bool) -> tuple[bool, bool]:
    if block.isascii():
        return False, False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(block, final=final)
        return True, False
    except UnicodeDecodeError:
        pass
    utf8 = bad = False
    for line in block.split(b"\n"):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            bad = True
    return utf8, bad


@dataclass(frozen=True, slots=True)
class Oversize:
    """In place of a line's text: the line is longer than the limit (``size``: its bytes, terminator excluded)."""

    size: int
    limit: int

    @property
    def message(self) -> str:
        return f"line of {self.size} bytes, over limits.max_record_bytes ({self.limit})"


_SKIP = 1 << 16


def iter_lines(
    stream: BinaryIO, encoding: FileEncoding, *, max_bytes: int | None = None
) -> Iterator[tuple[int, bytes, str | Oversize | None]]:
    """(1-based line number, raw bytes without the line terminator, text or None if undecodable).

    Streams: one line in memory at a time. Lines end at LF; a CR before it is dropped (CRLF
    exports); a bare-CR file is read as one line. A line longer than `max_bytes` is never held
    whole: its text is an :class:`Oversize` and its raw bytes are its first `max_bytes` bytes
    (the rest is read and dropped, 64 KiB at a time).
    """
    stream.seek(encoding.start)
    decode = encoding.decode
    if max_bytes is None:
        for number, line in enumerate(stream, start=1):
            raw = line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line
            yield number, raw, decode(raw)
        return
    number = 0
    while line := stream.readline(max_bytes + 2):
        number += 1
        ended = line.endswith(b"\n")
        raw = line[:-2] if line.endswith(b"\r\n") else line[:-1] if ended else line
        if len(raw) <= max_bytes:
            yield number, raw, decode(raw)
            continue
        size, last = len(line), line
        while not ended and (rest := stream.readline(_SKIP)):
            size, last, ended = size + len(rest), rest, rest.endswith(b"\n")
        if ended:
            size -= 2 if last.endswith(b"\r\n") else 1
        yield number, raw[:max_bytes], Oversize(size, max_bytes)
