"""The lake's person-bucket layout on a real Delta table: Delta computes the bucket, a MERGE names
the batch's buckets as numbers (never a person's value) and reads only their files, and a table made
before the layout stops with one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lake_samples import write_table_file
from pyspark.sql import SparkSession

from pdp.lake import LakeTable, RunInfo, SchemaMismatchError, load_catalog
from pdp.lake.layout import person_bucket, person_buckets

pytestmark = pytest.mark.spark

PLAIN = """
name: visits
zone: silver
description: Test table keyed by person.
columns:
  - {name: person_pseudonym, type: STRING, nullable: false, description: Pseudonym., pseudonym: true}
  - {name: score, type: INT, description: A value.}
"""
BUCKETED = PLAIN + """  - {name: person_bucket, type: INT, description: Bucket.,
     bucket: {of: person_pseudonym, buckets: 4}}
partition_by: [person_bucket]
"""
RUN = RunInfo(run_id="run-layout", job="tests.lake", definitions_version="defs-1")


def _definition(tmp_path: Path, body: str, folder: str = "tables"):
    write_table_file(tmp_path / folder, "silver", "visits", body)
    return load_catalog(tmp_path / folder).table("visits")


def test_a_merge_within_the_batch_buckets_rewrites_only_their_files(spark: SparkSession, tmp_path: Path) -> None:
    table = LakeTable(spark, _definition(tmp_path, BUCKETED), lake_root=tmp_path / "lake").create()
    people = [f"v1:person-{i}" for i in range(40)]
    table.merge(spark.createDataFrame([(p, 1) for p in people], "person_pseudonym string, score int"),
                keys=["person_pseudonym"], run=RUN)
    stored = {r["person_pseudonym"]: r["person_bucket"] for r in table.read().collect()}
    assert stored == {p: person_bucket(p, 4) for p in people}  # Delta's bucket = the Python one
    assert len({*stored.values()}) == 4

    one = people[0]
    buckets = person_buckets([one], 4)
    commit = table.merge(spark.createDataFrame([(one, 2)], "person_pseudonym string, score int"),
                         keys=["person_pseudonym"], run=RUN, within={"person_bucket": buckets})
    assert commit is not None
    assert int(commit.metrics["numTargetFilesRemoved"]) == 1  # one bucket's file, not the table's
    assert one not in str(commit.parameters)  # the log holds bucket numbers, no pseudonym
    assert re.search(rf"person_bucket#\d+ (= |IN \(){buckets[0]}\b", commit.parameters["predicate"])
    assert {r["score"] for r in table.read().where(f"person_pseudonym = '{one}'").collect()} == {2}


def test_within_takes_only_integer_values_of_a_partition_column(spark: SparkSession, tmp_path: Path) -> None:
    table = LakeTable(spark, _definition(tmp_path, BUCKETED), lake_root=tmp_path / "lake").create()
    rows = spark.createDataFrame([("v1:a", 1)], "person_pseudonym string, score int")
    with pytest.raises(ValueError, match="integer partition values only"):
        table.merge(rows, keys=["person_pseudonym"], run=RUN, within={"person_bucket": ["v1:a"]})
    with pytest.raises(ValueError, match="not a partition column"):
        table.merge(rows, keys=["person_pseudonym"], run=RUN, within={"score": [1]})
    with pytest.raises(ValueError, match="is empty"):
        table.merge(rows, keys=["person_pseudonym"], run=RUN, within={"person_bucket": []})


def test_a_table_made_before_the_layout_stops_with_one_line(spark: SparkSession, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    LakeTable(spark, _definition(tmp_path, PLAIN, "old"), lake_root=lake).create()
    with pytest.raises(SchemaMismatchError) as caught:
        LakeTable(spark, _definition(tmp_path, BUCKETED, "new"), lake_root=lake).create()
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(r"silver.visits: the table at .* predates its layout .* ingest the sources into a new lake",
                     message)


def test_a_bucket_count_that_changed_is_a_difference_not_a_silent_mismatch(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    LakeTable(spark, _definition(tmp_path, BUCKETED, "four"), lake_root=lake).create()
    eight = _definition(tmp_path, BUCKETED.replace("buckets: 4", "buckets: 8"), "eight")
    with pytest.raises(SchemaMismatchError, match=r"person_bucket is computed as .*4.*, catalog says .*8"):
        LakeTable(spark, eight, lake_root=lake).create()
