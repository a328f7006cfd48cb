"""Bronze → silver: the OMOP-inspired model (person, visits, conditions, procedures, drugs,
measurements, observations, survey answers, deaths, observation periods, locations), one Spark job per batch.

Ids are BIGINT and stable: an event's id is xxhash64 of its record's keyed hash and its index
in the record, so re-running a batch inserts nothing twice (insert-only MERGE on the id); a
person's id is xxhash64 of the pseudonym. Every event keeps its source vocabulary and code and
gets the concept set it belongs to (pdp/semantic/concept_sets.yml). A measurement of a concept
the rules read with a threshold is converted to that concept's unit (pdp/semantic/units.yml: an
IFCC HbA1c in mmol/mol lands in %), its unit checked by the edge.

Why 64-bit ids need a collision check, and what it costs. Among n uniform 64-bit ids the
expected number of colliding pairs is n(n-1)/2 / 2^64 ≈ n² / 2^65 (the birthday bound):

==================================  ===============  ============================
ids in one table                     n                expected colliding pairs
==================================  ===============  ============================
persons of France (silver.person)    6.8e7            1.3e-4
one year of one event table          1e9              0.027
a national event table after years   2e9 / 5e9        0.11 / 0.68
==================================  ===============  ============================

An insert-only MERGE on the id would drop the second event of a colliding pair without a trace
(its id "already exists"). So every insert-only MERGE here checks that a matched id comes from
the same origin (the record's keyed hash; the index is implied, since a record's events always
arrive together and are checked against each other in the batch): an event whose id is taken by
another record's event goes to ``ops.quarantine`` with reason ``ID_COLLISION`` (its record stays
in bronze, nothing is lost) and is counted in :attr:`SilverCounts.collisions`.
A person-id collision cannot be repaired by setting one row aside (every event of both persons
carries the id), so it stops the batch before silver is written (:class:`IdCollisionError`);
at 1.3e-4 for the whole country, it is a deliberate, loud and documented stop.

Cost. No event table is read for the check on a normal batch: the join against a table runs
only when its MERGE's own metrics say a source row matched (numSourceRows >
numTargetRowsInserted: a re-run, a re-read partial file, or a collision). The in-batch check
rides on the domain query the batch runs anyway (a distinct count of ids beside it), and the
person check on the job that counts the batch's persons, which now also reads silver.person's
(person_id, person_pseudonym) columns — the one scan added to every batch, small beside the
person refresh's scan of bronze. Measured on a loaded 2-core machine, a 50-record batch:
78 Spark jobs (AQE stages) instead of 72, time within noise (34 s vs 41 s); its re-run 84 jobs
instead of 74 (the join against silver.measurement).

A batch's fixed cost (issue 14). The batch's one profile query says which domains it holds: a
table with none of the batch's rows gets no MERGE (it is only created if missing), deaths and
communes likewise (the communes' emptiness probe rides on the profile, and their count on the
MERGE's metrics); the person aggregate is cached for its two MERGEs instead of scanning bronze
twice. Person-keyed writes and the person refresh read only the batch's person buckets
(:mod:`pdp.lake.layout`). Measured with ``pdp bench increment --persons 2000`` (20 lab results
of 20 known persons, load average 16-20): silver 117.6 s → 57.8 s, Spark SQL executions of the
increment's ingest 134 → 78.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdp.ingest.reasons import REASONS, ReasonCode
from pdp.lake.errors import LakeError
from pdp.semantic import unit_conversion_sql
from pdp.semantic.concepts import concept_case_sql

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from pyspark.sql import Column, DataFrame, Row, SparkSession

    from pdp.lake import LakeTable, RunInfo

    TableOpener = Callable[[str], LakeTable]
    """Qualified table name → the created LakeTable (the lab feed caches them: create() checks cost a Spark job)."""

__all__ = ["EVENT_TABLES", "IdCollisionError", "SilverCounts", "build_silver", "merge_events_for_rows",
           "refresh_people", "table_opener"]


class IdCollisionError(LakeError):
    """Two pseudonyms share one 64-bit person id: the batch stops before silver is written (see the module)."""


class SilverCounts(dict[str, int]):
    """Rows inserted per silver table (a plain dict for every caller that prints or sums it), and
    ``collisions``: per table, events left out of silver because another record's event holds their
    id (each one is an ``ID_COLLISION`` row of ops.quarantine, its record is in bronze)."""

    def __init__(self, *args: object, **kwargs: int) -> None:
        super().__init__(*args, **kwargs)
        self.collisions: dict[str, int] = {}

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


def _person_id(pseudonym: str = "person_pseudonym") -> Column:
    """The person's BIGINT id: xxhash64 of the pseudonym (silver, gold and the API join on it)."""
    from pyspark.sql import functions as F

    return F.xxhash64(pseudonym)


def _check_person_ids(persons: int, ids: int, taken: int) -> None:
    """Stop when two pseudonyms share one person id: `ids` distinct ids for `persons` distinct
    pseudonyms of the batch, `taken` of them held in silver.person by another pseudonym."""
    if persons > ids or taken:
        raise IdCollisionError(
            f"person id collision: {persons - ids + taken} pseudonym(s) of this batch share a 64-bit person id "
            "with another person; silver.person is left unchanged and the batch stops (see pdp.ingest.silver)"
        )


def _within(buckets: Collection[int] | None, table: LakeTable) -> dict[str, Collection[int]] | None:
    """The MERGE pruning of `table` to the batch's person `buckets` (None: the table has no bucket
    partition, or the buckets are unknown — the MERGE then reads the whole table as before)."""
    column = table.definition.bucket_column
    if buckets is None or column is None or column.name not in table.definition.partition_by:
        return None
    return {column.name: buckets}


def _held_person(opener: TableOpener, people: DataFrame) -> DataFrame:
    """`people` (``person_pseudonym``) with its ``person_id``, ``_bucket`` and ``_held_by``: the pseudonym
    silver.person holds under that id, if any (another one than the person's own is a collision).

    Joined on the bucket too (a function of the id): Spark may then prune silver.person's partitions
    to the batch's buckets (dynamic partition pruning) instead of reading every file."""
    from pyspark.sql import functions as F

    person = opener("silver.person")
    column = person.definition.bucket_column
    # the bucket silver.person computes, from the id (the catalog's one expression; null: not bucketed)
    bucket = F.expr(column.bucket.expression("BIGINT", "person_id")) if column and column.bucket else F.lit(None)
    people = people.withColumn("person_id", _person_id()).withColumn("_bucket", bucket.cast("int"))
    bucketed = column is not None and column.name in person.definition.partition_by
    held = person.read().select(
        "person_id", F.col("person_pseudonym").alias("_held_by"),
        *([F.col(column.name).alias("_bucket")] if bucketed and column else []),
    )
    return people.join(held, ["person_id", "_bucket"] if bucketed else ["person_id"], "left")


def _person_count(opener: TableOpener, people: DataFrame) -> tuple[int, list[int]]:
    """The batch's distinct persons, after checking their ids, and their person buckets (one Spark
    job, the one counting them)."""
    from pyspark.sql import functions as F

    row = _held_person(opener, people).agg(
        F.count_distinct("person_pseudonym").alias("persons"),
        F.count_distinct("person_id").alias("ids"),
        F.count_distinct(F.when(F.col("_held_by") != F.col("person_pseudonym"), F.col("person_pseudonym")))
        .alias("taken"),
        F.sort_array(F.collect_set("_bucket")).alias("buckets"),
    ).first()
    persons = int(row["persons"]) if row else 0
    _check_person_ids(persons, int(row["ids"]) if row else 0, int(row["taken"]) if row else 0)
    return persons, [int(b) for b in (row["buckets"] or [])] if row else []


def table_opener(spark: SparkSession, lake_root: str | None) -> TableOpener:
    """Open lake tables by qualified name, each created (or checked against its catalog) once per
    opener: a create() costs a Spark job, and a batch opens some tables several times."""
    from pdp.lake import LakeTable

    opened: dict[str, LakeTable] = {}

    def open_table(name: str) -> LakeTable:
        if name not in opened:
            opened[name] = LakeTable(spark, name, lake_root=lake_root).create()
        return opened[name]

    return open_table


_VALUE_SQL, _UNIT_SQL = unit_conversion_sql("e.code_system", "e.code", "e.unit", "e.value")


def _events(bronze: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    exploded = bronze.where("person_pseudonym IS NOT NULL").select(
        "record_hash",
        "batch_id",
        "source",
        "file",
        "person_pseudonym",
        "record_position",
        F.posexplode("events").alias("pos", "e"),
    )
    return exploded.select(
        F.xxhash64("record_hash", F.col("pos").cast("string")).alias("event_id"),
        _person_id().alias("person_id"),
        "person_pseudonym",
        F.col("e.domain").alias("domain"),
        F.col("e.code_system").alias("vocabulary"),
        F.col("e.code").alias("source_code"),
        F.expr(concept_case_sql("e.code_system", "e.code")).alias("concept"),
        F.xxhash64("e.code_system", "e.code").alias("concept_id"),
        F.col("e.start_date").alias("start_date"),
        F.col("e.end_date").alias("end_date"),
        F.expr(_VALUE_SQL).alias("value"),  # in the unit the rules read (pdp/semantic/units.yml)
        F.expr(_UNIT_SQL).alias("unit"),
        F.col("e.status").alias("status"),
        F.col("e.visit_key").alias("visit_key"),
        F.col("e.provider").alias("provider"),
        F.col("e.source_value").alias("source_value"),
        "source",
        F.col("file").alias("source_file"),
        "record_hash",
        "batch_id",
        "record_position",  # the two origin columns below are not silver columns: for the collision check
        "pos",
    )


OPTIONAL_DOMAINS = frozenset({"survey", "text"})
"""Domains whose table is only created by a batch that holds some: most batches carry no
questionnaire, and each MERGE is a Delta commit round; readers treat a missing table as empty."""


LOCATIONS = "_location"
"""The profile's entry for reference rows (communes) of the batch: silver.location is merged only then."""


def _profile(events: DataFrame, bronze: DataFrame | None = None) -> dict[str, bool]:
    """Per domain of the batch, whether two of its events share an id; one Spark job.

    The batch needs this query anyway (which tables to merge: a domain absent from it costs no
    MERGE); counting distinct ids beside events makes it the in-batch half of the collision check
    at no extra job. Each event of `events` has its own origin (bronze holds a record once, and a
    record's events have distinct indexes), so fewer ids than events means two origins share one.
    With `bronze`, its reference rows (communes) count under :data:`LOCATIONS`, in the same job.
    """
    from pyspark.sql import functions as F

    counted = events.select("domain", "event_id")
    if bronze is not None:
        reference = bronze.where("person_pseudonym IS NULL AND attributes['commune_code'] IS NOT NULL")
        counted = counted.unionByName(reference.select(F.lit(LOCATIONS).alias("domain"),
                                                       F.xxhash64("record_hash").alias("event_id")))
    rows = counted.groupBy("domain").agg(
        F.count(F.lit(1)).alias("events"), F.count_distinct("event_id").alias("ids")
    ).collect()
    return {r["domain"]: r["events"] > r["ids"] for r in rows}


def _domains(profile: dict[str, bool]) -> set[str]:
    """Every always-merged domain, and the optional ones this batch holds."""
    return (set(EVENT_TABLES) - OPTIONAL_DOMAINS) | (set(profile) & OPTIONAL_DOMAINS)


def _first_per_id(rows: DataFrame, key: str) -> tuple[DataFrame, DataFrame]:
    """Rows of a batch in which ids repeat: (one row per id — the first origin —, the others).

    Deterministic (the origin sorting first keeps the id), so a re-run sets aside the same events.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranked = rows.withColumn("_rank", F.dense_rank().over(Window.partitionBy(key).orderBy("record_hash", "pos")))
    return ranked.where("_rank = 1").drop("_rank"), ranked.where("_rank > 1").drop("_rank")


def _taken_ids(table: LakeTable, rows: DataFrame, key: str) -> list[Row]:
    """The rows whose id the table holds under another origin (record hash): collisions, never re-runs.

    One join of the batch's rows with the table's (id, record hash) columns: run only when the
    MERGE matched some source row, so a normal batch never pays it.
    """
    from pyspark.sql import functions as F

    held = table.read().select(F.col(key).alias("_held_id"), F.col("record_hash").alias("_held_by"))
    clashing = rows.join(held, rows[key] == held["_held_id"]).where(F.col("_held_by") != rows["record_hash"])
    return _origin(clashing).dropDuplicates(["record_hash", "pos"]).collect()


def _origin(rows: DataFrame) -> DataFrame:
    """What a quarantine row of a set-aside event needs: where its record was, which event it was."""
    return rows.select("batch_id", "source", "source_file", "record_position", "record_hash", "pos")


def _insert_new(
    table: LakeTable, rows: DataFrame, *, key: str, run: RunInfo, repeats_in_batch: bool | None, empty: bool = False
) -> tuple[int, list[Row]]:
    """Insert-only MERGE of `rows` on `key` that drops no row silently; returns (inserted, collisions).

    `rows` carry the table's columns and their origin (``record_hash``, ``pos``, where the record
    was). `repeats_in_batch`: the batch's profile says two origins share an id here (None: not
    profiled — a lab micro-batch of a few messages, where the bound is ~1e-16). A collision is a
    row whose id is held by another origin, in the table or earlier in the batch; it is not merged.
    `empty`: the profile says the batch has no such row (an always-merged table): nothing to check.
    """
    collisions: list[Row] = []
    if repeats_in_batch:
        rows, repeated = _first_per_id(rows, key)
        collisions += _origin(repeated).collect()
    commit = table.merge(rows.select(*table.definition.column_names), keys=[key], run=run, update="none")
    inserted = commit.metric("numTargetRowsInserted") if commit else 0
    # no commit: nothing was new, so every source row (if any) matched an id already there
    if commit is None:
        matched = not empty
    else:
        source_rows = commit.metrics.get("numSourceRows")
        matched = source_rows is None or int(source_rows) > inserted
    if matched:
        collisions += _taken_ids(table, rows, key)
    return inserted, collisions


def _quarantine_collisions(
    spark: SparkSession, opener: TableOpener, collisions: dict[str, list[Row]], run: RunInfo
) -> dict[str, int]:
    """The set-aside events as ``ID_COLLISION`` rows of ops.quarantine (one MERGE, only when there are some).

    The quarantine key is derived from the record's keyed hash, the table and the event's index,
    so a re-run that meets the same collision adds no second row.
    """
    from datetime import UTC, datetime

    from pyspark.sql import functions as F

    found = {name: rows for name, rows in collisions.items() if rows}
    if not found:
        return {}
    at = datetime.now(UTC)
    reason = ReasonCode.ID_COLLISION
    data = [
        (r["batch_id"], r["source"], r["source_file"], int(r["record_position"]), reason.value,
         f"silver.{name}, event {r['pos']} of the record: {REASONS[reason]}",
         f"{r['record_hash']}\x1f{name}\x1f{r['pos']}", at)
        for name, rows in sorted(found.items()) for r in rows
    ]
    schema = ("batch_id string, source string, file string, record_position bigint, reason_code string, "
              "message string, origin string, quarantined_at timestamp")
    frame = spark.createDataFrame(data, schema)
    frame = frame.select(*frame.columns[:6], F.concat(F.lit("id-collision:"), F.sha2("origin", 256))
                         .alias("record_hash"), "quarantined_at")
    opener("ops.quarantine").merge(frame, keys=["record_hash"], run=run, update="none")
    return {name: len(rows) for name, rows in found.items()}


def _merge_events(
    spark: SparkSession,
    events: DataFrame,
    run: RunInfo,
    lake_root: str | None,
    domains: Collection[str] | None = None,
    tables: TableOpener | None = None,
    profile: dict[str, bool] | None = None,
) -> SilverCounts:
    """Insert-only MERGE of each event domain into its table; `domains` limits it to those present.

    `profile` (:func:`_profile`): which domains hold ids repeated within the batch. Events whose
    id another record's event holds are quarantined (``ID_COLLISION``), never dropped silently.
    """
    opener = tables or table_opener(spark, lake_root)
    counts = SilverCounts()
    collisions: dict[str, list[Row]] = {}
    for domain, (name, id_col) in EVENT_TABLES.items():
        if domains is not None and domain not in domains:
            continue  # nothing of this domain in the rows: no MERGE (each costs a Delta commit round)
        if profile is not None and domain not in profile:
            _ensure(spark, opener, f"silver.{name}", lake_root)  # readers expect the table; no MERGE
            counts[name], collisions[name] = 0, []
            continue
        table = opener(f"silver.{name}")
        rows = events.where(f"domain = '{domain}'").withColumnRenamed("event_id", id_col)
        if domain == "text":
            rows = _note_fact_rows(rows)
        if "quantity" in table.definition.column_names:
            rows = rows.withColumn("quantity", rows["value"])
        repeats = None if profile is None else profile.get(domain, False)
        empty = profile is not None and domain not in profile
        counts[name], collisions[name] = _insert_new(table, rows, key=id_col, run=run, repeats_in_batch=repeats,
                                                     empty=empty)
    counts.collisions = _quarantine_collisions(spark, opener, collisions, run)
    return counts


def _ensure(spark: SparkSession, opener: TableOpener, name: str, lake_root: str | None) -> None:
    """The table exists (created through `opener` if not): a batch with none of its rows merges
    nothing into it, and skips the catalog check a create() of an existing table costs."""
    from pdp.lake import LakeTable

    if not LakeTable(spark, name, lake_root=lake_root).exists():
        opener(name)


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
           tables: TableOpener | None = None) -> tuple[int, dict[str, int]]:
    """silver.note: the de-identified reports of the batch (their text only if the source kept it).

    Called only for a batch that landed reports (:func:`build_silver`'s ``notes``): no emptiness
    probe here, which would be one more Spark job on every batch. Returns (inserted, collisions):
    a report whose note id another report holds is quarantined like an event (``ID_COLLISION``).
    """
    from pyspark.sql import functions as F

    notes = bronze.where("person_pseudonym IS NOT NULL AND attributes['note_date'] IS NOT NULL").select(
        F.xxhash64("record_hash").alias("note_id"),
        _person_id().alias("person_id"),
        "person_pseudonym",
        F.to_date(F.col("attributes")["note_date"]).alias("note_date"),
        F.col("attributes")["note_type"].alias("note_type"),
        F.col("attributes")["note_text"].alias("note_text"),
        F.col("attributes")["note_redactions"].cast("int").alias("redactions"),
        F.size("events").alias("facts"),
        "source",
        "record_hash",
        "batch_id",
        F.col("file").alias("source_file"),
        "record_position",
        F.lit(0).alias("pos"),
    )
    opener = tables or table_opener(spark, lake_root)
    inserted, collisions = _insert_new(opener("silver.note"), notes, key="note_id", run=run, repeats_in_batch=None)
    return inserted, _quarantine_collisions(spark, opener, {"note": collisions}, run)


def _deaths(
    spark: SparkSession,
    events: DataFrame,
    bronze: DataFrame,
    run: RunInfo,
    lake_root: str | None,
    tables: TableOpener | None = None,
    buckets: Collection[int] | None = None,
    present: bool = True,
) -> int:
    """Deaths of the batch (insert-only on the person). `present`: the batch's profile has deaths
    (else no MERGE); `buckets`: the batch's person buckets (the MERGE reads only theirs)."""
    from pyspark.sql import functions as F

    opener = tables or table_opener(spark, lake_root)
    if not present:
        _ensure(spark, opener, "silver.death", lake_root)
        return 0
    table = opener("silver.death")
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
    commit = table.merge(deaths, keys=["person_id"], run=run, update="none", within=_within(buckets, table))
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
        _person_id().alias("person_id"),
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
        _person_id().alias("person_id"),
        "person_pseudonym",
        F.col("first_seen").alias("start_date"),
        F.col("last_seen").alias("end_date"),
        F.col("event_count").cast("bigint").alias("event_count"),
    )


def _bronze_of(opener: TableOpener, buckets: Collection[int] | None) -> DataFrame:
    """bronze.records, read only in the person buckets given (all of it without buckets)."""
    from pyspark.sql import functions as F

    bronze = opener("bronze.records")
    column = bronze.definition.bucket_column
    rows = bronze.read()
    if buckets is None or column is None or column.name not in bronze.definition.partition_by:
        return rows
    return rows.where(F.col(column.name).isin(sorted(buckets)))


def _people(
    spark: SparkSession,
    batch_people: DataFrame,
    run: RunInfo,
    lake_root: str | None,
    tables: TableOpener | None = None,
    buckets: Collection[int] | None = None,
) -> None:
    """Recompute person and observation_period for the batch's people from all their bronze rows
    (their ids checked first: :func:`_person_count`), reading and rewriting only their `buckets`.

    The per-person aggregate is cached: both MERGEs use it, and it is one scan of bronze, not two.
    """
    opener = tables or table_opener(spark, lake_root)
    base = _person_base(_bronze_of(opener, buckets), batch_people).cache()
    try:
        person, period = opener("silver.person"), opener("silver.observation_period")
        person.merge(_person_rows(base), keys=["person_id"], run=run, within=_within(buckets, person))
        period.merge(_period_rows(base), keys=["person_id"], run=run, within=_within(buckets, period))
    finally:
        base.unpersist()


def _locations(
    spark: SparkSession, bronze: DataFrame, run: RunInfo, lake_root: str | None, present: bool | None = None
) -> int:
    """Communes of the batch into silver.location. `present`: the batch's profile says whether it
    holds some (None: probe, one Spark job)."""
    from pyspark.sql import functions as F

    from pdp.lake import LakeTable

    if present is False:
        return 0
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
    if present is None and communes.isEmpty():
        return 0
    commit = LakeTable(spark, "silver.location", lake_root=lake_root).create().merge(
        communes, keys=["location_id"], run=run)
    source_rows = commit.metrics.get("numSourceRows") if commit else None
    return int(source_rows) if source_rows is not None else communes.count()


def build_silver(
    spark: SparkSession,
    *,
    batch_id: str,
    run: RunInfo,
    lake_root: str | None = None,
    record_hashes: DataFrame | None = None,
    notes: bool | None = None,
) -> SilverCounts:
    """Silver rows for one batch's bronze records; returns rows inserted per table.

    `notes`: whether the batch landed free-text reports (records of a parser producing ``text``),
    which the caller knows from its parse counts without a Spark job; only then is ``silver.note``
    merged. None: the batch has reports if it has text facts (known from the domains' one
    query; a batch of reports none of which holds a coded fact then writes no note).

    An event or a report whose id another record's holds is quarantined (``ID_COLLISION``, in
    the result's ``collisions``); a person-id collision raises :class:`IdCollisionError` before
    anything is written (see the module's docstring for the bound and the cost).

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
    opener = table_opener(spark, lake_root)
    try:
        batch_people = bronze.where("person_pseudonym IS NOT NULL").select("person_pseudonym").distinct()
        # before any write: a person-id collision stops here
        persons, buckets = _person_count(opener, batch_people)
        events = _events(bronze).cache()
        profile = _profile(events, bronze)
        domains = _domains(profile)
        counts = _merge_events(spark, events, run, lake_root, domains=domains, tables=opener, profile=profile)
        counts["death"] = _deaths(spark, events, bronze, run, lake_root, tables=opener, buckets=buckets,
                                  present="death" in profile)
        if notes is None:
            notes = "text" in domains
        counts["note"] = 0
        if notes:
            counts["note"], note_collisions = _notes(spark, bronze, run, lake_root, tables=opener)
            counts.collisions.update(note_collisions)
        if persons:
            _people(spark, batch_people, run, lake_root, tables=opener, buckets=buckets)
        counts["person"] = persons
        counts["location"] = _locations(spark, bronze, run, lake_root, present=LOCATIONS in profile)
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
) -> SilverCounts:
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
    a micro-batch), so the two MERGEs read it from memory instead of scanning bronze twice; the
    person-id check (:func:`_check_person_ids`) rides on that job.
    """
    from pyspark.sql import Row

    if not persons:
        return 0
    from pdp.lake.layout import person_buckets

    opener = tables or table_opener(spark, lake_root)
    people = spark.createDataFrame([Row(person_pseudonym=p) for p in sorted(set(persons))])
    buckets = person_buckets(persons)
    computed = _person_base(_bronze_of(opener, buckets), people)
    rows = _held_person(opener, computed).collect()  # the ids checked in the job that brings the rows
    taken = {r["person_pseudonym"] for r in rows if r["_held_by"] not in (None, r["person_pseudonym"])}
    _check_person_ids(len({r["person_pseudonym"] for r in rows}), len({r["person_id"] for r in rows}), len(taken))
    base = spark.createDataFrame([[r[c] for c in computed.columns] for r in rows], computed.schema)
    person, period = opener("silver.person"), opener("silver.observation_period")
    person.merge(_person_rows(base), keys=["person_id"], run=run, within=_within(buckets, person))
    period.merge(_period_rows(base), keys=["person_id"], run=run, within=_within(buckets, period))
    return len(set(persons))
