"""Sender record versions: a record resent or corrected replaces the version it supersedes.

Why: real senders resend. A hospital sends its PMSI cumulatively every month (M1, then M1–M2,
with corrections of earlier stays), a lab sends a corrected result (HL7 OBX-11 = C) under the
same order, a FHIR server returns a resource with a new ``meta.versionId``. The unit of truth is
the *sender record* — the sender's own id for it (``record_id``: stay number, invoice, filler
order, resource id, kept keyed by the edge) within its source — not the bytes. So:

* a byte-identical resend adds nothing (same keyed record hash: the insert-only MERGE skips it);
* within one batch, the last version of a sender record wins — later file in path order (the
  order discovery gives; senders name their resends by period), then later position — and the
  earlier ones never reach bronze; they are counted per file as ``superseded``, still ``landed``
  by the edge (in = landed + quarantined holds);
* across batches, a new version deletes the previous one's rows from every silver table derived
  from it (the tables that keep ``record_hash``), then from bronze — in that order, so a run
  killed in between finds the old version in bronze again and finishes the job — in Delta
  commits whose history keeps the old version; the new version is then merged like any record.

Records without a sender id (a pharmacy line without invoice number) are only ever recognised
by their bytes. The batch ingest and the lab feed call :func:`latest_versions` and
:func:`retire_replaced` the same way: one rule, two callers.

Cost: one Spark job over the staged rows for the in-batch rule, and one join of the batch's ids
with bronze's ``(source, record_id, record_hash)`` columns for the cross-batch one; the deletes
only run when a version was replaced (a commit per table holding its rows).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from pdp.lake import LakeTable, RunInfo

__all__ = ["Replaced", "latest_versions", "retire_replaced"]


def latest_versions(rows: DataFrame, *, repeats: bool | None = None) -> tuple[DataFrame, Counter[tuple[str, str]]]:
    """The staged bronze rows keeping one version per sender record, and how many earlier versions
    each (source, file) lost to a later one of the same batch.

    `repeats`: whether a sender record id occurs twice in the rows, when the caller knows it without
    Spark (the lab feed holds its few rows in memory); False skips the ranking job. None: rank.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if repeats is False:
        return rows, Counter()

    order = Window.partitionBy("source", "record_id").orderBy(F.col("file").desc(), F.col("record_position").desc())
    ranked = rows.withColumn(
        "_version", F.when(F.col("record_id").isNull(), F.lit(1)).otherwise(F.row_number().over(order))
    ).localCheckpoint()  # ranked once: the count below and the MERGE read the same rows
    superseded = Counter({
        (r["source"], r["file"]): int(r["n"])
        for r in ranked.where("_version > 1").groupBy("source", "file").agg(F.count(F.lit(1)).alias("n")).collect()
    })
    return ranked.where("_version = 1").drop("_version"), superseded


@dataclass
class Replaced:
    """Bronze versions a batch replaced: how many, and the persons whose silver must be recomputed."""

    records: int = 0
    persons: set[str] = field(default_factory=set)
    tables: dict[str, int] = field(default_factory=dict)  # rows deleted per table


def retire_replaced(
    latest: DataFrame, *, run: RunInfo, table: Callable[[str], LakeTable]
) -> Replaced:
    """Delete from bronze, and from the silver tables derived from them, the earlier versions of the
    sender records in `latest` (same source and record id, other record hash).

    `table` opens a created lake table by qualified name. Call it before the batch's bronze MERGE.
    """
    from pyspark.sql import functions as F

    from pdp.ingest.silver import EVENT_TABLES

    bronze = table("bronze.records")
    incoming = latest.where("record_id IS NOT NULL").select(
        "source", "record_id", F.col("record_hash").alias("new_hash"))
    old = bronze.read().where("record_id IS NOT NULL").select(
        "source", "record_id", "record_hash", "person_pseudonym",
        F.array_distinct(F.col("events.domain")).alias("domains"),
        F.col("attributes")["note_date"].isNotNull().alias("note"))
    found = old.join(incoming, ["source", "record_id"]).where("record_hash <> new_hash").collect()
    if not found:
        return Replaced()
    hashes = sorted({r["record_hash"] for r in found})
    result = Replaced(records=len(hashes), persons={r["person_pseudonym"] for r in found if r["person_pseudonym"]})
    names = {f"silver.{EVENT_TABLES[d][0]}" for r in found for d in (r["domains"] or []) if d in EVENT_TABLES}
    if any("death" in (r["domains"] or []) for r in found):
        names.add("silver.death")
    if any(r["note"] for r in found):
        names.add("silver.note")
    for name in [*sorted(names), "bronze.records"]:  # bronze last: a run killed in between finds them again
        target = table(name)
        commit = target.delete_keys("record_hash", hashes, run=run)
        result.tables[name] = int(commit.metric("numTargetRowsDeleted") or 0) if commit else 0
    return result
