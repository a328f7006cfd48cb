"""`pdp bench increment`: a territory's full ingest, then a day of lab results, and what each costs in silver.

Why this benchmark: issue 14 asks that a small daily increment cost seconds in silver, and that
its MERGEs and person refreshes read only the files of the persons it brings. The figures come
from the run itself:

- ``silver_seconds`` of the full ingest and of the increment (the ingest report's silver stage);
- per lake table, the data files the increment's Spark scans read (Spark's SQL metric "number
  of files read" of every file scan, from the session's SQL status store; scans of ``_delta_log``
  are left out) and the files its Delta commits added and removed (``operationMetrics`` of the
  commits carrying the increment's run id);
- Spark SQL executions and Delta commits of the increment (the fixed cost per batch).

Data: ``pdp synth --persons N --seed 1 --territory douaisis``; the increment is the
`INCREMENT_MESSAGES` most recent HL7 lab messages (by MSH-7), taken out of the lab files before
the full ingest and dropped as one new file ``labs/<finess>-day.hl7`` afterwards — results of
persons the lake already knows, as a daily lab feed brings. Everything runs in a throw-away
directory with a fresh random master key.

Reference: the full ingest's silver time in the same run (the increment's silver seconds over
the full batch's: what a small batch still pays of a big one).

Measured (``pdp bench increment --persons 2000 --json``, load average 16-20 from other jobs):
increment silver 117.6 s before the person-bucket layout, 57.8 s after; the table with files read
and rewritten is in :mod:`pdp.lake.layout`. ``PDP_BENCH_INCREMENT_KEEP=DIR`` keeps the lake there.
2026-12-05, quiet machine (load 2.0-3.2, nothing else running), the silver figure mended (it read a
stage the one pipeline had renamed, so it printed 0.0): with Delta's snapshots rebuilt in 8 tasks
then in 1 (``PDP_SPARK_DELTA_SNAPSHOT_PARTITIONS``), 2 000 persons: increment 15.9 → 13.5 s, its
silver events stage 10.9 → 8.8 s, the full ingest 78.0 → 63.6 s. Then, ``--persons 2000``: full
ingest 66.2 s (46 316 records, silver 35.3 s), increment 13.1 s (silver **8.3 s**, 0.235 of the
full batch's); ``--persons 20000``: full 144.9 s (433 338 records, silver 53.2 s), increment 15.1 s
(silver **9.2 s**, 0.172); 76 SQL executions and 5 Delta commits per increment at both sizes.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pdp.bench import setting

PERSONS = 2_000
INCREMENT_MESSAGES = 20

_LOCATION = re.compile(r"Location: (\w+)\(\d+ paths?\)\[([^,\]]+)")


def split_lab_day(sources: Path, messages: int = INCREMENT_MESSAGES) -> Path:
    """Move the `messages` most recent ORU messages of ``sources/labs/*.hl7`` into one new batch
    file (returned, outside `sources`), rewriting the lab files without them (trailer counts kept right)."""
    parsed: list[tuple[str, Path, str, list[str], list[str]]] = []  # (MSH-7, file, header lines...)
    headers: dict[Path, tuple[list[str], list[str]]] = {}
    for path in sorted((sources / "labs").glob("*.hl7")):
        segments = path.read_text(encoding="latin-1").replace("\n", "\r").split("\r")
        head = [s for s in segments if s.startswith(("FHS", "BHS"))]
        current: list[str] | None = None
        for segment in segments:
            if segment.startswith("MSH"):
                current = [segment]
                parsed.append((segment.split("|")[6], path, segment, current, head))
            elif segment.startswith(("BTS", "FTS", "FHS", "BHS")) or not segment:
                current = None
            elif current is not None:
                current.append(segment)
        headers[path] = (head, [])
    parsed.sort(key=lambda m: m[0])
    taken = parsed[-messages:]
    kept_ids = {id(m[3]) for m in parsed[:-messages]}
    for path, (head, _) in headers.items():
        body = [seg for m in parsed if m[1] == path and id(m[3]) in kept_ids for seg in m[3]]
        count = sum(1 for m in parsed if m[1] == path and id(m[3]) in kept_ids)
        path.write_text("\r".join([*head, *body, f"BTS|{count}", "FTS|1"]) + "\r", encoding="latin-1")
    first = taken[0][1]
    head = [h.replace(first.name, f"{first.stem}-day.hl7") for h in headers[first][0]]
    out = sources.parent / "increment" / "labs" / f"{first.stem}-day.hl7"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = [seg for m in taken for seg in m[3]]
    out.write_text("\r".join([*head, *body, f"BTS|{len(taken)}", "FTS|1"]) + "\r", encoding="latin-1")
    return out


class ScanMeter:
    """Data files read by the session's file scans since it was made, per table path (from the SQL status store)."""

    def __init__(self, spark: Any) -> None:
        self._store = spark._jsparkSession.sharedState().statusStore()
        self._start = max(self._ids(), default=-1)

    def _ids(self) -> set[int]:
        executions = self._store.executionsList()
        return {int(executions.apply(i).executionId()) for i in range(executions.size())}

    def _new(self) -> list[int]:
        return sorted(i for i in self._ids() if i > self._start)

    def executions(self) -> int:
        return len(self._new())

    def files_read(self) -> dict[str, tuple[int, int]]:
        """Per table path: (data files read, bytes of them)."""
        read: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for execution in self._new():
            values = self._store.executionMetrics(execution)
            nodes = self._store.planGraph(execution).allNodes()
            for i in range(nodes.size()):
                node = nodes.apply(i)
                found = _LOCATION.search(node.desc() or "")
                if not node.name().startswith("Scan") or not found or found.group(1) == "DeltaLogFileIndex":
                    continue
                metrics = node.metrics()
                for j in range(metrics.size()):
                    metric = metrics.apply(j)
                    slot = {"number of files read": 0, "size of files read": 1}.get(metric.name())
                    value = values.get(metric.accumulatorId()) if slot is not None else None
                    if value is not None and value.isDefined():
                        read[found.group(2)][slot] += _number(str(value.get()))
        return {path: (files, size) for path, (files, size) in read.items()}


_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _number(text: str) -> int:
    """A SQL metric's value as Spark prints it ("12", "1,234", "3.4 MiB"); a size metric may print
    "total (min, med, max ...)" lines, whose first figure is the total."""
    first = text.strip().splitlines()[-1] if "\n" in text.strip() else text.strip()
    parts = first.replace(",", "").split()
    value = float(parts[0])
    unit = parts[1] if len(parts) > 1 else "B"
    return int(value * _UNITS.get(unit, 1))


def _table_name(path: str, lake: Path) -> str:
    local = path.removeprefix("file:")
    root = str(lake.resolve())
    if not local.startswith(root):
        return "staging"  # the batch's staged Parquet parts
    name = local.removeprefix(root).strip("/").replace("/", ".")
    if name.endswith("..."):  # Spark shortens long locations in plan descriptions
        from pdp.lake import load_catalog

        found = [t for t in load_catalog().names() if t.startswith(name.removesuffix("..."))]
        name = found[0] if len(found) == 1 else name
    return name


def _commits(spark: Any, lake: Path, run_id: str) -> dict[str, dict[str, int]]:
    """Per table, the Delta commits of `run_id` and the files they added and removed."""
    from pdp.lake import LakeTable, load_catalog

    out: dict[str, dict[str, int]] = {}
    for definition in load_catalog():
        table = LakeTable(spark, definition, lake_root=str(lake))
        if not table.exists():
            continue
        mine = [c for c in table.history(limit=30) if c.run is not None and c.run.run_id == run_id]
        if not mine:
            continue
        out[definition.qualified_name] = {
            "commits": len(mine),
            "files_added": sum(int(c.metrics.get("numTargetFilesAdded", c.metrics.get("numFiles", 0))) for c in mine),
            "files_removed": sum(int(c.metrics.get("numTargetFilesRemoved", c.metrics.get("numRemovedFiles", 0)))
                                 for c in mine),
            "rows_copied": sum(int(c.metrics.get("numTargetRowsCopied", 0)) for c in mine),
        }
    return out


def _data_files(spark: Any, lake: Path) -> dict[str, int]:
    """Data files of each bronze and silver table's current version (DESCRIBE DETAIL numFiles)."""
    from pdp.lake import LakeTable, load_catalog

    out = {}
    for definition in load_catalog():
        table = LakeTable(spark, definition, lake_root=str(lake))
        if definition.zone in ("bronze", "silver") and table.exists():
            path = table.path.replace("`", "``")
            out[definition.qualified_name] = int(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["numFiles"])
    return out


def bench_increment(persons: int | None = None) -> dict[str, Any]:
    from pdp.bench.scratch import scratch_settings
    from pdp.ingest.pipeline import ingest_directory
    from pdp.lake.session import get_spark
    from pdp.synth import generate

    persons = persons or setting("PDP_BENCH_INCREMENT_PERSONS", PERSONS)
    keep = os.environ.get("PDP_BENCH_INCREMENT_KEEP")  # a directory to keep the lake in (inspection)
    tmp = keep or tempfile.mkdtemp(prefix="pdp-bench-increment-")
    try:
        var = Path(tmp)
        settings = scratch_settings(var)
        sources = var / "sources"
        generate(sources, persons=persons, seed=1, territory="douaisis")
        day = split_lab_day(sources)
        spark = get_spark(app_name="pdp-bench-increment")
        start = time.perf_counter()
        full = ingest_directory(sources, spark=spark, settings=settings)
        full_seconds = time.perf_counter() - start
        shutil.copy(day, sources / "labs" / day.name)
        meter = ScanMeter(spark)
        start = time.perf_counter()
        increment = ingest_directory(sources, spark=spark, settings=settings)
        increment_seconds = time.perf_counter() - start
        lake = var / "lake"
        scans = meter.files_read()
        read = {_table_name(path, lake): n for path, (n, _) in scans.items()}
        read_bytes = {_table_name(path, lake): b for path, (_, b) in scans.items()}
        executions = meter.executions()
        commits = _commits(spark, lake, increment.batch_id)
        files = _data_files(spark, lake)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    # the silver stages of the report (events, then people): one "silver" stage before the one pipeline
    full_silver = sum(v for k, v in full.seconds.items() if k.startswith("silver"))
    inc_silver = sum(v for k, v in increment.seconds.items() if k.startswith("silver"))
    silver_read = sum(n for name, n in read.items() if name.startswith(("silver.", "bronze.")))
    return {
        "persons": persons,
        "full_records": full.totals()[0],
        "full_seconds": round(full_seconds, 1),
        "full_silver_seconds": round(full_silver, 1),
        "increment_messages": INCREMENT_MESSAGES,
        "increment_records": increment.totals()[0],
        "increment_persons": increment.silver.get("person", 0),
        "increment_seconds": round(increment_seconds, 1),
        "increment_silver_seconds": round(inc_silver, 1),
        "increment_stage_seconds": increment.seconds,
        "increment_sql_executions": executions,
        "increment_delta_commits": sum(c["commits"] for c in commits.values()),
        "increment_files_read": read,
        "increment_files_read_bronze_silver": silver_read,
        "increment_bytes_read": read_bytes,
        "increment_bytes_read_bronze_silver": sum(b for name, b in read_bytes.items()
                                                  if name.startswith(("silver.", "bronze."))),
        "increment_commits": commits,
        "table_data_files": files,
        "ratio_increment_vs_full_silver": round(inc_silver / full_silver, 3) if full_silver else None,
        "load_average": round(os.getloadavg()[0], 1),
    }
