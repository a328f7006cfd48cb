"""The one way to get a Spark session with Delta Lake.

Local mode by default (`local[*]`, sized for a 2-core / 24 GiB box); a cluster master is a
setting (`PDP_SPARK_MASTER`). Quiet logs, no UI and small shuffles by default, because
most of our jobs run on a single machine and Spark's defaults are tuned for clusters.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.config import Settings, get_settings
from pdp.lake.jars import spark_jars_setting

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Schema changes must be explicit (catalog migrations), never a side effect of a write.
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    # VACUUM below 7 days is refused unless a maintenance job lowers it on purpose.
    "spark.databricks.delta.retentionDurationCheck.enabled": "true",
}


def spark_log_path(settings: Settings | None = None) -> Path:
    """The file where Spark's JVM writes its log (besides stderr): var/logs/spark.log."""
    s = settings or get_settings()
    path = (s.var_dir / "logs" / "spark.log").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# The throughput collector: our jobs are batches, not latency-bound services. G1's concurrent
# marking cost the 1 M-person gold build ~18 CPU-s of its 2 cores (wall 121 -> 106 s with this
# flag, same run otherwise; see pdp/bench/gold.py).
_GC = "-XX:+UseParallelGC"
# Tried for a batch's fixed cost and not kept (2026-12-08, ad hoc, warm JVM, a 120-person territory's
# 3 494 records into a fresh lake, silver ~43-52 s of a 52-58 s ingest with both cores busy, C2
# compiling ~40 % of a core): C1 only (-XX:TieredStopAtLevel=1) 74-83 s, whole-stage codegen off
# 43-52 s, AQE off 38-42 s (noise); interpreted expressions (codegen factoryMode NO_CODEGEN) break
# spark.catalog (EXPRESSION_DECODING_FAILED on catalog.Table), 9 test errors.


def spark_conf(settings: Settings | None = None, app_name: str = "pdp") -> dict[str, str]:
    """Every Spark setting we set, as plain strings (also used to document and test them)."""
    s = settings or get_settings()
    conf = {
        "spark.app.name": app_name,
        "spark.master": s.spark_master,
        "spark.jars": spark_jars_setting(),
        "spark.driver.memory": s.spark_driver_memory,
        "spark.sql.shuffle.partitions": str(s.spark_shuffle_partitions),
        # Delta rebuilds a table snapshot in 50 tasks by default: on 2 cores that doubles every
        # small operation (measured 130 s -> 59 s on the lake tests with 8). Our logs are
        # checkpointed and small: one task (the 1 M-person gold build, whose six writes each
        # rebuild snapshots, 107.5 -> 94.0 s against 8).
        "spark.databricks.delta.snapshotPartitions": str(s.spark_delta_snapshot_partitions),
        "spark.default.parallelism": str(max(2, s.spark_shuffle_partitions)),
        # A join may reuse its sides' partitioning when it is on a subset of the join keys (say,
        # person_id of a join on person_id and criterion): the gold build distributes its facts
        # by person once and then joins, windows and aggregates per person without a new shuffle.
        "spark.sql.requireAllClusterKeysForCoPartition": "false",
        "spark.ui.enabled": str(s.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "Europe/Paris",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Bigger Arrow batches for the Python paths (pseudonymisation): fewer round trips.
        "spark.sql.execution.arrow.maxRecordsPerBatch": "50000",
        "spark.sql.warehouse.dir": str((s.var_dir / "spark-warehouse").resolve()),
        # Shuffle files, spills, disk-stored cache and checkpoint blocks, and PySpark's broadcast
        # and parallelize transfers encrypted (AES-CTR, a key per application): the edge's Spark
        # linkage (pdp.pseudonym.linkage_spark) shuffles identities. A SparkContext setting — it
        # cannot be set per session — so every session has it: one SparkContext per process, and
        # the lake jobs sharing it pay a few percent of shuffle CPU (measured with the linkage bench).
        "spark.io.encryption.enabled": "true",
        "spark.driver.extraJavaOptions": " ".join(
            [
                f"-Dderby.system.home={(s.var_dir / 'derby').resolve()}",
                f"-Dlog4j2.configurationFile={resources.files('pdp.lake').joinpath('log4j2.properties')}",
                f"-Dpdp.spark.log={spark_log_path(s)}",
                _GC,
            ]
        ),
        # On a cluster the executors run the tasks, in JVMs of their own: the same collector there
        # (in local mode the driver's JVM is the executor and this is not read).
        "spark.executor.extraJavaOptions": _GC,
        **_DELTA_CONF,
    }
    return conf


def get_spark(settings: Settings | None = None, app_name: str = "pdp", *,
              conf: Mapping[str, str] | None = None) -> SparkSession:
    """Return the process's Spark session, creating it once with Delta configured; `conf`: settings
    over :func:`spark_conf`'s for the session created here (say ``spark.cores.max``: a benchmark's
    executors)."""
    from pyspark.sql import SparkSession

    s = settings or get_settings()
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    # Python workers run this interpreter (the project's venv), not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in {**spark_conf(s, app_name), **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(s.spark_log_level)
    return spark


def compute_cores(spark: SparkSession, *, settle_s: float = 3.0, wait_s: float = 60.0) -> int:
    """Cores the session computes on: local[N] → N, local[*] → the machine's, else spark.cores.max,
    else the cores of the cluster's executors, else the default parallelism (which
    :func:`spark_conf` sets from the shuffle partitions, not from the cores).

    Why it may wait: a cluster's executors register after the session starts, one by one, so a
    count taken at once reads whichever have come (a 300 000-person `pdp bench ingest` printed its
    figure over 1 core of 2). On a cluster (a scheduler backend that counts executors: standalone,
    Kubernetes, YARN) it waits, at most `wait_s` seconds: for ``spark.executor.instances`` ×
    ``spark.executor.cores`` where they are set (Kubernetes, YARN); otherwise (standalone, which
    does not say how many executors will come) until the count is above zero and has not changed
    for `settle_s` seconds. That last one is a heuristic: an executor registering later than that
    after the previous one is missed, so benchmarks count once their work has run as well. Local
    mode never waits. Benchmarks report throughput per core with it and size their inputs by it.
    """
    master = spark.sparkContext.master
    if master.startswith("local"):
        inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
        count = inside.split(",")[0]
        return os.cpu_count() or 1 if count == "*" else max(1, int(count))
    configured = spark.conf.get("spark.cores.max", None)
    if configured:
        return int(configured)
    seen = _executor_cores(spark)
    if seen is None:
        return spark.sparkContext.defaultParallelism
    instances = spark.conf.get("spark.executor.instances", None)
    expected = int(instances) * int(spark.conf.get("spark.executor.cores", "1")) if instances else None
    start = changed = time.monotonic()
    while time.monotonic() - start < wait_s:
        if expected is not None and seen >= expected:
            break
        if expected is None and seen > 0 and time.monotonic() - changed >= settle_s:
            break
        time.sleep(0.25)
        now = _executor_cores(spark) or 0
        if now != seen:
            seen, changed = now, time.monotonic()
    return seen if seen > 0 else spark.sparkContext.defaultParallelism


def _executor_cores(spark: SparkSession) -> int | None:
    """The cores of the executors registered now; None where the scheduler backend does not count them."""
    try:  # CoarseGrainedSchedulerBackend (standalone, Kubernetes, YARN)
        total = spark.sparkContext._jsc.sc().schedulerBackend().totalCoreCount()  # type: ignore[union-attr]
    except Exception:
        return None
    return int(total) if isinstance(total, int) else None
