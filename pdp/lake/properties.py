"""Delta table properties derived from a table definition, each one chosen on purpose.

Why here and not in the YAML files: these are platform rules (privacy, erasure, history),
not per-table taste. A table file says *what* it needs (change data feed, append-only,
which columns may carry statistics); this module turns that into Delta properties.

Retention, and why these numbers:
- ``delta.deletedFileRetentionDuration = 7 days``: files a commit removed (and change-data
  files) stay on disk this long, so time travel and the leak scanner can read the last week
  of versions, and a reader that started before a rewrite does not lose its files. It is
  also the erasure horizon: an erased person's rows disappear physically at the first
  VACUUM run 7 days after the DELETE (``maintenance.vacuum`` refuses anything shorter unless
  forced with a reason).
- ``delta.logRetentionDuration = 30 days``: the commit log (who wrote what, with which run id
  and definitions version) is kept a month, long enough to trace a monthly indicator run.
  The log holds no row values except min/max statistics of the columns allowed to have
  them, which is why quasi-identifiers never carry statistics.
- ``delta.checkpointInterval = 10``: Delta's default, stated so a cluster-wide default cannot
  change when old log files become eligible for clean-up.
- ``delta.enableDeletionVectors = false``: with deletion vectors a DELETE only marks rows as
  gone and keeps them inside the current data files — VACUUM would then never remove an
  erased person's rows. Rewriting files on delete is what makes erasure physical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pdp.lake.catalog import TableDef

DELETED_FILE_RETENTION_DAYS = 7
LOG_RETENTION_DAYS = 30
CHECKPOINT_INTERVAL = 10

STATS_COLUMNS = "delta.dataSkippingStatsColumns"
NUM_INDEXED_COLS = "delta.dataSkippingNumIndexedCols"

# Every property this module may set: on an existing table, one of these that the catalog no
# longer wants is unset, so the table converges to its definition.
MANAGED = (
    "delta.enableChangeDataFeed",
    "delta.appendOnly",
    "delta.enableDeletionVectors",
    "delta.logRetentionDuration",
    "delta.deletedFileRetentionDuration",
    "delta.checkpointInterval",
    STATS_COLUMNS,
    NUM_INDEXED_COLS,
)


def table_properties(table: TableDef) -> dict[str, str]:
    """The Delta properties `table` must carry (keys in a stable order, values as Delta prints them)."""
    props = {
        "delta.enableChangeDataFeed": str(table.change_data_feed).lower(),
        "delta.appendOnly": str(table.append_only).lower(),
        "delta.enableDeletionVectors": "false",
        "delta.logRetentionDuration": f"interval {LOG_RETENTION_DAYS} days",
        "delta.deletedFileRetentionDuration": f"interval {DELETED_FILE_RETENTION_DAYS} days",
        "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
    }
    stats = table.effective_stats_columns()
    if stats:
        props[STATS_COLUMNS] = ",".join(stats)
    else:
        # No column may carry statistics: say so with a count of 0 rather than an empty list.
        props[NUM_INDEXED_COLS] = "0"
    return props
