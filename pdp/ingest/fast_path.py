"""The lab feed's micro-batch path: a few dropped HL7 files into bronze and silver in seconds.

Why a second path: `pdp ingest` (:mod:`pdp.ingest.pipeline`) is built for whole territories.
Run on a micro-batch of a few lab messages it spends almost all its time on fixed costs that
do not depend on the batch: the whole ingestion log read to find files already done, every
vault record decrypted for cross-batch linkage, ~10 Delta MERGEs in silver (one per table,
empty or not), each table's `create()` check, and bronze scanned by batch id to find the rows
it just wrote. This path keeps the batch path's writes and guarantees and drops the fixed
costs that a small batch does not need:

- **Files already done**: the ingestion log is read for this batch's keyed fingerprints only.
- **Linkage only when it can change something.** A record with a valid own NIR gets the
  NIR-scheme pseudonym (:mod:`pdp.pseudonym.normalise`); linkage gives a person with an own NIR
  that same pseudonym. Linkage can still *do* something for such a record when the person is
  new to the vault (the NIR may absorb persons known so far by their traits only) or when a
  person keyed on the record's own traits is in the vault (rule 2 of
  :mod:`pdp.pseudonym.linkage_rules` would attach it). So the batch skips linkage only when
  every record is NIR-scheme, its pseudonym is already in the vault and its traits pseudonym
  is not — checked by looking those pseudonyms up in the vault without decrypting anything.
  Any other batch (a record without an own NIR, a new person) runs the batch path's full
  linkage against the vault's known persons, with the same re-keying of superseded persons.
- **Silver for what the batch holds**: only the event tables of the domains present and the
  person/observation_period rows of the batch's persons (:func:`build_silver_for_rows`), from
  the rows in memory; one shuffle partition for these tiny joins; tables checked once per
  feed, not once per write.

Guarantees kept: the same parse, quarantine (reason codes, in = landed + quarantined per
file), edge (pseudonyms only in the lake, traits into the vault), insert-only MERGEs on keyed
record hashes and deterministic event ids (a replayed micro-batch adds nothing), the ingestion
log written last, one ingest at a time (the same lock file as `pdp ingest`, waited for rather
than refused, since a feed must not die because a batch ingest is running).
"""

from __future__ import annotations

import fcntl
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pdp.config import Settings, get_settings
from pdp.ingest.edge import BronzeRow, Edge
from pdp.ingest.parse import Duplicates, Tally, parse_file
from pdp.ingest.pipeline import (
    FileReport,
    IngestReport,
    _Clock,
    _engine,
    account_opposed,
    apply_versions,
    link_batch,
    log_files,
    registry_version,
    withhold_opposed,
)
from pdp.ingest.reasons import REASONS, ReasonCode
from pdp.ingest.staging import BRONZE_SCHEMA, QUARANTINE_SCHEMA, bronze_dict, quarantine_dict
from pdp.pseudonym.linkage import MODEL_NOT_RUN

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pdp.ingest.edge import LinkOutcome
    from pdp.ingest.registry import Registry
    from pdp.ingest.spec import SourceSpec
    from pdp.lake import LakeTable, RunInfo

__all__ = ["LabFeed", "LabFile"]

LabFile = tuple[str, bytes]
"""One dropped file: its name in the landing folder and its bytes."""

_SOURCE = "lab_hl7"
_FOLDER = "labs"  # where the lab spec's file pattern (labs/*.hl7) expects the files
_LOCK_POLL_S = 0.2
_TINY = {"spark.sql.shuffle.partitions": "1"}  # a micro-batch's joins and aggregates fit one task


class LabFeed:
    """The lab feed's state for one streaming query: spec, keys, vault and checked tables, loaded once."""

    def __init__(
        self,
        spark: SparkSession,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        today: date | None = None,
    ) -> None:
        from pdp.ingest.registry import load_registry
        from pdp.pseudonym.keys import KeyStore
        from pdp.pseudonym.pseudonymise import Pseudonymiser
        from pdp.pseudonym.vault import EdgeKeys, IdentityVault

        # A child session (same context, own SQL settings): one shuffle partition for the
        # micro-batch's tiny joins and aggregates, without changing the caller's session.
        self.spark = spark.newSession()
        for key, value in _TINY.items():
            self.spark.conf.set(key, value)
        self.settings = settings or get_settings()
        self.registry = registry or load_registry()
        self.spec: SourceSpec = self.registry[_SOURCE]
        self._store = KeyStore.from_settings(self.settings)
        self._vault = IdentityVault(_engine(self.settings), EdgeKeys(self._store))  # seals; cannot open
        self._pseudonymiser = Pseudonymiser(self._store)
        self._today = today
        self._tables: dict[str, LakeTable] = {}
        self._staging = self.settings.var_dir / "stream-staging"

    def warm_up(self) -> None:
        """Check every table the feed writes and run one log lookup, before the first file arrives.

        Why: the first `create()` check of each table and the first query plans cost seconds
        (JVM class loading, code generation); paid at start, they stay out of the first drop's latency.
        """
        from pdp.ingest.silver import EVENT_TABLES

        names = ["bronze.records", "ops.quarantine", "ops.ingestion_log", "silver.person", "silver.observation_period"]
        for name in names + [f"silver.{table}" for table, _ in EVENT_TABLES.values()]:
            self._table(name)
        self._done({"f0:warm-up"})

    # -- the micro-batch --------------------------------------------------------------------

    def ingest(self, files: Sequence[LabFile]) -> IngestReport:
        """Land `files` (dropped HL7 batch files) in bronze and silver; per-file counts in the report."""
        with waiting_ingest_lock(self.settings.var_dir / "ingest.lock"):
            self._staging.mkdir(parents=True, exist_ok=True)
            staging = Path(self._staging) / f"fast-{secrets.token_hex(4)}"
            try:
                (staging / _FOLDER).mkdir(parents=True)
                for name, content in files:
                    (staging / _FOLDER / Path(name).name).write_bytes(content)
                return self._ingest(staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _ingest(self, root: Path) -> IngestReport:
        from pdp.lake import RunInfo

        edge = Edge(self._store, today=self._today)
        started = datetime.now(UTC)
        batch_id = f"feed-{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        report = IngestReport(batch_id=batch_id)
        clock = _Clock(report.seconds)
        paths = sorted((root / _FOLDER).iterdir())
        fingerprints = {p: edge.file_fingerprint(p) for p in paths}
        done = self._done(set(fingerprints.values()))
        clock.lap("lookup")

        bronze: list[dict] = []
        quarantine: list[dict] = []
        logged: dict[tuple[str, str], str] = {}
        duplicates, tally = Duplicates(), Tally()
        for path in paths:
            rel = path.relative_to(root).as_posix()
            file_report = FileReport(_SOURCE, rel)
            report.files.append(file_report)
            if fingerprints[path] in done:  # the same bytes already ingested, under any name
                file_report.skipped = True
                continue
            logged[(_SOURCE, rel)] = fingerprints[path]
            tally.start(_SOURCE, rel)
            outcomes = parse_file(self.spec, path, root, today=self._today, seen=duplicates.seen(self.spec))
            for row in edge.process(outcomes):  # counted under the batch path's rule (parse.Tally)
                landed = isinstance(row, BronzeRow)
                tally.count(row.source, row.file, quarantined=not landed, position=row.record_position,
                            reason=None if landed else (row.reason_code, row.message))
                if landed:
                    bronze.append(bronze_dict(row, batch_id, started))
                else:
                    quarantine.append(quarantine_dict(row, batch_id, started))
            counts = tally.counts()[(_SOURCE, rel)]
            file_report.records_in, file_report.landed = counts.records_in, counts.parsed
            file_report.quarantined, file_report.file_issues = counts.quarantined, counts.file_issues
            file_report.stopped, file_report.unread_from = counts.stopped, counts.unread_from
        report.by_reason = Counter(edge.stats.by_reason)
        report.pseudonymise_seconds = round(edge.stats.pseudonymise_seconds, 3)
        clock.lap("parse_and_edge")

        run = RunInfo(run_id=batch_id, job="ingest-stream", definitions_version=registry_version(self.registry))
        outcome = self._link(edge, report)
        withheld = withhold_opposed(edge, outcome, self._vault.engine, self._store)
        clock.lap("linkage")
        items = list(edge.vault_records.items())
        if items:
            self._vault.upsert_many(items)
        report.vault_records = len(items)
        clock.lap("vault")
        landed = _relink(bronze, outcome.mapping)
        if withheld:
            landed, opposed = _split_opposed(landed, withheld)
            quarantine.extend(opposed)
            per_file: Counter = Counter((r["source"], r["file"]) for r in opposed)
            account_opposed(report, dict(per_file))
        if landed:
            ids = [(r["source"], r["record_id"]) for r in landed if r["record_id"] is not None]
            rows = apply_versions(self._frame(landed, BRONZE_SCHEMA), report, run=run, table=self._table,
                                  repeats=len(set(ids)) < len(ids))
            commit = self._table("bronze.records").merge(rows, keys=["record_hash"], run=run, update="none")
            report.bronze_inserted = _inserted(commit)
        clock.lap("bronze")
        if landed:  # bronze first, then its events: the "file is in silver" moment
            report.silver = self._silver_events(landed, rows, run)
        clock.lap("silver_events")
        if quarantine:
            rows = self._frame(quarantine, QUARANTINE_SCHEMA)
            commit = self._table("ops.quarantine").merge(rows, keys=["record_hash"], run=run, update="none")
            report.quarantine_inserted = _inserted(commit)
        clock.lap("quarantine")
        if landed:  # needs the bronze commit: a person is recomputed from all their bronze rows
            report.silver["person"] = self._silver_people(landed, run, also=report.replaced.persons)
            report.persons = {r["person_pseudonym"] for r in landed if r["person_pseudonym"]}
        clock.lap("silver_people")
        log_files(self.spark, report, logged, started, run, self._table)
        clock.lap("log")
        return report

    # -- steps ------------------------------------------------------------------------------

    def _done(self, fingerprints: set[str]) -> set[str]:
        """Which of these file fingerprints the ingestion log already has as complete."""
        from pyspark.sql import functions as F

        if not fingerprints:
            return set()
        log = self._table("ops.ingestion_log").read()
        rows = (
            log.where((F.col("status") == "complete") & F.col("file_fingerprint").isin(sorted(fingerprints)))
            .select("file_fingerprint")
            .distinct()
            .collect()
        )
        return {r.file_fingerprint for r in rows}

    def _link(self, edge: Edge, report: IngestReport) -> LinkOutcome:
        """Linkage as `pdp ingest` does it, unless no record of the batch can be re-keyed by it."""
        from pdp.ingest.edge import LinkOutcome

        if not edge.canonicals or self._linkage_cannot_change(edge):
            report.link_rules = {"deterministic_nir": len(edge.canonicals)} if edge.canonicals else {}
            report.link_model = MODEL_NOT_RUN
            return LinkOutcome(mapping={}, superseded={}, rule_counts=report.link_rules)
        return link_batch(
            self.spark, edge, self._vault, report, lake_root=self.settings.lake_uri, settings=self.settings
        )

    def _linkage_cannot_change(self, edge: Edge) -> bool:
        """True when every identity is an own-NIR person known to the vault and no vault person holds its traits key.

        Looks the pseudonyms up in the vault's index (no record is decrypted).
        """
        canonicals = edge.canonicals
        if any(c.scheme != "nir" for c in canonicals.values()):
            return False
        traits = {self._pseudonymiser.pseudonym(replace(c, scheme="traits", nir=None)) for c in canonicals.values()}
        present = self._vault.contains([*canonicals, *traits])
        return all(p in present for p in canonicals) and not (traits & present)

    def _silver_events(self, bronze: list[dict], rows: DataFrame, run: RunInfo) -> dict[str, int]:
        from pdp.ingest.silver import merge_events_for_rows

        domains = {e["domain"] for r in bronze for e in r["events"]}
        return merge_events_for_rows(
            self.spark, rows, run=run, domains=domains, lake_root=self.settings.lake_uri, tables=self._table
        )

    def _silver_people(self, bronze: list[dict], run: RunInfo, *, also: set[str]) -> int:
        """`also`: persons whose replaced record versions left (a correction may change the person)."""
        from pdp.ingest.silver import refresh_people

        persons = {r["person_pseudonym"] for r in bronze if r["person_pseudonym"]} | also
        return refresh_people(self.spark, persons, run=run, lake_root=self.settings.lake_uri, tables=self._table)

    # -- helpers ----------------------------------------------------------------------------

    def _table(self, name: str) -> LakeTable:
        """The table, created or checked against its catalog once per feed (a Spark job each time)."""
        table = self._tables.get(name)
        if table is None:
            from pdp.lake import LakeTable

            table = self._tables[name] = LakeTable(self.spark, name, lake_root=self.settings.lake_uri).create()
        return table

    def _frame(self, rows: list[dict], schema: pa.Schema) -> DataFrame:
        """A local DataFrame of the batch's rows (no staging Parquet: they are a few hundred at most)."""
        return self.spark.createDataFrame(pa.Table.from_pylist(rows, schema=schema))


def _relink(rows: list[dict], mapping: dict[str, str]) -> list[dict]:
    """Bronze rows with each batch pseudonym replaced by its person's (linkage), rule noted (as `pdp ingest`)."""
    if not mapping:
        return rows
    out = []
    for row in rows:
        target = mapping.get(row["person_pseudonym"])
        out.append(
            row if target is None else row | {"person_pseudonym": target, "link_rule": f"{row['link_rule']}+linked"}
        )
    return out


def _split_opposed(rows: list[dict], persons: set[str]) -> tuple[list[dict], list[dict]]:
    """Bronze rows to land, and the opposed persons' rows as OPPOSED quarantine rows."""
    kept, opposed = [], []
    for r in rows:
        if r["person_pseudonym"] in persons:
            opposed.append({
                "batch_id": r["batch_id"], "source": r["source"], "file": r["file"],
                "record_position": r["record_position"], "reason_code": ReasonCode.OPPOSED.value,
                "message": REASONS[ReasonCode.OPPOSED], "record_hash": r["record_hash"],
                "quarantined_at": r["ingested_at"],
            })
        else:
            kept.append(r)
    return kept, opposed


def _inserted(commit: object) -> int:
    return int(commit.metric("numTargetRowsInserted") or 0) if commit else 0  # type: ignore[attr-defined]


@contextmanager
def waiting_ingest_lock(lock_path: Path) -> Iterator[None]:
    """The ingest lock of `pdp ingest` (same file), waited for: a running batch ingest delays the feed."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
