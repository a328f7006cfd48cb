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
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PERSONS = 2_000


def _stage(settings: Any, sources: Path, staging: Path, spark: Any, workers: int) -> tuple[float, dict]:
    from pdp.ingest import load_registry
    from pdp.ingest.fanout import BatchContext, FileTask, run_files
    from pdp.ingest.parse import Duplicates
    from pdp.ingest.registry import discover

    registry = load_registry(settings=settings)
    tasks = [FileTask(i, spec.name, path, path.relative_to(sources).as_posix(), path.stat().st_size)
             for i, (spec, path) in enumerate(discover(sources, registry).to_parse)]
    context = BatchContext(settings, registry, sources, staging, "bench-edge", datetime.now(UTC), None)
    started = time.perf_counter()
    counts = {(t.source, t.rel): r.counts for t, r in run_files(tasks, context, workers=workers,
                                                                  duplicates=Duplicates(), spark=spark)}
    return time.perf_counter() - started, counts


def bench_edge(persons: int = PERSONS) -> dict[str, Any]:
    from pdp.bench.scratch import scratch_settings
    from pdp.lake.session import compute_cores, get_spark
    from pdp.synth import generate

    with tempfile.TemporaryDirectory(prefix="pdp-bench-edge-") as tmp:
        var = Path(tmp)
        settings = scratch_settings(var)
        sources = var / "sources"
        generate(sources, persons=persons, seed=5, territory="douaisis")
        spark = get_spark(app_name="pdp-bench-edge")
        cores = compute_cores(spark)
        spark.sparkContext.parallelize(range(cores), cores).count()  # the session's start is not the edge's
        spark_s, on_spark = _stage(settings, sources, var / "staging-spark", spark, 0)
        processes_s, in_processes = _stage(settings, sources, var / "staging-processes", None, cores)
        assert on_spark == in_processes, "the two engines must count every file alike"
        records = sum(c.records_in for c in on_spark.values())
    return {
        "persons": persons,
        "files": len(on_spark),
        "records": records,
        "cores": cores,
        "spark_seconds": round(spark_s, 1),
        "spark_records_per_s": round(records / spark_s),
        "processes": cores,
        "processes_seconds": round(processes_s, 1),
        "processes_records_per_s": round(records / processes_s),
        "spark_over_processes": round(spark_s / processes_s, 2),
        "load_average": round(os.getloadavg()[0], 1),
    }
