"""`pdp ingest DIR`: every new file through the edge into bronze, then silver.

A batch: discover the files, skip those already ingested (same keyed file fingerprint in the
ingestion log), parse and pass each record through the edge, stage the pseudonymised rows in
Parquet (bounded memory), then commit: vault, bronze (insert-only MERGE on the keyed record
hash), quarantine (same), silver, and last the ingestion log. A crash anywhere leaves committed
tables at their previous version or with rows a re-run recognises: re-running the batch adds
exactly what was missing (exactly-once), and a file is only logged once everything it
produced is committed.
"""

from __future__ import annotations

import fcntl
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from pdp.config import Settings, get_settings
from pdp.ingest.dedupe import FingerprintSet
from pdp.ingest.edge import BronzeRow, Edge, QuarantineRow
from pdp.ingest.parse import parse_file
from pdp.ingest.registry import Registry, discover, load_registry
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pdp.lake import RunInfo
    from pdp.pseudonym.vault import IdentityVault

__all__ = ["FileReport", "IngestBusy", "IngestReport", "ingest_directory"]

_CHUNK = 50_000
_EVENT = pa.struct(
    [
        ("domain", pa.string()),
        ("code_system", pa.string()),
        ("code", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("visit_key", pa.string()),
        ("provider", pa.string()),
        ("status", pa.string()),
        ("source_value", pa.string()),
    ]
)
BRONZE_SCHEMA = pa.schema(
    [
        ("record_hash", pa.string()),
        ("batch_id", pa.string()),
        ("source", pa.string()),
        ("file", pa.string()),
        ("record_position", pa.int64()),
        ("record_id", pa.string()),
        ("person_pseudonym", pa.string()),
        ("link_rule", pa.string()),
        ("events", pa.list_(_EVENT)),
        ("attributes", pa.map_(pa.string(), pa.string())),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("source", pa.string()),
        ("file", pa.string()),
        ("record_position", pa.int64()),
        ("reason_code", pa.string()),
        ("message", pa.string()),
        ("record_hash", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class FileReport:
    source: str
    file: str
    records_in: int = 0
    landed: int = 0
    quarantined: int = 0
    skipped: bool = False  # already ingested (same fingerprint)

    @property
    def balanced(self) -> bool:
        return self.records_in == self.landed + self.quarantined


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
    by_reason: Counter = field(default_factory=Counter)
    pseudonymise_seconds: float = 0.0  # normalising identities and keying pseudonyms
    link_rules: dict[str, int] = field(default_factory=dict)  # distinct identities per deciding linkage rule
    relinked: int = 0  # batch pseudonyms re-keyed to their person's pseudonym by linkage
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: edge, vault, bronze, quarantine, silver, log

    def totals(self) -> tuple[int, int, int]:
        read = [f for f in self.files if not f.skipped]
        return (sum(f.records_in for f in read), sum(f.landed for f in read), sum(f.quarantined for f in read))


class _Stage:
    """Parquet files of pseudonymised rows waiting for the batch commit (never identities)."""

    def __init__(self, directory: Path, schema: pa.Schema) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory
        self._schema = schema
        self._rows: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self.count = 0

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path / "part-0.parquet", self._schema)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self.count += len(self._rows)
        self._rows = []

    def close(self) -> bool:
        self.flush()
        if self._writer is not None:
            self._writer.close()
        return self.count > 0


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
) -> IngestReport:
    """Ingest every new file under `root`; returns per-file counts (in = landed + quarantined)."""
    settings = settings or get_settings()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ingest directory {root} does not exist")
    with _exclusive(settings.var_dir / "ingest.lock"):
        shutil.rmtree(settings.var_dir / "staging", ignore_errors=True)  # a killed run's leftovers
        return _ingest(root, spark=spark, settings=settings, registry=registry, today=today)


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
    root: Path, *, spark: SparkSession, settings: Settings, registry: Registry | None, today: date | None
) -> IngestReport:
    from pdp.ingest.silver import build_silver
    from pdp.lake import LakeTable, RunInfo
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.vault import IdentityVault

    registry = registry or load_registry()
    store = KeyStore.from_settings(settings)
    vault = IdentityVault(_engine(settings), store)
    edge = Edge(store, today=today)
    started = datetime.now(UTC)
    batch_id = f"ingest-{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    report = IngestReport(batch_id=batch_id)
    discovery = discover(root, registry)
    report.held_back, report.unmatched = len(discovery.held_back), len(discovery.unmatched)
    lake_root = settings.lake_uri
    done = _done_files(spark, lake_root)
    staging = settings.var_dir / "staging" / batch_id
    bronze, quarantine = _Stage(staging / "bronze", BRONZE_SCHEMA), _Stage(staging / "quarantine", QUARANTINE_SCHEMA)
    fingerprints: dict[tuple[str, str], str] = {}
    seen: dict[str, FingerprintSet] = {}

    clock = _Clock(report.seconds)
    try:
        for spec, path in discovery.to_parse:
            rel = path.relative_to(root).as_posix()
            fingerprint = edge.file_fingerprint(path)
            file_report = FileReport(spec.name, rel)
            report.files.append(file_report)
            if (spec.name, rel, fingerprint) in done:
                file_report.skipped = True
                continue
            fingerprints[(spec.name, rel)] = fingerprint
            scope = spec.validation.duplicates
            dup = seen.setdefault(spec.name, FingerprintSet()) if scope == "per_source" else None
            outcomes = parse_file(spec, path, root, today=today, seen=dup)
            for row in edge.process(outcomes):
                file_report.records_in += 1
                if isinstance(row, BronzeRow):
                    file_report.landed += 1
                    bronze.add(_bronze_dict(row, batch_id, started))
                else:
                    file_report.quarantined += 1
                    quarantine.add(_quarantine_dict(row, batch_id, started))
        has_bronze, has_quarantine = bronze.close(), quarantine.close()
        clock.lap("parse_and_edge")
        report.by_reason = Counter(edge.stats.by_reason)
        report.pseudonymise_seconds = round(edge.stats.pseudonymise_seconds, 3)
        # linkage: the batch's identities against each other and the vault's known persons
        outcome = edge.link(_known_persons(vault))
        report.link_rules = outcome.rule_counts
        report.relinked = len(outcome.mapping)
        if outcome.superseded:  # known persons now found to be one: re-key the lake, then the vault
            from pdp.lake import load_catalog
            from pdp.pseudonym.rotation import remap_lake

            remap_lake(spark, load_catalog(), outcome.superseded, f"{batch_id}-relink", lake_root)
            vault.repseudonymise(outcome.superseded)
        clock.lap("linkage")
        # commit: vault first (the identity behind every pseudonym), then the lake, then the log
        items = list(edge.vault_records.items())
        for start in range(0, len(items), 20_000):
            vault.upsert_many(items[start : start + 20_000])
        report.vault_records = len(items)
        clock.lap("vault")
        run = RunInfo(run_id=batch_id, job="ingest", definitions_version=registry_version(registry))
        if has_bronze:
            table = LakeTable(spark, "bronze.records", lake_root=lake_root).create()
            rows = _relinked(spark, spark.read.parquet(str(bronze.path)), outcome.mapping)
            commit = table.merge(rows, keys=["record_hash"], run=run, update="none")
            report.bronze_inserted = int(commit.metric("numTargetRowsInserted") or 0) if commit else 0
        clock.lap("bronze")
        if has_quarantine:
            table = LakeTable(spark, "ops.quarantine", lake_root=lake_root).create()
            commit = table.merge(spark.read.parquet(str(quarantine.path)), keys=["record_hash"], run=run, update="none")
            report.quarantine_inserted = int(commit.metric("numTargetRowsInserted") or 0) if commit else 0
        clock.lap("quarantine")
        if has_bronze:
            report.silver = build_silver(spark, batch_id=batch_id, run=run, lake_root=lake_root)
        clock.lap("silver")
        _log_files(spark, report, fingerprints, started, run, lake_root)
        clock.lap("log")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


class _Clock:
    """Seconds per stage, for the report and `pdp bench ingest`."""

    def __init__(self, into: dict[str, float]) -> None:
        self._into = into
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._into[stage] = round(self._into.get(stage, 0.0) + now - self._last, 3)
        self._last = now


def _known_persons(vault: IdentityVault) -> list[tuple[str, CanonicalIdentity]]:
    """The vault's persons as (pseudonym, canonical identity), for linkage across batches."""
    known = []
    records = vault.get_many(vault.pseudonyms())
    for pseudonym, r in records.items():
        canonical = normalise(
            RawIdentity(
                birth_name=r.birth_name,
                used_name=r.used_name,
                first_names=list(r.first_names or ()),
                sex=r.sex,
                birth_date=r.birth_date,
                birth_place=r.birth_place,
                nir=r.nir,
            )
        )
        if isinstance(canonical, CanonicalIdentity):
            known.append((pseudonym, canonical))
    return known


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
    """`name@version` of every spec: written into each commit, so a row traces to its spec."""
    return ",".join(f"{s.name}@{s.version}" for _, s in sorted(registry.specs.items()))


def _engine(settings: Settings):
    from pdp.governance import create_all, make_engine

    engine = make_engine(settings=settings)
    create_all(engine)
    return engine


def _bronze_dict(row: BronzeRow, batch_id: str, at: datetime) -> dict:
    return {
        "record_hash": row.record_hash,
        "batch_id": batch_id,
        "source": row.source,
        "file": row.file,
        "record_position": row.record_position,
        "record_id": row.record_id,
        "person_pseudonym": row.person_pseudonym,
        "link_rule": row.link_rule,
        "events": row.events,
        "attributes": list(row.attributes.items()),
        "ingested_at": at,
    }


def _quarantine_dict(row: QuarantineRow, batch_id: str, at: datetime) -> dict:
    return {
        "batch_id": batch_id,
        "source": row.source,
        "file": row.file,
        "record_position": row.record_position,
        "reason_code": row.reason_code,
        "message": row.message,
        "record_hash": row.record_hash,
        "quarantined_at": at,
    }


def _log_files(
    spark: SparkSession, report: IngestReport, fingerprints: dict, started: datetime, run: RunInfo, lake_root: str
) -> None:
    from pdp.lake import LakeTable

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
            "complete",
        )
        for f in report.files
        if not f.skipped
    ]
    if not rows:
        return
    log = LakeTable(spark, "ops.ingestion_log", lake_root=lake_root).create()
    schema = (
        "batch_id string, source string, file string, file_fingerprint string, started_at timestamp, "
        "finished_at timestamp, records_in bigint, records_landed bigint, records_quarantined bigint, "
        "status string"
    )
    log.append(spark.createDataFrame(rows, schema), run=run)
