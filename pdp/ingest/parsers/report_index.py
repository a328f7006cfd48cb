"""Free-text reports through their document-sharing index: de-identified and read for facts at the edge.

Why a parser of the index and not of the documents: a discharge letter alone does not say whose
it is; the index row sent with it (XDS/DMP-like ``reports/index.csv``) carries the patient's
identity, the document's date and type. So one record = one index row and its document, read
from the ingest root (the source's ``companions`` globs; a path outside them is refused).

What happens to the text, here, in the edge's worker (the raw text never leaves this parser):

* :func:`pdp.semantic.deid.deidentify_many`, a few documents at a time (the model's batch), with
  the index row's traits (names, birth date, NIR)
  enriched with what the identity vault's *linkage view* knows of the same person (other family
  names, first names, NIR, birth date: :mod:`pdp.ingest.known`, one vault read per chunk of
  ``_CHUNK`` rows, through the edge's keys; the vault's sealed address, phone and e-mail are not
  the edge's to read): identifiers become typed placeholders; only that de-identified text
  travels on, as the record attribute ``note_text`` (``store_text: false`` keeps no text at all);
* :func:`pdp.semantic.facts.extract_facts` on the raw text: each fact that has a code becomes an
  event of domain ``text`` (code system and code from the lexicon, dated with the document,
  ``status`` = the assertion, plus ``;history``, ``source_value`` = the rule that found it and
  its offsets *in the de-identified text*), landing in ``silver.note_fact``, the declared text
  input of the population definitions (only ``affirmed`` facts count there).

The index is read as any delimited file is (:func:`~pdp.ingest.parsers.delimited.csv_records`,
its encoding decided once by :mod:`pdp.ingest.encoding`): an undecodable header or row is
ENCODING_INVALID, never a crash of the file. ``doc_type`` is a closed vocabulary declared in the
spec's options (``doc_types``: value as sent → ``note_type``): an empty one is FIELD_MISSING, an
unknown one VALUE_INVALID.

The document id is a sender-local id (the edge lands its keyed hash only, as for every record id). A row
whose document is missing or unreadable is DOCUMENT_MISSING; a de-identification failure is
DEID_FAILED (nothing of that document lands); messages name fields, never values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pdp.ingest.encoding import Oversize, detect_encoding, iter_lines
from pdp.ingest.model import Event, IdentityFields, ParseOutcome, Quarantined, SourceRecord
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.parsers.delimited import csv_records, header_names
from pdp.ingest.reasons import ReasonCode

if TYPE_CHECKING:
    from pdp.pseudonym.vault import VaultRecord
    from pdp.semantic import DeidResult, PersonTraits

__all__ = ["ReportIndexOptions", "parse_report_index"]

_COLUMNS = ("doc_id", "file", "doc_type", "date", "nir", "birth_name", "used_name", "first_names", "birth_date", "sex")
_TRAITS = ("birth_name", "used_name", "first_names", "nir")
_MAX_TRAIT_CHARS = 200  # no civil-status name is near it; the de-identifier's patterns are built from these
_CHUNK = 256  # index rows per vault read: one look-up per chunk, bounded memory (rows, never documents)
# documents held and de-identified together (the model's batch), up to a number of characters: a
# worker holds at most ~_DEID_BATCH_CHARS of text (and the model's view of it), or one document
_DEID_BATCH = 32
_DEID_BATCH_CHARS = 1_000_000
_DIALECT = {"delimiter": ",", "quotechar": '"', "strict": True}
_NOTE_TYPE = re.compile(r"[a-z][a-z0-9_]*")


class ReportIndexOptions(BaseModel):
    """``store_text``: keep the de-identified text in silver (else only the facts); ``ner``: run the
    spaCy model besides the rules (off: rules only, ~3x faster, for a deployment that accepts it);
    ``doc_types``: the closed vocabulary of the index's ``doc_type`` (value as sent → ``note_type``
    in silver), declared in the versioned source spec like a mapping's ``map``: a value outside
    it is VALUE_INVALID, so a sender's new or misspelt type never becomes a silver category unseen."""

    model_config = ConfigDict(extra="forbid")
    store_text: bool = True
    ner: bool = True
    doc_types: dict[str, str] = Field(min_length=1)

    @field_validator("doc_types")
    @classmethod
    def _note_types(cls, value: dict[str, str]) -> dict[str, str]:
        for sent, note_type in value.items():
            if not sent.strip() or not _NOTE_TYPE.fullmatch(note_type):
                raise ValueError(f"{sent!r}: a non-empty sent value → a lower-case snake_case note type")
        return value


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def _document(ctx: FileContext, rel: str) -> bytes | Oversize | None:
    """The document's bytes if ``rel`` is one of the source's documents under the ingest root
    (an :class:`Oversize` when it is larger than ``limits.max_document_bytes``: never read)."""
    if ctx.root is None or not rel or not any(fnmatchcase(rel, g) for g in ctx.spec.companions):
        return None
    try:  # a path the OS refuses (a NUL byte, a name too long) or a file that cannot be read: missing
        root = ctx.root.resolve()
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            return None
        size, limit = path.stat().st_size, ctx.spec.limits.max_document_bytes
        if size > limit:
            return Oversize(size, limit)
        return path.read_bytes()
    except (OSError, ValueError):
        return None


def _shift(spans: list[tuple[int, int, int]], offset: int) -> int:
    """``offset`` in the original text → in the de-identified text (facts never straddle a redaction)."""
    moved = offset
    for start, end, replaced in spans:
        if end <= offset:
            moved += replaced - (end - start)
    return moved


@parser("report_index", options=ReportIndexOptions, produces=("text",))
def parse_report_index(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """Free-text reports: the index CSV's rows with their documents, de-identified, facts extracted."""
    opts: ReportIndexOptions = ctx.spec.parser_options  # type: ignore[assignment]
    encoding = detect_encoding(stream, ctx.spec.encoding, latin1_fallback=ctx.spec.latin1_fallback)
    limit = ctx.spec.limits.max_record_bytes
    lines = iter_lines(stream, encoding, max_bytes=limit)
    header = next(lines, None)
    if header is None:
        return
    if isinstance(header[2], Oversize):
        yield ctx.quarantine(0, ReasonCode.RECORD_TOO_LARGE, f"header: {header[2].message}")
        return
    if header[2] is None:
        yield ctx.quarantine(0, ReasonCode.ENCODING_INVALID, f"header: not decodable ({encoding.decision} file)")
        return
    names = header_names(header[2], _DIALECT, ctx.spec.limits.max_record_fields)
    if names is None:
        yield ctx.quarantine(0, ReasonCode.HEADER_MISMATCH, "index header is not one line of CSV")
        return
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        yield ctx.quarantine(0, ReasonCode.HEADER_MISMATCH, f"index columns missing: {', '.join(missing)}")
        return
    pending: list[Quarantined | _Row] = []
    for position, raw, fields, fault in csv_records(lines, _DIALECT, max_bytes=limit,
                                                    max_fields=ctx.spec.limits.max_record_fields):
        if fault is not None:
            pending.append(ctx.quarantine(position, fault[0], fault[1], raw))
        elif len(fields) != len(names):
            pending.append(ctx.quarantine(position, ReasonCode.FIELD_COUNT,
                                          f"row has {len(fields)} fields, header {len(names)}", raw))
        else:
            pending.append(_checked(dict(zip(names, fields, strict=True)), position, ctx, opts))
        if len(pending) >= _CHUNK:
            yield from _chunk(pending, ctx, opts)
            pending = []
    yield from _chunk(pending, ctx, opts)


@dataclass(frozen=True, slots=True)
class _Row:
    """An index row that passed the checks made before its document is read."""

    row: dict[str, str]
    position: int
    raw: bytes
    day: date
    note_type: str
    identity: IdentityFields

    def __repr__(self) -> str:  # an index row is nominative: never in a log or a test report
        return f"_Row(position={self.position})"


def _checked(row: dict[str, str], position: int, ctx: FileContext, opts: ReportIndexOptions) -> Quarantined | _Row:
    """The row's faults found without its document (dates, identity, type), or the row ready to read."""
    raw_row = "\x1f".join(str(row.get(c) or "") for c in _COLUMNS).encode("utf-8")
    day, born = _date(row.get("date")), _date(row.get("birth_date"))
    if day is None or born is None:
        return ctx.quarantine(position, ReasonCode.DATE_INVALID, "date or birth_date is not a date (YYYY-MM-DD)",
                              raw_row)
    if not (row.get("birth_name") or "").strip():
        return ctx.quarantine(position, ReasonCode.IDENTITY_MISSING, "birth_name is empty", raw_row)
    for column in _TRAITS:  # the de-identifier compiles a pattern per name: a 60 KB "name" took 10 s
        if len(row.get(column) or "") > _MAX_TRAIT_CHARS:
            return ctx.quarantine(position, ReasonCode.VALUE_INVALID,
                                  f"{column}: longer than {_MAX_TRAIT_CHARS} characters, not a name", raw_row)
    sent_type = (row.get("doc_type") or "").strip()
    if not sent_type:
        return ctx.quarantine(position, ReasonCode.FIELD_MISSING, "doc_type is empty", raw_row)
    note_type = opts.doc_types.get(sent_type)
    if note_type is None:
        return ctx.quarantine(position, ReasonCode.VALUE_INVALID, "doc_type: value outside the spec's doc_types",
                              raw_row)
    identity = IdentityFields(
        birth_name=(row.get("birth_name") or "").strip() or None,
        used_name=(row.get("used_name") or "").strip() or None,
        first_names=(row.get("first_names") or "").strip() or None,
        sex=(row.get("sex") or "").strip() or None, birth_date=born,
        nir=(row.get("nir") or "").strip() or None,
    )
    return _Row(row, position, raw_row, day, note_type, identity)


def _chunk(pending: list[Quarantined | _Row], ctx: FileContext, opts: ReportIndexOptions) -> Iterator[ParseOutcome]:
    """A chunk's outcomes in file order, the vault read once for the chunk's persons (not per document)."""
    rows = [item for item in pending if isinstance(item, _Row)]
    known = ctx.known.lookup([r.identity for r in rows]) if ctx.known is not None and rows else [None] * len(rows)
    by_position = {r.position: k for r, k in zip(rows, known, strict=True)}
    queue: list[tuple[Quarantined | _Row, _Text | Quarantined | None]] = []
    texts = chars = 0
    for item in pending:
        doc = _read(item, by_position[item.position], ctx) if isinstance(item, _Row) else None
        if isinstance(doc, _Text) and texts and chars + len(doc.text) > _DEID_BATCH_CHARS:
            yield from _batch(queue, ctx, opts)  # this document would take the batch over its characters
            queue, texts, chars = [], 0, 0
        queue.append((item, doc))
        if isinstance(doc, _Text):
            texts, chars = texts + 1, chars + len(doc.text)
        if texts >= _DEID_BATCH or chars >= _DEID_BATCH_CHARS:
            yield from _batch(queue, ctx, opts)
            queue, texts, chars = [], 0, 0
    yield from _batch(queue, ctx, opts)


def _batch(queue: list[tuple[Quarantined | _Row, _Text | Quarantined | None]], ctx: FileContext,
           opts: ReportIndexOptions) -> Iterator[ParseOutcome]:
    """The queued rows' outcomes in file order, their documents de-identified as one batch."""
    results = iter(_deidentified([doc for _, doc in queue if isinstance(doc, _Text)], opts))  # in queue order
    for item, doc in queue:
        if isinstance(item, Quarantined):
            yield item
        elif isinstance(doc, _Text):
            yield _outcome(item, doc, next(results), ctx, opts)
        elif isinstance(doc, Quarantined):  # the row's document could not be read
            yield doc


@dataclass(frozen=True, slots=True)
class _Text:
    """A row's document, read and decoded, with the traits it is de-identified with."""

    text: str
    data: bytes
    traits: PersonTraits

    def __repr__(self) -> str:  # a document and its traits are nominative
        return "_Text(<hidden>)"


def _read(item: _Row, known: VaultRecord | None, ctx: FileContext) -> _Text | Quarantined:
    """The row's document, decoded, and the row's and the vault's traits of the person; or why not."""
    from pdp.ingest.known import enrich
    from pdp.semantic import PersonTraits

    data = _document(ctx, (item.row.get("file") or "").strip())
    if data is None:
        return ctx.quarantine(item.position, ReasonCode.DOCUMENT_MISSING,
                              "file: no such document among the source's documents", item.raw)
    if isinstance(data, Oversize):
        return ctx.quarantine(item.position, ReasonCode.RECORD_TOO_LARGE,
                              f"the document has {data.size} bytes, over limits.max_document_bytes ({data.limit})",
                              item.raw)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ctx.quarantine(item.position, ReasonCode.ENCODING_INVALID, "the document is not UTF-8 text",
                              item.raw + b"\x1e" + data)
    ident = item.identity
    traits = enrich(PersonTraits(birth_name=ident.birth_name, used_name=ident.used_name,
                                 first_names=ident.first_names, birth_date=ident.birth_date, nir=ident.nir), known)
    return _Text(text, data, traits)


def _deidentified(docs: list[_Text], opts: ReportIndexOptions) -> list[DeidResult | None]:
    """Each document de-identified (None: it could not be); the model runs over them as one batch.

    Why a batch: spaCy's ``nlp.pipe`` costs less per document than one call each (128 synthetic
    reports, ad hoc, 2026-12-07: 4.8-5.2 ms a document against 6.6-7.3; the 2 334 reports of a
    30 000-person territory parsed in one process, ad hoc, model load included: 32.5 → 25.4 s).
    A batch that fails is done again one document at a time (each document twice: a rare cost), so
    that only the documents that fail are quarantined.
    """
    from pdp.semantic import deidentify, deidentify_many
    from pdp.semantic.deid import DeidError

    if not docs:
        return []
    try:
        return list(deidentify_many([(d.text, d.traits) for d in docs], ner=opts.ner, batch_size=_DEID_BATCH))
    except DeidError:
        pass
    results: list[DeidResult | None] = []
    for doc in docs:
        try:
            results.append(deidentify(doc.text, doc.traits, ner=opts.ner))
        except DeidError:
            results.append(None)
    return results


def _outcome(item: _Row, doc: _Text, result: DeidResult | None, ctx: FileContext, opts: ReportIndexOptions
             ) -> ParseOutcome:
    """One row's record from its document, de-identified, and the facts extracted from it."""
    from pdp.ingest.validate import TEXT_VALUE_UNIT
    from pdp.semantic import UnitRefused, land_unit
    from pdp.semantic.facts import extract_facts

    row, position, raw_row, day, text, data = item.row, item.position, item.raw, item.day, doc.text, doc.data
    if result is None:
        return ctx.quarantine(position, ReasonCode.DEID_FAILED, "the document could not be de-identified",
                              raw_row + b"\x1e" + data)
    redactions = sorted((s.start, s.end, s.out_end - s.out_start) for s in result.spans)
    events = []
    for fact in extract_facts(text):
        if fact.code is None:
            continue
        system, code = fact.code.split(":", 1)
        start, end = _shift(redactions, fact.start), _shift(redactions, fact.end)
        value, unit = fact.value, fact.unit
        if unit is not None:
            try:
                unit = land_unit(system, code, unit)
            except UnitRefused:  # a value in a unit the rules cannot convert (mg/24h for a ratio): the
                value = unit = None  # mention is kept, its value is not read as another quantity; counted
                ctx.skip(TEXT_VALUE_UNIT)
        events.append(Event(
            domain="text", code_system=system, code=code, start_date=day, value=value, unit=unit,
            status=fact.assertion + (";history" if fact.history else ""),
            source_value=f"{fact.rule}@{start}-{end}",
        ))
    attributes = [("note_type", item.note_type), ("note_date", day.isoformat()),
                  ("note_redactions", str(len(result.spans)))]
    if opts.store_text:
        attributes.append(("note_text", result.text))
    return SourceRecord(
        source=ctx.source, file=ctx.file, position=position, record_id=(row.get("doc_id") or "").strip() or None,
        raw=raw_row + b"\x1e" + data, identity=item.identity, events=tuple(events), attributes=tuple(attributes),
    )
