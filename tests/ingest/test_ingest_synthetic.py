"""A clean synthetic territory parses completely: every record of every file, none quarantined,
each file's count equal to the manifest's, each record id the ground truth's."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from ingest_helpers import Outcomes, manifest_records, parse_root

from pdp.ingest import Registry, discover


@pytest.fixture(scope="module")
def parsed(territory: Path, registry: Registry) -> Outcomes:
    return parse_root(territory, registry)


def test_no_record_of_clean_data_is_quarantined(parsed: Outcomes) -> None:
    assert [(q.file, q.position, q.reason_code, q.message) for q in parsed.quarantined] == []


def test_every_source_file_is_parsed_and_counts_match_the_manifest(territory: Path, parsed: Outcomes) -> None:
    expected = {
        path: n
        for path, n in manifest_records(territory).items()
        if not path.startswith(("ground_truth/", "reports/")) and path != "manifest.json"
    } | {"reports/index.csv": manifest_records(territory)["reports/index.csv"]}
    per_file = Counter(r.file for r in parsed.records)
    assert dict(per_file) == expected
    assert {file for _, file in parsed.counts} == set(expected)
    for (_, file), counts in parsed.counts.items():
        assert counts.balanced and counts.records_in == expected[file] == counts.parsed


@pytest.mark.parametrize("source", ["pmsi", "lab_hl7", "gp_fhir", "pharmacy", "social", "insee_deaths"])
def test_record_ids_are_the_ground_truth_record_links(territory: Path, parsed: Outcomes, source: str) -> None:
    truth: dict[str, set[str]] = defaultdict(set)
    with (territory / "ground_truth" / "record_links.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["source"] == source:
                truth[row["file"]].add(row["record_id"])
    got: dict[str, set[str]] = defaultdict(set)
    for record in parsed.records:
        if record.source == source:
            got[record.file].add(record.record_id)  # type: ignore[arg-type]
    assert truth and got == truth


def test_person_records_carry_a_keyable_identity_and_events(parsed: Outcomes) -> None:
    for record in parsed.records:
        if record.source == "insee_communes":
            assert record.identity.is_empty() and record.attribute("population")
            continue
        assert record.identity.birth_name and record.identity.birth_date, record
        patient = record.source == "gp_fhir" and (record.record_id or "").startswith("Patient/")
        assert bool(record.events) != patient, record  # a FHIR Patient is the identity's record, with no event
        assert record.identity.sex in {"M", "F"}, record


def test_events_are_coded_in_the_expected_domains(parsed: Outcomes) -> None:
    domains: dict[str, set[str]] = defaultdict(set)
    for record in parsed.records:
        for event in record.events:
            domains[record.source].add(f"{event.domain}:{event.code_system}")
    assert domains["pmsi"] >= {"visit:PMSI-UNIT", "condition:CIM-10"}
    assert domains["lab_hl7"] == {"measurement:LOINC"}
    assert domains["gp_fhir"] >= {"visit:SNOMED", "measurement:LOINC", "drug:ATC", "condition:CIM-10"}
    assert domains["pharmacy"] == {"drug:ATC"}
    assert domains["insee_deaths"] == {"death:SNOMED"}


def test_pmsi_stay_yields_its_principal_and_associated_diagnoses(parsed: Outcomes) -> None:
    stays = [r for r in parsed.records if r.source == "pmsi" and any(e.status == "DAS" for e in r.events)]
    assert stays
    stay = stays[0]
    statuses = Counter(e.status for e in stay.events if e.domain == "condition")
    assert statuses["DP"] == 1 and statuses["DAS"] >= 1
    assert {e.visit_key for e in stay.events} == {stay.record_id}


def test_lab_results_keep_values_units_and_the_nir(parsed: Outcomes) -> None:
    labs = [r for r in parsed.records if r.source == "lab_hl7"]
    assert any(r.identity.nir for r in labs)
    hba1c = [e for r in labs for e in r.events if e.code == "4548-4" and e.value is not None]
    assert hba1c and all(e.unit == "%" and 3 < e.value < 20 for e in hba1c)  # type: ignore[operator]
    assert all(e.source_value == "4548-4^^LN" for e in hba1c), "the code as sent, never the lab's label"
    ifcc = [e for r in labs for e in r.events if e.code == "59261-8" and e.value is not None]  # the SI lab
    assert ifcc and all(e.unit == "mmol/mol" and 9 < e.value < 200 for e in ifcc)  # type: ignore[operator]


def test_latin1_and_bom_files_decode_accented_names(territory: Path, parsed: Outcomes) -> None:
    """Names from Latin-1 and UTF-8-BOM exports come out as the same text as from UTF-8 ones."""
    names = {r.identity.first_names for r in parsed.records if r.source in ("pmsi", "lab_hl7")}
    accented = {n for n in names if n and any(ord(c) > 127 for c in n)}
    assert accented, "the territory has accented first names"
    assert not any("Ã" in n for n in names if n)  # UTF-8 read as Latin-1 would show "Ã©"


def test_reports_are_read_through_their_index_de_identified(territory: Path, registry: Registry,
                                                            parsed: Outcomes) -> None:
    assert parsed.held_back == [] and parsed.unmatched == ()
    reports = [r for r in parsed.records if r.source == "reports"]
    assert reports and {r.file for r in reports} == {"reports/index.csv"}, "documents are read via the index only"
    with (territory / "ground_truth" / "identities.csv").open(encoding="utf-8", newline="") as handle:
        nirs = {row["nir"] for row in csv.DictReader(handle) if row["nir"]}
    for record in reports:
        text = record.attribute("note_text") or ""
        assert "<NOM>" in text and not any(n in text for n in nirs)
        assert record.record_id and all(e.domain == "text" for e in record.events)
    assert sum(len(r.events) for r in reports) > len(reports), "facts are read in the letters"


def test_a_file_no_spec_matches_is_reported(territory: Path, registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "pmsi").mkdir()
    (tmp_path / "pmsi" / "stays.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "manifest.json").write_text("{}")
    found = discover(tmp_path, registry)
    assert [p.relative_to(tmp_path).as_posix() for p in found.unmatched] == ["pmsi/stays.xlsx"]
    assert found.ignored == 1 and len(found) == 0
