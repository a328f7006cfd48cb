"""The 12-month trend in one run: the indicators at the past month ends, from silver read once.

Why not `build_gold` at every month end: a full Spark gold build (evidence and alerts included)
costs minutes per date, and the trend needs only the counts per stratum and per action status.
So the silver inputs are read once (pinned versions, as the batch reads them), handed to DuckDB
in the driver, and for each month end the **same compiled SQL** (`compile_pipeline` with the
DuckDB dialect) is run — only the steps the strata and the care actions depend on (the
explanations, alerts and populations are not needed for the aggregates). The counts then go
through the same disclosure control as the as-of date's (`indicator_rows`) and are stored in
gold.indicator with their own as_of, one commit for the whole series (nothing is written when
the stored points are the same).

What a past point means: the rules applied at that date to the facts dated on or before it, as
silver holds them today (a result that arrived late counts at its own date); gold's person
tables are not written for those dates.

>>> trend = compute_trend(spark, as_of=date(2026, 6, 30), months=12, territory="Douaisis")  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from pdp.algorithms.compile import DuckDBDialect, Step, compile_pipeline
from pdp.algorithms.gold import silver_inputs
from pdp.algorithms.indicators import ACTION_COUNTS_SQL, STRATA_COUNTS_SQL, Counts, indicator_rows
from pdp.algorithms.model import Definitions, load_definitions
from pdp.lake import LakeTable, RunInfo

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JOB = "gold.indicators.trend"
# the gold relations the indicator aggregates read
NEEDED = ("out_stratum", "out_care_action")


@dataclass
class TrendReport:
    dates: list[date]
    rows: int
    written: bool
    seconds: dict[str, float] = field(default_factory=dict)


def month_ends(as_of: date, months: int) -> list[date]:
    """The last days of the `months - 1` months before `as_of`'s month, oldest first (`as_of` is the last point).

    >>> month_ends(date(2026, 6, 30), 4)
    [datetime.date(2026, 3, 31), datetime.date(2026, 4, 30), datetime.date(2026, 5, 31)]
    >>> month_ends(date(2026, 3, 15), 3)
    [datetime.date(2026, 1, 31), datetime.date(2026, 2, 28)]
    """
    out = []
    first = as_of.replace(day=1)
    for _ in range(max(0, months - 1)):
        end = first - timedelta(days=1)
        out.append(end)
        first = end.replace(day=1)
    return sorted(out)


def needed_steps(steps: list[Step], outputs: tuple[str, ...] = NEEDED) -> list[Step]:
    """The steps `outputs` depend on, in pipeline order (a step depends on every earlier step its SQL names)."""
    names = [s.name for s in steps]
    deps = {s.name: {n for n in names if n != s.name and re.search(rf"\b{re.escape(n)}\b", s.sql)} for s in steps}
    keep: set[str] = set()
    todo = [o for o in outputs if o in deps]
    missing = set(outputs) - set(deps)
    if missing:
        raise ValueError(f"the compiled pipeline has no step {sorted(missing)}")
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += deps[name]
    return [s for s in steps if s.name in keep]


def duckdb_counts(con: Any, defs: Definitions, as_of: date) -> Counts:
    """Run the compiled steps the aggregates need at `as_of` on `con` (silver loaded as `in_*` tables)."""
    steps = needed_steps(compile_pipeline(defs, as_of=as_of, dialect=DuckDBDialect()))
    created = []
    try:
        for step in steps:
            con.execute(f"CREATE OR REPLACE TABLE {step.name} AS {step.sql}")
            created.append(step.name)
        return Counts(
            strata=con.sql(STRATA_COUNTS_SQL.format(stratum="out_stratum")).df(),
            actions=con.sql(ACTION_COUNTS_SQL.format(care_action="out_care_action")).df(),
        )
    finally:
        for name in reversed(created):
            con.execute(f"DROP TABLE IF EXISTS {name}")


def load_silver(spark: SparkSession, lake_root: str | None, threads: int | None = None) -> tuple[Any, dict]:
    """A DuckDB connection holding every silver input (read once, at its current pinned version)."""
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    frames, versions = silver_inputs(spark, lake_root)
    for relation, frame in frames.items():
        arrow = frame.toArrow()
        con.register(f"{relation}_arrow", arrow)
        con.execute(f"CREATE TABLE {relation} AS SELECT * FROM {relation}_arrow")
        con.unregister(f"{relation}_arrow")
    return con, versions


def compute_trend(
    spark: SparkSession,
    *,
    as_of: date,
    months: int,
    territory: str,
    definitions: Definitions | None = None,
    lake_root: str | None = None,
) -> TrendReport:
    """Store in gold.indicator the protected indicators of the `months - 1` month ends before `as_of`."""
    started = time.perf_counter()
    defs = definitions or load_definitions()
    dates = month_ends(as_of, months)
    report = TrendReport(dates=dates, rows=0, written=False)
    if not dates:
        return report
    threads = int(spark.sparkContext.defaultParallelism or 1)
    con, versions = load_silver(spark, lake_root, threads)
    report.seconds["silver"] = time.perf_counter() - started
    rows: list[dict[str, Any]] = []
    try:
        for day in dates:
            tick = time.perf_counter()
            counts = duckdb_counts(con, defs, day)
            rows += [{"as_of": day, "definitions": defs.version, **r}
                     for r in indicator_rows(counts, territory=territory, defs=defs)]
            report.seconds[day.isoformat()] = time.perf_counter() - tick
    finally:
        con.close()
    report.rows = len(rows)
    table = LakeTable(spark, "gold.indicator", lake_root=lake_root).create()
    where = "as_of IN (" + ", ".join(f"DATE '{d.isoformat()}'" for d in dates) + ")"
    frame = spark.createDataFrame(rows, table.definition.spark_schema()).select(*table.definition.column_names)
    current = sorted(tuple(str(v) for v in r) for r in table.read().where(where).collect())
    fresh = sorted(tuple(str(v) for v in r) for r in frame.collect())
    if current != fresh:
        run = RunInfo.new(JOB, definitions_version=defs.version, lineage={
            "as_of": as_of.isoformat(), "trend_dates": ",".join(d.isoformat() for d in dates), "engine": "duckdb",
            "silver_versions": ",".join(f"{k}={v}" for k, v in sorted(versions.items()))})
        table.overwrite(frame, replace_where=where, run=run)
        report.written = True
    report.seconds["total"] = time.perf_counter() - started
    return report
