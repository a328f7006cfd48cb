"""64-bit silver ids that collide: never a silently dropped event, never two persons under one id.

Finding a real xxhash64 collision would take ~2^32 tries, so each test writes the colliding row
itself: a silver row whose id is the one the next record's event will get, under another
record's hash (or another pseudonym). Then the real paths run on a real Delta lake: the batch
(`build_silver`) and the lab feed (`merge_events_for_rows`, `refresh_people`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pdp.ingest.silver import IdCollisionError, build_silver, merge_events_for_rows, refresh_people
from pdp.ingest.staging import BRONZE_SCHEMA
from pdp.lake import LakeTable, RunInfo

pytestmark = pytest.mark.spark

RUN = RunInfo(run_id="test-collisions", job="ingest", definitions_version="test/1")
AT = datetime(2026, 1, 5, tzinfo=UTC)


def _measurement(code: str, value: float) -> dict:
    return {"domain": "measurement", "code_system": "LOINC", "code": code, "start_date": date(2025, 6, 1),
            "end_date": None, "value": value, "unit": "mmol/L", "visit_key": None, "provider": None,
            "status": "F", "source_value": ""}


def _bronze(spark: SparkSession, records: list[tuple[str, str, list[dict]]], batch: str) -> DataFrame:
    """Bronze rows (record hash, pseudonym, events) as the edge stages them."""
    rows = [
        {"record_hash": h, "batch_id": batch, "source": "lab_hl7", "file": "labs/a.hl7", "record_position": i + 1,
         "record_id": None, "person_pseudonym": p, "link_rule": "deterministic_nir", "events": events,
         "attributes": [("_sex", "F"), ("_birth_year", "1950")], "ingested_at": AT}
        for i, (h, p, events) in enumerate(records)
    ]
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA))


def _land(spark: SparkSession, lake: str, bronze: DataFrame) -> None:
    LakeTable(spark, "bronze.records", lake_root=lake).create().merge(bronze, keys=["record_hash"], run=RUN,
                                                                       update="none")


def _squat(spark: SparkSession, lake: str, *, record_hash: str, pos: int, held_by: str) -> int:
    """A measurement row holding the id that event `pos` of `record_hash` will get, under another record's hash."""
    table = LakeTable(spark, "silver.measurement", lake_root=lake).create()
    row = spark.createDataFrame([(record_hash, str(pos))], "h string, p string").select(
        F.xxhash64("h", "p").alias("measurement_id"), F.lit(-1).cast("bigint").alias("person_id"),
        F.lit("v1:someone-else").alias("person_pseudonym"), F.lit("LOINC").alias("vocabulary"),
        F.lit("2345-7").alias("source_code"), F.lit(None).cast("string").alias("concept"),
        F.lit(7).cast("bigint").alias("concept_id"), F.lit(date(2024, 1, 1)).alias("start_date"),
        F.lit(None).cast("date").alias("end_date"), F.lit(5.5).alias("value"), F.lit("mmol/L").alias("unit"),
        F.lit("F").alias("status"), F.lit(None).cast("string").alias("visit_key"),
        F.lit(None).cast("string").alias("provider"), F.lit("lab_hl7").alias("source"),
        F.lit("labs/old.hl7").alias("source_file"), F.lit(held_by).alias("record_hash"),
        F.lit("earlier-batch").alias("batch_id"),
    )
    table.merge(row, keys=["measurement_id"], run=RUN, update="none")
    return row.first()["measurement_id"]


def _quarantined(spark: SparkSession, lake: str) -> list:
    quarantine = LakeTable(spark, "ops.quarantine", lake_root=lake).create()
    return quarantine.read().where("reason_code = 'ID_COLLISION'").collect()


def test_an_event_whose_id_another_record_holds_is_quarantined_not_dropped(spark: SparkSession, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    taken = _squat(spark, lake, record_hash="r1:new", pos=1, held_by="r1:old")
    batch = "ingest-collision"
    _land(spark, lake, _bronze(spark, [("r1:new", "v1:P", [_measurement("2345-7", 6.1), _measurement("2160-0", 80)]),
                                       ("r1:other", "v1:Q", [_measurement("2345-7", 4.9)])], batch))

    counts = build_silver(spark, batch_id=batch, run=RUN, lake_root=lake)

    assert counts["measurement"] == 2, "the two events without a collision land"
    assert counts.collisions == {"measurement": 1}
    table = LakeTable(spark, "silver.measurement", lake_root=lake).read()
    held = table.where(F.col("measurement_id") == taken).collect()
    assert [(r.record_hash, r.value) for r in held] == [("r1:old", 5.5)], "the earlier row is untouched"
    [row] = _quarantined(spark, lake)
    assert (row.source, row.file, row.record_position, row.batch_id) == ("lab_hl7", "labs/a.hl7", 1, batch)
    assert row.message.startswith("silver.measurement, event 1 of the record:")
    assert "r1:" not in row.message and "v1:" not in row.message

    again = build_silver(spark, batch_id=batch, run=RUN, lake_root=lake)  # a re-run meets the same collision
    assert again["measurement"] == 0 and again.collisions == {"measurement": 1}
    assert len(_quarantined(spark, lake)) == 1, "the re-run adds no second quarantine row"
    assert table.count() == 3


def test_the_normal_path_and_its_rerun_find_no_collision(spark: SparkSession, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    bronze = _bronze(spark, [("r1:a", "v1:P", [_measurement("2345-7", 6.1)]),
                             ("r1:b", "v1:P", [_measurement("2160-0", 80)])], "ingest-normal")
    _land(spark, lake, bronze)
    first = merge_events_for_rows(spark, bronze, run=RUN, domains={"measurement"}, lake_root=lake)
    assert first == {"measurement": 2} and first.collisions == {}
    replay = merge_events_for_rows(spark, bronze, run=RUN, domains={"measurement"}, lake_root=lake)
    assert replay == {"measurement": 0} and replay.collisions == {}, "the re-run matched its own rows only"
    assert refresh_people(spark, ["v1:P"], run=RUN, lake_root=lake) == 1
    assert not _quarantined(spark, lake)


def test_the_lab_feed_path_quarantines_a_collision_too(spark: SparkSession, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    _squat(spark, lake, record_hash="r1:lab", pos=0, held_by="r1:old")
    bronze = _bronze(spark, [("r1:lab", "v1:P", [_measurement("2345-7", 6.1)])], "feed-1")
    _land(spark, lake, bronze)
    counts = merge_events_for_rows(spark, bronze, run=RUN, domains={"measurement"}, lake_root=lake)
    assert counts == {"measurement": 0} and counts.collisions == {"measurement": 1}
    assert len(_quarantined(spark, lake)) == 1


def test_two_events_of_one_batch_sharing_an_id_keep_the_first_and_quarantine_the_other(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Within a batch an insert-only MERGE would insert both (two rows, one id): the batch's profile catches it."""
    from pdp.ingest import silver

    lake = str(tmp_path / "lake")
    bronze = _bronze(spark, [("r1:a", "v1:P", [_measurement("2345-7", 6.1)]),
                             ("r1:b", "v1:Q", [_measurement("2160-0", 80)])], "ingest-twins")
    events = silver._events(bronze)
    shared = events.where("record_hash = 'r1:a'").first()["event_id"]
    events = events.withColumn("event_id", F.lit(shared)).cache()  # r1:b's event now has r1:a's id
    profile = silver._profile(events)
    assert profile == {"measurement": True}
    counts = silver._merge_events(spark, events, RUN, lake, domains={"measurement"}, profile=profile)
    assert counts == {"measurement": 1} and counts.collisions == {"measurement": 1}
    [kept] = LakeTable(spark, "silver.measurement", lake_root=lake).read().collect()
    assert kept.record_hash == "r1:a", "the origin sorting first keeps the id"
    [row] = _quarantined(spark, lake)
    assert row.record_position == 2
    events.unpersist()


def test_a_person_id_collision_stops_the_batch_before_silver(spark: SparkSession, tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    person = LakeTable(spark, "silver.person", lake_root=lake).create()
    squatter = spark.createDataFrame([("v1:P",)], "p string").select(
        F.xxhash64("p").alias("person_id"), F.lit("v1:someone-else").alias("person_pseudonym"),
        F.lit("M").alias("gender"), F.lit(1960).alias("year_of_birth"), F.lit(None).cast("int").alias("month_of_birth"),
        F.lit(None).cast("string").alias("location_id"), F.lit(None).cast("string").alias("gp_rpps"),
        F.lit(None).cast("date").alias("first_seen"), F.lit(None).cast("date").alias("last_seen"),
        F.array(F.lit("pmsi")).alias("sources"),
    )
    person.merge(squatter, keys=["person_id"], run=RUN)
    batch = "ingest-person"
    _land(spark, lake, _bronze(spark, [("r1:a", "v1:P", [_measurement("2345-7", 6.1)])], batch))

    with pytest.raises(IdCollisionError, match="person id collision") as caught:
        build_silver(spark, batch_id=batch, run=RUN, lake_root=lake)
    assert "v1:" not in str(caught.value)
    assert not LakeTable(spark, "silver.measurement", lake_root=lake).exists(), "nothing of the batch was written"
    assert [r.person_pseudonym for r in person.read().collect()] == ["v1:someone-else"]
    with pytest.raises(IdCollisionError):
        refresh_people(spark, ["v1:P"], run=RUN, lake_root=lake)
