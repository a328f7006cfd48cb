"""The edge with FHIR resources as records: many records share one Patient's identity.

The edge keys a repeated identity once (the next resource of a bundle carries the same
Patient); what it lands and what it folds for the vault must be exactly what keying every
record afresh gives. Sender-local ids (record ids, visit keys) land keyed; codes outside the
concept sets are counted per source.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from pdp.ingest.edge import BronzeRow, Edge
from pdp.ingest.model import Event, IdentityFields, SourceRecord
from pdp.pseudonym.keys import KeyStore

X = IdentityFields(birth_name="DURAND", first_names="Élise, Marie", sex="F", birth_date=date(1957, 3, 12),
                   phone="0601020304", postcode="59500")
Y = replace(X, phone="0699999999")  # the same person, another phone
B = IdentityFields(birth_name="LEROY", first_names="Paul", sex="M", birth_date=date(1948, 6, 2))


def record(identity: IdentityFields, day: date, position: int, code: str = "44054006") -> SourceRecord:
    event = Event(domain="condition", code_system="SNOMED", code=code, start_date=day,
                  visit_key="Encounter/enc-1", source_value=code)
    return SourceRecord(source="gp_bundles", file="b.json", position=position, record_id=f"Condition/c{position}",
                        raw=f"resource {position}".encode(), identity=identity, events=(event,))


def test_a_repeated_identity_folds_as_if_keyed_afresh(store: KeyStore) -> None:
    r1, r2, r3 = record(X, date(2020, 1, 1), 1), record(X, date(2024, 1, 1), 2), record(Y, date(2022, 1, 1), 3)
    b1 = record(B, date(2021, 1, 1), 4)
    in_a_row, interleaved = Edge(store), Edge(store)
    rows_a = list(in_a_row.process([r1, r2, r3, b1]))  # r2 reuses r1's keying
    rows_b = list(interleaved.process([r1, b1, r2, r3]))  # every record keyed afresh
    assert in_a_row.vault_records == interleaved.vault_records
    (person,) = {row.person_pseudonym for row in rows_a[:3]}
    assert in_a_row.vault_records[person].phone == "0601020304"  # 2024's observation beats 2022's
    assert in_a_row.vault_records[person].observed_at == date(2024, 1, 1)
    key = lambda rows: sorted((r.record_hash, r.person_pseudonym, r.record_id) for r in rows)  # noqa: E731
    assert key(rows_a) == key(rows_b)


def test_sender_ids_land_keyed_and_unmapped_codes_are_counted(store: KeyStore) -> None:
    edge = Edge(store)
    rows = list(edge.process([record(X, date(2024, 1, 1), 1), record(X, date(2024, 1, 2), 2, code="10509002")]))
    assert all(isinstance(r, BronzeRow) for r in rows)
    assert {r.record_id for r in rows}.isdisjoint({"Condition/c1", "Condition/c2"})
    visit_keys = {e["visit_key"] for r in rows for e in r.events}
    assert len(visit_keys) == 1 and "Encounter/enc-1" not in visit_keys  # keyed, and the same for both
    assert edge.stats.unmapped.by_source() == {"gp_bundles": 1}  # 44054006 is t2d; 10509002 has no concept
    assert edge.stats.unmapped.top() == {"SNOMED": [("10509002", 1)]}
