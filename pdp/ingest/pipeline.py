"""One ingest pipeline: `pdp ingest DIR` and the lab feed run the same loop, in two modes.

A run: discover the files, skip those already ingested (same keyed file fingerprint in the
ingestion log), parse and pass each record through the edge — file by file, in one worker
process per core for a big batch (:mod:`pdp.ingest.fanout`; same result as one in-order pass) —
stage the pseudonymised rows (and, in a big batch, the identities, sealed, folded per person
on Spark: :mod:`pdp.ingest.identity_stage`), then commit: vault, bronze (insert-only MERGE on
the keyed record hash), silver events, quarantine (same), silver persons, and last the
ingestion log. A crash
anywhere leaves committed tables at their previous version or with rows a re-run recognises:
re-running the batch adds exactly what was missing (exactly-once), and a file is only logged
once everything it produced is committed.

Why one loop: the batch ingest and the lab feed used to have two ingest loops and two
relinkers, and a fix to one did not reach the other. The feed (`pdp ingest --stream`,
:mod:`pdp.ingest.feed`) is now this pipeline's small-batch mode: a :class:`~pdp.ingest.modes.Mode`
chooses only how the fixed costs are paid (rows in memory or on disk, which part of the log is
read, whether linkage can be skipped, which silver tables are merged); the writes, their order
and every guarantee are this module's, once.
"""

from __future__ import annotations

import hashlib
import resource
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings
from pdp.ingest.edge import Edge
from pdp.ingest.fanout import BatchContext, FileResult, FileTask, auto_workers, run_files, spark_engine
from pdp.ingest.identity_stage import (
    VAULT_CHUNK,
    FoldedIdentities,
    IdentityCipher,
    PreparedChunk,
    StagedChanges,
    fold,
    prepare_vault,
    prepared_chunks,
    stage_identities,
)
from pdp.ingest.linking import kept_rows, link_batch, relink, split_opposed, withhold_opposed
from pdp.ingest.lock import IngestBusy, ingest_lock
from pdp.ingest.modes import BATCH, Mode
from pdp.ingest.parse import Duplicates
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.registry import Registry, discover, load_registry
from pdp.ingest.report import LOG_STATUS, FileReport, IngestReport
from pdp.ingest.staging import BRONZE_SCHEMA, QUARANTINE_SCHEMA, StagedBatch
from pdp.ingest.versions import latest_versions, retire_replaced
from pdp.pseudonym.linkage import MODEL_NOT_RUN

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from sqlalchemy import Engine

    from pdp.ingest.edge import LinkOutcome
    from pdp.lake import LakeTable, RunInfo
    from pdp.pseudonym.vault import VaultRecord

__all__ = ["BRONZE_SCHEMA", "LOG_STATUS", "QUARANTINE_SCHEMA", "STAGES", "FileReport", "IngestBusy", "IngestReport",
           "Pipeline", "ingest_directory"]

STAGES = ("lookup", "parse_and_edge", "identities", "linkage", "vault", "bronze", "silver_events", "quarantine",
          "silver_people", "log")
"""The run's stages, in commit order, as timed in :attr:`IngestReport.seconds`."""


def ingest_directory(
    root: Path | str,
    *,
    spark: SparkSession,
    settings: Settings | None = None,
    registry: Registry | None = None,
    today: date | None = None,
    workers: int | None = None,
    mode: Mode = BATCH,
) -> IngestReport:
    """Ingest every new file under `root`; returns per-file counts (in = landed + quarantined).

    `workers`: processes for the parse+edge stage (None: one per core when the batch is big
    enough to pay their start-up; 0 or 1: in-process). The result does not depend on it.
    Refuses (:class:`IngestBusy`) while another ingest holds the lock.
    """
    settings = settings or get_settings()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ingest directory {root} does not exist")
    with ingest_lock(settings.var_dir / "ingest.lock", wait=False):
        pipeline = Pipeline(spark, settings=settings, registry=registry, today=today)
        return pipeline.run(root, mode, workers=workers)


class Pipeline:
    """The edge's state loaded once — registry, keys, vault, lake tables created or checked once —
    and the one ingest loop (:meth:`run`). The caller holds the ingest lock.

    `job` and `batch_prefix` name the runs in Delta commits and batch ids (`ingest` for `pdp
    ingest`, `ingest-stream` / `feed` for the lab feed).
    """

    def __init__(
        self,
        spark: SparkSession,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        today: date | None = None,
        job: str = "ingest",
        batch_prefix: str = "ingest",
    ) -> None:
        from pdp.ingest.silver import table_opener
        from pdp.pseudonym.keys import KeyStore
        from pdp.pseudonym.vault import EdgeKeys, IdentityVault

        self.spark = spark
        self.settings = settings or get_settings()
        self.registry = registry or load_registry(settings=self.settings)
        self.store = KeyStore.from_settings(self.settings)
        self.vault = IdentityVault(_engine(self.settings), EdgeKeys(self.store))  # seals; cannot open
        self.table: Callable[[str], LakeTable] = table_opener(spark, self.settings.lake_uri)
        self.today = today
        self.job, self.batch_prefix = job, batch_prefix

    def run(self, root: Path, mode: Mode = BATCH, *, workers: int | None = None) -> IngestReport:
        """Ingest every new file under `root` in `mode`; the report counts each file (in = landed + quarantined)."""
        with _session_conf(self.spark, mode):
            return _Run(self, root, mode).execute(workers)

    def done(self, mode: Mode, fingerprints: set[str]) -> set[tuple[str, str, str]]:
        """(source, file, fingerprint) of the files the log has as complete: all of them, or in
        ``fingerprints`` mode only those of `fingerprints` (one filtered read, not the whole log)."""
        from pyspark.sql import functions as F

        log = self.table("ops.ingestion_log").read().where(F.col("status") == LOG_STATUS[0])
        if mode.log_lookup == "fingerprints":
            if not fingerprints:
                return set()
            log = log.where(F.col("file_fingerprint").isin(sorted(fingerprints)))
        rows = log.select("source", "file", "file_fingerprint").collect()
        return {(r.source, r.file, r.file_fingerprint) for r in rows}

    def linkage_cannot_change(self, edge: Edge) -> bool:
        """True when every identity is an own-NIR person known to the vault and no vault person holds
        its traits key (see :mod:`pdp.ingest.modes`). Looks pseudonyms up in the vault's index: nothing decrypted."""
        from pdp.pseudonym.pseudonymise import Pseudonymiser

        canonicals = edge.canonicals
        if any(c.scheme != "nir" for c in canonicals.values()):
            return False
        pseudonymiser = Pseudonymiser(self.store)
        traits = {pseudonymiser.pseudonym(replace(c, scheme="traits", nir=None)) for c in canonicals.values()}
        present = self.vault.contains([*canonicals, *traits])
        return all(p in present for p in canonicals) and not (traits & present)


@contextmanager
def _session_conf(spark: SparkSession, mode: Mode) -> Iterator[None]:
    """The mode's shuffle partitions on the session for the run, restored after."""
    if mode.shuffle_partitions is None:
        yield
        return
    key = "spark.sql.shuffle.partitions"
    before = spark.conf.get(key)
    spark.conf.set(key, str(mode.shuffle_partitions))
    try:
        yield
    finally:
        spark.conf.set(key, before)


class _Run:
    """One run of the loop: the batch's edge, report, staged rows and commits, stage by stage."""

    def __init__(self, pipeline: Pipeline, root: Path, mode: Mode) -> None:
        self.p, self.root, self.mode = pipeline, root, mode
        self.spark = pipeline.spark
        self.edge = Edge(pipeline.store, today=pipeline.today)
        self.started = datetime.now(UTC)
        self.batch_id = f"{pipeline.batch_prefix}-{self.started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.report = IngestReport(batch_id=self.batch_id)
        self.clock = _Clock(self.report.seconds, self.report.driver_peak_mib)
        self.fingerprints: dict[tuple[str, str], str] = {}
        # Absolute: executors read the staged parquet, and their working directory is not the driver's.
        self.staged = StagedBatch((pipeline.settings.var_dir / "staging" / self.batch_id).resolve())
        self.staging_identities = False  # the batch's identities staged and folded on Spark (pdp.ingest.identity_stage)
        self.cipher: IdentityCipher | None = None
        self.folded: FoldedIdentities | None = None  # the staged identities, once folded

    def execute(self, workers: int | None) -> IngestReport:
        p, report, clock = self.p, self.report, self.clock
        tasks = self._new_files()
        clock.lap("lookup")
        memory = self.mode.staging == "memory"
        on_spark = not memory and spark_engine(p.settings, tasks, p.registry)  # a small batch stays in-process
        self.staging_identities = not memory and stage_identities(p.settings, sum(t.size for t in tasks), on_spark)
        if self.staging_identities:  # one key version for every task, even if the key rotates mid-batch
            self.cipher = IdentityCipher(p.store, self.batch_id)
        context = BatchContext(p.settings, p.registry, self.root, self.staged.directory, self.batch_id, self.started,
                               p.today, in_memory=memory, stage_identities=self.staging_identities,
                               identity_key_version=self.cipher.version if self.cipher else None)
        report.parse_engine = "spark" if on_spark else "processes"
        split = p.settings.edge_split_bytes
        report.parse_workers = 0 if memory or on_spark else auto_workers(tasks, p.registry, workers, split)
        if not memory:  # a killed run's leftovers (the caller holds the lock: no other run is staging)
            shutil.rmtree(self.staged.directory.parent, ignore_errors=True)
        try:
            for task, result in run_files(tasks, context, workers=report.parse_workers, duplicates=Duplicates(),
                                          store=p.store, spark=self.spark if on_spark else None, session=self.spark):
                self._fold(task, result)
            report.parse_cpu_seconds = round(report.parse_cpu_seconds, 3)
            report.by_reason = Counter(self.edge.stats.by_reason)
            dropped = {"vault_contact": self.edge.stats.vault_fields_dropped,
                       "attributes": self.edge.stats.attributes_dropped}
            report.fields_dropped = {k: v for k, v in dropped.items() if v}
            report.unmapped = self.edge.stats.unmapped
            report.pseudonymise_seconds = round(self.edge.stats.pseudonymise_seconds, 3)
            clock.lap("parse_and_edge")
            if self.staging_identities:
                self._fold_identities()
            clock.lap("identities")
            self._commit()
        finally:
            shutil.rmtree(self.staged.directory, ignore_errors=True)
        return report

    def _new_files(self) -> list[FileTask]:
        """The files to read: every discovered one whose fingerprint the log does not have as complete."""
        p, report = self.p, self.report
        discovery = discover(self.root, p.registry)
        report.held_back, report.unmatched = len(discovery.held_back), len(discovery.unmatched)
        found = [(spec, path, self.edge.file_fingerprint(path)) for spec, path in discovery.to_parse]
        done = p.done(self.mode, {f for _, _, f in found})
        by_content = {(s, f) for s, _, f in done} if self.mode.log_lookup == "fingerprints" else set()
        tasks: list[FileTask] = []
        for spec, path, fingerprint in found:
            rel = path.relative_to(self.root).as_posix()
            file_report = FileReport(spec.name, rel)
            report.files.append(file_report)
            if (spec.name, rel, fingerprint) in done or (spec.name, fingerprint) in by_content:
                file_report.skipped = True
                continue
            self.fingerprints[(spec.name, rel)] = fingerprint
            tasks.append(FileTask(len(report.files) - 1, spec.name, path, rel, path.stat().st_size))
        return tasks

    def _fold_identities(self) -> None:
        """The staged identities folded per person on Spark; what linkage and the vault take of them
        is computed or streamed from there (:mod:`pdp.ingest.identity_stage`)."""
        staged = self.staged.directory / "identities"
        if not staged.is_dir() or self.cipher is None:  # no file held a person
            return
        self.folded = fold(self.spark, staged, self.p.settings, self.cipher,
                           self.staged.directory / "identities-folded")

    def _vault_chunks(self, outcome: LinkOutcome, withheld: set[str]
                      ) -> Iterator[PreparedChunk | list[tuple[str, VaultRecord]]]:
        """The batch's vault records in chunks: streamed from the folded stage, their writes made ready on the
        executors (:func:`prepare_vault`), or those in the edge's memory."""
        if self.staging_identities:
            if self.folded is not None:  # each person's write, re-keyed, sealed and hashed on the executors
                self.p.vault.write_versions()  # every key they need exists before they look
                folded = self.folded
                changes = outcome.staged or StagedChanges.write(self.spark, outcome.mapping, outcome.owners,
                                                                folded.cipher, folded.changes_path)
                prepared = prepare_vault(self.spark, folded, self.staged.directory / "vault-prepared", changes,
                                         withheld)
                yield from prepared_chunks(prepared, folded.cipher)
            return
        items = list(self.edge.vault_records.items())
        for start in range(0, len(items), VAULT_CHUNK):
            yield items[start : start + VAULT_CHUNK]

    def _fold(self, task: FileTask, result: FileResult) -> None:
        """A file's result into the report, the batch's edge and the staged rows, in file order."""
        report = self.report
        file_report, counts = report.files[task.index], result.counts
        file_report.records_in, file_report.landed = counts.records_in, counts.parsed
        file_report.quarantined, file_report.file_issues = counts.quarantined, counts.file_issues
        file_report.stopped, file_report.unread_from = counts.stopped, counts.unread_from
        file_report.skipped_resources = dict(counts.skipped_resources)
        report.skipped_resources.add(task.source, counts.skipped_resources)
        self.edge.absorb(result.state)
        report.parse_cpu_seconds += result.cpu_seconds
        report.parse_tasks += result.tasks
        if result.bronze_rows is not None or result.quarantine_rows is not None:
            self.staged.add_rows(result.bronze_rows or [], result.quarantine_rows or [])
        else:
            self.staged.add_parts(result.parts)

    def _commit(self) -> None:
        """Vault first (the identity behind every pseudonym), then the lake, then the log."""
        from pdp.lake import RunInfo

        p, report, clock, staged, spark = self.p, self.report, self.clock, self.staged, self.spark
        outcome = self._link()
        withheld = withhold_opposed(self.edge, outcome, p.vault.engine, p.store, staged=self.folded, spark=spark)
        clock.lap("linkage")
        report.vault_records = 0
        for chunk in self._vault_chunks(outcome, withheld):
            if isinstance(chunk, PreparedChunk):
                report.vault_prepared += p.vault.write_prepared(chunk.items, chunk.records).prepared
                report.vault_records += len(chunk.items)
            else:
                p.vault.upsert_many(chunk)
                report.vault_records += len(chunk)
        clock.lap("vault")
        # the linkage model that decided the batch's persons: a bronze row traces to it like to its spec
        linkage = {"linkage_model": report.link_model} if report.link_model else {}
        run = RunInfo(run_id=self.batch_id, job=p.job, definitions_version=registry_version(p.registry),
                      lineage={**registry_lineage(p.registry), **linkage})
        # rows in memory only in memory mode, whose identities are never staged (outcome.mapping is whole)
        kept = kept_rows(staged.bronze_rows, outcome.mapping, withheld)  # [] on disk
        rows = opposed = None
        if staged.has_bronze:
            changes = outcome.staged
            rows = relink(spark, staged.bronze(spark),
                          changes.mapping(spark) if changes is not None and changes.relinked else outcome.mapping)
            if withheld:
                rows, opposed = split_opposed(rows, withheld, report)
            ids = [(r["source"], r["record_id"]) for r in kept if r["record_id"] is not None]
            rows = apply_versions(rows, report, run=run, table=p.table,
                                  repeats=len(set(ids)) < len(ids) if staged.in_memory else None)
            commit = p.table("bronze.records").merge(rows, keys=["record_hash"], run=run, update="none")
            report.bronze_inserted = _inserted(commit)
        clock.lap("bronze")
        present = _present(kept) if self.mode.silver == "present" and staged.in_memory else None
        if rows is not None:  # bronze first, then its events: the "file is in silver" moment
            self._silver_events(rows, run, present)
        clock.lap("silver_events")
        quarantine = [f for f in (staged.quarantine(spark) if staged.has_quarantine else None, opposed)
                      if f is not None]
        if quarantine:
            frame = quarantine[0] if len(quarantine) == 1 else quarantine[0].unionByName(quarantine[1])
            commit = p.table("ops.quarantine").merge(frame, keys=["record_hash"], run=run, update="none")
            report.quarantine_inserted = _inserted(commit)
        clock.lap("quarantine")
        persons = (present[1] if present is not None else set()) | report.replaced.persons
        if persons:  # needs the bronze commit: a person is recomputed from all their bronze rows
            from pdp.ingest.silver import refresh_people

            report.silver["person"] = report.silver.get("person", 0) + refresh_people(
                spark, persons, run=run, lake_root=p.settings.lake_uri, tables=p.table)
        if staged.in_memory:
            report.persons = {r["person_pseudonym"] for r in kept if r["person_pseudonym"] is not None}
        clock.lap("silver_people")
        log_files(spark, report, self.fingerprints, self.started, run, p.table)
        clock.lap("log")

    def _link(self) -> LinkOutcome:
        """Linkage as a batch runs it, unless the mode allows skipping it and no record can be re-keyed by it."""
        from pdp.ingest.edge import LinkOutcome

        edge, report = self.edge, self.report
        if self.mode.linkage == "when_needed" and (not edge.canonicals or self.p.linkage_cannot_change(edge)):
            report.link_rules = {"deterministic_nir": len(edge.canonicals)} if edge.canonicals else {}
            report.link_model = MODEL_NOT_RUN
            return LinkOutcome(mapping={}, superseded={}, rule_counts=report.link_rules)
        return link_batch(self.spark, edge, self.p.vault, report, lake_root=self.p.settings.lake_uri,
                          settings=self.p.settings, staged=self.folded)

    def _silver_events(self, rows: DataFrame, run: RunInfo, present: tuple[set[str], set[str]] | None) -> None:
        """The batch's events into silver: the tables of the domains present (small mode, from the rows
        in hand), else the batch's whole silver job (events, deaths, notes, persons, communes)."""
        from pdp.ingest.silver import build_silver, merge_events_for_rows

        p, report, lake_root = self.p, self.report, self.p.settings.lake_uri
        if present is not None:
            silver = merge_events_for_rows(self.spark, rows, run=run, domains=present[0], lake_root=lake_root,
                                           tables=p.table)
        else:  # every staged record, also those a killed earlier run already put in bronze
            hashes = self.staged.bronze(self.spark).select("record_hash")
            notes = any(f.landed and "text" in p.registry.specs[f.source].produces() for f in report.files)
            silver = build_silver(self.spark, batch_id=self.batch_id, run=run, lake_root=lake_root,
                                  record_hashes=hashes, notes=notes)
        report.silver, report.id_collisions = silver, silver.collisions
        if report.id_collisions:
            report.by_reason[ReasonCode.ID_COLLISION.value] += sum(report.id_collisions.values())


def _present(kept: list[dict]) -> tuple[set[str], set[str]] | None:
    """(event domains, persons) of the landed rows in hand, or None when the small form of silver
    (event tables and persons) does not cover them: a row without a person (a commune), a death or
    a report (their own silver jobs) — then the batch's silver."""
    from pdp.ingest.silver import EVENT_TABLES

    domains = {e["domain"] for r in kept for e in r["events"]}
    if any(r["person_pseudonym"] is None for r in kept) or not domains <= set(EVENT_TABLES) - {"text"}:
        return None
    return domains, {r["person_pseudonym"] for r in kept}


def apply_versions(rows: DataFrame, report: IngestReport, *, run: RunInfo, table: Callable[[str], LakeTable],
                   repeats: bool | None = None) -> DataFrame:
    """The staged rows to merge: the last version of each sender record (:mod:`pdp.ingest.versions`),
    after retiring the versions of earlier batches they replace (`repeats`: whether a sender
    record id repeats in the rows, when the caller knows it from rows in memory; None: a Spark job)."""
    latest, superseded = latest_versions(rows, repeats=repeats)
    for file_report in report.files:
        file_report.superseded += superseded.get((file_report.source, file_report.file), 0)
    report.replaced = retire_replaced(latest, run=run, table=table)
    return latest


class _Clock:
    """Seconds per stage, and the driver's resident high-water mark at each stage's end, for the
    report and `pdp bench ingest`: which stage raised the driver's memory, on any batch (that it does
    not grow with the batch is an issue-14 goal; ``ru_maxrss``: KiB on Linux)."""

    def __init__(self, into: dict[str, float], peaks: dict[str, float]) -> None:
        self._into, self._peaks = into, peaks
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._into[stage] = round(self._into.get(stage, 0.0) + now - self._last, 3)
        self._peaks[stage] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self._last = now


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
    """The full `name@version` list, and the concept sets' and units' versions silver mapped and
    converted with, for the commit's lineage."""
    from pdp.semantic import concept_sets_version, units_version

    return {"specs": ",".join(f"{s.name}@{s.version}" for _, s in sorted(registry.specs.items())),
            "semantic": f"{concept_sets_version()},{units_version()}"}


def _engine(settings: Settings) -> Engine:
    from pdp.governance import create_all, make_engine

    engine = make_engine(settings=settings)
    create_all(engine)
    return engine


def _inserted(commit: object) -> int:
    return int(commit.metric("numTargetRowsInserted") or 0) if commit else 0  # type: ignore[attr-defined]


def log_files(
    spark: SparkSession, report: IngestReport, fingerprints: dict, started: datetime, run: RunInfo,
    table: Callable[[str], LakeTable],
) -> None:
    """One ``ops.ingestion_log`` row per file the batch read: ``complete``, or ``partial`` when its
    reading stopped (read again by the next run). The one writer of the log, in both modes."""
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
