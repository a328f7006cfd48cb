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


PMSI_HEADER = ("num_sejour;finess;champ;date_entree;date_sortie;mode_entree;provenance;dp;das;actes;nir;"
               "nom_naissance;nom_usage;prenoms;date_naissance;sexe;lieu_naissance;code_postal;commune_residence")


def test_a_spec_attribute_outside_its_declared_shape_is_left_out_and_counted(store: KeyStore, tmp_path) -> None:
    """pmsi.yml declares the admission mode and source by their nomenclature's shape: a name typed
    there is left out of the lake and counted, and the stay's diagnoses still land."""
    from ingest_helpers import parse_root

    (tmp_path / "pmsi").mkdir()
    rows = ["S1;590000123;MCO;02/05/2024;04/05/2024;8;5;E11.9;;;;DURAND;;Élise;12/03/1957;2;;59500;59178",
            "S2;590000123;MCO;02/05/2024;04/05/2024;Jeanne DUPONT;0612345678;I50.9;;;;DURAND;;Élise;12/03/1957;2;;"
            "59500;59178"]
    (tmp_path / "pmsi" / "590000123.csv").write_text("\n".join([PMSI_HEADER, *rows]) + "\n", encoding="utf-8")
    parsed = parse_root(tmp_path)
    assert not parsed.quarantined and [r.attributes_dropped for r in parsed.records] == [0, 2]
    edge = Edge(store)
    first, second = edge.process(parsed.records)
    assert isinstance(first, BronzeRow) and isinstance(second, BronzeRow)
    assert (first.attributes["admission_mode"], first.attributes["admission_source"]) == ("8", "5")
    assert not {"admission_mode", "admission_source"} & set(second.attributes)
    assert "DUPONT" not in repr(second.attributes) and "0612345678" not in repr(second.attributes)
    assert [e["code"] for e in second.events] == ["MCO", "I50.9"]
    assert edge.stats.attributes_dropped == 2
