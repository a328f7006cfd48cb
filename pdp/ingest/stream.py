"""The real-time lab feed: HL7 files dropped in a landing folder reach bronze and silver in seconds.

Spark Structured Streaming watches the folder (`binaryFile` source) and hands each micro-batch
of new files to the same edge and lake writers as `pdp ingest` (`ingest_directory`), so the
feed shares the batch path's parsing, quarantine, pseudonymisation, linkage and idempotency.
Exactly-once: the streaming checkpoint records which files each micro-batch took, and the
writes under it are idempotent (insert-only MERGE on keyed record hashes, files logged by
keyed fingerprint), so a micro-batch replayed after a crash adds nothing twice.

The raw files are copied only to a private staging folder under var/ for the edge to read, and
deleted after the micro-batch; nothing nominative goes to the lake or the checkpoint (which
holds file paths and offsets only).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from pdp.ingest.pipeline import IngestReport

__all__ = ["start_lab_stream"]


def start_lab_stream(
    landing: Path | str,
    *,
    spark: SparkSession,
    settings: Settings | None = None,
    trigger_seconds: float = 1.0,
    available_now: bool = False,
    on_batch: object | None = None,
) -> StreamingQuery:
    """Start the lab feed on `landing` (HL7 batch files, ``*.hl7``); returns the running query.

    `available_now` processes what is there and stops (for `--once` runs and tests);
    `on_batch(report)` is called with each micro-batch's ingest report.
    """
    from pdp.ingest.pipeline import ingest_directory

    settings = settings or get_settings()
    landing = Path(landing)
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    checkpoint = settings.var_dir / "checkpoints" / "lab_stream"
    staging_root = settings.var_dir / "stream-staging"
    staging_root.mkdir(parents=True, exist_ok=True)

    def process(batch: DataFrame, batch_id: int) -> None:
        rows = batch.select("path", "content").collect()
        if not rows:
            return
        with tempfile.TemporaryDirectory(dir=staging_root) as tmp:
            labs = Path(tmp) / "labs"
            labs.mkdir()
            for row in rows:
                (labs / Path(row.path).name).write_bytes(bytes(row.content))
            report: IngestReport = ingest_directory(Path(tmp), spark=spark, settings=settings)
        if callable(on_batch):
            on_batch(report)

    schema = "path string, modificationTime timestamp, length long, content binary"
    stream = (
        spark.readStream.format("binaryFile")
        .schema(schema)
        .option("pathGlobFilter", "*.hl7")
        .option("maxFilesPerTrigger", 1000)
        .load(str(landing))
    )
    writer = stream.writeStream.foreachBatch(process).option("checkpointLocation", str(checkpoint))
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime=f"{trigger_seconds} seconds")
    )
    return writer.start()


def clear_stream_state(settings: Settings | None = None) -> None:
    """Forget the feed's checkpoint (files already ingested are still recognised by fingerprint)."""
    settings = settings or get_settings()
    shutil.rmtree(settings.var_dir / "checkpoints" / "lab_stream", ignore_errors=True)
