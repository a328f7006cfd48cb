"""Acceptance: a data engineer adds a FHIR Bundle sender and a Bulk Data sender by spec only.

Two specs in a directory of their own (``PDP_SOURCES_DIR``, no code, the package untouched),
a transaction Bundle and a Bulk export dropped in the ingest directory, `ingest_directory`
through the real edge: the two persons and their events are in silver, each bad resource is
quarantined alone, codes outside the concept sets are kept and reported, and neither names,
NIR, other systems' identifiers nor FHIR resource ids reach the lake.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from fhir_samples import MRN_B, NIR_A, transaction_bundle, write_bulk_export, write_bundle
from ingest_helpers import lake_settings
from pyspark.sql import SparkSession
from test_fhir_formats import spec_text

from pdp.config import Settings
from pdp.ingest.pipeline import IngestReport, ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore

pytestmark = [pytest.mark.spark]

BULK_TYPES = ("Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "Procedure")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("fhir-var")
    specs = tmp_path_factory.mktemp("fhir-specs")
    (specs / "gp_bundles.yml").write_text(spec_text("gp_bundles", "fhir_bundle_json", ["gp_bundles/*.json"]),
                                          encoding="utf-8")
    (specs / "hospital_bulk.yml").write_text(
        spec_text("hospital_bulk", "fhir_bulk_ndjson", [f"hospital_bulk/*/{t}.ndjson" for t in BULK_TYPES],
                  companions=["hospital_bulk/*/Medication.ndjson"]), encoding="utf-8")
    master = base64.b64encode(os.urandom(32)).decode("ascii")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PDP_SOURCES_DIR", str(specs))  # the way an operator adds a sender
        s = lake_settings(var, master)
    assert s.source_dirs() == [specs]
    KeyStore.from_settings(s).init()
    return s


@pytest.fixture(scope="module")
def report(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> IngestReport:
    root = tmp_path_factory.mktemp("fhir-in")
    bundle, _ = transaction_bundle()
    write_bundle(root / "gp_bundles" / "patient-1.json", bundle)
    write_bulk_export(root / "hospital_bulk" / "export-2024-06")
    return ingest_directory(root, spark=spark, settings=settings, workers=0)


def table(spark: SparkSession, settings: Settings, name: str) -> list:
    return LakeTable(spark, name, lake_root=settings.lake_uri).read().collect()


def test_both_senders_reconcile_resource_by_resource(report: IngestReport) -> None:
    files = {f.file: f for f in report.files}
    bundle = files["gp_bundles/patient-1.json"]
    assert (bundle.records_in, bundle.landed, bundle.quarantined) == (20, 14, 6)
    bulk = {name: f for name, f in files.items() if name.startswith("hospital_bulk/")}
    assert sorted(Path(n).name for n in bulk) == sorted(f"{t}.ndjson" for t in BULK_TYPES)
    assert sum(f.records_in for f in bulk.values()) == 20 and sum(f.quarantined for f in bulk.values()) == 6
    assert all(f.balanced for f in report.files)
    assert report.by_reason == {"FHIR_NOT_A_FACT": 4, "CODE_UNKNOWN": 4, "FHIR_VALIDATION": 2,
                                "IDENTITY_MISSING": 2}
    assert report.unmatched == 0  # the Medication file is a companion, read through references
    assert bundle.skipped_resources == {"Claim": 1}  # not a record, not quarantine: counted (the Medication is read)
    assert report.skipped_resources.by_source() == {"gp_bundles": 1}


def test_the_persons_and_their_events_are_in_silver(report: IngestReport, spark: SparkSession,
                                                    settings: Settings) -> None:
    persons = table(spark, settings, "silver.person")
    assert len(persons) == 2  # patient A (NIR) and B (traits): the same two persons from both senders
    conditions = {(r.source, r.source_code, r.concept) for r in table(spark, settings, "silver.condition_occurrence")}
    for source in ("gp_bundles", "hospital_bulk"):
        assert {(c, k) for s, c, k in conditions if s == source} == {
            ("44054006", "t2d"), ("368581000119106", "t2d_neuropathy"), ("10509002", None),
            ("84114007", "heart_failure")}
    measurements = {(r.source_code, r.concept, r.value, r.unit) for r in table(spark, settings, "silver.measurement")}
    assert {("4548-4", "hba1c", 7.2, "%"), ("8480-6", "systolic_bp", 142.0, "mm[Hg]"),
            ("8462-4", "diastolic_bp", 88.0, "mm[Hg]"), ("29463-7", "weight", 81.5, "kg")} <= measurements
    drugs = {(r.vocabulary, r.source_code) for r in table(spark, settings, "silver.drug_exposure")}
    assert drugs == {("RXNORM", "860975"), ("RXNORM", "314076")}
    visits = table(spark, settings, "silver.visit_occurrence")
    assert len(visits) == 2 and all(v.visit_key and "enc-1" not in v.visit_key for v in visits)  # keyed


def test_codes_outside_the_concept_sets_are_reported_per_source(report: IngestReport) -> None:
    assert report.unmapped.by_source() == {"gp_bundles": 4, "hospital_bulk": 4}  # bronchitis, smoking, 2 RxNorm
    top = dict(report.unmapped.top(per_vocabulary=10))
    assert ("10509002", 2) in top["SNOMED"] and dict(top["RXNORM"]) == {"860975": 2, "314076": 2}
    from pdp.cli import unmapped_lines

    printed = unmapped_lines(report.unmapped)  # what `pdp ingest` prints
    assert printed[0] == "codes outside the concept sets (kept, unmapped): gp_bundles 4, hospital_bulk 4"
    assert any(line.startswith("  RXNORM: ") and "314076 ×2" in line for line in printed)


def test_nothing_nominative_nor_a_sender_id_reaches_bronze(report: IngestReport, spark: SparkSession,
                                                           settings: Settings) -> None:
    rows = " ".join(str(r.asDict()) for r in table(spark, settings, "bronze.records"))
    rows += " ".join(str(r.asDict()) for r in table(spark, settings, "ops.quarantine"))
    for value in ("MARTIN", "DURAND", "LEROY", "Élise", "Lilas", NIR_A, MRN_B, "0601020304", "pat-a", "enc-1",
                  "cond-t2d"):
        assert value not in rows, value
