"""HL7 v2.5 ORU^R01 lab results, one batch file per lab (FHS/BHS ... BTS/FTS), streamed message by message.

Why this parser checks structure before extracting: a French lab's batch is the concatenation
of messages written by one SIL, and the faults that matter are structural — a message cut by
a transfer (HL7_TRUNCATED), segments written in the wrong order by a broken interface
(HL7_SEGMENT_ORDER), an ADT slipped into a results feed (HL7_MESSAGE_TYPE), a batch whose
trailer disagrees with its content (HL7_BATCH_COUNT: messages lost or added in transit).
Each message is one record: a bad one is quarantined, the others parse.

How it reads:

* segments are split on CR (and LF: Windows senders add one after each message) from a
  binary stream read 64 KiB at a time; a message runs from its MSH to the next MSH or batch
  segment, so memory holds one message; a message (or a segment) over the spec's
  ``limits.max_record_bytes`` is RECORD_TOO_LARGE, read through and dropped, never held;
* MSH-1/MSH-2 must be five distinct punctuation characters (HL7_MALFORMED otherwise: python-hl7
  trusts them); escapes are decoded by python-hl7, except formatting commands with a count
  (``.sp``/``.sk``/``.in``/``.ti``), which become a space: a few bytes must not ask for gigabytes;
* each message is decoded with the character set its MSH-18 declares (``UNICODE UTF-8``,
  ``8859/1``...; empty = the spec's encoding policy), then parsed by python-hl7 (``hl7``),
  which handles separators and escapes;
* identity comes from PID (PAM-FR conventions: INS-NIR in PID-3 by its authority OID, birth
  name = PID-5 of type L, used name = type D, birthplace = PID-11 of type BDL); one
  measurement event per OBX, coded by OBX-3 (coding system mapped by the spec's options),
  dated by OBX-14 (else OBR-7), grouped by the filler order number (OBR-3), with the lab's
  FINESS (MSH-4) as provider; the record's sender id is the lab and its filler order numbers,
  so a corrected or resent result replaces the first version (MSH-10 when an order has none).

Measured (CPU time, one core): ~1 800 messages/s (7 segments, 2 OBX on average); python-hl7's
``parse`` is about two thirds of it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

import hl7
import hl7.containers
import hl7.parser
import hl7.util
from hl7.util import unescape as hl7_unescape
from pydantic import BaseModel, ConfigDict, Field

from pdp.ingest.model import Event, ParseOutcome, SourceRecord
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.split import Cut
from pdp.ingest.validate import Checks, Invalid

if TYPE_CHECKING:
    from pdp.ingest.encoding import FileEncoding
    from pdp.ingest.spec import SourceSpec

__all__ = ["Hl7Options", "parse_hl7_oru", "split_hl7"]

_SEGMENT_SPLIT = re.compile(rb"[\r\n]+")
_SEGMENT_BODY = re.compile(rb"[^\r\n]+")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_ENVELOPE = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
_CHUNK = 1 << 16
_MAX_ORPHANS = 1000  # segments outside any message are quarantined by blocks of at most this many

# python-hl7 logs whole field values when an escape sequence does not decode, or a segment comes
# before MSH: a record's content in the process logs. Its loggers are silenced; the message
# parses as python-hl7 decodes it (an undecodable sequence dropped), its values checked as any other.
# By a filter, not `logger.disabled`: a later logging.config.dictConfig (uvicorn's, at API start)
# sets `disabled = False` on every logger it does not name, and the values came back (found by the
# fuzz test running after the API tests).


def _drop_record(record: logging.LogRecord) -> bool:
    return False


for _module in (hl7.util, hl7.parser, hl7.containers):
    _logger = getattr(_module, "logger", None)
    if _logger is not None:
        _logger.addFilter(_drop_record)

# HL7 table 0211 (MSH-18) → Python codec; "" = not declared (the spec's policy decides)
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}

# ORU^R01 (v2.5) segment grammar, simplified to what a results feed sends; Z-segments pass anywhere.
_GRAMMAR: dict[str, dict[str, str]] = {
    "MSH": {"SFT": "MSH", "PID": "PID"},
    "PID": {"PD1": "PID", "NTE": "PID", "NK1": "PID", "PV1": "PV1", "ORC": "ORC", "OBR": "OBR"},
    "PV1": {"PV2": "PV1", "ORC": "ORC", "OBR": "OBR"},
    "ORC": {"OBR": "OBR"},
    "OBR": {"NTE": "OBR", "TQ1": "OBR", "TQ2": "OBR", "CTD": "OBR", "OBX": "OBX", "ORC": "ORC", "OBR": "OBR"},
    "OBX": {
        "OBX": "OBX",
        "NTE": "OBX",
        "FT1": "OBX",
        "CTI": "OBX",
        "SPM": "OBX",
        "ORC": "ORC",
        "OBR": "OBR",
        "DSC": "DSC",
    },
    "DSC": {},
}
_COMPLETE = frozenset({"OBX", "DSC"})
# fields a segment must reach (its last required field): fewer means the segment was cut
_MIN_FIELDS = {"PID": 5, "PV1": 2, "ORC": 1, "OBR": 4, "OBX": 11}
_BIRTH_NAME_TYPES = frozenset({"L", "B", "M"})  # legal (PAM-FR birth name), name at birth, maiden


class Hl7Options(BaseModel):
    """Options of the ``hl7v2_oru`` parser."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nir_oids: list[str] = Field(default_factory=lambda: ["1.2.250.1.213.1.4.8"])  # INS-NIR authority (PID-3.4.2)
    rpps_oids: list[str] = Field(default_factory=lambda: ["1.2.250.1.71.4.2.1"])  # IdNatPs ("8" + RPPS)
    coding_systems: dict[str, str] = Field(default_factory=lambda: {"LN": "LOINC"})  # OBX-3.3 → code system

    def code_systems_used(self) -> set[str]:
        return set(self.coding_systems.values())


def split_hl7(stream: BinaryIO, spec: SourceSpec, encoding: FileEncoding, target: int) -> list[Cut]:
    """Cuts at the start of an MSH segment, about every `target` bytes, each with the batch state
    before it (inside a BHS, how many messages counted): a part checks the trailers it reads, and
    only the last part reports a batch left open.

    Positions are counted as :func:`_blocks` counts them (a message, a block of segments outside
    any message); a segment the parser would read as oversized ends the cutting (its reading is
    the parser's alone), so the positions before every cut are exact.
    """
    limit = spec.limits.max_record_bytes
    cuts: list[Cut] = []
    position = batch_messages = 0
    in_batch = False
    kind = ""  # the block being read: "message", "orphan", "orphan_large" (over the limit: takes the rest), ""
    orphans = orphan_bytes = 0
    goal = target
    for start, segment in _segment_spans(stream, limit):
        if segment is None or len(segment) + 1 > limit:
            break
        head = segment[:3]
        if head == b"MSH":
            if start >= goal:
                state = (("in_batch", in_batch), ("batch_messages", batch_messages))
                cuts.append(Cut(start, 0, position, state, repeats_head=False))
                goal = start + target
            position, batch_messages, kind = position + 1, batch_messages + 1, "message"
        elif head in _ENVELOPE:
            kind = ""
            if head == b"BHS":
                in_batch, batch_messages = True, 0
            elif head == b"BTS":
                in_batch = False
        elif kind == "" or (kind == "orphan" and orphans >= _MAX_ORPHANS):
            position, batch_messages, kind = position + 1, batch_messages + 1, "orphan"
            orphans, orphan_bytes = 1, len(segment) + 1
        elif kind == "orphan":
            orphans, orphan_bytes = orphans + 1, orphan_bytes + len(segment) + 1
            if orphan_bytes > limit:
                kind = "orphan_large"
    return cuts


def _segment_spans(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(byte offset, segment without MLLP framing) per non-empty segment, as :func:`_segments` splits
    them; (offset, None) for a segment over `limit` bytes, where the scan stops."""
    base, carry = 0, b""
    while chunk := stream.read(_CHUNK << 4):
        block = carry + chunk
        cut = max(block.rfind(b"\r"), block.rfind(b"\n")) + 1
        for match in _SEGMENT_BODY.finditer(block, 0, cut):
            segment = match[0].strip(b"\x0b\x1c")
            if segment:
                yield base + match.start(), segment
        base, carry = base + cut, block[cut:]
        if len(carry) > limit:
            yield base, None
            return
    segment = carry.strip(b"\x0b\x1c")
    if segment:
        yield base, segment


@parser("hl7v2_oru", options=Hl7Options, produces=("measurement",), split=split_hl7)
def parse_hl7_oru(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """HL7 v2 ORU^R01 batches: one record per message, identity from PID, one measurement per OBX."""
    opts: Hl7Options = ctx.spec.parser_options  # type: ignore[assignment]
    limit = ctx.spec.limits.max_record_bytes
    position = 0
    state = ctx.part.state if ctx.part is not None else {}  # a part of a split file: the batch read before it
    in_batch: bool = state.get("in_batch", False)
    batch_messages: int = state.get("batch_messages", 0)
    for kind, segments, size in _blocks(_segments(stream, limit), limit):
        if kind == "BHS":
            if in_batch:
                yield ctx.quarantine(0, ReasonCode.HL7_BATCH_COUNT, "a batch (BHS) has no BTS trailer")
            in_batch, batch_messages = True, 0
        elif kind == "BTS":
            yield from _check_trailer(segments[0], batch_messages, in_batch, ctx)
            in_batch = False
        elif kind in ("FHS", "FTS"):
            continue
        else:
            position += 1
            batch_messages += 1
            raw = b"\r".join(segments) + b"\r"
            if kind == "too_large":
                yield ctx.quarantine(
                    position, ReasonCode.RECORD_TOO_LARGE,
                    f"message or segment of {size} bytes, over limits.max_record_bytes ({limit})", raw,
                )  # fmt: skip
            elif kind == "orphan":
                yield ctx.quarantine(position, ReasonCode.HL7_SEGMENT_ORDER, "segments outside a message (no MSH)", raw)
            else:
                yield _safe_message(segments, position, raw, ctx, opts)
    if in_batch and (ctx.part is None or ctx.part.last):
        yield ctx.quarantine(0, ReasonCode.HL7_BATCH_COUNT, "the batch has no BTS trailer (file cut short?)")


class _Big:
    """In place of a segment longer than the limit: its first bytes and its size (never held whole)."""

    __slots__ = ("head", "size")

    def __init__(self, head: bytes, size: int) -> None:
        self.head, self.size = head, size


def _segments(stream: BinaryIO, limit: int) -> Iterator[bytes | _Big]:
    """Non-empty segments, streamed; MLLP framing bytes (VT, FS) dropped; a segment over `limit`
    bytes is a :class:`_Big` (its bytes are read and dropped)."""
    carry = b""
    big: _Big | None = None  # the oversized segment being skipped
    while chunk := stream.read(_CHUNK):
        if big is not None:
            end = _SEGMENT_SPLIT.search(chunk)
            if end is None:
                big.size += len(chunk)
                continue
            big.size += end.start()
            yield big
            big, chunk = None, chunk[end.end():]
        parts = _SEGMENT_SPLIT.split(carry + chunk)
        carry = parts.pop()
        for part in parts:
            part = part.strip(b"\x0b\x1c")
            if len(part) > limit:
                yield _Big(part[:limit], len(part))
            elif part:
                yield part
        if len(carry) > limit:
            big, carry = _Big(carry[:limit], len(carry)), b""
    if big is not None:
        yield big
    carry = carry.strip(b"\x0b\x1c")
    if carry:
        yield carry


def _blocks(segments: Iterator[bytes | _Big], limit: int) -> Iterator[tuple[str, list[bytes], int]]:
    """(kind, segments, bytes): ("message", ...) from each MSH; ("FHS"|"BHS"|"BTS"|"FTS", [segment]);
    ("orphan", ...) for segments before any MSH (or after a trailer); ("too_large", first segments)
    for a message (or orphans) over `limit` bytes, whose other segments are counted and dropped."""
    current: list[bytes] = []
    kind = ""
    size = 0
    for segment in segments:
        length = segment.size if isinstance(segment, _Big) else len(segment) + 1
        head = segment.head[:3] if isinstance(segment, _Big) else segment[:3]
        if head == b"MSH" or (head in _ENVELOPE and not isinstance(segment, _Big)):
            if current:
                yield kind, current, size
            if head == b"MSH":
                kind, current, size = "message", [], 0
            else:
                yield head.decode(), [segment], length  # type: ignore[list-item]
                kind, current, size = "", [], 0
                continue
        elif not current or (kind == "orphan" and len(current) >= _MAX_ORPHANS):
            if current:
                yield kind, current, size
            kind, current, size = "orphan", [], 0
        size += length
        if kind == "too_large":
            continue
        if isinstance(segment, _Big) or size > limit:
            kind = "too_large"
            if isinstance(segment, _Big) and not current:
                current = [segment.head]
            continue
        current.append(segment)
    if current:
        yield kind, current, size


def _check_trailer(bts: bytes, counted: int, in_batch: bool, ctx: FileContext) -> Iterator[ParseOutcome]:
    fields = bts.split(bts[3:4]) if len(bts) > 3 else [bts]
    declared = fields[1].strip() if len(fields) > 1 else b""
    if not in_batch:
        yield ctx.quarantine(0, ReasonCode.HL7_BATCH_COUNT, "a BTS trailer without its BHS header")
    elif not declared.isdigit():
        yield ctx.quarantine(0, ReasonCode.HL7_BATCH_COUNT, "BTS-1 (message count) is missing or not a number")
    elif int(declared) != counted:
        yield ctx.quarantine(
            0, ReasonCode.HL7_BATCH_COUNT, f"BTS-1 declares {int(declared)} messages, the batch holds {counted}"
        )


def _safe_message(segments: list[bytes], position: int, raw: bytes, ctx: FileContext, opts: Hl7Options) -> ParseOutcome:
    try:
        return _message(segments, position, raw, ctx, opts)
    except Invalid as fault:
        return ctx.quarantine(position, fault.reason, fault.message, raw)
    except Exception as exc:  # an extraction bug costs this message, not the rest of the batch
        return ctx.quarantine(position, ReasonCode.PARSER_ERROR, f"extraction raised {type(exc).__name__}", raw)


def _message(segments: list[bytes], position: int, raw: bytes, ctx: FileContext, opts: Hl7Options) -> ParseOutcome:
    msh = segments[0]
    separator = msh[3:4]
    fields = msh.split(separator) if separator else [msh]
    if len(fields) < 12 or not all(fields[i].strip() for i in (1, 8, 9, 11)):
        raise Invalid(ReasonCode.HL7_TRUNCATED, "MSH lacks required fields (MSH-2, MSH-9, MSH-10, MSH-12)")
    if not _separators_valid(separator + fields[1]):
        raise Invalid(ReasonCode.HL7_MALFORMED, "MSH-1/MSH-2: separators are not distinct punctuation characters")
    texts = _decode(segments, fields[17] if len(fields) > 17 else b"", fields[1][1:2] or b"~", ctx)
    component = fields[1][0:1].decode("ascii", "replace")
    message_type = texts[0].split(separator.decode("latin-1"))[8].split(component)
    if message_type[:2] != ["ORU", "R01"]:
        raise Invalid(ReasonCode.HL7_MESSAGE_TYPE, "MSH-9 is not ORU^R01")
    _check_structure(texts, separator.decode("latin-1"))
    pieces, most = sum(raw.count(c) for c in set(separator + fields[1][:4])), ctx.spec.limits.max_record_fields
    if pieces > most:  # python-hl7 makes an object of every piece
        raise Invalid(ReasonCode.RECORD_TOO_LARGE, f"{pieces} separators, over limits.max_record_fields ({most})")
    try:
        message = hl7.parse("\r".join(texts))
    except (hl7.ParseException, IndexError, ValueError, AssertionError):
        raise Invalid(ReasonCode.HL7_MALFORMED, "python-hl7 cannot parse the message") from None
    return _record(message, position, raw, ctx, opts)


def _separators_valid(separators: bytes) -> bool:
    """MSH-1 and MSH-2 (``|^~\\&``, v2.7 adds a truncation character): distinct ASCII punctuation.

    python-hl7 trusts them (repeated or alphanumeric separators fail an assertion deep in its
    parser, or silently split names in the wrong places), so they are checked first.
    """
    return (
        len(separators) in (5, 6)
        and len(set(separators)) == len(separators)
        and all(33 <= c < 127 and not chr(c).isalnum() for c in separators)
    )


def _decode(segments: list[bytes], msh18: bytes, repetition: bytes, ctx: FileContext) -> list[str]:
    declared = msh18.split(repetition)[0].decode("ascii", "replace").strip().upper()
    if declared:
        codec = _CHARSETS.get(declared)
        if codec is None:
            raise Invalid(ReasonCode.ENCODING_INVALID, "MSH-18 declares a character set this parser does not decode")
        codecs = [codec]
    elif ctx.spec.encoding != "auto":
        codecs = [ctx.spec.encoding]
    else:
        codecs = ["utf-8", "latin-1"] if ctx.spec.latin1_fallback else ["utf-8"]
    for codec in codecs:
        try:
            return [segment.decode(codec) for segment in segments]
        except UnicodeDecodeError:
            continue
    where = "the MSH-18 character set" if declared else "the spec's encoding"
    raise Invalid(ReasonCode.ENCODING_INVALID, f"message bytes do not decode in {where}")


def _check_structure(texts: list[str], separator: str) -> None:
    state = "MSH"
    for number, text in enumerate(texts[1:], start=2):
        sid = text[:3]
        if not _SEGMENT_ID.fullmatch(sid) or (len(text) > 3 and text[3] != separator):
            raise Invalid(ReasonCode.HL7_TRUNCATED, f"segment {number} does not start with a segment id (cut line)")
        if sid[0] == "Z":
            continue
        following = _GRAMMAR[state].get(sid)
        if following is None:
            raise Invalid(ReasonCode.HL7_SEGMENT_ORDER, f"segment {number} ({sid}) cannot follow {state} in ORU^R01")
        required = _MIN_FIELDS.get(sid, 0)
        if text.count(separator) < required:
            raise Invalid(ReasonCode.HL7_TRUNCATED, f"segment {number} ({sid}) ends before {sid}-{required}")
        state = following
    if state not in _COMPLETE:
        raise Invalid(ReasonCode.HL7_TRUNCATED, f"message ends after {state}, before its results (OBX)")


def _get(segment: hl7.Segment, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """A field value (unescaped, stripped), or "" when absent.

    Walks python-hl7's tree directly (its ``extract_field`` builds an accessor per call, a third
    of the parse time); like it, a path deeper than the tree reads the first child.
    """
    if field >= len(segment):
        return ""
    node = segment[field]
    for index in (rep, comp, sub):
        if isinstance(node, str):
            if index != 1:
                return ""
            break
        if index > len(node):
            return ""
        node = node[index - 1]
    while not isinstance(node, str):  # a deeper tree than the path: its first leaf
        node = node[0] if len(node) else ""
    return (_unescape(segment, node) if segment.esc in node else node).strip()


def _unescape(segment: hl7.Segment, text: str) -> str:
    """python-hl7's unescape, made safe for hostile input.

    Formatting commands with a count (``\\.sp3000000000\\``: that many line breaks) are
    dropped first: python-hl7 would build a string of that length from a few bytes. A sequence
    it cannot decode (``\\.skx\\``: ``int("x")``) leaves the text as sent.
    """
    esc = re.escape(segment.esc)
    text = re.sub(f"{esc}\\.[a-z]{{2}}[^{esc}]+{esc}", " ", text)
    try:
        return hl7_unescape(segment, text)
    except (ValueError, IndexError, TypeError):
        return text


def _repetitions(segment: hl7.Segment, field: int) -> int:
    return len(segment[field]) if field < len(segment) else 0


def _record(message: hl7.Message, position: int, raw: bytes, ctx: FileContext, opts: Hl7Options) -> SourceRecord:
    checks = ctx.checks
    msh = message[0]
    pid = next(s for s in message if str(s[0]) == "PID")
    identity = checks.identity(_pid_identity(pid, opts), "%Y%m%d", where="PID")
    lab = _get(msh, 4) or None
    fallback_day = _get(msh, 7)[:8]
    events: list[Event] = []
    ordering: str | None = None
    order_key: str | None = None
    orders: list[str] = []
    order_day = fallback_day
    observation = 0
    for segment in message:
        sid = str(segment[0])
        if sid == "OBR":
            order_key = _get(segment, 3) or _get(segment, 2) or None
            orders.append(order_key or "")
            order_day = _get(segment, 7)[:8] or fallback_day
            ordering = ordering or _rpps(segment, 16, opts)
        elif sid == "ORC":
            ordering = ordering or _rpps(segment, 12, opts)
        elif sid == "OBX":
            observation += 1
            events.append(_obx_event(segment, observation, order_key, order_day, lab, checks, opts))
    attributes = (("ordering_rpps", ordering),) if ordering else ()
    return SourceRecord(
        source=ctx.source,
        file=ctx.file,
        position=position,
        record_id=_sender_record(lab, orders) or _get(msh, 10) or None,
        raw=raw,
        identity=identity,
        events=tuple(events),
        attributes=attributes,
    )


def _sender_record(lab: str | None, orders: list[str]) -> str | None:
    """The sender record a message is a version of: the lab and its orders' filler numbers (OBR-3).

    Why not MSH-10: a corrected result (OBX-11 = C) or a resent order comes in a new message with
    a new control id, and must replace the first version (:mod:`pdp.ingest.versions`), not land
    beside it. None when an order has no number (the message is then its own record).
    """
    if not lab or not orders or not all(orders):
        return None
    return f"{lab}|{'|'.join(sorted(set(orders)))}"


def _pid_identity(pid: hl7.Segment, opts: Hl7Options) -> dict[str, str | None]:
    texts: dict[str, str | None] = {}
    for rep in range(1, _repetitions(pid, 3) + 1):
        if _get(pid, 3, rep, 4, 2) in opts.nir_oids:
            texts["nir"] = _get(pid, 3, rep, 1)
    for rep in range(1, _repetitions(pid, 5) + 1):
        kind = _get(pid, 5, rep, 7)
        family = _get(pid, 5, rep, 1)
        if kind == "D":
            texts["used_name"] = family
        elif kind in _BIRTH_NAME_TYPES or (not kind and "birth_name" not in texts):
            texts["birth_name"] = family
            texts["first_names"] = _get(pid, 5, rep, 3) or _get(pid, 5, rep, 2)
    birth = _get(pid, 7)
    texts["birth_date"] = birth[:8] if len(birth) >= 8 else birth
    texts["sex"] = _get(pid, 8)
    for rep in range(1, _repetitions(pid, 11) + 1):
        kind = _get(pid, 11, rep, 7)
        if kind == "BDL":
            texts["birth_place"] = _get(pid, 11, rep, 9)
        elif kind in ("H", "") and "address_line" not in texts:
            texts["address_line"] = _get(pid, 11, rep, 1)
            texts["postcode"] = _get(pid, 11, rep, 5)
            texts["commune_code"] = _get(pid, 11, rep, 9)
    for rep in range(1, _repetitions(pid, 13) + 1):
        if _get(pid, 13, rep, 3).upper() in ("INTERNET", "X.400"):
            texts["email"] = _get(pid, 13, rep, 4)
        elif "phone" not in texts:
            texts["phone"] = _get(pid, 13, rep, 1) or _get(pid, 13, rep, 12)
    return texts


def _rpps(segment: hl7.Segment, field: int, opts: Hl7Options) -> str | None:
    """RPPS of an XCN whose authority is the IdNatPs OID ("8" + 11-digit RPPS)."""
    identifier = _get(segment, field, 1, 1)
    if _get(segment, field, 1, 9, 2) in opts.rpps_oids and len(identifier) == 12 and identifier[0] == "8":
        return identifier[1:]
    return None


def _obx_event(
    obx: hl7.Segment,
    number: int,
    order_key: str | None,
    order_day: str,
    lab: str | None,
    checks: Checks,
    opts: Hl7Options,
) -> Event:
    where = f"OBX {number}"
    code = _get(obx, 3, 1, 1)
    if not code:
        raise Invalid(ReasonCode.FIELD_MISSING, f"{where}: OBX-3 (test code) empty")
    system = opts.coding_systems.get(_get(obx, 3, 1, 3))
    if system is None:
        raise Invalid(ReasonCode.CODE_UNKNOWN, f"{where}: OBX-3 coding system not mapped by the spec")
    value: float | None = None
    text = _get(obx, 5)
    if text and _get(obx, 2) == "NM":
        value = checks.number(text, f"{where} OBX-5")
    elif text and _get(obx, 2) == "SN":
        value = checks.number(_get(obx, 5, 1, 2), f"{where} OBX-5")
    day = _get(obx, 14)[:8] or order_day
    if not day:
        raise Invalid(ReasonCode.FIELD_MISSING, f"{where}: no observation date (OBX-14, OBR-7, MSH-7)")
    event = Event(
        domain="measurement",
        code_system=system,
        code=code,
        start_date=checks.date(day, "%Y%m%d", f"{where} OBX-14"),
        value=value,
        unit=_get(obx, 6, 1, 1) or None,
        visit_key=order_key,
        provider=lab,
        status=_get(obx, 11) or None,
        source_value=f"{code}^^{_get(obx, 3, 1, 3)}",  # the code as sent, without its text (OBX-3.2 is typed)
    )
    return checks.event(event, f"{where} OBX-3")
