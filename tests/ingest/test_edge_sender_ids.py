"""Sender-local ids land keyed, whatever the source: a stay number, an invoice number, an HL7
message control id or order number, a death act number are handles a sender can map back to its
patient. Their keyed hashes still do the jobs the ids did: a stay's events share one key, the same
stay resent in a later file keys the same, and the same number at another source does not."""

from __future__ import annotations

import re
from datetime import date

from pdp.ingest.edge import BronzeRow, Edge
from pdp.ingest.model import Event, IdentityFields, SourceRecord
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.pseudonymise import KEYED_ID_PATTERN

PERSON = IdentityFields(birth_name="DURAND", first_names="Élise", sex="F", birth_date=date(1957, 3, 12))
DAY = date(2024, 5, 2)


def stay(source: str, file: str, number: str, raw: bytes) -> SourceRecord:
    """A PMSI-like stay: its number is the record id and every event's visit key."""
    events = tuple(Event(domain=d, code_system=s, code=c, start_date=DAY, visit_key=number, provider="590000123")
                   for d, s, c in (("visit", "PMSI-UNIT", "MCO"), ("condition", "CIM-10", "E11.9"),
                                   ("procedure", "CCAM", "DEQP003")))
    return SourceRecord(source=source, file=file, position=1, record_id=number, raw=raw, identity=PERSON,
                        events=events)


def test_record_ids_and_visit_keys_land_keyed_and_still_group_and_match(store: KeyStore) -> None:
    edge = Edge(store)
    first, resent, invoice, act = edge.process([
        stay("pmsi", "pmsi/590000123_M1.csv", "S1f-2041-7", b"stay M1"),
        stay("pmsi", "pmsi/590000123_M2.csv", "S1f-2041-7", b"stay M2, corrected"),  # cumulative resend
        stay("pharmacy", "pharmacy/590000456.csv", "S1f-2041-7", b"an invoice numbered alike"),
        SourceRecord(source="insee_deaths", file="insee/deces.txt", position=1, record_id="123456789",
                     raw=b"death", identity=PERSON,
                     events=(Event(domain="death", code_system="SNOMED", code="419099009", start_date=DAY),)),
    ])
    rows = [first, resent, invoice, act]
    assert all(isinstance(r, BronzeRow) for r in rows)
    keyed = re.compile(KEYED_ID_PATTERN)
    for row in rows:
        assert isinstance(row, BronzeRow) and row.record_id and keyed.fullmatch(row.record_id)
        assert all(e["visit_key"] is None or keyed.fullmatch(e["visit_key"]) for e in row.events)
    assert {e["visit_key"] for e in first.events} == {first.record_id}, "a stay's events share the stay's key"
    assert resent.record_id == first.record_id, "a resend matches its first version"
    assert resent.record_hash != first.record_hash, "while its bytes (a correction) make another record"
    assert invoice.record_id != first.record_id, "the same number at another source is another id"
    landed = repr([(r.record_id, r.events, r.attributes) for r in rows])
    assert "S1f-2041-7" not in landed and "123456789" not in landed
    assert Edge(store).keyed_id("S1f-2041-7", source="pmsi") == first.record_id, "stable across runs"


def test_file_level_rows_of_one_file_are_one_row_per_fault(store: KeyStore) -> None:
    """A file-level row has no bytes to hash: its place and its fault are its identity. Two faults of
    one file (a partial read, then a bad trailer once the file is whole) are two rows of the
    insert-only quarantine; the same fault met again when the file is re-read is the same row."""
    from pdp.ingest.model import Quarantined
    from pdp.ingest.reasons import ReasonCode

    def fault(reason: ReasonCode, message: str) -> Quarantined:
        return Quarantined(source="lab_hl7", file="lab/batch.hl7", position=0, reason_code=reason, message=message)

    stopped, trailer, again = Edge(store).process([
        fault(ReasonCode.PARSER_ERROR, "parser stopped after record 12 (ValueError)"),
        fault(ReasonCode.HL7_BATCH_COUNT, "BTS-1 says 3 messages, the batch holds 2"),
        fault(ReasonCode.PARSER_ERROR, "parser stopped after record 12 (ValueError)"),
    ])
    assert stopped.record_hash != trailer.record_hash
    assert stopped.record_hash == again.record_hash


def test_a_parsed_records_repr_hides_the_senders_ids() -> None:
    """A repr ends up in tracebacks, debug logs and test output: never the stay number in clear."""
    record = stay("pmsi", "pmsi/590000123_M1.csv", "S1f-2041-7", b"stay M1")
    shown = repr(record) + "".join(repr(e) for e in record.events)
    assert "2041" not in shown and "record_id=<hidden>" in shown
