"""`pdp ingest DIR`: every new file through the edge into bronze, then silver.

A batch: discover the files, skip those already ingested (same keyed file fingerprint in the
ingestion log), parse and pass each record through the edge — file by file, in one worker
process per core for a big batch (:mod:`pdp.ingest.fanout`; same result as one in-order pass) —
stage the pseudonymised rows in Parquet parts (bounded memory), then commit: vault, bronze
(insert-only MERGE on the keyed record hash), quarantine (same), silver, and last the
ingestion log. A crash anywhere leaves committed tables at their previous version or with rows
a re-run recognises: re-running the batch adds exactly what was missing (exactly-once), and a
file is only logged once everything it produced is committed.
"""

from __future__ import annotations

import fcntl
import hashlib
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings
from pdp.ingest.edge import Edge
from pdp.ingest.fanout import BatchContext, FileTask, auto_workers, run_files, spark_engine
from pdp.ingest.parse import Duplicates
from pdp.ingest.reasons import REASONS, ReasonCode
from pdp.ingest.registry import Registry, discover, load_registry
from pdp.ingest.skipped import SkippedResources
from pdp.ingest.staging import BRONZE_SCHEMA, QUARANTINE_SCHEMA
from pdp.ingest.unmapped import UnmappedCodes
from pdp.ingest.versions import Replaced, latest_versions, retire_replaced

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from sqlalchemy import Engine

    from pdp.ingest.edge import LinkOutcome
    from pdp.lake import LakeTable, RunInfo
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.vault import IdentityVault

__all__ = ["BRONZE_SCHEMA", "QUARANTINE_SCHEMA", "FileReport", "IngestBusy", "IngestReport", "ingest_directory"]


@dataclass
class FileReport:
    """Counts of one file, under :class:`pdp.ingest.parse.Tally`'s rule: ``records_in = landed + quarantined``.

    A file-level quarantine row (position 0: empty file, header only, wrong HL7 trailer count...)
    is one record in when the file yields nothing else; beside records it is a ``file_issue``
    (a row of ops.quarantine that is not a record).

    ``stopped``: the file is *partial* — its parser (or the edge) raised, or reading failed,
    before its end (why: reason code and a message naming the exception type, never its text).
    Its counts are what was read; records from ``unread_from`` on were never read. It is logged
    ``partial``, not ``complete``, so the next run reads it again (:data:`LOG_STATUS`).

    ``skipped_resources``: per type, resources the parser read and the platform does not (a FHIR
    Claim): outside ``records_in``, neither landed nor quarantined (:mod:`pdp.ingest.skipped`).
    """

    source: str
    file: str
    records_in: int = 0
    landed: int = 0
    quarantined: int = 0
    file_issues: int = 0
    skipped: bool = False  # already ingested (same fingerprint)
    superseded: int = 0  # landed, then replaced by a later version of the same sender record in the batch
    stopped: str | None = None
    unread_from: int | None = None
    skipped_resources: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.records_in == self.landed + self.quarantined

    @property
    def partial(self) -> bool:
        return self.stopped is not None


LOG_STATUS = ("complete", "partial")
"""ops.ingestion_log's statuses: ``complete`` (every record of the file is committed; the file is not read
again) and ``partial`` (reading stopped before the file's end: what was read is committed, the file is read
again by the next run — its landed records recognised by their keyed hashes, added once)."""


@dataclass
class IngestReport:
    batch_id: str
    files: list[FileReport] = field(default_factory=list)
    held_back: int = 0
    unmatched: int = 0
    bronze_inserted: int = 0
    quarantine_inserted: int = 0
    vault_records: int = 0
    silver: dict[str, int] = field(default_factory=dict)
    id_collisions: dict[str, int] = field(default_factory=dict)  # per silver table: events quarantined ID_COLLISION
    by_reason: Counter = field(default_factory=Counter)
    pseudonymise_seconds: float = 0.0  # normalising identities and keying pseudonyms
    link_rules: dict[str, int] = field(default_factory=dict)  # distinct identities per deciding linkage rule
    link_model: str = ""  # the linkage model used: a trained version, em-on-batch, builtin-default, not-run
    relinked: int = 0  # batch pseudonyms re-keyed to their person's pseudonym by linkage
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: edge, vault, bronze, quarantine, silver, log
    parse_workers: int = 0  # worker processes of the parse+edge stage (0: in-process)
    parse_engine: str = "processes"  # or "spark": one Spark task per file (PDP_EDGE_ENGINE)
    parse_cpu_seconds: float = 0.0  # CPU time of parse+edge summed over the processes that ran it
    persons: set[str] = field(default_factory=set)  # lab feed: pseudonyms whose silver the batch changed
    unmapped: UnmappedCodes = field(default_factory=UnmappedCodes)  # landed codes outside the concept sets
    skipped_resources: SkippedResources = field(default_factory=SkippedResources)  # types the platform does not read
    replaced: Replaced = field(default_factory=Replaced)  # earlier batches' versions this batch replaced

    def partial_files(self) -> list[FileReport]:
        """Files whose reading stopped before their end this run (logged ``partial``)."""
        return [f for f in self.files if not f.skipped and f.partial]

    def totals(self) -> tuple[int, int, int]:
        read = [f for f in self.files if not f.skipped]
        return (sum(f.records_in for f in read), sum(f.landed for f in read), sum(f.quarantined for f in read))


def _done_files(spark: SparkSession, lake_root: str) -> set[tuple[str, str, str]]:
    from pdp.lake import LakeTable

    log = LakeTable(spark, "ops.ingestion_log", lake_root=lake_root).create()
    rows = log.read().where("status = 'complete'").select("source", "file", "file_fingerprint").collect()
    return {(r.source, r.file, r.file_fingerprint) for r in rows}


def ingest_directory(
    root: Path | str,
    *,
    spark: SparkSession,
    settings: Settings | None = None,
    registry: Registry | None = None,
    today: date | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Ingest every new file under `root`; returns per-file counts (in = landed + quarantined).

    `workers`: processes for the parse+edge stage (None: one per core when the batch is big
    enough to pay their start-up; 0 or 1: in-process). The result does not depend on it.
    """
    settings = settings or get_settings()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ingest directory {root} does not exist")
    with _exclusive(settings.var_dir / "ingest.lock"):
        shutil.rmtree(settings.var_dir / "staging", ignore_errors=True)  # a killed run's leftovers
        return _ingest(root, spark=spark, settings=settings, registry=registry, today=today, workers=workers)


class IngestBusy(RuntimeError):
    """Another `pdp ingest` holds the lake's ingest lock."""


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One ingest at a time per var/ (the OS drops the lock if the process dies, even on SIGKILL)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestBusy(f"another ingest is running (lock {lock_path})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ingest(
    root: Path,
    *,
    spark: SparkSession,
    settings: Settings,
    registry: Registry | None,
    today: date | None,
    workers: int | None,
) -> IngestReport:
    from pdp.ingest.silver import build_silver, refresh_people, table_opener
    from pdp.lake import RunInfo
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault

    registry = registry or load_registry(settings=settings)
    store = KeyStore.from_settings(settings)
    vault = IdentityVault(_engine(settings), EdgeKeys(store))  # seals; cannot open
    edge = Edge(store, today=today)
    started = datetime.now(UTC)
    batch_id = f"ingest-{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    report = IngestReport(batch_id=batch_id)
    discovery = discover(root, registry)
    report.held_back, report.unmatched = len(discovery.held_back), len(discovery.unmatched)
    lake_root = settings.lake_uri
    done = _done_files(spark, lake_root)
    # Absolute: executors read the staged parquet, and their working directory is not the driver's.
    staging = (settings.var_dir / "staging" / batch_id).resolve()
    fingerprints: dict[tuple[str, str], str] = {}
    tasks: list[FileTask] = []
    clock = _Clock(report.seconds)
    for spec, path in discovery.to_parse:
        rel = path.relative_to(root).as_posix()
        fingerprint = edge.file_fingerprint(path)
        file_report = FileReport(spec.name, rel)
        report.files.append(file_report)
        if (spec.name, rel, fingerprint) in done:
            file_report.skipped = True
            continue
        fingerprints[(spec.name, rel)] = fingerprint
        tasks.append(FileTask(len(report.files) - 1, spec.name, path, rel, path.stat().st_size))
    context = BatchContext(settings, registry, root, staging, batch_id, started, today)
    on_spark = spark_engine(settings, tasks, registry)
    report.parse_engine = "spark" if on_spark else "processes"
    report.parse_workers = 0 if on_spark else auto_workers(tasks, registry, workers)
    try:
        has_bronze = has_quarantine = False
        for task, result in run_files(tasks, context, workers=report.parse_workers, duplicates=Duplicates(),
                                      spark=spark if on_spark else None):
            file_report, counts = report.files[task.index], result.counts
            file_report.records_in, file_report.landed = counts.records_in, counts.parsed
            file_report.quarantined, file_report.file_issues = counts.quarantined, counts.file_issues
            file_report.stopped, file_report.unread_from = counts.stopped, counts.unread_from
            file_report.skipped_resources = dict(counts.skipped_resources)
            report.skipped_resources.add(task.source, counts.skipped_resources)
            edge.absorb(result.state)
            report.parse_cpu_seconds += result.cpu_seconds
            has_bronze |= any(p.parent.name == "bronze" for p in result.parts)
            has_quarantine |= any(p.parent.name == "quarantine" for p in result.parts)
        clock.lap("parse_and_edge")
        report.parse_cpu_seconds = round(report.parse_cpu_seconds, 3)
        report.by_reason = Counter(edge.stats.by_reason)
        report.unmapped = edge.stats.unmapped
        report.pseudonymise_seconds = round(edge.stats.pseudonymise_seconds, 3)
        outcome = link_batch(spark, edge, vault, report, lake_root=lake_root, settings=settings)
        withheld = withhold_opposed(edge, outcome, vault.engine, store)
        clock.lap("linkage")
        # commit: vault first (the identity behind every pseudonym), then the lake, then the log
        items = list(edge.vault_records.items())
        for start in range(0, len(items), 20_000):
            vault.upsert_many(items[start : start + 20_000])
        report.vault_records = len(items)
        clock.lap("vault")
        run = RunInfo(run_id=batch_id, job="ingest", definitions_version=registry_version(registry),
                      lineage=registry_lineage(registry))
        tables = table_opener(spark, lake_root)
        if has_bronze:
            table = tables("bronze.records")
            rows = _relinked(spark, spark.read.parquet(str(staging / "bronze")), outcome.mapping)
            if withheld:
                rows = _quarantine_opposed(spark, rows, withheld, report, run=run, lake_root=lake_root)
            rows = apply_versions(rows, report, run=run, table=tables)
            commit = table.merge(rows, keys=["record_hash"], run=run, update="none")
            report.bronze_inserted = int(commit.metric("numTargetRowsInserted") or 0) if commit else 0
        clock.lap("bronze")
        if has_quarantine:
            table = tables("ops.quarantine")
            staged = spark.read.parquet(str(staging / "quarantine"))
            commit = table.merge(staged, keys=["record_hash"], run=run, update="none")
            report.quarantine_inserted += int(commit.metric("numTargetRowsInserted") or 0) if commit else 0
        clock.lap("quarantine")
        if has_bronze:  # every staged record, also those a killed earlier run already put in bronze
            staged = spark.read.parquet(str(staging / "bronze")).select("record_hash")
            notes = any(f.landed and "text" in registry.specs[f.source].produces() for f in report.files)
            silver = build_silver(spark, batch_id=batch_id, run=run, lake_root=lake_root, record_hashes=staged,
                                  notes=notes)
            report.silver, report.id_collisions = silver, silver.collisions
            if report.id_collisions:
                report.by_reason[ReasonCode.ID_COLLISION.value] += sum(report.id_collisions.values())
            if report.replaced.persons:  # a corrected record may have changed person: the former one too
                report.silver["person"] += refresh_people(spark, report.replaced.persons, run=run, tables=tables)
        clock.lap("silver")
        log_files(spark, report, fingerprints, started, run, tables)
        clock.lap("log")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def link_batch(
    spark: SparkSession,
    edge: Edge,
    vault: IdentityVault,
    report: IngestReport,
    *,
    lake_root: str,
    settings: Settings | None = None,
) -> LinkOutcome:
    """Link the batch's identities to each other and to the known persons they could join; when
    known persons turn out to be one, re-key the lake, then the vault. Shared by the lab feed."""
    from pdp.pseudonym.linkage_trained import current_options

    options = current_options(settings)  # the trained model, if any: no EM per batch (a bad file stops here)
    outcome = edge.link(vault.linkable(edge.canonicals.values()) if edge.canonicals else [], options)
    report.link_rules = outcome.rule_counts
    report.link_model = outcome.model_version
    report.relinked = len(outcome.mapping)
    if outcome.superseded:
        from pdp.governance.opposition import OppositionRegistry
        from pdp.lake import RunInfo, erase_pseudonyms, load_catalog
        from pdp.pseudonym.rotation import remap_lake

        remap_lake(spark, load_catalog(), outcome.superseded, f"{report.batch_id}-relink", lake_root)
        vault.repseudonymise(outcome.superseded)
        OppositionRegistry(vault.engine).follow(outcome.superseded)
        # the superseded aliases leave the lake's history too: a later erasure of the person, who
        # is known by the new pseudonym only, must not leave the old one behind
        erase_pseudonyms(spark, outcome.superseded, lake_root=lake_root, reason="linkage merged known persons",
                         run=RunInfo(run_id=f"{report.batch_id}-relink-purge", job="ingest",
                                     definitions_version="linkage-purge/1"))
    return outcome


def withhold_opposed(edge: Edge, outcome: LinkOutcome, engine: Engine, store: KeyStore) -> set[str]:
    """The person pseudonyms of this batch whose person objected; their identities leave the edge's
    vault records (never stored). Shared by the lab feed. Their records become ``OPPOSED`` quarantine rows."""
    from pdp.governance.opposition import withheld_at_edge

    batch = set(edge.canonicals) | set(edge.vault_records)
    withheld = withheld_at_edge(engine, store, outcome.mapping, edge.canonicals, batch)
    persons = withheld | {outcome.mapping.get(p, p) for p in withheld}
    if persons:
        edge.forget(persons)
    return persons


def _quarantine_opposed(
    spark: SparkSession, rows: DataFrame, persons: set[str], report: IngestReport, *, run: RunInfo, lake_root: str
) -> DataFrame:
    """Move the opposed persons' staged bronze rows to ops.quarantine (reason OPPOSED); the rest goes on."""
    from pyspark.sql import functions as F

    from pdp.lake import LakeTable

    opposed = F.col("person_pseudonym").isin(sorted(persons))
    dropped = rows.where(opposed).select(
        "batch_id", "source", "file", "record_position", F.lit(ReasonCode.OPPOSED.value).alias("reason_code"),
        F.lit(REASONS[ReasonCode.OPPOSED]).alias("message"), "record_hash",
        F.col("ingested_at").alias("quarantined_at"),
    ).localCheckpoint()
    per_file = {(r["source"], r["file"]): int(r["n"]) for r in dropped.groupBy("source", "file").agg(
        F.count(F.lit(1)).alias("n")).collect()}
    if per_file:
        table = LakeTable(spark, "ops.quarantine", lake_root=lake_root).create()
        commit = table.merge(dropped, keys=["record_hash"], run=run, update="none")
        report.quarantine_inserted += int(commit.metric("numTargetRowsInserted") or 0) if commit else 0
        account_opposed(report, per_file)
    return rows.where(~opposed)


def account_opposed(report: IngestReport, per_file: dict[tuple[str, str], int]) -> None:
    """Withheld records count as quarantined (records_in = landed + quarantined still holds)."""
    for file_report in report.files:
        n = per_file.get((file_report.source, file_report.file), 0)
        file_report.landed -= n
        file_report.quarantined += n
    report.by_reason[ReasonCode.OPPOSED.value] += sum(per_file.values())


def apply_versions(rows: DataFrame, report: IngestReport, *, run: RunInfo, table: Callable[[str], LakeTable],
                   repeats: bool | None = None) -> DataFrame:
    """The staged rows to merge: the last version of each sender record (:mod:`pdp.ingest.versions`),
    after retiring the versions of earlier batches they replace. Shared by the lab feed (which
    knows `repeats` from its rows in memory)."""
    latest, superseded = latest_versions(rows, repeats=repeats)
    for file_report in report.files:
        file_report.superseded += superseded.get((file_report.source, file_report.file), 0)
    report.replaced = retire_replaced(latest, run=run, table=table)
    return latest


class _Clock:
    """Seconds per stage, for the report and `pdp bench ingest`."""

    def __init__(self, into: dict[str, float]) -> None:
        self._into = into
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._into[stage] = round(self._into.get(stage, 0.0) + now - self._last, 3)
        self._last = now


def _relinked(spark: SparkSession, rows: DataFrame, mapping: dict[str, str]) -> DataFrame:
    """Bronze rows with each batch pseudonym replaced by its person's (linkage), rule noted."""
    from pyspark.sql import functions as F

    if not mapping:
        return rows
    relink = spark.createDataFrame(sorted(mapping.items()), "old string, new string")
    joined = rows.join(F.broadcast(relink), rows.person_pseudonym == relink.old, "left")
    return joined.select(
        *[
            F.coalesce("new", "person_pseudonym").alias(c)
            if c == "person_pseudonym"
            else F.when(F.col("new").isNotNull(), F.concat(F.col("link_rule"), F.lit("+linked")))
            .otherwise(F.col("link_rule"))
            .alias(c)
            if c == "link_rule"
            else F.col(c)
            for c in rows.columns
        ]
    )


def registry_version(registry: Registry) -> str:
    """`name@version` of every spec: written into each commit, so a row traces to its spec.

    A registry too long for a commit's ``definitions_version`` (128 characters: specs added from
    ``PDP_SOURCES_DIR``) is named by its spec count and digest; :func:`registry_lineage` keeps the list.
    """
    text = registry_lineage(registry)["specs"]
    if len(text) <= 128:
        return text
    return f"{len(registry.specs)} specs sha256:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def registry_lineage(registry: Registry) -> dict[str, str]:
    """The full `name@version` list, for the commit's lineage."""
    return {"specs": ",".join(f"{s.name}@{s.version}" for _, s in sorted(registry.specs.items()))}


def _engine(settings: Settings):
    from pdp.governance import create_all, make_engine

    engine = make_engine(settings=settings)
    create_all(engine)
    return engine


def log_files(
    spark: SparkSession, report: IngestReport, fingerprints: dict, started: datetime, run: RunInfo,
    table: Callable[[str], LakeTable],
) -> None:
    """One ``ops.ingestion_log`` row per file the batch read: ``complete``, or ``partial`` when its
    reading stopped (read again by the next run). The one writer of the log: batch ingest and lab feed."""
    finished = datetime.now(UTC)
    rows = [
        (
            report.batch_id,
            f.source,
            f.file,
            fingerprints[(f.source, f.file)],
            started,
            finished,
            f.records_in,
            f.landed,
            f.quarantined,
            LOG_STATUS[1] if f.partial else LOG_STATUS[0],
        )
        for f in report.files
        if not f.skipped
    ]
    if not rows:
        return
    log = table("ops.ingestion_log")
    log.append(spark.createDataFrame(rows, log.definition.spark_schema()), run=run)
