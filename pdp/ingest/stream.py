"""The real-time lab feed: HL7 files dropped in a landing folder reach bronze and silver in seconds.

Spark Structured Streaming watches the folder (`binaryFile` source, ``*.hl7``) and hands each
micro-batch of new files to the edge and the lake writers. A micro-batch of ordinary size goes
through the feed's light path (:class:`pdp.ingest.fast_path.LabFeed`: same parsing,
quarantine, edge, vault and idempotent writes as `pdp ingest`, without its whole-lake fixed
costs); a large one (a backlog found at start, a bulk drop) goes through `pdp ingest`'s batch
path (:func:`pdp.ingest.pipeline.ingest_directory`), which stages rows on disk with bounded
memory.

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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from pdp.ingest.pipeline import IngestReport

__all__ = ["FAST_PATH_MAX_BYTES", "clear_stream_state", "start_lab_stream"]

FAST_PATH_MAX_BYTES = 8 << 20
"""Micro-batches up to this many bytes of HL7 take the light path (rows kept in memory); larger ones the batch path."""


def start_lab_stream(
    landing: Path | str,
    *,
    spark: SparkSession,
    settings: Settings | None = None,
    trigger_seconds: float = 1.0,
    available_now: bool = False,
    on_batch: Callable[[IngestReport], object] | None = None,
    fast_path_max_bytes: int = FAST_PATH_MAX_BYTES,
) -> StreamingQuery:
    """Start the lab feed on `landing` (HL7 batch files, ``*.hl7``); returns the running query.

    `available_now` processes what is there and stops (for `--once` runs and tests);
    `on_batch(report)` is called with each micro-batch's ingest report.
    `fast_path_max_bytes=0` sends every micro-batch through the batch path (the reference of
    `pdp bench labfeed`).
    """
    from pdp.ingest.fast_path import LabFeed
    from pdp.ingest.pipeline import ingest_directory

    settings = settings or get_settings()
    landing = Path(landing).resolve()  # listed by Spark, whose executors do not share the driver's cwd
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    checkpoint = (settings.var_dir / "checkpoints" / "lab_stream").resolve()
    staging_root = settings.var_dir / "stream-staging"
    shutil.rmtree(staging_root, ignore_errors=True)  # raw files a killed feed left behind (one feed per var/)
    staging_root.mkdir(parents=True, exist_ok=True)
    feed = LabFeed(spark, settings=settings) if fast_path_max_bytes > 0 else None
    if feed is not None:
        feed.warm_up()

    def process(batch: DataFrame, batch_id: int) -> None:
        rows = batch.select("path", "content").collect()
        if not rows:
            return
        files = [(Path(row.path).name, bytes(row.content)) for row in rows]
        if feed is not None and sum(len(content) for _, content in files) <= fast_path_max_bytes:
            report = feed.ingest(files)
        else:
            with tempfile.TemporaryDirectory(dir=staging_root) as tmp:
                labs = Path(tmp) / "labs"
                labs.mkdir()
                for name, content in files:
                    (labs / name).write_bytes(content)
                report = ingest_directory(Path(tmp), spark=spark, settings=settings)
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
