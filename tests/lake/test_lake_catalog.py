"""The table catalog: one YAML file per table, validated, failing closed with a one-line message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from lake_samples import PATIENT_STATE, write_table_file
from pyspark.sql.types import DateType, LongType, StringType

from pdp.lake import CatalogError, TableDef, TableNotFoundError, load_catalog, table

# -- the shipped catalog ------------------------------------------------------------------------


def test_the_ops_tables_are_defined_with_their_contract() -> None:
    names = load_catalog().names()
    assert {"ops.ingestion_log", "ops.quarantine", "ops.run_log"} <= set(names)

    assert table("ops.ingestion_log").column_names == [
        "batch_id", "source", "file", "file_fingerprint", "started_at", "finished_at",
        "records_in", "records_landed", "records_quarantined", "status",
    ]
    quarantine = table("ops/quarantine")
    assert quarantine.column_names == [
        "batch_id", "source", "file", "record_position", "reason_code", "message", "record_hash", "quarantined_at",
    ]
    assert quarantine.column("record_position").spark_type == LongType()
    assert "never holds nominative content" in quarantine.description
    run_log = table("run_log")
    assert run_log.column_names == [
        "run_id", "job", "as_of", "definitions_version", "started_at", "finished_at", "status",
    ]
    assert run_log.column("as_of").spark_type == DateType()
    assert run_log.append_only and table("ingestion_log").append_only


def test_free_text_and_file_names_get_no_statistics_in_ops_tables() -> None:
    assert "message" not in table("ops.quarantine").effective_stats_columns()
    assert "file" not in table("ops.ingestion_log").effective_stats_columns()


def test_unknown_tables_are_named_in_the_error() -> None:
    with pytest.raises(TableNotFoundError, match=re.escape("no table 'ops.nope'")):
        table("ops.nope")
    with pytest.raises(TableNotFoundError, match=re.escape("no table 'gold.quarantine'")):
        table("gold.quarantine")


# -- adding a table is adding a file ------------------------------------------------------------


def test_adding_a_table_is_adding_one_yaml_file(catalog_dir: Path) -> None:
    write_table_file(catalog_dir, "gold", "indicator", """
        name: indicator
        zone: gold
        description: One value per indicator, territory and date.
        partition_by: [territory]
        columns:
          - {name: indicator, type: STRING, nullable: false, description: Indicator code.}
          - {name: territory, type: STRING, nullable: false, description: Territory code.}
          - {name: as_of, type: DATE, nullable: false, description: Reference date.}
          - {name: value, type: "DECIMAL(12,4)", description: The value.}
    """)
    catalog = load_catalog(catalog_dir)
    assert catalog.names() == ["gold.indicator", "silver.patient_state"]
    indicator = catalog.table("indicator")
    assert indicator.path("/lake") == "/lake/gold/indicator"
    assert "PARTITIONED BY (territory)" in indicator.ddl("/lake")
    assert indicator.effective_stats_columns() == ["indicator", "as_of", "value"]


# -- what a definition compiles to --------------------------------------------------------------


def test_spark_schema_carries_types_nullability_and_descriptions(patient_state: TableDef) -> None:
    schema = patient_state.spark_schema()
    person = schema["person_id"]
    assert person.dataType == StringType() and person.nullable is False
    assert person.metadata == {"comment": "Pseudonym of the person."}
    assert schema["birth_year"].nullable is True


def test_statistics_stay_off_quasi_identifiers(patient_state: TableDef) -> None:
    props = patient_state.properties()
    assert props["delta.dataSkippingStatsColumns"] == "person_id,territory,score"
    assert props["delta.enableChangeDataFeed"] == "true"
    assert props["delta.enableDeletionVectors"] == "false"


def test_a_table_without_any_safe_column_collects_no_statistics(tmp_path: Path) -> None:
    write_table_file(tmp_path, "silver", "only_qi", """
        name: only_qi
        zone: silver
        description: Only quasi-identifiers and a boolean.
        columns:
          - {name: birth_date, type: DATE, description: Birth date., quasi_identifier: true}
          - {name: flag, type: BOOLEAN, description: A flag.}
    """)
    props = load_catalog(tmp_path).table("only_qi").properties()
    assert props["delta.dataSkippingNumIndexedCols"] == "0"
    assert "delta.dataSkippingStatsColumns" not in props


def test_ddl_is_an_idempotent_create_with_escaped_comments(tmp_path: Path) -> None:
    write_table_file(tmp_path, "bronze", "quoted", """
        name: quoted
        zone: bronze
        description: It's a table with a back\\slash.
        columns:
          - {name: id, type: bigint, nullable: false, description: The record's id.}
    """)
    ddl = load_catalog(tmp_path).table("quoted").ddl("/lake")
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS delta.`/lake/bronze/quoted`")
    assert "id BIGINT NOT NULL COMMENT 'The record\\'s id.'" in ddl
    assert "COMMENT 'It\\'s a table with a back\\\\slash.'" in ddl
    assert "'delta.deletedFileRetentionDuration' = 'interval 7 days'" in ddl


@pytest.fixture()
def lake_uri_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point PDP_LAKE_URI at an object store for one test, then restore the cached settings."""
    from pdp.config import get_settings

    monkeypatch.setenv("PDP_LAKE_URI", "s3a://bucket/lake/")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_paths_follow_the_lake_uri_setting_or_an_explicit_root(
    patient_state: TableDef, lake_uri_setting: None, tmp_path: Path
) -> None:
    assert patient_state.path() == "s3a://bucket/lake/silver/patient_state"
    assert patient_state.path(tmp_path) == str(tmp_path.resolve() / "silver" / "patient_state")
    assert patient_state.path("file:///data/lake") == "file:///data/lake/silver/patient_state"


# -- bad files stop the process with one line naming the file -----------------------------------

_BAD_FILES = {
    "unknown top-level key": (PATIENT_STATE + "owner: someone\n", "owner: Extra inputs are not permitted"),
    "unknown column key": (
        PATIENT_STATE.replace("description: Territory code.}", "description: Territory code., pii: true}"),
        "columns.1.pii: Extra inputs are not permitted",
    ),
    "bad type": (PATIENT_STATE.replace("type: DOUBLE", "type: DUBLE"), "unknown Spark SQL type 'DUBLE'"),
    "quasi-identifier with statistics": (
        PATIENT_STATE + "stats_columns: [person_id, postcode]\n",
        "stats column 'postcode' is a quasi-identifier",
    ),
    "partition on a quasi-identifier": (
        PATIENT_STATE + "partition_by: [postcode]\n",
        "partition column 'postcode' is a quasi-identifier",
    ),
    "statistics on a partition column": (
        PATIENT_STATE + "partition_by: [territory]\nstats_columns: [territory]\n",
        "stats column 'territory' is a partition column",
    ),
    "cluster on a quasi-identifier": (
        PATIENT_STATE + "cluster_by: [birth_year]\n",
        "cluster column 'birth_year' is a quasi-identifier",
    ),
    "partition on a pseudonym": (
        PATIENT_STATE + "  - {name: pseudo, type: STRING, description: P., pseudonym: true}\npartition_by: [pseudo]\n",
        "partition column 'pseudo' holds pseudonyms",
    ),
    "partition and cluster at once": (
        PATIENT_STATE + "partition_by: [territory]\ncluster_by: [score]\n",
        "partition_by and cluster_by exclude each other",
    ),
    "cluster column without statistics": (
        PATIENT_STATE + "stats_columns: [person_id]\ncluster_by: [score]\n",
        "cluster column(s) ['score'] need statistics",
    ),
    "bucket of a column that is no pseudonym": (
        PATIENT_STATE + "  - {name: b, type: INT, description: B., bucket: {of: territory, buckets: 16}}\n",
        "bucket column 'b': 'territory' is not a pseudonym column",
    ),
    "bucket of an unknown column": (
        PATIENT_STATE + "  - {name: b, type: INT, description: B., bucket: {of: nobody, buckets: 16}}\n",
        "bucket column 'b' is computed from 'nobody', not a column",
    ),
    "bucket that is no INT": (
        PATIENT_STATE + "  - {name: b, type: STRING, description: B., bucket: {of: person_id, buckets: 16}}\n",
        "bucket column b must be a nullable INT",
    ),
    "too many buckets": (
        PATIENT_STATE + "  - {name: b, type: INT, description: B., bucket: {of: person_id, buckets: 5000}}\n",
        "less than or equal to 1024",
    ),
    "unknown bucket key": (
        PATIENT_STATE + "  - {name: b, type: INT, description: B., bucket: {of: person_id, buckets: 8, seed: 1}}\n",
        "seed: Extra inputs are not permitted",
    ),
    "duplicate column": (
        PATIENT_STATE + "  - {name: score, type: INT, description: Again.}\n",
        "duplicate columns ['score']",
    ),
    "missing description": (
        PATIENT_STATE.replace("description: Test table — one row per person, with two quasi-identifiers.\n", ""),
        "description: Field required",
    ),
    "name differs from file": (
        PATIENT_STATE.replace("name: patient_state", "name: patient"),
        "table name 'patient' must match the file name 'patient_state'",
    ),
    "zone differs from folder": (
        PATIENT_STATE.replace("zone: silver", "zone: gold"),
        "zone 'gold' must match the folder 'silver'",
    ),
    "YAML syntax error": ("name: [patient_state\n", "cannot read YAML"),
    "not a mapping": ("- name: patient_state\n", "expected a mapping of table fields, got list"),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_a_bad_table_file_is_rejected_with_one_line_naming_it(tmp_path: Path, case: str) -> None:
    body, fault = _BAD_FILES[case]
    path = write_table_file(tmp_path, "silver", "patient_state", body)
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert fault in message


def test_files_outside_zone_folders_and_names_defined_twice_are_rejected(tmp_path: Path) -> None:
    write_table_file(tmp_path, "silver", "patient_state", PATIENT_STATE)
    stray = write_table_file(tmp_path, "platinum", "patient_state", PATIENT_STATE)
    with pytest.raises(CatalogError, match=re.escape(f"{stray}: table files live in <zone>/<name>.yml")):
        load_catalog(tmp_path)
    stray.unlink()
    twice = write_table_file(tmp_path, "gold", "patient_state", PATIENT_STATE.replace("zone: silver", "zone: gold"))
    with pytest.raises(CatalogError, match="table name 'patient_state' is already defined in") as caught:
        load_catalog(tmp_path)
    assert str(twice) in str(caught.value)


def test_a_missing_catalog_directory_stops_the_process(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalog directory not found"):
        load_catalog(tmp_path / "nowhere")


# -- layout: person buckets, partitions, clustering ---------------------------------------------

BUCKETED = PATIENT_STATE.replace(
    "{name: person_id, type: STRING, nullable: false, description: Pseudonym of the person.}",
    "{name: person_id, type: STRING, nullable: false, description: Pseudonym of the person., pseudonym: true}",
) + "  - {name: person_bucket, type: INT, description: Bucket., bucket: {of: person_id, buckets: 8}}\n" \
    + "partition_by: [person_bucket]\n"


def test_a_bucket_is_a_generated_partition_column_writers_never_supply(tmp_path: Path) -> None:
    write_table_file(tmp_path, "silver", "patient_state", BUCKETED)
    catalog = load_catalog(tmp_path)
    definition = catalog.table("patient_state")
    assert catalog.person_buckets == 8
    assert definition.bucket_column is not None and definition.bucket_column.name == "person_bucket"
    assert "person_bucket" not in definition.written_columns
    ddl = definition.ddl(tmp_path / "lake")
    assert "person_bucket INT GENERATED ALWAYS AS (CAST(pmod(xxhash64(person_id), 8) AS INT))" in ddl
    assert "PARTITIONED BY (person_bucket)" in ddl


def test_clustering_is_declared_like_partitioning(tmp_path: Path) -> None:
    write_table_file(tmp_path, "silver", "patient_state", PATIENT_STATE + "cluster_by: [territory]\n")
    assert "CLUSTER BY (territory)" in load_catalog(tmp_path).table("patient_state").ddl(tmp_path / "lake")


def test_person_buckets_number_the_same_in_every_table(tmp_path: Path) -> None:
    write_table_file(tmp_path, "silver", "patient_state", BUCKETED)
    other = write_table_file(tmp_path, "silver", "patient_visit",
                             BUCKETED.replace("patient_state", "patient_visit").replace("buckets: 8", "buckets: 16"))
    with pytest.raises(CatalogError, match="person buckets must number the same in every table") as caught:
        load_catalog(tmp_path)
    assert str(other) in str(caught.value) or "patient_state" in str(caught.value)


def test_the_shipped_bucketed_tables_share_one_bucket_of_the_person() -> None:
    catalog = load_catalog()
    bucketed = sorted(t.qualified_name for t in catalog if t.bucket_column is not None)
    assert bucketed == ["bronze.records", "silver.death", "silver.observation_period", "silver.person"]
    for name in bucketed:
        assert catalog.table(name).partition_by == ["person_bucket"]
