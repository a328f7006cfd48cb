"""`pdp bench edge [--persons N]`: the parse+edge stage as Spark tasks against worker processes.

What is measured: the stage production runs before linkage — every file of a synthetic
territory parsed, validated, normalised and pseudonymised, its staging parts written and its
result folded in file order (:func:`pdp.ingest.fanout.run_files`) — once as Spark tasks of a
local session (:mod:`pdp.ingest.spark_tasks`, ``PDP_EDGE_ENGINE=spark``: what a cluster runs) and
once in worker processes (``processes``, the local default), **with the same parallelism**: as
many worker processes as the session has cores. Both must give the same counts (checked). The
ratio ``spark_over_processes`` (wall seconds) says what running the edge on Spark costs where
it cannot win anything (one machine); on a cluster the Spark engine is the one that scales with
executors, the processes one cannot leave the driver's machine.

Everything happens in a throw-away directory with a fresh random master key, written to a
0600 file: the executors open the key store from it, as a node would (the key is never in the
task closure). The Spark session is warmed before timing (its start is not the edge's cost);
the first Spark tasks still pay their Python workers' imports, as a batch does.

Measured (``pdp bench edge --persons 2000 --json``, douaisis seed 5: 16 files, 45 851 records,
local[2] against 2 worker processes, 2-core machine at load average 22 with three other
engineers' test suites running): Spark tasks 51.8 s, worker processes 50.6 s, ratio 1.03 — the
same cost within the noise. At this size a territory is 16 files, so the stage's parallelism is
bounded by its largest file (one file is one task; splitting a large file into several tasks is
not done yet).
With ``--split-bytes B``, one more pair of runs: the territory's GP files concatenated into one
big NDJSON file (a national export's shape), read as Spark tasks once whole (one task) and once
split into parts of about B bytes (:mod:`pdp.ingest.split`); both must count alike (checked).
``tasks_*`` say how many tasks each run ran (a file, or a part of a file).

Measured (split: see ``big_*``) — to be filled by the run below.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PERSONS = 2_000


def _stage(settings: Any, sources: Path, staging: Path, spark: Any, workers: int) -> tuple[float, dict, int]:
    """(wall seconds, counts per file, tasks run) of the parse+edge stage over `sources`."""
    from pdp.ingest import load_registry
    from pdp.ingest.fanout import BatchContext, FileTask, run_files
    from pdp.ingest.parse import Duplicates
    from pdp.ingest.registry import discover

    registry = load_registry(settings=settings)
    tasks = [FileTask(i, spec.name, path, path.relative_to(sources).as_posix(), path.stat().st_size)
             for i, (spec, path) in enumerate(discover(sources, registry).to_parse)]
    context = BatchContext(settings, registry, sources, staging, "bench-edge", datetime.now(UTC), None)
    started = time.perf_counter()
    counts, ran = {}, 0
    for t, r in run_files(tasks, context, workers=workers, duplicates=Duplicates(), spark=spark):
        counts[(t.source, t.rel)] = r.counts
        ran += r.tasks
    return time.perf_counter() - started, counts, ran


def _big_file(sources: Path, into: Path) -> int:
    """The territory's GP exports as one NDJSON file under `into` (bytes written)."""
    (into / "gp").mkdir(parents=True)
    with (into / "gp" / "national.ndjson").open("wb") as out:
        for path in sorted((sources / "gp").glob("*.ndjson")):
            data = path.read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    return (into / "gp" / "national.ndjson").stat().st_size


def bench_edge(persons: int = PERSONS, split_bytes: int | None = None) -> dict[str, Any]:
    from pdp.bench.scratch import scratch_settings
    from pdp.lake.session import compute_cores, get_spark
    from pdp.synth import generate

    with tempfile.TemporaryDirectory(prefix="pdp-bench-edge-") as tmp:
        var = Path(tmp)
        settings = scratch_settings(var)
        if split_bytes is not None:
            settings = settings.model_copy(update={"edge_split_bytes": split_bytes})
        sources = var / "sources"
        generate(sources, persons=persons, seed=5, territory="douaisis")
        spark = get_spark(app_name="pdp-bench-edge")
        cores = compute_cores(spark)
        spark.sparkContext.parallelize(range(cores), cores).count()  # the session's start is not the edge's
        spark_s, on_spark, spark_tasks = _stage(settings, sources, var / "staging-spark", spark, 0)
        processes_s, in_processes, process_tasks = _stage(settings, sources, var / "staging-processes", None, cores)
        assert on_spark == in_processes, "the two engines must count every file alike"
        records = sum(c.records_in for c in on_spark.values())
        result: dict[str, Any] = {
            "persons": persons,
            "files": len(on_spark),
            "records": records,
            "cores": cores,
            "split_bytes": settings.edge_split_bytes,
            "spark_seconds": round(spark_s, 1),
            "spark_tasks": spark_tasks,
            "spark_records_per_s": round(records / spark_s),
            "processes": cores,
            "processes_seconds": round(processes_s, 1),
            "processes_tasks": process_tasks,
            "processes_records_per_s": round(records / processes_s),
            "spark_over_processes": round(spark_s / processes_s, 2),
        }
        if split_bytes is not None:
            big = var / "big"
            size = _big_file(sources, big)
            whole_s, whole, whole_tasks = _stage(settings.model_copy(update={"edge_split_bytes": 0}), big,
                                                 var / "staging-big-whole", spark, 0)
            split_s, split, split_tasks = _stage(settings, big, var / "staging-big-split", spark, 0)
            assert whole == split, "one big file must count alike whole and split"
            result.update({
                "big_file_bytes": size,
                "big_records": sum(c.records_in for c in whole.values()),
                "big_whole_seconds": round(whole_s, 1),
                "big_whole_tasks": whole_tasks,
                "big_split_seconds": round(split_s, 1),
                "big_split_tasks": split_tasks,
                "big_split_over_whole": round(split_s / whole_s, 2),
            })
    result["load_average"] = round(os.getloadavg()[0], 1)
    return result
