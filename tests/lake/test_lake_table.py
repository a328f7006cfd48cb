"""LakeTable against a real Spark session with Delta: create, write, read back, trace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from pdp.lake import (
    LakeError,
    LakeTable,
    RunInfo,
    SchemaMismatchError,
    TableDef,
    TableNotFoundError,
    UnsafeOperationError,
    table,
)

pytestmark = pytest.mark.spark

Row = tuple[object, ...]
SCHEMA = "person_id STRING, territory STRING, birth_year INT, postcode STRING, score DOUBLE"


def frame(spark: SparkSession, rows: list[Row]) -> DataFrame:
    return spark.createDataFrame(rows, SCHEMA)


def rows_of(df: DataFrame) -> set[tuple[object, ...]]:
    return {tuple(r) for r in df.collect()}


def test_create_is_idempotent_and_sets_the_catalog_properties(
    spark: SparkSession, lake_root: Path, patient_state: TableDef
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    lake.create()

    props = lake.properties()
    assert props["delta.enableChangeDataFeed"] == "true"
    assert props["delta.dataSkippingStatsColumns"] == "person_id,territory,score"
    assert "birth_year" not in props["delta.dataSkippingStatsColumns"]
    assert "postcode" not in props["delta.dataSkippingStatsColumns"]
    assert props["delta.enableDeletionVectors"] == "false"
    assert props["delta.deletedFileRetentionDuration"] == "interval 7 days"
    assert props["delta.logRetentionDuration"] == "interval 30 days"
    assert lake.path == str(lake_root.resolve() / "silver" / "patient_state")
    assert [c.operation for c in lake.history()] == ["CREATE TABLE"]
    assert lake.read().schema["person_id"].nullable is False


def test_ops_tables_are_created_from_the_shipped_catalog(spark: SparkSession, lake_root: Path) -> None:
    for name in ("ops.ingestion_log", "ops.quarantine", "ops.run_log"):
        LakeTable(spark, name, lake_root=lake_root).create()
    assert LakeTable(spark, table("ops.run_log"), lake_root=lake_root).properties()["delta.appendOnly"] == "true"
    assert (lake_root / "ops" / "quarantine" / "_delta_log").is_dir()


def test_a_create_killed_before_its_first_commit_does_not_block_the_table_forever(
    spark: SparkSession, lake_root: Path, run: RunInfo
) -> None:
    """A process killed mid-create leaves `_delta_log/` without a commit: CREATE TABLE IF NOT EXISTS did nothing."""
    table = LakeTable(spark, "ops.ingestion_log", lake_root=lake_root)
    log = Path(table.path) / "_delta_log"
    log.mkdir(parents=True)
    (log / ".00000000000000000000.json.0f1e.tmp").write_text("{")  # the commit being written when killed
    (Path(table.path) / "part-00000-orphan.parquet").write_bytes(b"PAR1")  # an uncommitted data file
    assert not table.exists()
    table.create()
    assert table.exists() and table.read().count() == 0
    assert not (Path(table.path) / "part-00000-orphan.parquet").exists()
    table.create()  # and a real table is never cleared
    assert table.exists()


def test_an_existing_table_must_match_its_catalog_but_converges_on_properties(
    spark: SparkSession, lake_root: Path, patient_state: TableDef
) -> None:
    LakeTable(spark, patient_state, lake_root=lake_root).create()

    grown = patient_state.model_copy(update={"columns": [*patient_state.columns, patient_state.columns[-1]
                                                           .model_copy(update={"name": "extra"})]})
    with pytest.raises(SchemaMismatchError, match=re.escape("missing columns ['extra']")):
        LakeTable(spark, grown, lake_root=lake_root).create()

    quiet = patient_state.model_copy(update={"change_data_feed": False, "stats_columns": ["person_id"]})
    props = LakeTable(spark, quiet, lake_root=lake_root).create().properties()
    assert props["delta.enableChangeDataFeed"] == "false"
    assert props["delta.dataSkippingStatsColumns"] == "person_id"


def test_tables_must_be_created_before_use(spark: SparkSession, lake_root: Path, run: RunInfo) -> None:
    lake = LakeTable(spark, "ops.quarantine", lake_root=lake_root)
    assert not lake.exists()
    with pytest.raises(TableNotFoundError, match="call create"):
        lake.read()
    with pytest.raises(TableNotFoundError, match="call create"):
        lake.append(spark.createDataFrame([], table("ops.quarantine").spark_schema()), run=run)


def test_data_that_does_not_match_the_catalog_is_refused_with_every_difference(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    bad = spark.createDataFrame(
        [("p1", 1, "x")], "person_id STRING, territory INT, nickname STRING"
    )
    for write in (
        lambda: lake.append(bad, run=run),
        lambda: lake.merge(bad, keys=["person_id"], run=run),
        lambda: lake.overwrite(bad, replace_where="territory = 'A'", run=run),
    ):
        with pytest.raises(SchemaMismatchError) as caught:
            write()
        message = str(caught.value)
        assert "missing columns ['birth_year', 'postcode', 'score']" in message
        assert "unexpected columns ['nickname']" in message
        assert "territory is INT not STRING" in message
    with pytest.raises(SchemaMismatchError, match=re.escape("merge keys ['nope']")):
        lake.merge(frame(spark, []), keys=["nope"], run=run)
    # Nullability is checked by Delta row by row, and reported as one line too.
    with pytest.raises(SchemaMismatchError, match="NOT NULL constraint violated for column: person_id"):
        lake.append(frame(spark, [(None, "A", 1950, "75001", 1.0)]), run=run)
    assert lake.version() == 0


def test_destructive_writes_need_an_explicit_predicate_and_a_writable_table(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    empty = frame(spark, [])
    for predicate in ("", "   "):
        with pytest.raises(UnsafeOperationError, match="explicit replace_where"):
            lake.overwrite(empty, replace_where=predicate, run=run)
        with pytest.raises(UnsafeOperationError, match="delete needs a predicate"):
            lake.delete(predicate, run=run)

    run_log = LakeTable(spark, "ops.run_log", lake_root=lake_root).create()
    log_rows = spark.createDataFrame([], table("ops.run_log").spark_schema())
    with pytest.raises(UnsafeOperationError, match="append-only"):
        run_log.delete("true", run=run)
    with pytest.raises(UnsafeOperationError, match="append-only"):
        run_log.merge(log_rows, keys=["run_id"], run=run)
    with pytest.raises(UnsafeOperationError, match="append-only"):
        run_log.overwrite(log_rows, replace_where="true", run=run)
    with pytest.raises(LakeError, match="no change data feed"):
        run_log.changes(0)
    assert lake.version() == 0 and run_log.version() == 0


@pytest.mark.slow
def test_overwrite_replaces_only_the_rows_its_predicate_selects(
    spark: SparkSession, lake_root: Path, patient_state: TableDef, run: RunInfo
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    lake.append(frame(spark, [("p1", "A", 1950, "75001", 1.0), ("p2", "B", 1960, "69001", 2.0)]), run=run)

    commit = lake.overwrite(frame(spark, [("p3", "A", 1970, "75002", 3.0)]), replace_where="territory = 'A'", run=run)

    assert commit is not None and commit.version == 2 and commit.run == run
    assert rows_of(lake.read()) == {("p2", "B", 1960, "69001", 2.0), ("p3", "A", 1970, "75002", 3.0)}
    # A row outside the predicate would silently leave the partition it claims to replace: refused.
    with pytest.raises(UnsafeOperationError, match="DELTA_REPLACE_WHERE_MISMATCH"):
        lake.overwrite(frame(spark, [("p4", "B", 1980, "69002", 4.0)]), replace_where="territory = 'A'", run=run)
    assert lake.version() == 2


@pytest.mark.slow
def test_write_life_cycle_with_idempotent_merges_time_travel_change_feed_and_traced_commits(
    spark: SparkSession, lake_root: Path, patient_state: TableDef
) -> None:
    lake = LakeTable(spark, patient_state, lake_root=lake_root).create()
    ingest = RunInfo(run_id="run-ingest", job="ingest.gp", definitions_version="sources-3")
    first = [("p1", "A", 1950, "75001", 1.0), ("p2", "A", 1960, "75002", 2.0)]

    appended = lake.append(frame(spark, first), run=ingest)
    assert appended is not None and appended.version == 1 and appended.operation == "WRITE"

    # Insert-only merge (idempotent ingestion): the same rows again add nothing, commit nothing.
    assert lake.merge(frame(spark, first), keys=["person_id"], run=ingest, update="none") is None
    inserted = lake.merge(
        frame(spark, [*first, ("p3", "B", 1970, "69001", 3.0)]), keys=["person_id"], run=ingest, update="none"
    )
    assert inserted is not None and inserted.metric("numTargetRowsInserted") == 1

    # Upsert: only the changed row is rewritten; unchanged rows leave no trace in the change feed.
    harmonise = RunInfo(run_id="run-silver", job="silver.harmonise", definitions_version="rules-7")
    upserted = lake.merge(
        frame(spark, [("p1", "A", 1950, "75001", 1.5), ("p2", "A", 1960, "75002", 2.0)]),
        keys=["person_id"], run=harmonise,
    )
    assert upserted is not None and upserted.metric("numTargetRowsUpdated") == 1

    deleted = lake.delete("person_id = 'p2'", run=harmonise)
    assert deleted is not None and deleted.version == 4

    assert rows_of(lake.read()) == {("p1", "A", 1950, "75001", 1.5), ("p3", "B", 1970, "69001", 3.0)}
    assert rows_of(lake.read(version=1)) == set(first)
    assert rows_of(lake.read(timestamp=appended.timestamp)) == set(first)
    assert lake.version() == 4

    changes = {
        (r["_commit_version"], r["_change_type"], r["person_id"], r["score"])
        for r in lake.changes(2).collect()
    }
    assert changes == {
        (2, "insert", "p3", 3.0),
        (3, "update_preimage", "p1", 1.0),
        (3, "update_postimage", "p1", 1.5),
        (4, "delete", "p2", 2.0),
    }
    assert {(r["_change_type"], r["person_id"]) for r in lake.changes(4, 4).collect()} == {("delete", "p2")}

    history = lake.history()
    assert [(c.version, c.operation, c.run) for c in history] == [
        (4, "DELETE", harmonise),
        (3, "MERGE", harmonise),
        (2, "MERGE", ingest),
        (1, "WRITE", ingest),
        (0, "CREATE TABLE", None),
    ]
    assert lake.history(limit=1)[0].run == harmonise
