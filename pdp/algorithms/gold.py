"""`pdp run`: silver → gold with Spark, from the compiled definitions.

Why this shape:
- **Traceable.** Silver is read at pinned versions (time travel), and every gold commit carries
  the run id, the definitions' identity, each artefact's version and the silver versions read
  (Delta commit metadata); every gold row carries its definition's version.
- **Idempotent.** The run's inputs (the compiled SQL, which the definitions, the concept sets,
  the as-of date and the compiler shape, and the silver versions) hash to a fingerprint kept in
  the commit metadata; a run whose fingerprint equals
  the one already in gold for that as-of date writes nothing (no new Delta version).
- **Atomic per table, replace per date.** Each gold table is replaced for its `as_of` partition
  in one commit (`replaceWhere`), so re-running a date never duplicates rows.
- **Incremental.** `persons=` recomputes only the given persons (e.g. those a lab-feed
  micro-batch touched, from silver's change data feed) and replaces only their rows; the
  compiled SQL is the same, restricted by an ``in_scope`` relation.

>>> from pdp.algorithms import build_gold                     # doctest: +SKIP
>>> report = build_gold(spark, as_of=date(2026, 6, 30))         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from pdp.algorithms.compile import INPUTS, SparkDialect, Step, compile_pipeline
from pdp.algorithms.model import Definitions, load_definitions
from pdp.lake import Commit, LakeTable, RunInfo, load_catalog
from pdp.lake.sparkconf import scoped_conf

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

JOB = "gold.population_algorithms"

# input relation -> silver table
SILVER_INPUTS: dict[str, str] = {
    "in_person": "silver.person",
    "in_death": "silver.death",
    "in_location": "silver.location",
    "in_condition": "silver.condition_occurrence",
    "in_procedure": "silver.procedure_occurrence",
    "in_drug": "silver.drug_exposure",
    "in_measurement": "silver.measurement",
    "in_observation": "silver.observation",
    "in_note_fact": "silver.note_fact",
}
assert set(SILVER_INPUTS) == set(INPUTS)

# output relation -> gold table (written concurrently: a run is finished when every table holds
# its commit, see `_already_built`)
GOLD_OUTPUTS: dict[str, str] = {
    "out_population": "gold.population",
    "out_stratum": "gold.stratum",
    "out_care_action": "gold.care_action",
    "out_alert": "gold.alert",
    "out_evidence": "gold.evidence",
    "out_registry": "gold.psi_registry",
}


_STATIC_PLAN = {"spark.sql.adaptive.enabled": "false"}


@dataclass
class GoldReport:
    """What a run did: rows per gold table, or that gold was already up to date."""

    as_of: date
    definitions: str
    fingerprint: str
    skipped: bool = False
    scoped_persons: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    silver_versions: dict[str, int | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def silver_inputs(
    spark: SparkSession, lake_root: str | None, *, person_ids: list[int] | None = None
) -> tuple[dict[str, DataFrame], dict[str, int | None]]:
    """Every input at its current version, pinned; an absent table is an empty one (its catalog schema).

    `person_ids` keeps only those persons' rows (reference tables such as silver.location stay whole).
    """
    from pyspark.sql import functions as F

    frames: dict[str, DataFrame] = {}
    versions: dict[str, int | None] = {}
    catalog = load_catalog()
    for relation, name in SILVER_INPUTS.items():
        table = LakeTable(spark, catalog.table(name), lake_root=lake_root)
        if table.exists():
            version = table.version()
            frame = table.read(version=version)
            versions[name] = version
        else:
            frame = spark.createDataFrame([], table.definition.spark_schema())
            versions[name] = None
        if person_ids is not None and "person_id" in frame.columns:
            frame = frame.where(F.col("person_id").isin(person_ids))
        frames[relation] = frame
    return frames, versions


def fingerprint(steps: list[Step], versions: dict[str, int | None], scope: str = "all") -> str:
    """The identity of a run's inputs: the compiled SQL (definitions, concept sets, as-of date and the
    compiler's own code all shape it) and the silver versions read. Same fingerprint, same gold."""
    payload = json.dumps(
        {"sql": [[s.name, s.sql] for s in steps], "silver": versions, "scope": scope, "gold": list(GOLD_OUTPUTS)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _already_built(spark: SparkSession, lake_root: str | None, as_of: date, fp: str) -> bool:
    """True when every gold table's latest commit for `as_of` was made from the same inputs.

    Every table, not one sealing table written last: the tables are written concurrently, so a
    run that failed part-way left some with its fingerprint and others without, and is redone.
    """
    return all(_built_from(LakeTable(spark, name, lake_root=lake_root), as_of, fp) for name in GOLD_OUTPUTS.values())


def _built_from(table: LakeTable, as_of: date, fp: str) -> bool:
    if not table.exists():
        return False
    for commit in table.history(limit=50):
        lineage = commit.run.lineage if commit.run else None
        if lineage and lineage.get("as_of") == as_of.isoformat():
            return lineage.get("fingerprint") == fp and lineage.get("scope") == "all"
    return False


def build_gold(
    spark: SparkSession,
    *,
    as_of: date,
    definitions: Definitions | None = None,
    lake_root: str | None = None,
    persons: Iterable[int] | None = None,
) -> GoldReport:
    """Compute every gold table at `as_of` from silver; `persons` restricts the run to those person ids."""
    started = time.perf_counter()
    defs = definitions or load_definitions()
    frames, versions = silver_inputs(spark, lake_root)
    scoped = persons is not None
    scope_ids = sorted(set(persons or []))
    steps = compile_pipeline(defs, as_of=as_of, dialect=SparkDialect(), scoped=scoped)
    fp = fingerprint(steps, versions, "persons" if scoped else "all")
    report = GoldReport(as_of=as_of, definitions=defs.version, fingerprint=fp, silver_versions=versions,
                        scoped_persons=len(scope_ids) if scoped else None)
    if not scoped and _already_built(spark, lake_root, as_of, fp):
        report.skipped = True
        report.seconds["total"] = time.perf_counter() - started
        return report
    for relation, frame in frames.items():
        frame.createOrReplaceTempView(relation)
    if scoped:
        from pyspark.sql.types import LongType, StructField, StructType

        schema = StructType([StructField("person_id", LongType(), False)])
        spark.createDataFrame([(i,) for i in scope_ids], schema).createOrReplaceTempView("in_scope")
    from pyspark import StorageLevel

    cached: list[DataFrame] = []
    for step in steps:
        tick = time.perf_counter()
        if step.materialise:
            # Cut the lineage: later steps read this relation many times (the evidence step dozens),
            # and re-analysing the whole plan behind every reference exhausts the driver's heap.
            # Planned without adaptive execution: an adaptive plan hides its output partitioning
            # from the checkpoint, and then every per-person step after it shuffles again what
            # the step had already distributed by person (see `Dialect.distribute_by`).
            with scoped_conf(spark, _STATIC_PLAN):
                # kept as rows: the materialised relations are the small ones read often (the
                # matched facts, the one big relation, are not kept: see `compile.matched`)
                frame = spark.sql(step.sql).localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK_DESER)
            cached.append(frame)
        else:
            frame = spark.sql(step.sql)
        frame.createOrReplaceTempView(step.name)
        report.seconds[f"step.{step.name}"] = time.perf_counter() - tick
    report.seconds["plan"] = time.perf_counter() - started
    lineage = {
        "as_of": as_of.isoformat(),
        "fingerprint": fp,
        "scope": "persons" if scoped else "all",
        "definitions": json.dumps(defs.versions(), sort_keys=True),
        "silver_versions": json.dumps(versions, sort_keys=True),
    }
    run = RunInfo.new(JOB, definitions_version=defs.version, lineage=lineage)
    try:
        _write(spark, lake_root, as_of, defs, run, scope_ids if scoped else None, report)
    finally:
        for frame in cached:
            frame.unpersist()
    report.seconds["total"] = time.perf_counter() - started
    return report


def _write(
    spark: SparkSession,
    lake_root: str | None,
    as_of: date,
    defs: Definitions,
    run: RunInfo,
    scope_ids: list[int] | None,
    report: GoldReport,
) -> None:
    """Write every gold table, one commit each, concurrently.

    Why concurrently: a gold commit is mostly the driver's Delta protocol work (snapshot, commit,
    finding the commit made), during which the executors idle; the tables are independent, so
    their commits overlap. A run is finished only when every table holds its commit (see
    `_already_built`), so a failed run is never taken for a finished one. (Until 2026-12-06 the
    small gold.psi_registry was written alone after the others, as the run's seal: 2 s more.)
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(GOLD_OUTPUTS)) as pool:
        futures = [pool.submit(_write_one, spark, lake_root, relation, name, as_of, defs, run, scope_ids, report)
                   for relation, name in GOLD_OUTPUTS.items()]
        for future in futures:
            future.result()


def _write_one(
    spark: SparkSession,
    lake_root: str | None,
    relation: str,
    name: str,
    as_of: date,
    defs: Definitions,
    run: RunInfo,
    scope_ids: list[int] | None,
    report: GoldReport,
) -> None:
    from pyspark.sql import functions as F

    when = f"as_of = DATE '{as_of.isoformat()}'"
    tick = time.perf_counter()
    table = LakeTable(spark, name, lake_root=lake_root).create()
    frame = spark.table(relation).withColumn("as_of", F.lit(as_of)).withColumn("definitions", F.lit(defs.version))
    # a bounded number of files per write: the union of many parts would write one small file per part
    frame = frame.select(*table.definition.column_names).coalesce(_files_per_write(spark))
    if scope_ids is None:
        commit = table.overwrite(frame, replace_where=when, run=run)
    else:
        commit = _replace_persons(table, frame, when, scope_ids, run)
    # rows written, from the commit's own metrics: counting the frame first would compute it twice
    report.rows[name] = commit.metric("numOutputRows") if commit is not None else 0
    report.seconds[name] = time.perf_counter() - tick


def _files_per_write(spark: SparkSession) -> int:
    return max(1, int(spark.conf.get("spark.sql.shuffle.partitions") or 8))


def _replace_persons(
    table: LakeTable, frame: DataFrame, when: str, scope_ids: list[int], run: RunInfo
) -> Commit | None:
    """Replace the scoped persons' rows of one as-of date: delete theirs, append the new ones, one commit each."""
    table.delete_keys("person_id", scope_ids, where=f"t.{when}", run=run)
    return table.append(frame, run=run)
