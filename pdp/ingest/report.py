"""What an ingest run reports: counts per file (in = landed + quarantined) and per stage.

One report for both modes of the pipeline (`pdp ingest` and the lab feed), printed by the CLI,
read by the benchmarks and written, file by file, to ``ops.ingestion_log`` (:data:`LOG_STATUS`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pdp.ingest.skipped import SkippedResources
from pdp.ingest.unmapped import UnmappedCodes
from pdp.ingest.versions import Replaced

__all__ = ["LOG_STATUS", "FileReport", "IngestReport"]


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
    vault_prepared: int = 0  # of them, new persons whose writes the executors made ready (copied in as they were)
    silver: dict[str, int] = field(default_factory=dict)
    id_collisions: dict[str, int] = field(default_factory=dict)  # per silver table: events quarantined ID_COLLISION
    by_reason: Counter = field(default_factory=Counter)
    # values left out for their shape, the record kept: vault contact fields, lake attributes (a commune or GP
    # that is not a code, a spec attribute outside its map, pattern or type)
    fields_dropped: dict[str, int] = field(default_factory=dict)
    pseudonymise_seconds: float = 0.0  # normalising identities and keying pseudonyms
    link_rules: dict[str, int] = field(default_factory=dict)  # distinct identities per deciding linkage rule
    link_model: str = ""  # the linkage model used: a trained version, em-on-batch, builtin-default, not-run
    relinked: int = 0  # batch pseudonyms re-keyed to their person's pseudonym by linkage
    link_engine: str = ""  # where linkage ran: "memory" (this process) or "spark" (PDP_LINKAGE_ENGINE)
    identities_on_driver: bool = True  # False: linked from its staged identities on Spark (not read into this process)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage (pdp.ingest.pipeline.STAGES)
    # this process's resident high-water mark (MiB) at each stage's end
    driver_peak_mib: dict[str, float] = field(default_factory=dict)
    parse_workers: int = 0  # worker processes of the parse+edge stage (0: in-process)
    parse_engine: str = "processes"  # or "spark": one Spark task per file (PDP_EDGE_ENGINE)
    parse_tasks: int = 0  # tasks the stage ran: a file each, or a part each of a split one (PDP_EDGE_SPLIT_BYTES)
    parse_cpu_seconds: float = 0.0  # CPU time of parse+edge summed over the processes that ran it
    persons: set[str] = field(default_factory=set)  # small mode (lab feed): pseudonyms whose silver the batch changed
    unmapped: UnmappedCodes = field(default_factory=UnmappedCodes)  # landed codes outside the concept sets
    skipped_resources: SkippedResources = field(default_factory=SkippedResources)  # types the platform does not read
    replaced: Replaced = field(default_factory=Replaced)  # earlier batches' versions this batch replaced

    def partial_files(self) -> list[FileReport]:
        """Files whose reading stopped before their end this run (logged ``partial``)."""
        return [f for f in self.files if not f.skipped and f.partial]

    def totals(self) -> tuple[int, int, int]:
        read = [f for f in self.files if not f.skipped]
        return (sum(f.records_in for f in read), sum(f.landed for f in read), sum(f.quarantined for f in read))
