"""The real-time lab feed: HL7 files dropped in a landing folder reach bronze and silver in seconds.

Spark Structured Streaming watches the folder (`binaryFile` source, ``*.hl7``) and hands each
micro-batch of new files to the one ingest pipeline `pdp ingest` runs (:class:`pdp.ingest.feed.LabFeed`
→ :class:`pdp.ingest.pipeline.Pipeline`): a micro-batch of ordinary size in its small-batch mode
(rows in memory, without the whole-lake fixed costs: :mod:`pdp.ingest.modes`), a large one (a
backlog found at start, a bulk drop) in its batch mode, which stages rows on disk with bounded
memory. Same parsing, quarantine, edge, vault and idempotent writes either way.

Exactly-once: the streaming checkpoint records which files each micro-batch took, and the
writes under it are idempotent (insert-only MERGE on keyed record hashes and on ids derived
from them, files logged by keyed fingerprint), so a micro-batch replayed after a crash adds
nothing twice. Senders must drop files atomically (write ``name.hl7.part``, then rename to
``name.hl7``): the source lists ``*.hl7`` only, and a half-written file would be read half.

The raw files are copied only to a private staging folder under var/ for the parser to read,
and deleted after the micro-batch; nothing nominative goes to the lake or the checkpoint
(which holds file paths and offsets only).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings
from pdp.ingest.modes import SMALL_MAX_BYTES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from pdp.ingest.pipeline import IngestReport

__all__ = ["clear_stream_state", "start_lab_stream"]


def start_lab_stream(
    landing: Path | str,
    *,
    spark: SparkSession,
    settings: Settings | None = None,
    trigger_seconds: float = 1.0,
    available_now: bool = False,
    on_batch: Callable[[IngestReport], object] | None = None,
    small_max_bytes: int = SMALL_MAX_BYTES,
) -> StreamingQuery:
    """Start the lab feed on `landing` (HL7 batch files, ``*.hl7``); returns the running query.

    `available_now` processes what is there and stops (for `--once` runs and tests);
    `on_batch(report)` is called with each micro-batch's ingest report.
    Micro-batches up to `small_max_bytes` of HL7 run in the pipeline's small-batch mode, larger
    ones in its batch mode (0: every micro-batch in batch mode).
    """
    from pdp.ingest.feed import LabFeed

    settings = settings or get_settings()
    landing = Path(landing).resolve()  # listed by Spark, whose executors do not share the driver's cwd
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    checkpoint = (settings.var_dir / "checkpoints" / "lab_stream").resolve()
    staging_root = settings.var_dir / "stream-staging"
    shutil.rmtree(staging_root, ignore_errors=True)  # raw files a killed feed left behind (one feed per var/)
    staging_root.mkdir(parents=True, exist_ok=True)
    feed = LabFeed(spark, settings=settings, small_max_bytes=small_max_bytes)
    feed.warm_up()

    def process(batch: DataFrame, batch_id: int) -> None:
        rows = batch.select("path", "content").collect()
        if not rows:
            return
        report = feed.ingest([(Path(row.path).name, bytes(row.content)) for row in rows])
        if on_batch is not None:
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
