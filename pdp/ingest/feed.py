"""The lab feed's micro-batches through the one ingest pipeline, in its small-batch mode.

A lab sends a few HL7 messages at a time; the feed (:mod:`pdp.ingest.stream`) hands each
micro-batch of dropped files here. They run through :class:`pdp.ingest.pipeline.Pipeline` — the
loop `pdp ingest` runs, so a fix lands once — in the mode their size calls for
(:func:`pdp.ingest.modes.mode_for`): :data:`~pdp.ingest.modes.SMALL` (rows in memory, the log read
for the batch's fingerprints, linkage only when it can change something, silver for the domains
and persons present, one shuffle partition) up to a few MiB, :data:`~pdp.ingest.modes.BATCH` (a
backlog found at start, a bulk drop) above.

What the feed adds to the pipeline: state kept for its life (keys, vault, lake tables checked
once, on a child Spark session whose settings the small mode may change without touching the
caller's), a warm-up before the first file, and the ingest lock *waited for* rather than refused
(a feed must not die because a batch ingest is running). The files are copied to a private
staging folder under var/ for the parsers to read, and deleted after the micro-batch.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings
from pdp.ingest.lock import waiting_ingest_lock
from pdp.ingest.modes import SMALL, SMALL_MAX_BYTES, mode_for
from pdp.ingest.pipeline import IngestReport, Pipeline

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.ingest.registry import Registry

__all__ = ["LabFeed", "LabFile"]

LabFile = tuple[str, bytes]
"""One dropped file: its name in the landing folder and its bytes."""

_FOLDER = "labs"  # where the lab spec's file pattern (labs/*.hl7) expects the files


class LabFeed:
    """The lab feed's pipeline for one streaming query: spec, keys, vault and checked tables, loaded once."""

    def __init__(
        self,
        spark: SparkSession,
        *,
        settings: Settings | None = None,
        registry: Registry | None = None,
        today: date | None = None,
        small_max_bytes: int = SMALL_MAX_BYTES,
    ) -> None:
        # A child session (same context, own SQL settings): the small mode's shuffle partitions are
        # set on it for a run, never on the caller's session.
        self.settings = settings or get_settings()
        self.pipeline = Pipeline(spark.newSession(), settings=self.settings, registry=registry, today=today,
                                 job="ingest-stream", batch_prefix="feed")
        self._small_max_bytes = small_max_bytes
        self._staging = self.settings.var_dir / "stream-staging"

    def warm_up(self) -> None:
        """Check every table the feed writes and run one log lookup, before the first file arrives.

        Why: the first `create()` check of each table and the first query plans cost seconds
        (JVM class loading, code generation); paid at start, they stay out of the first drop's latency.
        """
        from pdp.ingest.silver import EVENT_TABLES

        names = ["bronze.records", "ops.quarantine", "ops.ingestion_log", "silver.person", "silver.observation_period"]
        for name in names + [f"silver.{table}" for table, _ in EVENT_TABLES.values()]:
            self.pipeline.table(name)
        self.pipeline.done(SMALL, {"f0:warm-up"})

    def ingest(self, files: Sequence[LabFile]) -> IngestReport:
        """Land `files` (dropped HL7 batch files) in bronze and silver; per-file counts in the report."""
        mode = mode_for(sum(len(content) for _, content in files), small_max_bytes=self._small_max_bytes)
        with waiting_ingest_lock(self.settings.var_dir / "ingest.lock"):
            # the copies are nominative until the batch ends: this user's alone, as the inbox's
            self._staging.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._staging.chmod(0o700)
            staging = Path(self._staging) / f"feed-{secrets.token_hex(4)}"
            try:
                (staging / _FOLDER).mkdir(parents=True, mode=0o700)
                for name, content in files:
                    fd = os.open(staging / _FOLDER / Path(name).name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(content)
                return self.pipeline.run(staging, mode)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
