"""FHIR as servers and generators send it: Bundle JSON files and Bulk Data exports, read resource by resource.

Each resource of the samples (tests/ingest/fhir_samples.py) says what must become of it: it lands, it
is skipped (a type the platform does not read, or one read only through a reference), or it is
quarantined with a given reason — and the rest of the bundle lands beside it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import yaml
from fhir_samples import CODING_SYSTEMS, MRN_B, NIR_A, transaction_bundle, write_bulk_export, write_bundle

from pdp.ingest import SourceSpec, validate_spec
from pdp.ingest.model import IDENTITY_FIELDS, Quarantined, SourceRecord
from pdp.ingest.parse import parse_file

TODAY = date(2026, 1, 1)
SYSTEMS = sorted(set(CODING_SYSTEMS.values()))


def spec_text(name: str, fmt: str, files: list[str], companions: list[str] | None = None) -> str:
    spec = {"name": name, "version": 1, "description": f"{fmt} sample sender", "format": fmt, "files": files,
            "encoding": "utf-8", "options": {"coding_systems": CODING_SYSTEMS}, "code_systems": SYSTEMS}
    if companions:
        spec["companions"] = companions
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)


def make_spec(tmp_path: Path, name: str, fmt: str, files: list[str], companions: list[str] | None = None,
              ) -> SourceSpec:
    path = tmp_path / "specs" / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spec_text(name, fmt, files, companions), encoding="utf-8")
    return validate_spec(path)


def fates(outcomes: list[SourceRecord | Quarantined]) -> list[str]:
    return ["land" if isinstance(o, SourceRecord) else str(o.reason_code) for o in outcomes]


@pytest.mark.parametrize("pretty", [True, False], ids=["pretty-printed", "one line"])
def test_a_bundle_lands_entry_by_entry_and_quarantines_only_its_bad_entries(tmp_path: Path, pretty: bool) -> None:
    spec = make_spec(tmp_path, "gp_bundles", "fhir_bundle_json", ["bundles/*.json"])
    bundle, expected = transaction_bundle()
    path = write_bundle(tmp_path / "in" / "bundles" / "p1.json", bundle, pretty=pretty)
    outcomes = list(parse_file(spec, path, tmp_path / "in", today=TODAY))
    assert fates(outcomes) == [f for f in expected if f != "skip"]
    assert [o.position for o in outcomes] == [i + 1 for i, f in enumerate(expected) if f != "skip"]
    assert all(o.source == "gp_bundles" and o.file == "bundles/p1.json" for o in outcomes)
    messages = " ".join(o.message for o in outcomes if isinstance(o, Quarantined))
    assert "MARTIN" not in messages and NIR_A not in messages and "heavy" not in messages


def test_resources_become_events_as_fhir_sends_them(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "gp_bundles", "fhir_bundle_json", ["bundles/*.json"])
    bundle, _ = transaction_bundle()
    path = write_bundle(tmp_path / "in" / "bundles" / "p1.json", bundle)
    records = [o for o in parse_file(spec, path, tmp_path / "in", today=TODAY) if isinstance(o, SourceRecord)]
    by_id = {r.record_id: r for r in records}

    a, b = by_id["Patient/pat-a"].identity, by_id["Patient/pat-b"].identity
    assert (a.birth_name, a.used_name, a.first_names) == ("DURAND", "MARTIN", "Élise, Marie")  # maiden = birth name
    assert (a.nir, a.birth_date, a.address_line) == (NIR_A, date(1957, 3, 12), "12 rue des Lilas Bâtiment B")
    assert (b.birth_name, b.first_names, b.nir, b.birth_date) == ("LEROY", "Paul, Henri", None, date(1948, 6, 2))
    assert MRN_B not in [getattr(b, name) for name in IDENTITY_FIELDS]  # other systems' ids are never read
    assert by_id["Condition/cond-t2d"].identity == a  # subject resolved through urn:uuid
    assert by_id["Observation/obs-weight-b"].identity == b

    def events(record_id: str) -> list[tuple]:
        return [(e.domain, e.code_system, e.code, e.start_date, e.end_date, e.value, e.unit, e.status, e.visit_key,
                 e.source_value) for e in by_id[record_id].events]

    assert events("Encounter/enc-1") == [("visit", "SNOMED", "185349003", date(2024, 5, 2), date(2024, 5, 2), None,
                                          None, "finished", "Encounter/enc-1", "185349003")]
    assert events("Condition/cond-t2d") == [("condition", "SNOMED", "44054006", date(2019, 2, 11), None, None, None,
                                             "active", "Encounter/enc-1", "44054006")]
    assert events("Condition/cond-bronchitis")[0][4] == date(2022, 1, 24)  # abatement = end
    assert events("Observation/obs-hba1c")[0][2:7] == ("4548-4", date(2024, 5, 2), None, 7.2, "%")
    assert [(e[2], e[5], e[6]) for e in events("Observation/obs-bp")] == [("8480-6", 142.0, "mm[Hg]"),
                                                                          ("8462-4", 88.0, "mm[Hg]")]
    assert events("Observation/obs-smoking")[0][0:3] == ("observation", "LOINC", "72166-2")
    assert events("Observation/obs-smoking")[0][9] == "72166-2=266919005"
    assert events("MedicationRequest/mr-metformin")[0][1:3] == ("RXNORM", "860975")  # the Medication entry's code
    assert events("MedicationRequest/mr-lisinopril")[0][1:3] == ("RXNORM", "314076")
    assert events("Procedure/proc-mono")[0][2:5] == ("401191002", date(2024, 5, 2), date(2024, 5, 2))


@pytest.mark.parametrize("bundle_type", ["batch", "collection", "searchset", "document"])
def test_any_bundle_type_is_read_with_relative_references(tmp_path: Path, bundle_type: str) -> None:
    spec = make_spec(tmp_path, "gp_bundles", "fhir_bundle_json", ["bundles/*.json"])
    bundle, expected = transaction_bundle()
    relative = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    text = json.dumps(bundle)
    for urn, ref in relative.items():  # urn:uuid: references become relative Type/id ones
        text = text.replace(f'"reference": "{urn}"', f'"reference": "{ref}"')
    bundle = json.loads(text)
    bundle["type"] = bundle_type
    for entry in bundle["entry"]:
        del entry["request"]
        entry["fullUrl"] = f"https://fhir.example.org/R4/{relative[entry['fullUrl']]}"
    if bundle_type == "document":  # a document starts with its Composition (not a record: skipped)
        bundle["entry"].insert(0, {"fullUrl": "https://fhir.example.org/R4/Composition/c1", "resource": {
            "resourceType": "Composition", "id": "c1", "status": "final", "type": {"text": "summary"},
            "date": "2024-05-02", "author": [{"reference": "Patient/pat-a"}], "title": "Summary"}})
        bundle["timestamp"], bundle["identifier"] = "2024-05-02T10:00:00+02:00", {"value": "doc-1"}
        expected = ["skip", *expected]
    path = write_bundle(tmp_path / "in" / "bundles" / "b.json", bundle, pretty=False)
    assert fates(list(parse_file(spec, path, tmp_path / "in", today=TODAY))) == [f for f in expected if f != "skip"]


def test_a_file_that_is_not_a_bundle_is_one_file_level_row(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "gp_bundles", "fhir_bundle_json", ["bundles/*.json"])
    root = tmp_path / "in"
    (root / "bundles").mkdir(parents=True)
    cases = {"broken.json": '{"resourceType": "Bundle", "type": ', "patient.json": '{"resourceType": "Patient"}',
             "typeless.json": '{"resourceType": "Bundle", "entry": []}'}
    for name, text in cases.items():
        (root / "bundles" / name).write_text(text, encoding="utf-8")
    got = {name: [(o.position, str(o.reason_code)) for o in parse_file(spec, root / "bundles" / name, root,
                                                                        today=TODAY)] for name in cases}
    assert got == {"broken.json": [(0, "FHIR_JSON_INVALID")], "patient.json": [(0, "FHIR_VALIDATION")],
                   "typeless.json": [(0, "FHIR_VALIDATION")]}


def test_a_bulk_export_is_read_line_by_line_with_references_across_files(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "bulk_export", "fhir_bulk_ndjson",
                     [f"export/{t}.ndjson" for t in ("Patient", "Encounter", "Condition", "Observation",
                                                     "MedicationRequest", "Procedure")],
                     companions=["export/Medication.ndjson"])
    expected = write_bulk_export(tmp_path / "in" / "export")
    root = tmp_path / "in"
    for name, fates_expected in expected.items():
        if name == "Medication.ndjson":
            continue
        outcomes = list(parse_file(spec, root / "export" / name, root, today=TODAY))
        assert fates(outcomes) == fates_expected, name
    conditions = {o.record_id: o for o in parse_file(spec, root / "export" / "Condition.ndjson", root, today=TODAY)
                  if isinstance(o, SourceRecord)}
    assert conditions["Condition/cond-t2d"].identity.nir == NIR_A
    assert conditions["Condition/cond-b-hf"].identity.birth_name == "LEROY"
    drugs = [o for o in parse_file(spec, root / "export" / "MedicationRequest.ndjson", root, today=TODAY)]
    assert [e.code for o in drugs for e in o.events] == ["860975", "314076"]  # Medication file by reference


def test_a_bulk_resource_whose_patient_is_invalid_gets_the_patients_reason(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "bulk_export", "fhir_bulk_ndjson", ["export/*.ndjson"])
    root = tmp_path / "in"
    write_bulk_export(root / "export")
    patients = (root / "export" / "Patient.ndjson").read_text(encoding="utf-8").splitlines()
    broken = json.loads(patients[0])
    broken["identifier"][0]["value"] = NIR_A[:-1] + ("0" if NIR_A[-1] != "0" else "1")  # wrong NIR key
    (root / "export" / "Patient.ndjson").write_text("\n".join([json.dumps(broken), patients[1]]), encoding="utf-8")
    outcomes = list(parse_file(spec, root / "export" / "Condition.ndjson", root, today=TODAY))
    reasons = {o.record_id if isinstance(o, SourceRecord) else o.position: fates([o])[0] for o in outcomes}
    assert reasons[1] == "NIR_INVALID"  # cond-t2d: patient A's NIR is wrong
    assert "Condition/cond-b-hf" in reasons  # patient B's resources still land


def test_the_fhir_benchmarks_bundles_land_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pdp bench fhir` measures what lands: its generator-style bundles have no bad entry (no timing asserted)."""
    from pdp.bench.fhir import bench_fhir

    monkeypatch.setenv("PDP_BENCH_FHIR_PATIENTS", "2")
    monkeypatch.setenv("PDP_BENCH_FHIR_VISITS", "3")
    result = bench_fhir()
    assert result["bundle_json_outcomes"] == result["resources"] - 2  # every resource but the 2 Medications
    assert result["bundle_json_events"] == result["reference_bundle_ndjson_events"]  # one reading of a Bundle
    assert result["bundle_json_mb_per_cpu_s"] > 0 and result["reference_bundle_ndjson_mb_per_cpu_s"] > 0


def test_a_medication_request_may_point_to_a_contained_medication(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "gp_bundles", "fhir_bundle_json", ["bundles/*.json"])
    bundle, _ = transaction_bundle()
    request = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "mr-metformin")
    request["contained"] = [{"resourceType": "Medication", "id": "m", "code": {"coding": [
        {"system": "http://www.whocc.no/atc", "code": "A10BA02"}]}}]
    request["medicationReference"] = {"reference": "#m"}
    path = write_bundle(tmp_path / "in" / "bundles" / "p.json", bundle)
    records = {o.record_id: o for o in parse_file(spec, path, tmp_path / "in", today=TODAY)
               if isinstance(o, SourceRecord)}
    assert [(e.code_system, e.code) for e in records["MedicationRequest/mr-metformin"].events] == [("ATC", "A10BA02")]


def test_bulk_files_split_and_numbered_as_servers_write_them_resolve_too(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "bulk_export", "fhir_bulk_ndjson", ["export/*.ndjson"])
    root = tmp_path / "in"
    write_bulk_export(root / "export")
    (root / "export" / "Patient.ndjson").rename(root / "export" / "1.Patient.ndjson")
    (root / "export" / "Medication.ndjson").rename(root / "export" / "1.Medication.ndjson")
    drugs = list(parse_file(spec, root / "export" / "MedicationRequest.ndjson", root, today=TODAY))
    assert fates(drugs) == ["land", "land"]
