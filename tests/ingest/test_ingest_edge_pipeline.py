"""`pdp ingest` end to end on a synthetic territory: through the edge into bronze and silver,
counts that reconcile, nothing twice on a re-run, and nothing nominative in the lake."""

from __future__ import annotations

import base64
import csv
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from ingest_helpers import lake_settings
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pdp.bench.evaluate import keyed_links
from pdp.config import Settings
from pdp.governance import make_engine
from pdp.governance.leak_scan import SenderIdFormCheck, scan_lake
from pdp.ingest.pipeline import IngestReport, ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.vault import IdentityVault
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """This territory's batch stages its identities (sealed parts folded on Spark, streamed to the vault)
    and links on Spark from them, as a big batch does (pdp.ingest.identity_stage): its identities
    never come to the driver, so every check below also holds of that path; the other ingest tests
    fold and link in memory. The executors open the key store from a key file."""
    var = tmp_path_factory.mktemp("ingest-var")
    key_file = var / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    s = lake_settings(var).model_copy(update={"master_key": None, "master_key_file": key_file,
                                              "edge_identities": "staged", "linkage_engine": "spark"})
    KeyStore.from_settings(s).init()
    return s


@pytest.fixture(scope="module")
def territory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ingest-src") / "t"
    generate(out, persons=300, seed=11, territory="cornouaille", workers=1)
    return out


@pytest.fixture(scope="module")
def first_run(spark: SparkSession, settings: Settings, territory: Path) -> IngestReport:
    return ingest_directory(territory, spark=spark, settings=settings)


def lake(spark: SparkSession, settings: Settings, name: str) -> LakeTable:
    return LakeTable(spark, name, lake_root=settings.lake_uri)


def test_every_record_is_landed_or_quarantined_and_logged(first_run: IngestReport, territory: Path) -> None:
    manifest = json.loads((territory / "manifest.json").read_text())["files"]
    read = [f for f in first_run.files if not f.skipped]
    assert read and all(f.balanced for f in read)
    for f in read:
        assert f.records_in == manifest[f.file]["records"], f.file
    records_in, landed, quarantined = first_run.totals()
    assert records_in == landed + quarantined and first_run.bronze_inserted == landed
    assert first_run.held_back == 0, "free-text reports are read (through their index), no source is held back"


def test_reports_land_de_identified_with_their_facts(
    first_run: IngestReport, spark: SparkSession, territory: Path, settings: Settings
) -> None:
    with open(territory / "reports" / "index.csv", encoding="utf-8") as handle:
        index = list(csv.DictReader(handle))
    notes = lake(spark, settings, "silver.note").read()
    assert notes.count() == len(index) > 0
    texts = [r.note_text for r in notes.select("note_text").collect()]
    assert all(t and "<NOM>" in t for t in texts), "every letter names its patient, replaced"
    for row in index:  # the patient's own names never reach the lake, in any note
        for name in {row["birth_name"], row["used_name"]} - {""}:
            assert not any(name in t for t in texts), "a patient's name in silver.note"
    facts = lake(spark, settings, "silver.note_fact").read()
    assert facts.count() > len(index)
    assert {r.assertion for r in facts.select("assertion").distinct().collect()} <= {
        "affirmed", "negated", "hypothesis", "family"}
    sample = facts.join(notes.select("note_id", "note_text"), "note_id").where("concept = 'hba1c'").first()
    assert sample is not None, "HbA1c values are read in the letters"
    quoted = sample.note_text[sample.span_start:sample.span_end].lower()
    assert ("a1c" in quoted or "glyqu" in quoted) and sample.value is not None, "offsets point into the stored text"


def test_silver_rows_match_what_the_sources_sent(
    first_run: IngestReport, spark: SparkSession, territory: Path, settings: Settings
) -> None:
    summary = json.loads((territory / "ground_truth" / "summary.json").read_text())
    events = summary["events"]
    measurement = lake(spark, settings, "silver.measurement").read()
    assert measurement.where("source = 'lab_hl7'").count() == events["lab_measurement"]
    assert measurement.where("source = 'gp_fhir'").count() == events["gp_measurement"]
    drugs = lake(spark, settings, "silver.drug_exposure").read()
    assert drugs.where("source = 'pharmacy'").count() == events["pharmacy_drug"]
    stays = lake(spark, settings, "silver.visit_occurrence").read().where("source = 'pmsi'").count()
    assert stays == summary["hospital_stays"]
    assert lake(spark, settings, "silver.death").read().count() == summary["deceased_in_window"]
    assert lake(spark, settings, "silver.location").read().count() > 0
    hba1c = measurement.where("concept = 'hba1c'").count()
    assert hba1c > 0, "LOINC 4548-4 mapped to its concept set"
    # one lab in two reports in SI units (IFCC HbA1c in mmol/mol, glucose in mmol/L): silver holds
    # them in the units the rules read, at the values the other labs would have printed
    si = {r.source_code: r for r in measurement.where("source_code IN ('59261-8', '14771-0')").groupBy(
        "source_code").agg(F.collect_set("unit").alias("units"), F.min("value").alias("low"),
                           F.max("value").alias("high"), F.count("*").alias("n")).collect()}
    assert set(si) == {"59261-8", "14771-0"}, "the territory has a lab reporting in SI units"
    assert si["59261-8"].units == ["%"] and si["59261-8"].low >= 3 and si["59261-8"].high <= 20
    assert si["14771-0"].units == ["g/L"] and si["14771-0"].low >= 0.3 and si["14771-0"].high <= 6


def test_re_ingesting_the_same_files_adds_nothing(first_run: IngestReport, spark: SparkSession, settings: Settings,
                                                  territory: Path) -> None:
    bronze = lake(spark, settings, "bronze.records")
    before = bronze.version()
    again = ingest_directory(territory, spark=spark, settings=settings)
    assert all(f.skipped for f in again.files)
    assert bronze.version() == before


def test_a_bad_record_is_quarantined_with_its_reason_and_the_rest_lands(
    first_run: IngestReport, spark: SparkSession, settings: Settings, territory: Path, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    (drop / "pharmacy").mkdir(parents=True)
    source = sorted((territory / "pharmacy").glob("*.csv"))[0]
    raw = source.read_bytes()
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "latin-1"
    with open(source, encoding=encoding, newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    header, good = rows[0], rows[1:4]
    bad = list(good[0])
    nir_col = header.index("nir_assure")
    bad[header.index("num_facture")] = "BAD-NIR-1"
    bad[nir_col] = "1" * 15  # a NIR whose key is wrong
    fresh = [list(r) for r in good]
    for i, r in enumerate(fresh):
        r[header.index("num_facture")] = f"NEW-{i}"
    with open(drop / "pharmacy" / "600000001.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerows([header, *fresh, bad])
    report = ingest_directory(drop, spark=spark, settings=settings)
    (f,) = [f for f in report.files if not f.skipped]
    assert (f.records_in, f.landed, f.quarantined) == (4, 3, 1)
    quarantine = lake(spark, settings, "ops.quarantine").read().where(f"batch_id = '{report.batch_id}'").collect()
    assert [q.reason_code for q in quarantine] in (["NIR_INVALID"], ["NIR_KEY"])
    assert "1" * 15 not in quarantine[0].message


def test_no_identity_trait_reaches_the_lake(first_run: IngestReport, territory: Path, settings: Settings) -> None:
    import pyarrow.parquet as pq

    with open(territory / "ground_truth" / "identities.csv", encoding="utf-8") as handle:
        people = list(csv.DictReader(handle))
    needles = {p["nir"] for p in people} | {p["phone"] for p in people if p["phone"]} | {
        p["email"] for p in people if p["email"]} | {p["address"] for p in people}
    lake = Path(settings.lake_uri)
    files = list(lake.rglob("*.parquet")) + list(lake.rglob("*.json"))
    assert files
    for path in files:
        text = (pq.read_table(path).to_pandas().to_csv() if path.suffix == ".parquet" else path.read_text())
        found = [n for n in needles if n and n in text]
        assert not found, f"identity data in {path.relative_to(lake)}"


def test_linkage_gives_one_pseudonym_per_person_and_never_merges_two(
    first_run: IngestReport, spark: SparkSession, settings: Settings, territory: Path
) -> None:
    truth = keyed_links(territory, KeyStore.from_settings(settings))  # bronze holds keyed record ids only
    rows = lake(spark, settings, "bronze.records").read().where("person_pseudonym IS NOT NULL").select(
        "source", "file", "record_id", "person_pseudonym").collect()
    persons_of: dict[str, set[int]] = {}
    pseudonyms_of: dict[int, set[str]] = {}
    for r in rows:
        person = truth.get((r.source, r.file, r.record_id))
        if person is None:  # a source the truth names otherwise (reports)
            continue
        persons_of.setdefault(r.person_pseudonym, set()).add(person)
        pseudonyms_of.setdefault(person, set()).add(r.person_pseudonym)
    assert len(pseudonyms_of) > 200
    collisions = sum(1 for people in persons_of.values() if len(people) > 1)
    splits = sum(1 for ps in pseudonyms_of.values() if len(ps) > 1)
    assert collisions == 0
    assert splits <= 0.01 * len(pseudonyms_of), f"{splits} persons split over several pseudonyms"
    assert first_run.relinked > 0 and first_run.link_rules


def test_every_person_landed_is_in_the_vault_from_the_staged_identities(
    first_run: IngestReport, spark: SparkSession, settings: Settings
) -> None:
    assert first_run.seconds["identities"] > 0, "the batch staged its identities"
    # the driver's high-water mark after each stage: what an operator watches grow, or not, with the batch
    assert first_run.driver_peak_mib.keys() == first_run.seconds.keys()
    assert 0 < first_run.driver_peak_mib["identities"] <= first_run.driver_peak_mib["log"]
    assert first_run.link_engine == "spark" and not first_run.identities_on_driver
    bronze = lake(spark, settings, "bronze.records").read()
    persons = {r.person_pseudonym for r in bronze.select("person_pseudonym").distinct().collect()} - {None}
    vault = IdentityVault(make_engine(settings.db_url), KeyStore.from_settings(settings))
    assert first_run.vault_records == len(persons) > 200
    assert vault.contains(sorted(persons)) == persons
    # a first batch: every person new to the vault, its write made ready on the executors, those that
    # linkage gave records of other pseudonyms included (merged there: the driver never held them)
    assert first_run.relinked > 0 and first_run.vault_prepared == first_run.vault_records
    opened = vault.get_many(sorted(persons)[:20])  # the boxes made on the executors open (re-identification's key)
    assert len(opened) == 20 and all(r.birth_name for r in opened.values())
    assert not (settings.var_dir / "staging" / first_run.batch_id).exists(), "the sealed parts leave with the batch"


def test_a_freshly_ingested_territory_scans_clean_sender_ids_included(
    first_run: IngestReport, spark: SparkSession, settings: Settings, territory: Path
) -> None:
    with open(territory / "ground_truth" / "record_links.csv", encoding="utf-8") as handle:
        sent = {row["record_id"] for row in csv.DictReader(handle)}
    landed = {r.record_id for r in lake(spark, settings, "bronze.records").read().select("record_id").collect()}
    assert sent and not sent & landed, "a sender's record id landed in clear"
    report = scan_lake(settings.lake_uri)
    assert {"SENDER_ID", "SENDER_NUMBER", "DEATH_ACT"} <= set(report.detectors)
    assert report.findings == [], [(f.table, f.column, f.detector, f.cells) for f in report.findings]

    class KeyedValues(SenderIdFormCheck):
        """The rule turned around (keyed values count): proves the scanner reads the columns the catalog names."""

        def count(self, values: pa.Array) -> int:
            return len(values) - values.null_count - super().count(values)

    read = scan_lake(settings.lake_uri, detectors=[], column_checks=[KeyedValues.from_catalog()])
    assert {("bronze.records", "record_id"), ("bronze.records", "events[].visit_key"),
            ("silver.visit_occurrence", "visit_key"), ("silver.drug_exposure", "visit_key"),
            ("silver.measurement", "visit_key")} <= {(f.table, f.column) for f in read.findings}
