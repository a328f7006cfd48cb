"""Table maintenance: compaction, vacuum, and deletion of a person's rows down to the disk.

Why this is its own module: these operations destroy history. Time travel and the leak
scanner read old versions, and GDPR erasure needs old versions gone — the two pull in opposite
directions, so every shortening of retention is explicit, forced, and written in the commit
log with its reason.

What a DELETE does not do: Delta deletes logically. The deleted rows stay in the data files
of earlier versions and, on tables with change data feed, in ``_change_data/`` files, readable
by time travel, until a VACUUM removes files unreferenced for longer than the retention.
Erasure is complete only then: `delete_where` runs that VACUUM, and with the default 7-day
retention its report says when a later VACUUM will finish the job. Min/max statistics of the
erased rows stay in the commit log (``_delta_log/``) until log clean-up (30 days): one more
reason why quasi-identifiers never carry statistics.

Measured on 2 idle local cores (a few rows): optimize ≈ 1.5 s, vacuum ≈ 3 s, delete_where with
its vacuum ≈ 5 s. Spark's default listing parallelism (10 000 tasks) made one vacuum take
30–45 s here, hence the override in `vacuum`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame
from pyspark.sql.types import StructField, StructType

from pdp.lake.errors import SchemaMismatchError, UnsafeOperationError
from pdp.lake.properties import DELETED_FILE_RETENTION_DAYS
from pdp.lake.sparkconf import IGNORE_CORRUPT_FILES, LISTING_PARALLELISM, RETENTION_CHECK, scoped_conf

if TYPE_CHECKING:
    from delta.tables import DeltaTable

    from pdp.lake.laketable import LakeTable
    from pdp.lake.runinfo import Commit, RunInfo

MIN_RETENTION = timedelta(days=DELETED_FILE_RETENTION_DAYS)
# Spark's default listing parallelism, sized for clusters; replaced by the session's parallelism.
_SPARK_DEFAULT_LISTING_PARALLELISM = "10000"


@dataclass(frozen=True)
class PurgeReport:
    """What `delete_where` did, and whether the rows are gone from disk yet."""

    rows_deleted: int
    delete: Commit | None
    vacuum: Commit | None
    erased_after: datetime | None
    """When the deleted rows' old files become removable (delete time + retention)."""
    physically_erased: bool
    """True when this call's VACUUM already removed them; otherwise a VACUUM after `erased_after` will."""


def optimize(
    table: LakeTable,
    *,
    run: RunInfo,
    zorder_by: Sequence[str] = (),
    where: str | None = None,
) -> Commit | None:
    """Compact small files (and cluster by `zorder_by`); `where` limits it to some partitions.

    Z-ordering needs statistics on its columns, so a quasi-identifier cannot be a z-order key.
    Returns the commit, or None when there was nothing to compact.
    """
    definition = table.definition
    for column in zorder_by:
        definition.column(column)
        if column in definition.partition_by:
            raise SchemaMismatchError(f"{table.name}: {column!r} is a partition column; z-order another column")
        if column not in definition.effective_stats_columns():
            raise SchemaMismatchError(
                f"{table.name}: z-order on {column!r} needs statistics, which the catalog keeps off that column"
            )

    def compact(delta: DeltaTable) -> object:
        builder = delta.optimize().where(where) if where else delta.optimize()
        return builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()

    return table._commit_through_session(run, compact)


def vacuum(
    table: LakeTable,
    *,
    retention: timedelta,
    run: RunInfo,
    force: bool = False,
    reason: str | None = None,
) -> Commit | None:
    """Remove files no version within `retention` needs; older versions stop being readable.

    Below 7 days it is refused unless ``force=True`` with a `reason` (recorded in the commit
    log): readers in flight, time travel and the leak scanner rely on retained versions.
    Returns the VACUUM END commit.
    """
    _check_retention(table, retention, force=force, reason=reason)
    settings: dict[str, str] = {}
    if retention < MIN_RETENTION:
        settings[RETENTION_CHECK] = "false"
    if table.spark.conf.get(LISTING_PARALLELISM, None) in (None, _SPARK_DEFAULT_LISTING_PARALLELISM):
        settings[LISTING_PARALLELISM] = str(max(2, table.spark.sparkContext.defaultParallelism))
    hours = retention.total_seconds() / 3600
    return table._commit_through_session(
        run,
        lambda delta: delta.vacuum(hours),
        reason=reason.strip() if force and reason else None,
        settings=settings,
    )


def delete_where(
    table: LakeTable,
    column: str,
    values: Iterable[object],
    *,
    run: RunInfo,
    retention: timedelta = MIN_RETENTION,
    force: bool = False,
    reason: str | None = None,
) -> PurgeReport:
    """Delete every row whose `column` is in `values`, then VACUUM with `retention`.

    The erasure and opposition helper: ``delete_where(t, "person_id", pseudonyms, run=...)``.
    Values are matched exactly (no nulls); any number of them is fine (they are joined, not
    inlined in SQL). With the default 7-day retention the rows leave the disk at a VACUUM run
    a week later; ``retention=timedelta(0), force=True, reason=...`` erases them now, at the
    price of every older version of the table.
    """
    definition = table.definition
    field_type = definition.column(column).spark_type
    _check_retention(table, retention, force=force, reason=reason)
    unique = list(dict.fromkeys(values))
    if any(v is None for v in unique):
        raise ValueError("delete_where matches values exactly; None is not a value")
    if definition.append_only:
        raise UnsafeOperationError(f"{table.name} is append-only: delete is refused")
    if not unique:
        return PurgeReport(rows_deleted=0, delete=None, vacuum=None, erased_after=None, physically_erased=True)
    targets = table.spark.createDataFrame(
        [(v,) for v in unique], StructType([StructField(column, field_type, nullable=False)])
    )
    deleted = table._commit_through_session(
        run,
        lambda delta: delta.alias("t").merge(targets.alias("s"), f"t.`{column}` = s.`{column}`")
        .whenMatchedDelete().execute(),
    )
    rows = deleted.metric("numTargetRowsDeleted") if deleted is not None else 0
    if rows == 0:
        return PurgeReport(rows_deleted=0, delete=deleted, vacuum=None, erased_after=None, physically_erased=True)
    vacuumed = vacuum(table, retention=retention, run=run, force=force, reason=reason)
    erased_after = deleted.timestamp + retention if deleted is not None else None
    erased = vacuumed is not None and erased_after is not None and vacuumed.timestamp >= erased_after
    return PurgeReport(
        rows_deleted=rows, delete=deleted, vacuum=vacuumed, erased_after=erased_after, physically_erased=erased
    )


def _check_retention(table: LakeTable, retention: timedelta, *, force: bool, reason: str | None) -> None:
    """Refuse a vacuum request before anything is written (delete_where must not delete, then refuse)."""
    if retention < timedelta(0):
        raise ValueError("retention cannot be negative")
    if retention < MIN_RETENTION and not force:
        raise UnsafeOperationError(
            f"{table.name}: vacuum with retention {retention} is below {MIN_RETENTION.days} days; "
            "time travel and the leak scanner need those versions (pass force=True with a reason)"
        )
    if force and not (reason and reason.strip()):
        raise UnsafeOperationError(f"{table.name}: a forced vacuum needs a reason, recorded in the commit log")


@dataclass(frozen=True)
class ErasureReport:
    """The proof of one table's erasure: what changed, version by version and file by file.

    No value is in it: the erased values are the caller's to name (pseudonyms, in the audit log).
    """

    table: str
    version_before: int | None
    version_after: int | None
    rows_deleted: int
    files_removed: int
    bytes_removed: int

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table, "version_before": self.version_before, "version_after": self.version_after,
            "rows_deleted": self.rows_deleted, "files_removed": self.files_removed, "bytes_removed": self.bytes_removed,
        }


def erase(
    table: LakeTable, column: str, values: Iterable[str] | DataFrame, *, run: RunInfo, reason: str
) -> ErasureReport:
    """Delete the rows whose `column` is in `values`, then every file on disk that still holds one.

    `values` is a list (an opposition: a few pseudonyms, broadcast to every task) or a one-column
    DataFrame (a key rotation: every old pseudonym of the territory, read from a work area and
    joined as Spark sees fit — never collected to the driver).

    The opposition and key-rotation purge. After the DELETE, a file holding a value is by
    construction outside the current snapshot: a data file of an earlier version, or a
    change-data file (the DELETE's own included). Exactly those files are removed — Delta's
    retention check is overridden for them only, with `reason`; the rest of the history stays
    readable. The price: time travel to a version that referenced a removed file fails
    (``pdp`` treats it as erased history). Checkpoints and commit JSON hold no value of a
    pseudonym column (they carry statistics only, and the catalog keeps statistics off
    pseudonyms and person ids), so the log needs no rewrite.

    ``erase(LakeTable(spark, "silver.person"), "person_pseudonym", ["v1:..."], run=run, reason="opposition")``
    Measured: see ``pdp oppose apply`` (the demo's figure is in the README).
    """
    from pyspark.sql import functions as F

    if not (reason and reason.strip()):
        raise UnsafeOperationError(f"{table.name}: an erasure needs a reason (recorded in the audit log)")
    definition = table.definition
    if definition.column(column).spark_type.simpleString() != "string":
        raise SchemaMismatchError(f"{table.name}: erase matches a string column; {column!r} is not one")
    if not table.exists():
        return ErasureReport(table.name, None, None, 0, 0, 0)
    spark = table.spark
    if isinstance(values, DataFrame):
        if len(values.columns) != 1:
            raise ValueError("erase takes a DataFrame of exactly one column: the values to erase")
        targets = values.select(F.col(values.columns[0]).alias(column)).where(F.col(column).isNotNull()).distinct()
        if targets.isEmpty():
            return ErasureReport(table.name, None, None, 0, 0, 0)
    else:
        unique = sorted({v for v in values if v is not None})
        if not unique:
            return ErasureReport(table.name, None, None, 0, 0, 0)
        schema = StructType([StructField(column, definition.column(column).spark_type, nullable=False)])
        targets = F.broadcast(spark.createDataFrame([(v,) for v in unique], schema))
    before = table.version()
    rows = 0
    if not definition.append_only:
        deleted = table._commit_through_session(
            run,
            lambda delta: delta.alias("t").merge(targets.alias("s"), f"t.`{column}` = s.`{column}`")
            .whenMatchedDelete().execute(),
            reason=reason.strip(),
        )
        rows = int(deleted.metric("numTargetRowsDeleted") or 0) if deleted is not None else 0
    files, size = _remove_files_holding(table, column, targets)
    return ErasureReport(table.name, before, table.version(), rows, files, size)


def _remove_files_holding(table: LakeTable, column: str, targets: object) -> tuple[int, int]:
    """Remove the parquet files outside the current snapshot that hold a target value (and their .crc).

    Every path is compared as a qualified Hadoop ``Path``: ``input_file_name`` gives percent-encoded
    URIs, ``inputFiles`` and the listing give plain path strings, and a lake under a directory with
    a space or a ``%`` must not make a current file look like history, or a holder look absent.

    Files no Parquet reader can open are skipped, not fatal: a writer killed mid-file (a SIGKILLed
    ``pdp ingest``) leaves a data file without its footer that no commit references. Reading it
    failed the whole erasure — and so the linkage re-keying of the next ingest that called it (found
    by the killed-ingest test in CI). Such a file is no version of the table; VACUUM removes it
    once past the retention, as any uncommitted file.
    """
    from pyspark.sql import functions as F

    spark = table.spark
    jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    root = jvm.org.apache.hadoop.fs.Path(table.path)
    fs = root.getFileSystem(hadoop)

    def from_uri(uri: str) -> Any:  # input_file_name(): percent-encoded
        return fs.makeQualified(jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri)))

    def from_path(path: str) -> Any:  # DataFrame.inputFiles(): a Hadoop path string, not encoded
        return fs.makeQualified(jvm.org.apache.hadoop.fs.Path(path))

    current = {from_path(p).toString() for p in table.read().inputFiles()}
    candidates: list[str] = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        path = fs.makeQualified(listing.next().getPath())
        text = path.toString()
        if "/_delta_log/" in text or not text.endswith(".parquet") or text in current:
            continue
        candidates.append(text)  # Spark reads Hadoop path strings (not URIs): spaces as they are
    if not candidates:
        return 0, 0
    schema = StructType([StructField(column, table.definition.column(column).spark_type)])
    with scoped_conf(spark, {IGNORE_CORRUPT_FILES: "true"}):
        holders = [
            r[0] for r in spark.read.schema(schema).parquet(*candidates)
            .withColumn("_file", F.input_file_name())  # named at the scan: the targets may be files too
            .join(targets, column, "left_semi")  # type: ignore[arg-type]
            .select("_file").distinct().collect()
        ]
    removed = size = 0
    for uri in holders:
        file = from_uri(uri)
        if file.toString() in current:
            raise UnsafeOperationError(f"{table.name}: a file of the current version still holds an erased value")
        if not fs.exists(file):
            raise UnsafeOperationError(f"{table.name}: a file holding an erased value cannot be found to remove it")
        size += int(fs.getFileStatus(file).getLen())
        fs.delete(file, False)
        removed += 1
        crc = jvm.org.apache.hadoop.fs.Path(file.getParent(), f".{file.getName()}.crc")
        if fs.exists(crc):
            fs.delete(crc, False)
    return removed, size


def erase_pseudonyms(
    spark: object, values: Iterable[str] | DataFrame, *, run: RunInfo, reason: str,
    zones: Iterable[str] = ("bronze", "silver", "gold"), lake_root: str | Path | None = None,
    catalog: object | None = None,
) -> list[ErasureReport]:
    """`erase` `values` from every pseudonym column (catalog flag ``pseudonym: true``) of the tables of `zones`.

    The one purge behind an opposition (the person's pseudonyms) and a key rotation (every old
    pseudonym, after the re-keying MERGEs: their earlier files and change data still hold them).
    """
    from pdp.lake.catalog import load_catalog
    from pdp.lake.laketable import LakeTable

    catalog = catalog or load_catalog()
    wanted = values if isinstance(values, DataFrame) else sorted(set(values))
    reports = []
    for name in catalog.names():  # type: ignore[attr-defined]
        definition = catalog.table(name)  # type: ignore[attr-defined]
        if definition.zone not in set(zones):
            continue
        table = LakeTable(spark, definition, lake_root=lake_root)  # type: ignore[arg-type]
        for column in (c.name for c in definition.columns if c.pseudonym):
            report = erase(table, column, wanted, run=run, reason=reason)
            if report.version_before is not None:
                reports.append(report)
    return reports
