"""Free-text reports through their document-sharing index: de-identified and read for facts at the edge.

Why a parser of the index and not of the documents: a discharge letter alone does not say whose
it is; the index row sent with it (XDS/DMP-like ``reports/index.csv``) carries the patient's
identity, the document's date and type. So one record = one index row and its document, read
from the ingest root (the source's ``companions`` globs; a path outside them is refused).

What happens to the text, here, in the edge's worker (the raw text never leaves this function):

* :func:`pdp.semantic.deid.deidentify` with the index row's traits (names, birth date, NIR):
  identifiers become typed placeholders; only that de-identified text travels on, as the record
  attribute ``note_text`` (``store_text: false`` keeps no text at all);
* :func:`pdp.semantic.facts.extract_facts` on the raw text: each fact that has a code becomes an
  event of domain ``text`` (code system and code from the lexicon, dated with the document,
  ``status`` = the assertion, plus ``;history``, ``source_value`` = the rule that found it and
  its offsets *in the de-identified text*), landing in ``silver.note_fact``, the declared text
  input of the population definitions (only ``affirmed`` facts count there).

The document id is a sender-local id (``record_id_local``: bronze keeps its keyed hash). A row
whose document is missing or unreadable is DOCUMENT_MISSING; a de-identification failure is
DEID_FAILED (nothing of that document lands); messages name fields, never values.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from fnmatch import fnmatchcase
from typing import BinaryIO

from pydantic import BaseModel, ConfigDict

from pdp.ingest.model import Event, IdentityFields, ParseOutcome, SourceRecord
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.reasons import ReasonCode

__all__ = ["ReportIndexOptions", "parse_report_index"]

_COLUMNS = ("doc_id", "file", "doc_type", "date", "nir", "birth_name", "used_name", "first_names", "birth_date", "sex")
_MAX_DOCUMENT_BYTES = 2_000_000


class ReportIndexOptions(BaseModel):
    """``store_text``: keep the de-identified text in silver (else only the facts); ``ner``: run the
    spaCy model besides the rules (off: rules only, ~3x faster, for a deployment that accepts it)."""

    model_config = ConfigDict(extra="forbid")
    store_text: bool = True
    ner: bool = True


def _date(text: str | None) -> date | None:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def _document(ctx: FileContext, rel: str) -> bytes | None:
    """The document's bytes if ``rel`` is one of the source's documents under the ingest root."""
    if ctx.root is None or not rel or not any(fnmatchcase(rel, g) for g in ctx.spec.companions):
        return None
    root = ctx.root.resolve()
    path = (root / rel).resolve()
    if root not in path.parents or not path.is_file() or path.stat().st_size > _MAX_DOCUMENT_BYTES:
        return None
    return path.read_bytes()


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
    from pdp.semantic import PersonTraits, deidentify
    from pdp.semantic.deid import DeidError
    from pdp.semantic.facts import extract_facts

    opts = ReportIndexOptions.model_validate(ctx.spec.options)
    reader = csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        yield ctx.quarantine(0, ReasonCode.HEADER_MISMATCH, f"index columns missing: {', '.join(missing)}")
        return
    for position, row in enumerate(reader, start=1):
        raw_row = "\x1f".join(str(row.get(c) or "") for c in _COLUMNS).encode("utf-8")
        day, born = _date(row.get("date")), _date(row.get("birth_date"))
        if day is None or born is None:
            yield ctx.quarantine(position, ReasonCode.DATE_INVALID, "date or birth_date is not a date (YYYY-MM-DD)",
                                 raw_row)
            continue
        if not (row.get("birth_name") or "").strip():
            yield ctx.quarantine(position, ReasonCode.IDENTITY_MISSING, "birth_name is empty", raw_row)
            continue
        data = _document(ctx, (row.get("file") or "").strip())
        if data is None:
            yield ctx.quarantine(position, ReasonCode.DOCUMENT_MISSING,
                                 "file: no such document among the source's documents", raw_row)
            continue
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            yield ctx.quarantine(position, ReasonCode.ENCODING_INVALID, "the document is not UTF-8 text",
                                 raw_row + b"\x1e" + data)
            continue
        traits = PersonTraits(birth_name=row.get("birth_name") or None, used_name=row.get("used_name") or None,
                              first_names=row.get("first_names") or None, birth_date=born,
                              nir=row.get("nir") or None)
        try:
            result = deidentify(text, traits, ner=opts.ner)
        except DeidError:
            yield ctx.quarantine(position, ReasonCode.DEID_FAILED, "the document could not be de-identified",
                                 raw_row + b"\x1e" + data)
            continue
        redactions = sorted((s.start, s.end, s.out_end - s.out_start) for s in result.spans)
        events = []
        for fact in extract_facts(text):
            if fact.code is None:
                continue
            system, code = fact.code.split(":", 1)
            start, end = _shift(redactions, fact.start), _shift(redactions, fact.end)
            events.append(Event(
                domain="text", code_system=system, code=code, start_date=day, value=fact.value, unit=fact.unit,
                status=fact.assertion + (";history" if fact.history else ""),
                source_value=f"{fact.rule}@{start}-{end}",
            ))
        attributes = [("note_type", (row.get("doc_type") or "").strip()), ("note_date", day.isoformat()),
                      ("note_redactions", str(len(result.spans)))]
        if opts.store_text:
            attributes.append(("note_text", result.text))
        yield SourceRecord(
            source=ctx.source, file=ctx.file, position=position, record_id=(row.get("doc_id") or "").strip() or None,
            raw=raw_row + b"\x1e" + data,
            identity=IdentityFields(
                birth_name=(row.get("birth_name") or "").strip() or None,
                used_name=(row.get("used_name") or "").strip() or None,
                first_names=(row.get("first_names") or "").strip() or None,
                sex=(row.get("sex") or "").strip() or None, birth_date=born,
                nir=(row.get("nir") or "").strip() or None,
            ),
            events=tuple(events), attributes=tuple(attributes), record_id_local=True,
        )

