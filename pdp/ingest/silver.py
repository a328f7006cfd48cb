"""Bronze → silver: the OMOP-inspired model (person, visits, conditions, procedures, drugs,
measurements, observations, survey answers, deaths, observation periods, locations), one Spark job per batch.

Ids are BIGINT and stable: an event's id is xxhash64 of its record's keyed hash and its index
in the record, so re-running a batch inserts nothing twice (insert-only MERGE on the id); a
person's id is xxhash64 of the pseudonym. Every event keeps its source vocabulary and code and
gets the concept set it belongs to (pdp/semantic/concept_sets.yml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdp.semantic.concepts import concept_case_sql

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from pyspark.sql import DataFrame, SparkSession

    from pdp.lake import LakeTable, RunInfo

    TableOpener = Callable[[str], LakeTable]
    """Qualified table name → the created LakeTable (the lab feed caches them: create() checks cost a Spark job)."""

__all__ = ["EVENT_TABLES", "build_silver", "merge_events_for_rows", "refresh_people"]

# bronze event domain → (silver table, id column)
EVENT_TABLES = {
    "visit": ("visit_occurrence", "visit_occurrence_id"),
    "condition": ("condition_occurrence", "condition_occurrence_id"),
    "procedure": ("procedure_occurrence", "procedure_occurrence_id"),
    "drug": ("drug_exposure", "drug_exposure_id"),
    "measurement": ("measurement", "measurement_id"),
    "observation": ("observation", "observation_id"),
    "survey": ("survey_answer", "survey_answer_id"),
    "text": ("note_fact", "note_fact_id"),
}


def _opener(spark: SparkSession, lake_root: str | None) -> TableOpener:
    from pdp.lake import LakeTable

    return lambda name: LakeTable(spark, name, lake_root=lake_root).create()


def _events(bronze: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    exploded = bronze.where("person_pseudonym IS NOT NULL").select(
        "record_hash",
        "batch_id",
        "source",
        "file",
        "person_pseudonym",
        F.posexplode("events").alias("pos", "e"),
    )
    return exploded.select(
        F.xxhash64("record_hash", F.col("pos").cast("string")).alias("event_id"),
        F.xxhash64("person_pseudonym").alias("person_id"),
        "person_pseudonym",
        F.col("e.domain").alias("domain"),
        F.col("e.code_system").alias("vocabulary"),
        F.col("e.code").alias("source_code"),
        F.expr(concept_case_sql("e.code_system", "e.code")).alias("concept"),
        F.xxhash64("e.code_system", "e.code").alias("concept_id"),
        F.col("e.start_date").alias("start_date"),
        F.col("e.end_date").alias("end_date"),
        F.col("e.value").alias("value"),
        F.col("e.unit").alias("unit"),
        F.col("e.status").alias("status"),
        F.col("e.visit_key").alias("visit_key"),
        F.col("e.provider").alias("provider"),
        F.col("e.source_value").alias("source_value"),
        "source",
        F.col("file").alias("source_file"),
        "record_hash",
        "batch_id",
    )


OPTIONAL_DOMAINS = frozenset({"survey", "text"})
"""Domains whose table is only created by a batch that holds some: most batches carry no
questionnaire, and each MERGE is a Delta commit round; readers treat a missing table as empty."""


def _domains(events: DataFrame) -> set[str]:
    """Every always-merged domain, and the optional ones this batch holds."""
    present = {r["domain"] for r in events.where(events["domain"].isin(sorted(OPTIONAL_DOMAINS)))
               .select("domain").distinct().collect()}
    return (set(EVENT_TABLES) - OPTIONAL_DOMAINS) | present


def _merge_events(
    spark: SparkSession,
    events: DataFrame,
    run: RunInfo,
    lake_root: str | None,
    domains: Collection[str] | None = None,
    tables: TableOpener | None = None,
) -> dict[str, int]:
    """Insert-only MERGE of each event domain into its table; `domains` limits it to those present."""
    opener = tables or _opener(spark, lake_root)
    counts: dict[str, int] = {}
    for domain, (name, id_col) in EVENT_TABLES.items():
        if domains is not None and domain not in domains:
            continue  # nothing of this domain in the rows: no MERGE (each costs a Delta commit round)
        table = opener(f"silver.{name}")
        rows = events.where(f"domain = '{domain}'").withColumnRenamed("event_id", id_col)
        if domain == "text":
            rows = _note_fact_rows(rows)
        if "quantity" in table.definition.column_names:
            rows = rows.withColumn("quantity", rows["value"])
        columns = table.definition.column_names
        commit = table.merge(rows.select(*columns), keys=[id_col], run=run, update="none")
        counts[name] = int(commit.metric("numTargetRowsInserted") or 0) if commit else 0
    return counts


def _note_fact_rows(rows: DataFrame) -> DataFrame:
    """Text facts: the edge writes ``status`` = assertion[;history] and ``source_value`` =
    rule@start-end (offsets in the de-identified text); silver spells them out."""
    from pyspark.sql import functions as F

    assertion = F.split("status", ";").getItem(0)
    return rows.select(
        "*",
        assertion.alias("assertion"),
        F.col("status").contains(";history").alias("history"),
        F.regexp_extract("source_value", r"^(.*)@\d+-\d+$", 1).alias("rule"),
        F.regexp_extract("source_value", r"@(\d+)-\d+$", 1).cast("int").alias("span_start"),
        F.regexp_extract("source_value", r"@\d+-(\d+)$", 1).cast("int").alias("span_end"),
        F.xxhash64("record_hash").alias("note_id"),
    ).withColumn("status", F.col("assertion"))


def _notes(spark: SparkSession, bronze: DataFrame, run: RunInfo, lake_root: str | None,
           tables: TableOpener | None = None) -> int:
    """silver.note: the de-identified reports of the batch (their text only if the source kept it).

    Called only for a batch that landed reports (:func:`build_silver`'s ``notes``): no emptiness
    probe here, which would be one more Spark job on every batch.
    """
    from pyspark.sql import functions as F

    notes = bronze.where("person_pseudonym IS NOT NULL AND attributes['note_date'] IS NOT NULL").select(
        F.xxhash64("record_hash").alias("note_id"),
        F.xxhash64("person_pseudonym").alias("person_id"),
        "person_pseudonym",
        F.to_date(F.col("attributes")["note_date"]).alias("note_date"),
        F.col("attributes")["note_type"].alias("note_type"),
        F.col("attributes")["note_text"].alias("note_text"),
        F.col("attributes")["note_redactions"].cast("int").alias("redactions"),
        F.size("events").alias("facts"),
        "source",
        "record_hash",
        "batch_id",
    )
    commit = (tables or _opener(spark, lake_root))("silver.note").merge(notes, keys=["note_id"], run=run,
                                                                         update="none")
    return int(commit.metric("numTargetRowsInserted") or 0) if commit else 0


def _deaths(
    spark: SparkSession,
    events: DataFrame,
    bronze: DataFrame,
    run: RunInfo,
    lake_root: str | None,
    tables: TableOpener | None = None,
) -> int:
    from pyspark.sql import functions as F

    table = (tables or _opener(spark, lake_root))("silver.death")
    deaths = (
        events.where("domain = 'death'")
        .join(bronze.select("record_hash", F.col("attributes")["death_commune"].alias("location_id")), "record_hash")
        .select(
            "person_id",
            "person_pseudonym",
            F.col("start_date").alias("death_date"),
            "location_id",
            "source",
            "record_hash",
        )
        .dropDuplicates(["person_id"])
    )
    commit = table.merge(deaths, keys=["person_id"], run=run, update="none")
    return int(commit.metric("numTargetRowsInserted") or 0) if commit else 0


def _person_base(bronze: DataFrame, batch_people: DataFrame) -> DataFrame:
    """Per person of `batch_people`, from all their bronze rows: dates, sources, event count, latest attributes."""
    from pyspark.sql import functions as F

    dated = bronze.join(batch_people, "person_pseudonym", "left_semi").select(
        "person_pseudonym",
        "source",
        "attributes",
        "ingested_at",
        F.array_min(F.transform("events", lambda e: e["start_date"])).alias("first"),
        F.array_max(F.transform("events", lambda e: F.coalesce(e["end_date"], e["start_date"]))).alias("last"),
        F.size("events").alias("n_events"),
    )
    order = F.struct(F.coalesce("last", F.lit("0001-01-01").cast("date")), "ingested_at")
    latest = {
        key: F.max_by(F.col("attributes")[key], F.when(F.col("attributes")[key].isNotNull(), order))
        for key in ("_sex", "_birth_year", "_birth_month", "_commune", "_gp")
    }
    return dated.groupBy("person_pseudonym").agg(
        F.min("first").alias("first_seen"),
        F.max("last").alias("last_seen"),
        F.sort_array(F.collect_set("source")).alias("sources"),
        F.sum("n_events").alias("event_count"),
        *(value.alias(key) for key, value in latest.items()),
    )


def _person_rows(base: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return base.select(
        F.xxhash64("person_pseudonym").alias("person_id"),
        "person_pseudonym",
        F.col("_sex").alias("gender"),
        F.col("_birth_year").cast("int").alias("year_of_birth"),
        F.col("_birth_month").cast("int").alias("month_of_birth"),
        F.col("_commune").alias("location_id"),
        F.col("_gp").alias("gp_rpps"),
        "first_seen",
        "last_seen",
        "sources",
    )


def _period_rows(base: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    return base.where("first_seen IS NOT NULL").select(
        F.xxhash64("person_pseudonym").alias("person_id"),
        "person_pseudonym",
        F.col("first_seen").alias("start_date"),
        F.col("last_seen").alias("end_date"),
        F.col("event_count").cast("bigint").alias("event_count"),
    )


def _people(
    spark: SparkSession,
    batch_people: DataFrame,
    run: RunInfo,
    lake_root: str | None,
    tables: TableOpener | None = None,
) -> int:
    """Recompute person and observation_period for the batch's people from all their bronze rows."""
    opener = tables or _opener(spark, lake_root)
    base = _person_base(opener("bronze.records").read(), batch_people)
    person = _person_rows(base).cache()
    opener("silver.person").merge(person, keys=["person_id"], run=run)
    opener("silver.observation_period").merge(_period_rows(base), keys=["person_id"], run=run)
    count = person.count()
    person.unpersist()
    return count


def _locations(spark: SparkSession, bronze: DataFrame, run: RunInfo, lake_root: str | None) -> int:
    from pyspark.sql import functions as F

    from pdp.lake import LakeTable

    communes = (
        bronze.where("person_pseudonym IS NULL AND attributes['commune_code'] IS NOT NULL")
        .select(
            F.col("attributes")["commune_code"].alias("location_id"),
            F.col("attributes")["commune_name"].alias("name"),
            F.col("attributes")["postcode"].alias("postcode"),
            F.col("attributes")["population"].cast("bigint").alias("population"),
            F.col("file").alias("source_file"),
        )
        .dropDuplicates(["location_id"])
    )
    if communes.isEmpty():
        return 0
    LakeTable(spark, "silver.location", lake_root=lake_root).create().merge(communes, keys=["location_id"], run=run)
    return communes.count()


def build_silver(
    spark: SparkSession,
    *,
    batch_id: str,
    run: RunInfo,
    lake_root: str | None = None,
    record_hashes: DataFrame | None = None,
    notes: bool | None = None,
) -> dict[str, int]:
    """Silver rows for one batch's bronze records; returns rows inserted per table.

    `notes`: whether the batch landed free-text reports (records of a parser producing ``text``),
    which the caller knows from its parse counts without a Spark job; only then is ``silver.note``
    merged. None: the batch has reports if it has text facts (known from the domains' one
    query; a batch of reports none of which holds a coded fact then writes no note).

    `record_hashes` (one column, ``record_hash``): the records the batch staged, whichever run
    first landed them in bronze. Why not only ``batch_id``: a run killed after its bronze
    commit and before silver leaves bronze rows under its own batch id; the re-run's insert-only
    MERGE adds none of them again, so selecting by the new batch id would leave their events
    out of silver for good. Without `record_hashes`, the rows landed under `batch_id`.
    """
    from pdp.lake import LakeTable

    bronze = LakeTable(spark, "bronze.records", lake_root=lake_root).read()
    if record_hashes is None:
        bronze = bronze.where(f"batch_id = '{batch_id}'")
    else:
        bronze = bronze.join(record_hashes.select("record_hash").distinct(), "record_hash", "left_semi")
    bronze = bronze.cache()
    try:
        events = _events(bronze).cache()
        domains = _domains(events)
        counts = _merge_events(spark, events, run, lake_root, domains=domains)
        counts["death"] = _deaths(spark, events, bronze, run, lake_root)
        if notes is None:
            notes = "text" in domains
        counts["note"] = _notes(spark, bronze, run, lake_root) if notes else 0
        batch_people = bronze.where("person_pseudonym IS NOT NULL").select("person_pseudonym").distinct()
        counts["person"] = _people(spark, batch_people, run, lake_root)
        counts["location"] = _locations(spark, bronze, run, lake_root)
        events.unpersist()
    finally:
        bronze.unpersist()
    return counts


def merge_events_for_rows(
    spark: SparkSession,
    bronze: DataFrame,
    *,
    run: RunInfo,
    domains: Collection[str],
    lake_root: str | None = None,
    tables: TableOpener | None = None,
) -> dict[str, int]:
    """Event rows of bronze rows already in hand (the lab feed's micro-batch) into the tables of `domains` only.

    Why apart from :func:`build_silver`: a micro-batch of a few lab messages holds one or two
    event domains, and each MERGE is a Delta commit round of one to several seconds. The caller
    knows from the parsed rows which domains occur, so only those tables are merged, and the
    rows come from memory instead of a scan of bronze by batch id. The writes are the same
    insert-only MERGEs on the same deterministic ids, so a replayed micro-batch adds nothing,
    even when its rows were already in bronze under an earlier batch id. Deaths and reference
    rows (communes) are left to :func:`build_silver` (the lab feed carries neither).
    """
    return _merge_events(
        spark, _events(bronze), run, lake_root, domains=set(domains) & set(EVENT_TABLES), tables=tables
    )


def refresh_people(
    spark: SparkSession,
    persons: Collection[str],
    *,
    run: RunInfo,
    lake_root: str | None = None,
    tables: TableOpener | None = None,
) -> int:
    """person and observation_period of a few pseudonyms, recomputed from all their bronze rows (as a batch does).

    The per-person aggregate is computed once and brought to the driver (one row per person of
    a micro-batch), so the two MERGEs read it from memory instead of scanning bronze twice.
    """
    from pyspark.sql import Row

    if not persons:
        return 0
    opener = tables or _opener(spark, lake_root)
    people = spark.createDataFrame([Row(person_pseudonym=p) for p in sorted(set(persons))])
    computed = _person_base(opener("bronze.records").read(), people)
    base = spark.createDataFrame(computed.collect(), computed.schema)
    opener("silver.person").merge(_person_rows(base), keys=["person_id"], run=run)
    opener("silver.observation_period").merge(_period_rows(base), keys=["person_id"], run=run)
    return len(set(persons))
