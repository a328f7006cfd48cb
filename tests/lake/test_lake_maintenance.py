"""Maintenance: compaction, vacuum with a retention floor, and erasure down to the disk."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pdp.lake import (
    LakeTable,
    RunInfo,
    SchemaMismatchError,
    TableDef,
    UnsafeOperationError,
    delete_where,
    optimize,
    vacuum,
)

pytestmark = pytest.mark.spark

SCHEMA = "person_id STRING, territory STRING, birth_year INT, postcode STRING, score DOUBLE"


def test_vacuum_below_seven_days_needs_force_and_a_reason(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root)
    with pytest.raises(UnsafeOperationError, match="below 7 days"):
        vacuum(lake, retention=timedelta(days=6, hours=23), run=run)
    with pytest.raises(UnsafeOperationError, match="needs a reason"):
        vacuum(lake, retention=timedelta(0), run=run, force=True)
    with pytest.raises(UnsafeOperationError, match="needs a reason"):
        delete_where(lake, "person_id", ["p1"], run=run, retention=timedelta(0), force=True, reason=" ")
    with pytest.raises(ValueError, match="negative"):
        vacuum(lake, retention=timedelta(hours=-1), run=run, force=True, reason="test")


def test_z_order_is_refused_on_columns_without_statistics(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root)
    with pytest.raises(SchemaMismatchError, match=re.escape("z-order on 'postcode' needs statistics")):
        optimize(lake, run=run, zorder_by=["postcode"])


@pytest.mark.slow
def test_erasure_deletes_the_rows_then_a_forced_vacuum_removes_every_older_copy(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    rows = [("p1", "A", 1950, "75001", 1.0), ("p2", "A", 1960, "75002", 2.0), ("p3", "B", 1970, "69001", 3.0)]
    written = lake.append(spark.createDataFrame(rows, SCHEMA), run=run)  # one small file per input slice
    assert written is not None and written.metric("numFiles") > 1

    compacted = optimize(lake, run=run, zorder_by=["score"])
    assert compacted is not None and compacted.operation == "OPTIMIZE" and compacted.run == run
    assert compacted.metric("numAddedFiles") == 1

    assert delete_where(lake, "person_id", [], run=run).rows_deleted == 0
    erasure = RunInfo(run_id="run-erasure", job="governance.erasure", definitions_version="policy-2")
    report = delete_where(
        lake, "person_id", ["p1", "p3", "p1", "unknown"], run=erasure,
        retention=timedelta(0), force=True, reason="erasure requests 17 and 18",
    )

    assert report.rows_deleted == 2 and report.physically_erased
    assert report.delete is not None and report.delete.run == erasure
    assert report.vacuum is not None and report.vacuum.operation == "VACUUM END"
    assert report.vacuum.reason == "erasure requests 17 and 18"
    assert {r["person_id"] for r in lake.read().collect()} == {"p2"}
    # Every older version and every change-data file that held p1 or p3 is gone from disk.
    with pytest.raises(Exception, match=r"FILE_NOT_EXIST|does not exist"):
        lake.read(version=1).collect()
    with pytest.raises(Exception, match=r"FILE_NOT_EXIST|does not exist"):
        lake.changes(1).collect()
    table_dir = Path(lake.path)
    assert not list((table_dir / "_change_data").glob("*.parquet"))
    assert len(list(table_dir.glob("*.parquet"))) == 1


def test_erasure_survives_a_killed_writers_footless_file(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    """A writer SIGKILLed mid-file leaves, in the table's folder, a Parquet file without footer that no
    commit references; erasure reads every file outside the current snapshot, and must not fail on it
    (it did: the killed-ingest test's re-run died in the linkage re-keying's erasure)."""
    from pdp.lake import erase

    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    rows = [("p1", "A", 1950, "75001", 1.0), ("p2", "A", 1960, "75002", 2.0)]
    lake.append(spark.createDataFrame(rows, SCHEMA).coalesce(1), run=run)
    table_dir = Path(lake.path.removeprefix("file:"))
    whole = next(table_dir.glob("*.parquet")).read_bytes()
    killed = table_dir / "part-00000-killed-writer.c000.snappy.parquet"
    killed.write_bytes(whole[: len(whole) // 2])

    report = erase(lake, "person_id", ["p1"], run=run, reason="opposition request 19")

    assert report.rows_deleted == 1 and report.files_removed >= 1  # the files of the version that held p1
    assert {r["person_id"] for r in lake.read().collect()} == {"p2"}
    assert killed.exists(), "no version's file: VACUUM's to remove once past the retention"
