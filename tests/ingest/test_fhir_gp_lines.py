"""The GP software's export (``gp_fhir``: one FHIR Bundle per patient a line) is read resource by resource.

A GP's line is a patient's whole file at that GP: one bad entry (a code no terminology knows, an
impossible date) is quarantined alone with its reason and the rest of the line lands; a line
that is not JSON is still one row for the whole line; and resources of types the platform does
not read (Claim, ExplanationOfBenefit) are neither records nor quarantine rows, but counted per
type — in the file's counts, in the ingestion report and in what `pdp ingest` prints.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import lake_settings
from pyspark.sql import SparkSession

from pdp.config import Settings
from pdp.ingest import Quarantined, SourceRecord, load_registry
from pdp.ingest.parse import Tally, parse_file
from pdp.ingest.pipeline import IngestReport, ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore

GP_FILE = "gp/10001234567.ndjson"
NIR = "257035935012371"
SCT, LOINC = "http://snomed.info/sct", "http://loinc.org"


def _ref(resource_id: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource_id}"}


def _condition(resource_id: str, code: str, onset: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": resource_id, "subject": _ref("pat-1"),
            "code": {"coding": [{"system": SCT, "code": code}]}, "onsetDateTime": onset}


def bundle_line() -> tuple[str, list[str]]:
    """One GP line: the patient's resources in entry order, with what must become of each."""
    entries: list[tuple[dict[str, Any], str]] = [
        ({"resourceType": "Patient", "id": "pat-1", "identifier": [
            {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": NIR}],
          "name": [{"use": "official", "family": "MARTIN", "given": ["Élise"]}], "gender": "female",
          "birthDate": "1957-03-12", "generalPractitioner": [_ref("gp-1")]}, "land"),
        ({"resourceType": "Practitioner", "id": "gp-1", "identifier": [
            {"system": "http://rpps.fr", "value": "10001234567"}]}, "read through references"),
        ({"resourceType": "Encounter", "id": "enc-1", "status": "finished", "subject": _ref("pat-1"),
          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
          "period": {"start": "2025-10-14", "end": "2025-10-14"}}, "land"),
        (_condition("cond-t2d", "44054006", "2019-02-11"), "land"),
        (_condition("cond-unknown", "44054007", "2023-03-03"), "CODE_UNKNOWN"),  # SNOMED CT check digit off
        (_condition("cond-impossible", "59621000", "2023-02-30"), "DATE_INVALID"),  # no 30 February
        ({"resourceType": "Observation", "id": "obs-hba1c", "status": "final", "subject": _ref("pat-1"),
          "encounter": _ref("enc-1"), "code": {"coding": [{"system": LOINC, "code": "4548-4"}]},
          "effectiveDateTime": "2025-10-14",
          "valueQuantity": {"value": 7.4, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}, "land"),
        ({"resourceType": "Claim", "id": "claim-1", "status": "active", "use": "claim",
          "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
          "patient": _ref("pat-1"), "created": "2025-10-14", "provider": {"display": "Cabinet"},
          "priority": {"coding": [{"code": "normal"}]},
          "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "AMO"}}]}, "skip"),
        ({"resourceType": "ExplanationOfBenefit", "id": "eob-1", "status": "active", "use": "claim",
          "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
          "patient": _ref("pat-1"), "created": "2025-10-14", "insurer": {"display": "AMO"},
          "provider": {"display": "Cabinet"}, "outcome": "complete",
          "insurance": [{"focal": True, "coverage": {"display": "AMO"}}]}, "skip"),
    ]
    bundle = {"resourceType": "Bundle", "id": "bundle-1", "type": "collection",
              "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r, _ in entries]}
    return json.dumps(bundle, ensure_ascii=False), [fate for _, fate in entries]


def write_gp_file(root: Path) -> list[str]:
    """The GP's file: the bundle line, then a line cut short (not JSON); the expected fate of each resource."""
    line, fates = bundle_line()
    path = root / GP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n" + line[: len(line) // 2] + "\n", encoding="utf-8")
    return fates


def test_a_bad_entry_is_quarantined_alone_and_the_rest_of_its_line_lands(tmp_path: Path) -> None:
    fates = write_gp_file(tmp_path)
    tally = Tally()
    outcomes = list(tally.track(parse_file(load_registry().specs["gp_fhir"], tmp_path / GP_FILE, tmp_path,
                                           skipped=tally.skipped("gp_fhir", GP_FILE))))
    first = [o for o in outcomes if o.position == 1]
    assert ["land" if isinstance(o, SourceRecord) else str(o.reason_code) for o in first] == [
        f for f in fates if f not in ("skip", "read through references")]
    records = {o.record_id for o in first if isinstance(o, SourceRecord)}
    assert records == {"Patient/pat-1", "Encounter/enc-1", "Condition/cond-t2d", "Observation/obs-hba1c"}
    bad = {o.message.split(" ")[0]: o for o in first if isinstance(o, Quarantined)}
    assert set(bad) == {"Bundle.entry[4]", "Bundle.entry[5]"}  # each names its entry: they share the line
    assert bad["Bundle.entry[4]"].message == "Bundle.entry[4] Condition.code: not a valid SNOMED code"
    assert bad["Bundle.entry[5]"].message == "Bundle.entry[5] Condition.onsetDateTime: datetime_from_date_parsing"
    assert all(q.raw for q in bad.values())  # the edge keys their record hash
    (cut,) = [o for o in outcomes if o.position == 2]  # a line that is not JSON: one row for the whole line
    assert isinstance(cut, Quarantined) and str(cut.reason_code) == "FHIR_JSON_INVALID"
    counts = tally.counts()[("gp_fhir", GP_FILE)]
    assert (counts.records_in, counts.parsed, counts.quarantined) == (7, 4, 3) and counts.balanced
    assert counts.skipped_resources == {"Claim": 1, "ExplanationOfBenefit": 1}  # the Practitioner is read, not skipped
    messages = " ".join(o.message for o in outcomes if isinstance(o, Quarantined))
    assert "MARTIN" not in messages and NIR not in messages and "2023-02-30" not in messages


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = lake_settings(tmp_path_factory.mktemp("gp-lines-var"))
    KeyStore.from_settings(s).init()
    return s


@pytest.fixture(scope="module")
def report(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> IngestReport:
    root = tmp_path_factory.mktemp("gp-lines-in")
    write_gp_file(root)
    return ingest_directory(root, spark=spark, settings=settings, workers=0)


@pytest.mark.spark
def test_the_ingest_lands_resource_by_resource_and_accounts_for_skipped_types(
    report: IngestReport, spark: SparkSession, settings: Settings
) -> None:
    (gp,) = [f for f in report.files if f.file == GP_FILE]
    assert (gp.records_in, gp.landed, gp.quarantined) == (7, 4, 3) and gp.balanced and not gp.partial
    assert report.by_reason == Counter({"CODE_UNKNOWN": 1, "DATE_INVALID": 1, "FHIR_JSON_INVALID": 1})
    assert gp.skipped_resources == {"Claim": 1, "ExplanationOfBenefit": 1}
    assert report.skipped_resources.by_source() == {"gp_fhir": 2}
    from pdp.cli import skipped_lines

    assert skipped_lines(report.skipped_resources) == [  # what `pdp ingest` prints
        "read and not kept (resource types the platform does not read, units that are not units; not records, "
        "not quarantined): gp_fhir 2",
        "  gp_fhir: Claim 1, ExplanationOfBenefit 1",
    ]
    from rich.console import Console

    from pdp.cli import ingest_table

    console = Console(record=True, width=200)
    console.print(ingest_table(report))
    (row,) = [line for line in console.export_text().splitlines() if GP_FILE in line]
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[-2:] == ["2", "ok"], row  # the per-file table's skipped column: Claim + ExplanationOfBenefit
    conditions = LakeTable(spark, "silver.condition_occurrence", lake_root=settings.lake_uri).read().collect()
    assert [(r.source_code, r.concept) for r in conditions] == [("44054006", "t2d")]
    rows = LakeTable(spark, "bronze.records", lake_root=settings.lake_uri).read().collect()
    rows += LakeTable(spark, "ops.quarantine", lake_root=settings.lake_uri).read().collect()
    text = " ".join(str(r.asDict()) for r in rows)
    for value in ("MARTIN", NIR, "pat-1", "enc-1", "cond-t2d", "bundle-1"):  # neither identity nor sender ids
        assert value not in text, value
