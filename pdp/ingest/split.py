"""One large input file as several tasks: byte ranges cut on record boundaries, read as one file.

Why: the edge runs one task per file (:mod:`pdp.ingest.fanout`, :mod:`pdp.ingest.spark_tasks`),
so a national FHIR or pharmacy file would be one task on one core however many executors the
cluster has. A parser whose format can be cut safely declares a *splitter* (``@parser(...,
split=...)``): given the file, its encoding decision and a target size, it returns the byte
ranges of the parts, each starting on a record boundary, with what each part must carry to
read as the whole file would (:class:`Cut`). A format that cannot be cut safely (one JSON
Bundle, an index whose rows open other files) declares none and stays one task.

How a part reads exactly as the whole file (tested in ``tests/ingest/test_ingest_split.py``):

* the encoding is decided once, here, on the whole file (:func:`~pdp.ingest.encoding.detect_encoding`),
  and handed to every part (:meth:`~pdp.ingest.parsers.base.FileContext.file_encoding`): a part
  of a Latin-1 file whose first bytes are ASCII would otherwise be decided UTF-8;
* cuts fall after a LF, in codecs where a LF byte is only ever a LF (UTF-8, Latin-1, ASCII...),
  so no multi-byte character and no CRLF is ever cut; a part's stream is the file's *prefix*
  (the BOM, and the CSV header line) followed by its range (:class:`PartStream`), so the
  parser sees a small file of the same shape;
* positions stay positions in the whole file: ``offset`` (the records before the part, less
  those of the prefix) is added to every record's position by :func:`pdp.ingest.parse.parse_file`
  before anything keys or counts it (the keyed record hash covers the position);
* file-level rows belong to the file: the first part yields the head's; a later part that re-reads
  the head drops its copy of the head's verdict (a stop row always stays); ``state`` carries
  what a format's file-level check needs from before the part (HL7: inside a batch, and how
  many messages it counted), and only the last part closes it;
* the fold (:func:`pdp.ingest.fanout.run_files`) merges a file's parts in order, and a part
  that stopped (a parser or the edge raised) ends the file there: the later parts are dropped
  as the unsplit run would never have read them.

Cost: planning reads the whole file on the driver (the encoding scan, then the cut scan).
Measured for 100 MiB files cut at 8 MiB (13 parts; the territory's files repeated, 2-core machine
at load average 9.9): pharmacy CSV 0.33 s, GP NDJSON 0.08 s (declared UTF-8: no encoding scan,
long lines), HL7 1.1 s (segment by segment) — against ~30 CPU-seconds to parse and key the
same 100 MiB of NDJSON (``pdp bench edge``: 8.5 CPU-s for 30.5 MB).
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pdp.ingest.encoding import FileEncoding, detect_encoding

if TYPE_CHECKING:
    from pdp.ingest.spec import SourceSpec

__all__ = [
    "Cut", "FilePart", "PartStream", "Splitter", "line_cuts", "open_part", "plan_parts", "split_lines", "splits_at_lf",
]

Splitter = Callable[[BinaryIO, "SourceSpec", FileEncoding, int], list["Cut"]]
"""A format's splitter: (stream at 0, spec, the file's encoding, target bytes) → the cuts after the first part.
An empty list: the file stays whole."""

_LF_SAFE = ("utf-8", "latin-1", "ascii", "iso8859", "cp125")  # codecs where byte 0x0A is only ever LF


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a part (not the first) starts, and how it reads as the whole file.

    ``start``: byte offset of its first record; ``prefix``: bytes ``[0, prefix)`` of the file read
    before its range (BOM, header line); ``offset``: added to the positions its parser yields;
    ``state``: what the format's file-level check carries from before the part (a format's own keys);
    ``repeats_head``: the part re-reads the file's head (a CSV header), whose file-level rows the
    first part yields — the part's own are dropped; False when a part's file-level rows are its own
    (an HL7 batch trailer in that part).
    """

    start: int
    prefix: int
    offset: int
    state: tuple[tuple[str, Any], ...] = ()
    repeats_head: bool = True


@dataclass(frozen=True, slots=True)
class FilePart:
    """One part of a split file: a task of its own (:class:`~pdp.ingest.fanout.FileTask` ``.part``)."""

    number: int  # 0-based, in file order
    count: int  # parts of the file
    start: int
    end: int
    prefix: int = 0
    offset: int = 0
    encoding: FileEncoding | None = None  # decided once for the whole file
    state: dict[str, Any] = field(default_factory=dict, hash=False)
    before: int = 0  # position of the last record of the earlier parts, when known: where a stop says it stopped
    repeats_head: bool = True  # see Cut

    @property
    def first(self) -> bool:
        return self.number == 0

    @property
    def last(self) -> bool:
        return self.number == self.count - 1


def splits_at_lf(encoding: FileEncoding) -> bool:
    """Whether a LF byte is always a LF in this encoding (never a byte of another character)."""
    name = codecs.lookup(encoding.codec).name
    return name.startswith(_LF_SAFE)


def plan_parts(spec: SourceSpec, path: Path, target: int) -> tuple[FilePart, ...]:
    """The parts of one file: ``()`` when it stays one task (no splitter, small, or no safe cut)."""
    from pdp.ingest.parsers.base import get_parser

    if spec.format is None or spec.hold_back or target <= 0:
        return ()
    info = get_parser(spec.format)
    if info.split is None or info.whole_file:
        return ()
    try:
        size = path.stat().st_size
        if size <= target:
            return ()
        with path.open("rb") as stream:
            encoding = detect_encoding(stream, spec.encoding, latin1_fallback=spec.latin1_fallback)
            stream.seek(0)
            cuts = [c for c in info.split(stream, spec, encoding, target) if 0 < c.start < size]
    except OSError:  # unreadable here: the file runs whole, and its task says so (FILE_UNREADABLE)
        return ()
    if not cuts:
        return ()
    starts = [0, *(c.start for c in cuts)]
    ends = [*(c.start for c in cuts), size]
    count = len(starts)
    parts = [FilePart(0, count, 0, ends[0], encoding=encoding)]
    for number, (cut, end) in enumerate(zip(cuts, ends[1:], strict=True), start=1):
        parts.append(FilePart(number, count, cut.start, end, cut.prefix, cut.offset, encoding, dict(cut.state),
                              repeats_head=cut.repeats_head))
    return tuple(parts)


def line_cuts(
    stream: BinaryIO, encoding: FileEncoding, target: int, *, header_lines: int = 0, quote: bytes | None = None,
    quiet_lines: int = 0,
) -> list[Cut]:
    """Cuts after a LF, about every `target` bytes, for formats where a line number is a position.

    `header_lines`: lines after the BOM every part carries (a CSV header); `quote`: a quote
    character that may open a field spanning lines — a cut is then allowed only after
    `quiet_lines` lines without it (a record spans at most that many lines, so the record before
    the cut ended there and the next one starts with the part). Positions are line numbers
    (less the header's, which the parser subtracts itself), so a part's offset is the count of
    lines before it less the prefix's lines.
    """
    if not splits_at_lf(encoding):
        return []
    stream.seek(encoding.start)
    prefix = encoding.start
    for _ in range(header_lines):
        line = stream.readline()
        if not line.endswith(b"\n"):
            return []  # the header is the whole file
        prefix += len(line)
    cuts: list[Cut] = []
    offset = prefix
    number = header_lines  # lines read so far
    quoted_at = 0  # line number of the last line holding the quote character (0: none after the header)
    goal = offset + target
    for line in stream:
        number += 1
        offset += len(line)
        if quote is not None and quote in line:
            quoted_at = number
        if offset >= goal and line.endswith(b"\n") and (quoted_at == 0 or number - quoted_at >= quiet_lines):
            cuts.append(Cut(offset, prefix, number - header_lines))
            goal = offset + target
    return cuts


class PartStream(io.RawIOBase):
    """A part's bytes as a seekable binary file: the file's ``[0, prefix)`` then ``[start, end)``."""

    def __init__(self, raw: BinaryIO, part: FilePart) -> None:
        super().__init__()
        self._raw = raw
        self._pieces = ((0, part.prefix), (part.start, part.end)) if part.number else ((0, part.end),)
        self._size = sum(b - a for a, b in self._pieces)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done, at = 0, self._pos
        for a, b in self._pieces:
            length = b - a
            if at >= length:
                at -= length
                continue
            want = min(len(view) - done, length - at)
            if want <= 0:
                break
            self._raw.seek(a + at)
            got = self._raw.readinto(view[done : done + want])
            if not got:
                break
            done += got
            at = 0
            if done == len(view):
                break
        self._pos += done
        return done

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_part(path: Path, part: FilePart) -> io.BufferedReader:
    """The part's stream, buffered (parsers read lines and blocks from it)."""
    return io.BufferedReader(PartStream(path.open("rb"), part), buffer_size=1 << 16)


def split_lines(stream: BinaryIO, spec: SourceSpec, encoding: FileEncoding, target: int) -> list[Cut]:
    """The splitter of a format whose record is a line and whose position is its line number
    (fixed width, NDJSON): any LF is a record boundary."""
    return line_cuts(stream, encoding, target)
