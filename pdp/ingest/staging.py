"""Staging of a batch: Parquet parts of pseudonymised rows waiting for the batch commit.

Why Parquet parts on disk: a batch may hold millions of records; the edge streams them into
bounded chunks, and Spark reads the staging folder once at commit (MERGE into bronze and
quarantine). Each file of the batch writes its own part (``part-<file index>.parquet``), so
parse worker processes write in parallel without a shared writer, and a file re-parsed by the
parent (cross-file duplicates) just replaces its part. Staging holds pseudonyms, codes and keyed
hashes only — never an identity — and is deleted after the batch.

The pipeline's small-batch mode (:mod:`pdp.ingest.modes`: the lab feed's micro-batches of a few
hundred rows) keeps the rows in memory instead (:class:`MemoryStage`), in-process, and hands
Spark a local DataFrame: no Parquet round trip. :class:`StagedBatch` is what the commit reads,
either way.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from pdp.ingest.edge import BronzeRow, QuarantineRow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["BRONZE_SCHEMA", "QUARANTINE_SCHEMA", "MemoryStage", "Stage", "StagedBatch", "bronze_dict",
           "quarantine_dict"]

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


class Stage:
    """One Parquet part in `directory`, written in chunks of rows (bounded memory)."""

    def __init__(self, directory: Path, schema: pa.Schema, *, part: str = "part-0.parquet") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / part
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
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self.count += len(self._rows)
        self._rows = []

    def close(self) -> Path | None:
        """The part written, or None when no row was."""
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.path if self.count else None

    def discard(self) -> None:
        """Drop the part: its file is removed, whatever state the writer is in.

        Why: a file whose processing fails past its parser (a full disk, a bug in the writer) must
        leave no part behind; a writer left open leaves a Parquet file without footer, which
        the batch's one read of the staging folder would fail on.
        """
        self._rows = []
        writer, self._writer = self._writer, None
        if writer is not None:
            with suppress(Exception):  # the part is removed below: its writer's own error is moot
                writer.close()
        self.path.unlink(missing_ok=True)
        self.count = 0


class MemoryStage:
    """The rows of one file kept in hand (small-batch mode): :class:`Stage`'s interface, no part written."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    @property
    def count(self) -> int:
        return len(self.rows)

    def add(self, row: dict) -> None:
        self.rows.append(row)

    def close(self) -> None:
        """No part: the rows stay in :attr:`rows`."""
        return None

    def discard(self) -> None:
        self.rows = []


class StagedBatch:
    """The batch's staged rows as the commit reads them: the Parquet parts under `directory`, or the
    rows files handed over in memory (:meth:`add_rows`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bronze_rows: list[dict] = []
        self.quarantine_rows: list[dict] = []
        self.has_bronze = self.has_quarantine = False

    def add_parts(self, parts: tuple[Path, ...]) -> None:
        self.has_bronze |= any(p.parent.name == "bronze" for p in parts)
        self.has_quarantine |= any(p.parent.name == "quarantine" for p in parts)

    def add_rows(self, bronze: list[dict], quarantine: list[dict]) -> None:
        self.bronze_rows += bronze
        self.quarantine_rows += quarantine
        self.has_bronze |= bool(bronze)
        self.has_quarantine |= bool(quarantine)

    @property
    def in_memory(self) -> bool:
        return bool(self.bronze_rows or self.quarantine_rows)

    def bronze(self, spark: SparkSession) -> DataFrame:
        return self._frame(spark, "bronze", self.bronze_rows, BRONZE_SCHEMA)

    def quarantine(self, spark: SparkSession) -> DataFrame:
        return self._frame(spark, "quarantine", self.quarantine_rows, QUARANTINE_SCHEMA)

    def _frame(self, spark: SparkSession, name: str, rows: list[dict], schema: pa.Schema) -> DataFrame:
        if rows:  # a local DataFrame (a few hundred rows at most)
            return spark.createDataFrame(pa.Table.from_pylist(rows, schema=schema))
        return spark.read.parquet(str(self.directory / name))


def bronze_dict(row: BronzeRow, batch_id: str, at: datetime) -> dict:
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


def quarantine_dict(row: QuarantineRow, batch_id: str, at: datetime) -> dict:
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
