"""Duplicates across files found on Spark, from the fingerprints each task staged: none kept in the driver.

Why: a record sent twice in a batch (a resent file, a cumulative PMSI export beside the month
it repeats) is quarantined the second time, as one in-order pass over the files decides
(:class:`~pdp.ingest.parse.Duplicates`). Files parsed apart reconcile that in the driver, which
then holds every fingerprint of the batch (16-32 bytes a record: ~0.5 GiB for the 19 M records
of a million persons, 11-22 GiB for a national year). A batch that stages its identities
(:mod:`pdp.ingest.identity_stage`) stages its fingerprints too: each task writes the set of its
file (or part) beside its rows, one Parquet part of (scope, file, part, fingerprint), and one
Spark query groups them by (scope, fingerprint). What the driver reads back, one task at a time
in task order, is only the fingerprints a task shares with earlier tasks of its scope, and
which tasks those are: proportional to the batch's duplicates, not to its records.

Exactly the sequential result: a task sharing a fingerprint with an earlier task that counts is
re-parsed in order with those fingerprints as its "already seen" set
(:meth:`Duplicates.holding`): its records that one pass would have met before are the
duplicates, the rest land. An earlier task that does not count is one one pass never reads: a
later part of a file that stopped in an earlier part (the caller names them, ``dropped``).

The scope is the source (``per_source``) or, for a file split into parts under ``per_file``, the
file. The fingerprints are keyed (:attr:`IdentityCipher.fingerprint_key`, derived for the
batch from the key store): a staged part confirms no guessed record without the key, and the
staging folder goes with the batch.

Example (in a batch, :func:`pdp.ingest.fanout.run_files` does this)::

    write_fingerprints(seen.values(), staging / "fingerprints" / "part-000003.parquet", "pharmacy", (3, 0))
    with EarlierFingerprints(spark, staging / "fingerprints") as earlier:
        values = earlier.of((3, 0), dropped=set())   # what task (3, 0) met in earlier tasks
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pyspark.sql import Row, SparkSession

    from pdp.ingest.spec import SourceSpec

__all__ = ["SCHEMA", "EarlierFingerprints", "scope_of", "write_fingerprints"]

SCHEMA = pa.schema([("scope", pa.string()), ("file", pa.int32()), ("part", pa.int32()), ("fingerprint", pa.int64())])
_UNSIGNED = (1 << 64) - 1


def scope_of(spec: SourceSpec, index: int, split: bool) -> str | None:
    """Where a task's duplicates are looked for: its source, its file (``per_file``, a split
    file's parts), or nowhere (None: within the task only, or no duplicate check)."""
    scope = spec.validation.duplicates
    if scope == "per_source":
        return spec.name
    if scope == "per_file" and split:
        return f"{spec.name}\x1f{index}"
    return None


def write_fingerprints(values: array[int], path: Path, scope: str, key: tuple[int, int]) -> Path | None:
    """A task's fingerprints (``array('Q')``, each once) into one Parquet part; None when it has none."""
    if not values:
        return None
    count = len(values)
    unsigned = pa.Array.from_buffers(pa.uint64(), count, [None, pa.py_buffer(values)])
    table = pa.table([pa.array([scope] * count, pa.string()), pa.array([key[0]] * count, pa.int32()),
                      pa.array([key[1]] * count, pa.int32()), unsigned.view(pa.int64())], schema=SCHEMA)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


class EarlierFingerprints:
    """Per task, asked in task order: the fingerprints it shares with earlier tasks of its scope.

    One query over the staged parts (a few Spark jobs: the grouping, the sort), streamed to the
    driver (``toLocalIterator``) sorted by task: the driver holds one task's shared fingerprints at
    a time. Close it (or use it as a
    context manager) to end the stream when the batch fails half-way.
    """

    def __init__(self, spark: SparkSession, directory: Path) -> None:
        self._rows: Iterator[Row] = iter(()) if not directory.is_dir() else _shared(spark, directory)
        self._next: Row | None = None

    def __enter__(self) -> EarlierFingerprints:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self._rows, "close", None)
        if close is not None:
            close()

    def of(self, key: tuple[int, int], dropped: set[tuple[int, int]]) -> list[int]:
        """The fingerprints task `key` shares with an earlier task that counts (not in `dropped`).

        Keys must be asked in increasing order; rows of tasks never asked are passed over.
        """
        found: list[int] = []
        while True:
            if self._next is None:
                self._next = next(self._rows, None)
                if self._next is None:
                    return found
            row = self._next
            at = (row["file"], row["part"])
            if at > key:
                return found
            self._next = None
            if at == key and any((h["file"], h["part"]) not in dropped for h in row["earlier"]):
                found.append(row["fingerprint"] & _UNSIGNED)


def _shared(spark: SparkSession, directory: Path) -> Iterator[Row]:
    """(file, part, fingerprint, earlier tasks holding it) for every fingerprint held by more than one
    task of a scope, but its first, sorted by task."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    staged = spark.read.schema(from_arrow_schema(SCHEMA)).parquet(str(directory))
    holders = (staged.groupBy("scope", "fingerprint")
               .agg(F.array_sort(F.collect_list(F.struct("file", "part"))).alias("holders"))
               .where(F.size("holders") > 1))
    later = holders.select("fingerprint", "holders", F.posexplode("holders").alias("at", "task")).where("at > 0")
    shared = later.select(F.col("task.file").alias("file"), F.col("task.part").alias("part"), "fingerprint",
                          F.slice("holders", F.lit(1), F.col("at")).alias("earlier"))
    return shared.orderBy("file", "part").toLocalIterator()
