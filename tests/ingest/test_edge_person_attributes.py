"""The person attributes a landed record carries into the lake (silver.person's sex, birth year and
month, commune and GP): the commune and the GP's RPPS number only when they are codes.

A sender that types an address or a name where the commune or the GP number goes must not have it
kept in the lake; the record itself lands (its clinical facts are good), and the value left out is
counted in the run's report.
"""

from __future__ import annotations

from datetime import date

import pytest

from pdp.ingest.edge import BronzeRow, Edge
from pdp.ingest.model import Event, IdentityFields, SourceRecord
from pdp.pseudonym.keys import KeyStore

DAY = date(2024, 5, 2)


def record(position: int, commune: str | None, gp: str | None) -> SourceRecord:
    person = IdentityFields(birth_name="DURAND", first_names="Élise", sex="F", birth_date=date(1957, 3, 12),
                            commune_code=commune, gp_rpps=gp)
    event = Event(domain="condition", code_system="CIM-10", code="E11.9", start_date=DAY)
    return SourceRecord(source="pmsi", file="pmsi/590000123.csv", position=position, record_id=f"S{position}",
                        raw=f"stay {position}".encode(), identity=person, events=(event,))


@pytest.mark.parametrize(("commune", "gp", "kept", "dropped"), [
    ("59178", "10001234567", {"_commune": "59178", "_gp": "10001234567"}, 0),
    ("59 178", "100.0123.4567", {"_commune": "59178", "_gp": "10001234567"}, 0),  # compacted as the vault does
    ("2a004", None, {"_commune": "2A004"}, 0),
    ("12 rue des Lilas tel 0612345678", "10001234567", {"_gp": "10001234567"}, 1),
    ("59178", "Dr DUPONT", {"_commune": "59178"}, 1),
    ("DOUAI", "1000123456", {}, 2),
])
def test_a_commune_or_gp_that_is_not_a_code_is_left_out_and_counted(
    store: KeyStore, commune: str, gp: str | None, kept: dict[str, str], dropped: int
) -> None:
    edge = Edge(store)
    (row,) = edge.process([record(1, commune, gp)])
    assert isinstance(row, BronzeRow), "the record lands: only the malformed value is left out"
    person = {k: v for k, v in row.attributes.items() if k in ("_commune", "_gp")}
    assert person == kept
    assert edge.stats.attributes_dropped == dropped
    assert {"_sex", "_birth_year", "_birth_month"} <= set(row.attributes)
