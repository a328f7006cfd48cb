"""`pdp bench ingest`: a synthetic territory through the edge into silver, end to end, against its goals.

Prints records/s per core end to end and per stage, each stage's share of the wall time, the
share spent keying pseudonyms, and the driver's peak memory (the Python process and, in local
mode, the JVM that holds Spark's driver and executors). Everything happens in a throw-away
directory with a fresh random master key. The territory is generated in a process of its own
(since 2026-12-07; the generator's peak was the driver's before), so the Python peak is the ingest's.

Reference, measured in the same run: the parse stage alone (the parsers over the same files, no
edge, no lake) **with the same parallelism** as the ingest's parse+edge stage — the same number
of worker processes, spawned the same way, or, when the ingest parsed as Spark tasks (a cluster),
Spark tasks of the same session on the same executors; the same tasks in the same order — so the ratio says what the
edge and the lake cost on top of reading the formats, not what the workers win (a one-process
reference flattered the ratio by the worker count).

Goals (issue 14), printed beside the figures: ≥ 10 000 records/s per core end to end, and a
driver peak ≤ 4 GiB at 1 M persons whatever the population size.

`pdp bench ingest --persons N` (or ``PDP_BENCH_INGEST_PERSONS``; default 300 000) sets the
territory size; ``PDP_BENCH_INGEST_WORKERS`` the parse+edge worker processes (default: one per
core; 0: in-process). The pseudonymisation share is its core-seconds (summed over the worker
processes) over the core-seconds of the run (wall seconds × cores).

Measured (``pdp bench ingest --persons 2000``: 22 964 records, local[2], load average 6.7 with
other jobs running): **46 records/s per core end to end against the goal of 10 000** (×217
short); wall 248 s, of which silver 51 %, bronze 18 %, parse+edge 15 % (2 workers; 1 457
records per CPU-second), log 1 %, linkage and vault under 1 % each; the parse-only reference
with the same 2 workers read 1 861 records/s (ratio 0.05). Driver peak 3.37 GiB (Python 0.29,
JVM 3.16 — the JVM's resident size follows ``spark.driver.memory``, not the data, at this
size). At this size the time is Spark's per-job and per-commit cost, not the records: the
figure says the silver and bronze stages must stop growing with the number of tables and
commits before the per-core goal can be approached (issue 14).

Measured 2026-12-06 (``pdp bench ingest --persons 100000 --json``: 1 888 618 records, local[2],
SQLite governance store as the embedded default, quiet machine, load average 1.2-2.5, nothing
else running), three runs, the code changing between them:

| run | s | rec/s/core | parse+edge s (CPU-s) | silver | bronze | vault | linkage | reference rec/s | ratio |
|--|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| reference on whole files | 533.6 | 1 770 | 280.1 (449.0) | 133.0 | 47.3 | 42.7 | 19.7 | 8 487 | 0.417 |
| reference on the ingest's units | 495.0 | 1 908 | 272.9 (444.3) | 111.2 | 41.2 | 40.3 | 18.5 | 8 868 | 0.430 |
| tasks started by bytes read | 470.7 | **2 006** | 244.8 (472.9) | 111.7 | 42.3 | 39.8 | 21.2 | 10 108 | 0.397 |

The last change (:func:`pdp.ingest.fanout.longest_first`) started the reports' index first: the
stage used 1.93 cores on average, 1.63 before. **Goal (10 000 records/s per core) not met: ×5
short**; the parsers alone read 10 108 records/s on 2 cores (5 054 per core), so the goal is out
of reach of these Python parsers whatever the rest costs. Driver peak 7.29 GiB against the goal of
4: Python 0.90 GiB (the batch's identities, folded for linkage: it grows with the batch), the JVM
6.4 GiB (local mode: driver and executors in one JVM, its resident size follows
``spark.driver.memory``, 6g by default, not the data).

Measured 2026-12-06 again, after a batch's identities could be staged and folded on Spark
(:mod:`pdp.ingest.identity_stage`), the same command twice on the same code, quiet machine
(load average 1.5-1.6 at the end), nothing else running:

| ``PDP_EDGE_IDENTITIES`` | s | rec/s/core | parse+edge | identities | linkage | vault | driver Python peak | JVM |
|--|--:|--:|--:|--:|--:|--:|--:|--:|
| ``auto`` (staged: 1.1 GB of input) | 508.3 | 1 858 | 244.5 | 17.0 | 14.3 | 50.1 | **692 MiB** | 6 549 MiB |
| ``driver`` (the in-memory fold) | 546.5 | 1 728 | 275.0 | — | 22.4 | 46.4 | 908 MiB | 6 618 MiB |

Staged, the vault records are no longer in the driver (−216 MiB here); what remains is the
canonical identities linkage takes and the in-memory linkage itself (below
``PDP_LINKAGE_SPARK_MIN_IDENTITIES``). The fold's own cost is its 17 s stage; the other stages
moved by the machine's noise (parse+edge, which did not change, by 30 s).

Then linked on Spark from the staged identities (``PDP_LINKAGE_ENGINE=spark``: the batch's
blocking keys, opposition tokens and linkage computed on the executors; the fold's output kept for
its ordered write), the same command, load 1.5: 555.0 s, 1 702 rec/s/core; identities 11.0 s,
linkage 77.8 s, vault 50.9 s; driver Python peak **518.6 MiB**, JVM 6 926 MiB (in local mode the
JVM holds the executors); parse-only reference 9 860 records/s (ratio 0.345).

The same on the local standalone cluster (``infra/spark/start-local-cluster.sh``: two workers of
one core and 2 GiB; ``PDP_SPARK_MASTER=spark://127.0.0.1:7177 PDP_SPARK_DRIVER_MEMORY=2g
PDP_LINKAGE_ENGINE=spark``, load ~1-4 from the run itself): the edge as Spark tasks, the batch's
identities staged, folded and linked on the executors. 612.0 s; **driver peak 1.83 GiB** (Python
549 MiB, JVM 1 328 MiB: the executors are JVMs of their own there) against the goal of 4 GiB at
1 M persons; 1 543 records/s per core of the cluster's 2 (that run printed 386 over "8 cores":
:func:`pdp.lake.session.compute_cores` read the default parallelism then, the executors' cores
now). Its parse-only reference ran in one process then (5 435/s); it now runs as Spark tasks on
the same executors, like the ingest's parse.

Then with the duplicate check across files on Spark (:mod:`pdp.ingest.staged_duplicates`) and
the vault's writes made ready on the executors (:func:`pdp.ingest.identity_stage.prepare_vault`),
the same local[2] command on a quiet machine (load 1.6, 2026-12-06 19:10-19:25): 546.3 s, 1 728
rec/s/core; vault 56.0 s (50.9 before, the driver sealing: on 2 cores the executors' preparing
costs what the writer saves; ``pdp bench vault`` measures the writer alone, ×3.0), linkage 72.7,
silver 116.7; driver Python peak 570.7 MiB (518.6 before: the prepared chunks, see
:mod:`pdp.ingest.identity_stage`), JVM 7 039 MiB; parse-only reference 9 004/s (ratio 0.384).

The same code on the local cluster at 300 000 persons (2026-12-06 20:43-21:26, workers of one core
and 4 GiB, ``SPARK_EXECUTOR_MEMORY=3g``, otherwise the cluster command above; load ~2, an ad hoc
lab job beside it for its first minutes): 5 762 476 records in 1 675.2 s, **1 720 records/s per core
of the cluster's 2** (the run printed 3 440 over 1 core: the executors had not all registered when
the bench counted the cores; it now counts them after the ingest, and ``compute_cores`` waits until
the executors' count settles). Stages: parse+edge 838.7 s,
silver 268.3, linkage 226.9, vault 182.8, bronze 106.5. **Driver peak 2.03 GiB** (Python 787 MiB,
JVM 1 290 MiB) against 1.83 at 100 000: the Python side grows ~1.2 KB per person of the batch
(extrapolated, not measured: ~2.9 GiB at 1 M). Largest other processes (``ps`` every 2 s): an
executor JVM 4 125 MiB, a Python worker 888 MiB. Parse-only reference as Spark tasks 10 517/s (ratio
0.327).

Where the parsers' time goes: the reference also prints, per source, its outcomes and the CPU
seconds its parse took (``reference_parse_only_by_source``). ``pdp bench ingest --persons 20000
--json`` (2026-12-07 00:23-00:28, 433 358 records, local[2], two worker processes, load 1.9, after
the reports' documents were de-identified in batches): the FHIR GP records 55.7 % of the parse's
CPU (219 707 resources, 199 µs each: mostly ``fhir.resources``' validation of every element, ~150
µs a resource in an ad hoc profile), the reports 24.5 % (1 598 documents, 19.2 CPU-s, most of it
each worker process loading the language model once), HL7 10.3 % (705 µs a message, most of it
python-hl7's parse), pharmacy 7.7 % (32 µs a delivery). So the goal of 10 000 per core stands or
falls with the FHIR validation. The same run: 1 265 records/s per core end to end, the reference
8 816/s (ratio 0.287).

After the FHIR validation's short-circuits (:mod:`pdp.ingest.parsers.fhir_models`), the same
command on a later day (2026-12-07 07:18-07:23, quiet, load 1.8 at the end) on a machine that ran
every parser slower than the run above (pharmacy 59 µs a delivery against 32, HL7 1 157 µs a message
against 705, neither touched): 255.8 s, 847 records/s per core, the reference 5 666/s (ratio 0.299);
FHIR 277 µs an outcome, **51.1 %** of the parse's CPU (55.7 % above), reports 26.2 %, HL7 11.1 %,
pharmacy 9.3 %. Across days the absolute figures mean little on these machines: the short-circuits'
own gain is measured in pairs in :mod:`pdp.ingest.parsers.fhir_models` (about a fifth of the GP
parse's CPU).

A 1 M-person ingest on this machine, to the end (ad hoc lab script, not a repo command:
:func:`pdp.ingest.pipeline.ingest_directory` with the embedded defaults, local[2], two worker
processes, the SQLite store; 2026-12-07 09:51-12:12) on the territory of ``pdp synth --persons
1000000 --seed 1`` (22 min 10 s to generate; 11 GB: GP FHIR 6.4 GB, pharmacy 1.3 GB, labs 485 MB,
reports 320 MB): **18 951 666 records in 8 434 s (2 h 21 min), 1 124 records/s per core**, all
landed, 912 445 persons in silver.person. Stages: lookup 56 s, parse+edge 3 557 s (the workers'
CPU 6 426 s: 339 µs a record), identities 69, linkage on Spark 891 (built-in parameters), vault
1 239 (one SQLite writer: ~740 persons/s), bronze 828, silver 1 786. The parse ran on a quiet
machine but for ~8 min of tests on one core; bronze and silver, and the vault's last minutes, ran
beside the test suite (load 4-5.5), so those three are loaded figures. Driver Python peak
**324 MiB** (goal 4 GiB), the local JVM 7.6 GiB (it holds the executors in local mode; on the
cluster the driver's JVM was 1.3 GiB); the parse worker that loaded the reports' language model
peaked at 1.1 GiB. The same day's earlier attempt, stopped after 33 min of parse, saw a worker
running eight GP files in turn stay at 241-251 MiB: a worker does not grow with the files it parses.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pdp.bench import setting

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.config import Settings
    from pdp.ingest.split import FilePart

PERSONS = 300_000
GOAL_RECORDS_PER_S_PER_CORE = 10_000
GOAL_DRIVER_PEAK_GIB = 4.0


def _count_unit(job: tuple[str, str, str, FilePart | None]) -> tuple[str, int, float]:
    """Reference worker: parse one file, or one part of a split file; (its source, its outcomes
    (records and quarantine rows), the CPU seconds the parse took in this process)."""
    from pdp.ingest.parse import parse_file
    from pdp.ingest.registry import load_registry

    source, path, root, part = job
    spec = load_registry().specs[source]
    cpu = time.process_time()
    outcomes = sum(1 for _ in parse_file(spec, Path(path), Path(root), part=part))
    return source, outcomes, time.process_time() - cpu


class ParseOnly(NamedTuple):
    """The parse-only reference: outcomes, wall seconds, and per source (outcomes, CPU seconds)."""

    outcomes: int
    seconds: float
    by_source: dict[str, tuple[int, float]]

    def sources(self) -> dict[str, dict[str, float | None]]:
        """Per source: outcomes, CPU seconds, µs of CPU per outcome and share of the parse's CPU,
        most costly first: where the parsers' time goes. A one-time load (the reports' language
        model) counts where it happens: in each fresh worker process that parses the source, not
        in a process or Spark Python worker that had loaded it already."""
        total = sum(cpu for _, cpu in self.by_source.values()) or 1.0
        return {source: {"outcomes": n, "cpu_seconds": round(cpu, 3),
                         "us_per_outcome": round(1e6 * cpu / n) if n else None, "share": round(cpu / total, 3)}
                for source, (n, cpu) in sorted(self.by_source.items(), key=lambda kv: -kv[1][1])}


def _parse_only(sources: Path, workers: int, settings: Settings, spark: SparkSession | None = None
                ) -> ParseOnly:
    """Parse every file of `sources`: as Spark tasks of `spark` (the ingest's parse ran there: a
    cluster's executors), else with `workers` processes, else (≤ 1) in this process, whole files
    as the ingest reads them in-process.

    Apart, the units are the ingest's own (:func:`pdp.ingest.fanout.split_tasks`: a file over
    ``PDP_EDGE_SPLIT_BYTES`` of a format that cuts is several parts), started in the ingest's order
    (:func:`pdp.ingest.fanout.longest_first`): the same parallelism, the same tail. As Spark tasks,
    one partition a unit, like the ingest's (:mod:`pdp.ingest.spark_tasks`).
    """
    jobs = reference_jobs(sources, settings, whole=spark is None and workers <= 1)
    start = time.perf_counter()
    if spark is not None:
        units = spark.sparkContext.parallelize(jobs, numSlices=len(jobs)).map(_count_unit).collect()
    elif workers <= 1:
        units = [_count_unit(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            units = list(pool.map(_count_unit, jobs))
    seconds = time.perf_counter() - start
    by_source: dict[str, tuple[int, float]] = {}
    for source, outcomes, cpu in units:
        n, total = by_source.get(source, (0, 0.0))
        by_source[source] = (n + outcomes, total + cpu)
    return ParseOnly(sum(n for n, _ in by_source.values()), seconds, by_source)


def reference_jobs(sources: Path, settings: Settings, *, whole: bool = False
                   ) -> list[tuple[str, str, str, FilePart | None]]:
    """The reference's jobs (source, path, root, part): the ingest's units, in the ingest's order
    (`whole`: each file once, as the in-process ingest reads it)."""
    from pdp.ingest.fanout import BatchContext, file_tasks, longest_first, split_tasks
    from pdp.ingest.registry import load_registry

    registry = load_registry(settings=settings)
    files = file_tasks(sources, registry)
    if whole:
        return [(task.source, str(task.path), str(sources), None) for task in files]
    context = BatchContext(settings, registry, sources, sources, "bench-parse-only", datetime.now(UTC), None)
    units = longest_first(split_tasks(files, context), context)
    return [(unit.source, str(unit.path), str(sources), unit.part) for unit in units]


def _jvm_peak_mib(spark: Any) -> float | None:
    """High-water RSS of the Spark driver JVM (Linux /proc), or None where it cannot be read."""
    try:
        pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, AttributeError):
        return None
    return None


def bench_ingest(persons: int | None = None) -> dict[str, Any]:
    from pdp.bench.scratch import scratch_settings
    from pdp.ingest.pipeline import ingest_directory
    from pdp.lake.session import compute_cores, get_spark
    from pdp.synth import generate

    persons = persons or setting("PDP_BENCH_INGEST_PERSONS", PERSONS)
    workers = setting("PDP_BENCH_INGEST_WORKERS", None, minimum=0)  # unset: one per core
    with tempfile.TemporaryDirectory(prefix="pdp-bench-ingest-") as tmp:
        var = Path(tmp)
        settings = scratch_settings(var)
        sources = var / "sources"
        # in a process of its own: the driver's peak below is then the ingest's, not the generator's
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            pool.submit(generate, sources, persons=persons, seed=1, territory="douaisis").result()
        spark = get_spark(app_name="pdp-bench-ingest")
        start = time.perf_counter()
        report = ingest_directory(sources, spark=spark, settings=settings, workers=workers)
        seconds = time.perf_counter() - start
        # once the work has run (see compute_cores: a cluster's executors register late)
        cores = compute_cores(spark)
        python_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the reference's pool
        jvm_peak = _jvm_peak_mib(spark)
        reference = _parse_only(sources, report.parse_workers, settings,
                                spark if report.parse_engine == "spark" else None)
        parsed, parse_seconds = reference.outcomes, reference.seconds
    records_in, landed, quarantined = report.totals()
    edge = report.seconds.get("parse_and_edge", 0.0)
    per_core = round(records_in / seconds / cores)
    driver_peak = python_peak + (jvm_peak or 0.0)
    return {
        "persons": persons,
        "records": records_in,
        "landed": landed,
        "quarantined": quarantined,
        "cores": cores,
        "parse_workers": report.parse_workers,
        "parse_and_edge_cpu_seconds": round(report.parse_cpu_seconds, 1),
        "parse_and_edge_records_per_cpu_s": round(records_in / report.parse_cpu_seconds)
        if report.parse_cpu_seconds
        else None,
        "seconds": round(seconds, 1),
        "records_per_s_per_core": per_core,
        "goal_records_per_s_per_core": GOAL_RECORDS_PER_S_PER_CORE,
        "goal_records_met": per_core >= GOAL_RECORDS_PER_S_PER_CORE,
        "stage_seconds": report.seconds,
        "stage_share": {k: round(v / seconds, 3) for k, v in report.seconds.items()},
        "stage_records_per_s": {k: round(records_in / v) for k, v in report.seconds.items() if v > 0},
        "pseudonymisation_share": round(report.pseudonymise_seconds / (seconds * cores), 3),
        "pseudonymisation_core_seconds": round(report.pseudonymise_seconds, 1),
        "driver_python_peak_mib": round(python_peak, 1),
        "driver_python_peak_mib_by_stage": report.driver_peak_mib,
        "driver_jvm_peak_mib": jvm_peak,
        "driver_peak_gib": round(driver_peak / 1024, 2),
        "goal_driver_peak_gib": GOAL_DRIVER_PEAK_GIB,
        "reference_parse_only_engine": report.parse_engine,
        "reference_parse_only_workers": report.parse_workers if report.parse_engine != "spark" else cores,
        "reference_parse_only_outcomes": parsed,
        "reference_parse_only_records_per_s": round(parsed / parse_seconds),
        "reference_parse_only_by_source": reference.sources(),
        "ratio_end_to_end_vs_parse_only": round((records_in / seconds) / (parsed / parse_seconds), 3),
        "edge_share": round(edge / seconds, 3),
        "load_average": round(os.getloadavg()[0], 1),
    }
