"""A job's scratch area beside the lake: intermediate Parquet that must not sit in driver memory.

Why: a job over the whole population (key rotation's old → new pseudonym mapping: one row per
person, 68 M nationally) cannot hold its intermediate data in a driver dict or in a Spark plan
built from local rows (a ``LocalRelation`` carries every row inside the plan). It writes the
data page by page to Parquet under ``<lake root>/_work/<name>`` — on the lake's own file system,
local or object store, so executors on other machines read it — and reads it back as a
DataFrame. Only pseudonymised data may go there (the leak scanner reads the lake root too).
The area is removed when the job ends; a job that crashed removes and rebuilds it.

Example::

    area = WorkArea(spark, "rotation-v1-v2", lake_root)
    area.remove()              # start empty: a crashed run's pages are never mixed with this run's
    area.append(spark.createDataFrame(page, "old string, new string"))
    frame = area.read()          # every page, as one DataFrame
    area.remove()
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["WorkArea"]

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,80}")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class WorkArea:
    """Parquet scratch data of one job under ``<lake root>/_work/<name>`` (any Hadoop file system)."""

    def __init__(self, spark: SparkSession, name: str, lake_root: str | Path | None = None) -> None:
        from pdp.config import get_settings

        if not _NAME.fullmatch(name):
            raise ValueError("a work area's name is lower-case letters, digits, '.' and '-'")
        self.spark = spark
        root = str(lake_root) if lake_root is not None else get_settings().lake_uri
        if not _URI.match(root):
            root = str(Path(root).expanduser().resolve())
        self.path = f"{root.rstrip('/')}/_work/{name}"

    def _fs(self) -> tuple[Any, Any]:
        jvm = self.spark.sparkContext._jvm  # type: ignore[attr-defined]
        hadoop = self.spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        path = jvm.org.apache.hadoop.fs.Path(self.path)
        return path.getFileSystem(hadoop), path

    def exists(self) -> bool:
        fs, path = self._fs()
        return bool(fs.exists(path))

    def remove(self) -> None:
        """Delete the area and everything in it (nothing if absent): at the end of a job, and at its
        start so that what a crashed run left is never mixed with a new run's pages."""
        fs, path = self._fs()
        if fs.exists(path):
            fs.delete(path, True)

    def append(self, frame: DataFrame) -> None:
        frame.write.mode("append").parquet(self.path)

    def read(self) -> DataFrame:
        return self.spark.read.parquet(self.path)
