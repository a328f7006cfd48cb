"""Senders resend and correct: a new version of a sender record replaces the old one, once.

Real batches, real files of the synthetic territory, edited as senders edit them:

* batch 1: a hospital's PMSI file (20 stays) and a lab's HL7 file;
* batch 2: the hospital's cumulative resend (the 20 stays, stay 3 with a corrected diagnosis,
  5 new stays) and, later in path order, a second file correcting stay 5 again (an in-batch
  correction: the first version of stay 5 in this batch never reaches bronze); the lab's file
  again with one result corrected (OBX-11 = C, new value, new message control id);
* batch 3: the second file resent under another name, byte for byte: it adds nothing.

Each time: one bronze row per sender record, silver holds exactly the events of the bronze
rows (none of a replaced version), and Delta history keeps the replaced versions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ingest_helpers import CsvFile, Hl7File, lake_settings
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pdp.config import Settings
from pdp.ingest.pipeline import IngestReport, ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore

pytestmark = [pytest.mark.spark, pytest.mark.slow]

_CORRECTED_VALUE = "12.345"


def _corrected_diagnosis(row: list[str], header: list[str], other: str) -> list[str]:
    edited = list(row)
    edited[header.index("dp")] = other
    return edited


def _event_rows(spark: SparkSession, lake: str, source: str, domain: str, table: str) -> tuple[int, int, int]:
    """(events of `domain` in bronze rows of `source`, silver rows of `table` from `source`, orphans)."""
    bronze = LakeTable(spark, "bronze.records", lake_root=lake).read().where(F.col("source") == source)
    events = bronze.select(F.explode("events").alias("e")).where(F.col("e.domain") == domain).count()
    silver = LakeTable(spark, f"silver.{table}", lake_root=lake).read().where(F.col("source") == source)
    orphans = silver.join(bronze.select("record_hash"), "record_hash", "left_anti").count()
    return events, silver.count(), orphans


def _ingest(root: Path, spark: SparkSession, settings: Settings) -> IngestReport:
    return ingest_directory(root, spark=spark, settings=settings, workers=0)


def test_a_corrected_or_resent_record_replaces_its_previous_version(
    spark: SparkSession, tmp_path: Path, territory: Path
) -> None:
    var = tmp_path / "var"
    settings = lake_settings(var)
    KeyStore.from_settings(settings).init()
    lake = settings.lake_uri
    pmsi_path = sorted((territory / "pmsi").glob("*.csv"))[0]
    pmsi = CsvFile.load(pmsi_path)
    finess = pmsi_path.stem
    rows = pmsi.rows[:25]
    other_dp = next(r[pmsi.column("dp")] for r in pmsi.rows if r[pmsi.column("dp")] != rows[3][pmsi.column("dp")])
    # a lab reporting in the units the rules read: silver keeps its values as sent (no conversion)
    lab_path = next(p for p in sorted((territory / "labs").glob("*.hl7")) if b"|4548-4^" in p.read_bytes())

    b1 = tmp_path / "b1"
    (b1 / "pmsi").mkdir(parents=True)
    (b1 / "pmsi" / f"{finess}.csv").write_bytes(pmsi.text(rows[:20]).encode(pmsi.encoding))
    (b1 / "labs").mkdir()
    shutil.copy(lab_path, b1 / "labs" / lab_path.name)
    first = _ingest(b1, spark, settings)
    assert first.replaced.records == 0 and not any(f.superseded for f in first.files)
    version_1 = LakeTable(spark, "bronze.records", lake_root=lake).version()

    b2 = tmp_path / "b2"
    (b2 / "pmsi").mkdir(parents=True)
    cumulative = [*rows[:3], _corrected_diagnosis(rows[3], pmsi.header, other_dp), *rows[4:25]]
    (b2 / "pmsi" / f"{finess}-m2.csv").write_bytes(pmsi.text(cumulative).encode(pmsi.encoding))
    again = [_corrected_diagnosis(rows[5], pmsi.header, other_dp)]
    (b2 / "pmsi" / f"{finess}-m2b.csv").write_bytes(pmsi.text(again).encode(pmsi.encoding))
    hl7 = Hl7File.load(lab_path)
    message = hl7.messages[1]
    msh = message[0].split(b"|")
    msh[9] = msh[9] + b"C"  # a correction is a new message
    message[0] = b"|".join(msh)
    obx = next(i for i, s in enumerate(message) if s.startswith(b"OBX") and s.split(b"|")[5])
    fields = message[obx].split(b"|")
    fields[5], fields[11] = _CORRECTED_VALUE.encode(), b"C"
    message[obx] = b"|".join(fields)
    (b2 / "labs").mkdir()
    (b2 / "labs" / lab_path.name).write_bytes(hl7.dump())
    second = _ingest(b2, spark, settings)

    by_file = {f.file: f for f in second.files}
    assert by_file[f"pmsi/{finess}-m2.csv"].superseded == 1, "stay 5's first version in the batch"
    assert all(f.balanced for f in second.files) and second.totals()[2] == 0, "nothing quarantined"
    assert second.replaced.records == 3, "stays 3 and 5, and the lab order"
    bronze = LakeTable(spark, "bronze.records", lake_root=lake).read()
    pmsi_rows = bronze.where("source = 'pmsi'")
    assert pmsi_rows.count() == 25 and pmsi_rows.select("record_id").distinct().count() == 25
    labs = bronze.where("source = 'lab_hl7'")
    assert labs.count() == len(hl7.messages) == labs.select("record_id").distinct().count()
    for source, domain, table in (("pmsi", "condition", "condition_occurrence"),
                                  ("lab_hl7", "measurement", "measurement")):
        events, silver, orphans = _event_rows(spark, lake, source, domain, table)
        assert (silver, orphans) == (events, 0), f"{table}: exactly the events of the current versions"
    values = LakeTable(spark, "silver.measurement", lake_root=lake).read().where(
        F.col("value") == float(_CORRECTED_VALUE))
    assert values.count() == 1
    history = LakeTable(spark, "bronze.records", lake_root=lake).read(version=version_1)
    replaced = history.join(bronze, "record_hash", "left_anti")
    assert replaced.count() == 3, "Delta history keeps the replaced versions"

    b3 = tmp_path / "b3"
    (b3 / "pmsi").mkdir(parents=True)
    shutil.copy(b2 / "pmsi" / f"{finess}-m2b.csv", b3 / "pmsi" / f"{finess}-m2b-resent.csv")
    third = _ingest(b3, spark, settings)
    assert third.bronze_inserted == 0 and third.replaced.records == 0, "a byte-identical resend adds nothing"
    assert LakeTable(spark, "bronze.records", lake_root=lake).read().count() == bronze.count()
