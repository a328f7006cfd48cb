"""`pdp bench scaling [--persons N] [--split-bytes B]`: the edge's scaling from one to two executors.

Why: issue 14 asks for a scaling efficiency of at least 0.8 from one to two executors on the local
cluster for the ingest's edge (parse, validate, normalise, pseudonymise as Spark tasks,
:mod:`pdp.ingest.spark_tasks`) — the part of the ingest meant to grow with a cluster's executors.

What is measured: the stage :mod:`pdp.bench.edge` times (:func:`pdp.bench.edge.edge_stage`, the
path production takes on a cluster master), on the same synthetic territory and throw-away var/
(fresh master key in a 0600 file, which the executors open), against a standalone cluster of two
workers of one core each started by the project's script (:mod:`pdp.lake.local_cluster`: its own
run dir and free ports; stopped at the end whatever happens). Each round runs it with a session
limited to one executor of one core (``spark.cores.max=1``), then with two executors of one core
each (``spark.cores.max=2``); each session is started afresh, waits for its executors and is warmed
by a tiny job, so neither JVM nor executor start-up is timed (the first tasks still pay their Python
workers' imports, as a batch does). Rounds: ``PDP_BENCH_SCALING_ROUNDS`` (2); the best of each is
the figure, every run must count every file alike (checked), and each round's efficiency is
printed too. Efficiency = T(1) / (2 × T(2)); the goal is 0.8.

The territory is split finely (``--split-bytes``, 2 MiB by default, not the edge's 64 MiB) so the
stage is many more tasks than cores: with a few big files, the biggest would bound the wall time
and the figure would measure the long tail, not the scaling. The tasks each executor finished
(from its log in the worker's work dir) are printed per run: the two-executor run must show two.

Caveat, printed with the figures (``caveat``) whenever the machine has fewer cores than executors
plus one: the driver (which opens every sealed result, folds the files and writes nothing else
here) and the two executors then share the cores, as do other people's jobs on a shared machine.

Also printed per run: the tasks' CPU seconds (summed over the executors) and the cores they got
(that CPU over the wall time), and the driver's Python CPU (opening the sealed results, folding):
they tell work that grew from cores that were not there.

Measured on 2026-12-06, ``PDP_SPARK_DRIVER_MEMORY=3g pdp bench scaling --json`` (3 000 persons,
douaisis seed 5: 16 files, 68 716 records, 28 tasks at 2 MiB), on the 2-core machine shared with
the lead engineer's jobs (a Spark JVM of theirs at ~105 % CPU throughout; ``uptime`` load average
5.6 at the start, 4.6 at the end), best of 2 rounds:

- one executor 24.9 s (runs 27.6, 24.9; 2 764 records/s; tasks 21.2 CPU-s, 0.85 cores used);
- two executors 20.6 s (runs 20.6, 23.4; 3 330 records/s; tasks 17 and 11 per executor,
  22.5 CPU-s, 1.09 cores used); driver 0.2 CPU-s per run;
- **efficiency 0.60** (rounds 0.67, 0.53): **goal 0.8 not met here**. Three more runs that hour,
  at load 3.4-11: 0.63, 0.64, 0.54; and ``pdp bench scaling`` once more at 04:52-04:55 UTC, load
  5.4 then 4.6: 26.8 against 22.2 s, 0.60 (rounds 0.59, 0.61), tasks 28 / 15 + 13, tasks' CPU
  21.0 / 22.3 s, cores used 0.78 / 1.00.

The work did not grow with the second executor (tasks' CPU 21.2 against 22.5 s, +6 %); the two
executors together got 1.09 cores of the machine's 2 (the one executor alone 0.85), the rest going
to the other processes (the lead's JVM, about one core; the driver; the Spark daemons).

On the quiet machine (2026-12-06 05:11-05:13 UTC, nothing else running, load average 0.03 at the
start, 2.4 at the end), the same ``PDP_SPARK_DRIVER_MEMORY=3g pdp bench scaling --json``: one
executor 24.2 s (runs 24.5, 24.2; 2 844 records/s; tasks 21.2 CPU-s, 0.88 cores used), two
executors 16.5 s (runs 16.9, 16.5; 4 160 records/s; 15 + 13 tasks; 21.3 CPU-s, 1.29 cores used):
**efficiency 0.73** (both rounds), **goal 0.8 not met here**. The tasks' CPU is the same with one
executor or two: the work does not grow, the two executors got 1.29 of the 2 cores (the driver's,
the master's, the two workers' and the two executors' JVMs and the Python workers share them). So here the figure
measures mostly this machine's free cores, not the edge: the issue's 0.8 is to be measured on a
machine with at least three idle cores (two executors and the driver), where the caveat is empty.
``--split-bytes`` changes the grain. At 300 persons (16 tasks, 7 982 records, one round, load
average 10) a task's fixed cost (its runner and key store, its Python worker's imports) outweighs
its records: one executor 28.0 s, two 25.1 s, 0.56 — too small to say anything.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.bench import setting

if TYPE_CHECKING:
    from pdp.lake.local_cluster import LocalCluster

PERSONS = 3_000
SPLIT_BYTES = 2 << 20
GOAL = 0.8
EXECUTORS = 2  # the "from one to two executors"
_HOST = "127.0.0.1"
_EXECUTOR_WAIT_S = 120


@dataclass(frozen=True)
class Run:
    executors: int
    seconds: float
    counts: dict  # per file, as :func:`pdp.bench.edge.edge_stage` gives them
    tasks: int
    per_executor: tuple[int, ...]  # tasks each executor finished in the timed stage, most first
    tasks_cpu_seconds: float  # CPU time of the tasks on the executors, summed
    driver_cpu_seconds: float  # the driver's Python (opening the sealed results, folding the files)


def efficiency(one: float, many: float, executors: int) -> float:
    """Scaling efficiency: the speed-up T(1) / T(n) over the n executors it took."""
    return one / (executors * many)


def caveat(executors: int, cpus: int | None) -> str | None:
    """Why the figure may understate the scaling, or None when every executor and the driver can
    have a core of their own."""
    if cpus is not None and cpus >= executors + 1:
        return None
    return (f"{cpus or 'unknown'} cores for {executors} executors and the driver: they share the cores "
            f"(and with any other job on this machine), so the {executors} executors cannot each have a free core")


def bench_scaling(persons: int = PERSONS, split_bytes: int | None = None) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    from pdp.bench.edge import synthetic_territory
    from pdp.lake.local_cluster import local_cluster

    rounds = setting("PDP_BENCH_SCALING_ROUNDS", 2)
    # `pdp bench all` runs every bench in one process and the earlier ones leave their local session
    # open: this one needs sessions on its own cluster, so it ends that one (the next bench's
    # get_spark starts a new one).
    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()
    runs: dict[int, list[Run]] = {1: [], EXECUTORS: []}
    with tempfile.TemporaryDirectory(prefix="pdp-bench-scaling-") as tmp:
        var = Path(tmp)
        settings, sources = synthetic_territory(var, persons, split_bytes or SPLIT_BYTES)
        with local_cluster(var / "spark-cluster", workers=EXECUTORS, cores=1) as cluster:
            settings = settings.model_copy(update={"spark_master": cluster.master})
            for r in range(rounds):
                for executors in runs:
                    staging = var / f"staging-{r}-{executors}"
                    runs[executors].append(_run(settings, sources, staging, cluster, executors))
    return _figures(persons, settings.edge_split_bytes, runs)


def _run(settings: Any, sources: Path, staging: Path, cluster: LocalCluster, executors: int) -> Run:
    """The edge stage once, on a fresh session of `executors` executors of one core each."""
    from pdp.bench.edge import edge_stage
    from pdp.lake.session import get_spark

    spark = get_spark(settings, app_name=f"pdp-bench-scaling-{executors}", conf={
        "spark.cores.max": str(executors),
        "spark.executor.cores": "1",
        # one machine, loopback only: the driver binds where the workers listen
        "spark.driver.host": _HOST,
        "spark.driver.bindAddress": _HOST,
    })
    if spark.sparkContext.master != settings.spark_master:  # getOrCreate kept a session of this process: not ours
        raise RuntimeError(f"a Spark session on {spark.sparkContext.master} already runs in this process: "
                           "pdp bench scaling needs its own (run it as a command of its own)")
    try:
        _await_executors(spark, executors)
        spark.sparkContext.parallelize(range(executors), executors).count()  # start-up is not the edge's
        app = spark.sparkContext.applicationId
        before = _finished_since(cluster, app, Counter(), executors)  # the warm-up's tasks, once logged
        cpu = time.process_time()
        seconds, counts, tasks, tasks_cpu = edge_stage(settings, sources, staging, spark, 0)
        cpu = time.process_time() - cpu
        done = _finished_since(cluster, app, before, tasks)
    finally:
        spark.stop()
    return Run(executors, seconds, counts, tasks, tuple(sorted(done.values(), reverse=True)), tasks_cpu, cpu)


def _await_executors(spark: Any, executors: int) -> None:
    """Until the session has `executors` executors registered (they start after the session)."""
    from pdp.lake.local_cluster import ClusterError

    deadline = time.monotonic() + _EXECUTOR_WAIT_S
    while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1 < executors:  # the driver is one
        if time.monotonic() > deadline:
            raise ClusterError(f"the local Spark cluster gave fewer than {executors} executors in {_EXECUTOR_WAIT_S}s")
        time.sleep(0.2)


def _finished_since(cluster: LocalCluster, app: str, before: Counter[str], tasks: int) -> Counter[str]:
    """Tasks each executor of `app` finished since `before`, once the logs show `tasks` of them (the
    workers copy the executors' stderr to the log a moment after the task ends; 10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        done = cluster.finished_tasks(app) - before
        if sum(done.values()) >= tasks or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


def _figures(persons: int, split_bytes: int, runs: dict[int, list[Run]]) -> dict[str, Any]:
    every = [run for kind in runs.values() for run in kind]
    if any(run.counts != every[0].counts or run.tasks != every[0].tasks for run in every):
        raise RuntimeError("the edge counted differently from one run to another")
    one, many = (min(runs[n], key=lambda run: run.seconds) for n in (1, EXECUTORS))
    records = sum(c.records_in for c in one.counts.values())
    cpus = os.cpu_count()
    return {
        "persons": persons,
        "files": len(one.counts),
        "records": records,
        "tasks": one.tasks,
        "split_bytes": split_bytes,
        "rounds": len(runs[1]),
        "one_executor_seconds": round(one.seconds, 1),
        "one_executor_runs_seconds": [round(run.seconds, 1) for run in runs[1]],
        "one_executor_records_per_s": round(records / one.seconds),
        "one_executor_tasks_per_executor": list(one.per_executor),
        "one_executor_tasks_cpu_seconds": round(one.tasks_cpu_seconds, 1),
        "one_executor_cores_used": round(one.tasks_cpu_seconds / one.seconds, 2),
        "one_executor_driver_cpu_seconds": round(one.driver_cpu_seconds, 1),
        "two_executors_seconds": round(many.seconds, 1),
        "two_executors_runs_seconds": [round(run.seconds, 1) for run in runs[EXECUTORS]],
        "two_executors_records_per_s": round(records / many.seconds),
        "two_executors_tasks_per_executor": list(many.per_executor),
        "two_executors_tasks_cpu_seconds": round(many.tasks_cpu_seconds, 1),
        "two_executors_cores_used": round(many.tasks_cpu_seconds / many.seconds, 2),
        "two_executors_driver_cpu_seconds": round(many.driver_cpu_seconds, 1),
        "efficiency": round(efficiency(one.seconds, many.seconds, EXECUTORS), 2),
        "efficiency_per_round": [round(efficiency(a.seconds, b.seconds, EXECUTORS), 2)
                                 for a, b in zip(runs[1], runs[EXECUTORS], strict=True)],
        "goal": GOAL,
        "meets_goal": efficiency(one.seconds, many.seconds, EXECUTORS) >= GOAL,
        "cpu_count": cpus,
        "load_average": round(os.getloadavg()[0], 1),
        "caveat": caveat(EXECUTORS, cpus),
    }
