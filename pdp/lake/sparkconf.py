"""Session settings changed for the length of one Delta command, then restored.

Why: MERGE, DELETE, OPTIMIZE and VACUUM take no writer options, so their commit metadata
(and VACUUM's retention check) can only be passed through the session configuration. The
session is shared by the whole process, so changes are serialised by one lock and always
restored, even when the command fails.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
# VACUUM lists the table with this many tasks; Spark's default (10 000) costs ~30 s on 2 cores.
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
# A file no Parquet reader can open (a killed writer's, without its footer) is skipped by the read.
IGNORE_CORRUPT_FILES = "spark.sql.files.ignoreCorruptFiles"

_LOCK = threading.RLock()


@contextmanager
def scoped_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Set `settings` on the session for the block, then put back what was there (or unset)."""
    with _LOCK:
        previous = {key: spark.conf.get(key, None) for key in settings}
        try:
            for key, value in settings.items():
                spark.conf.set(key, value)
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, value)
