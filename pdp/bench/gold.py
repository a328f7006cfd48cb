"""`pdp bench gold [--persons N]`: the whole gold build on Spark against DuckDB running the same SQL.

What is measured: Spark's `build_gold` (the production path: compiled SQL steps, checkpoints,
every gold table written to Delta) against DuckDB (threads = Spark's cores) running the very
same compiled steps (`DuckDBDialect`, dates aside) over the same silver exported as Parquet,
each step materialised as a table and the gold outputs written as Parquet files (since
2026-12-05: the same deliverable as Spark's, on disk; before, DuckDB's outputs stayed in
memory). Both engines must give the same strata and statuses: the bench compares every
(person, pyramid, stratum) and (person, action, status).

Rounds (`PDP_BENCH_GOLD_ROUNDS`, default 2): Spark then DuckDB, again; each engine's best is the
figure (the same data gives DuckDB 18-27 s at 1 M persons from one run to the next on these
machines), and the first round's ratio is printed too: there Spark's JVM has not yet compiled
the build's plans, as in a `pdp run` of its own (before 2026-12-06: one round). Each DuckDB run
is a fresh spawned process of its own (`_duckdb_apart`), as a data engineer would run it: no
Spark JVM client, no earlier round's connection in it (since 2026-12-06; the comparison of the
results reads DuckDB's Parquet outputs).

Also measured: recomputing 0.1 % of the persons alone (`build_gold(persons=...)`, what a
lab-feed day needs) against the full build.

Measured 2026-12-03 on 2 cores (local[2], DuckDB 2 threads), silver of `make demo` replicated,
machine shared with other engineers' test suites (figures noisy: the ratio is the figure to keep):
- before the plan work: 1 012 947 persons, 19.4 M events: Spark 290.3 s, DuckDB 65.1 s, ratio 4.46
  (load 4-6, an earlier session's run); 213 252 persons, 4.08 M events: Spark 129.8 s, DuckDB 18.9 s,
  ratio 6.86 (load ~7).
- after it (broadcast code criteria, per-person steps distributed by person once, concurrent gold
  writes), `pdp bench gold --persons 1000000`: 1 012 947 persons, 19.4 M events: Spark 201.9 s
  (48 015 events/s/core), DuckDB 77.4 s (125 173 events/s/core), ratio 2.61 (goal 2.5: nearly met),
  load 6-10 during the run; identical strata (454 632 rows) and statuses; 0.1 % incremental 143.9 s
  (0.71 of full). Spark stages at 1 M: matched 37.2 s, cited 29.7, holds 26.0, citations 14.5,
  persons 13.1, codes 11.5, the four first gold tables 32 s together, gold.evidence 24.7.
  Same code, `--persons 300000` right after (load 8-9 throughout): 302 107 persons, 5.78 M events:
  Spark 191.6 s (15 093 events/s/core), DuckDB 20.7 s (139 784), ratio 9.26, identical results. Spark
  barely grows from 0.3 M to 1 M persons: at these sizes it pays fixed costs (Delta commits, the
  four first gold tables 36-42 s together at 0.3 M, first reads, planning) and the machine's load,
  so the ratio falls with size; the curve is too noisy here for more than that trend.
- the same code on a quiet machine (load 0.0 at the start, ~2.5 during the run, nothing else
  running), `pdp bench gold --persons 1000000` on a later day of the same session: 1 012 890
  persons, 19.4 M events: Spark 149.2 s (64 918 events/s/core), DuckDB 32.1 s (301 936), ratio
  **4.65**, identical strata (454 518 rows) and statuses; 0.1 % incremental 81.9 s (0.55 of full).
  The loaded runs flattered Spark: DuckDB gains most from a quiet machine (77 → 32 s) while Spark
  gains less (202 → 149 s), so the 2.61 above is not the figure to keep; the goal (≤ 2.5) is
  **not met**. Spark stages: cited 28.9 s, matched 20.5, gold writes ~20 each (concurrent),
  holds 16.9, persons 15.9, citations 12.6.
- 2026-12-05, criteria held and cited from one ranking of the matched facts (no distinct-count
  aggregate over every matched fact, no join of the groups back to them; `holds` derives from
  `cited`), matched narrowed to the columns read later. `pdp bench gold --persons 1000000` on a
  quiet machine (load 1.9 at the start, 2.7 at the end, nothing else running): 1 010 184
  persons, 19.5 M events: Spark **93.7 s** (104 247 events/s/core; was 149.2 s), DuckDB 19.3 s
  (505 518; was 32.1 s without writing its outputs: the rewrite helps it too), ratio **4.85**,
  identical strata (451 920 rows) and statuses; 0.1 % incremental 60.8 s (0.65 of full). Spark
  stages: cited 16.3 s, matched 15.7, persons 11.3, citations 9.5, codes 5.6, care actions 3.6,
  the five first gold writes 17-18 s together (concurrent), gold.evidence 9.3. The goal (<= 2.5)
  is **not met**. Where the rest goes (a profile through the Spark UI's REST API on a loaded
  run, same code): the tasks' CPU is ~100 s of the JVM's ~245 s; the rest is the driver
  (planning the wide CASE and pivot steps, Delta's log replay and commit per gold table: ~3 s
  each, six tables), JIT and GC. `-XX:-DontCompileHugeMethods` changed nothing (JVM CPU 245.8 s
  with it, 249.5 s without), so it was not kept.
- 2026-12-05, later: one sort for every window of `ranked`; the flags aggregated straight from
  `cited`; the citations and care actions made in one pass over `persons` on Spark
  (`Dialect.rows_where`; DuckDB keeps its UNION ALL, its fastest form); matched cached
  serialised; gold.evidence written beside the other tables; the JVM on ParallelGC; Delta's
  snapshots rebuilt in one task. Where the JVM's CPU went before (per-thread CPU from /proc on
  the A/B lake): tasks 110 s, C2/C1 JIT 66 + 11 s, G1 25 s, driver threads ~15 s. The same
  session's curve, `pdp bench gold --persons N` for N = 100 000, 300 000, 1 000 000 one after
  the other (load 2.1-3.4, nothing else running):

  | persons | events | Spark s | DuckDB s | ratio | 0.1 % incremental s |
  |--:|--:|--:|--:|--:|--:|
  | 108 234 | 2.09 M | 31.3 | 3.4 | 9.30 | 31.9 (1.02 of full) |
  | 306 663 | 5.93 M | 41.0 | 7.1 | 5.74 | 34.2 (0.83) |
  | 1 010 184 | 19.53 M | **70.8** | 22.6 | **3.14** | 50.1 (0.71) |

  identical strata and statuses at every size. At 1 M: 137 922 events/s/core (DuckDB 432 709);
  stages: cited 15.6 s, matched 12.8, persons 10.3, codes 4.4, citations 3.7, care actions 3.2,
  the five first gold writes 14.2-14.6 s together. DuckDB alone on that silver, old SQL against
  new (`_duckdb` twice each): 20.5-21.2 s → 18.1-18.3 s — the reference got faster too. The goal
  (<= 2.5) is **not met**. Spark's fixed cost is ~28 s (the curve's intercept: first reads,
  planning, JIT, six Delta commits), its marginal cost ~2.2 s per million events on 2 cores
  (4.4 core-µs an event) against DuckDB's ~1.1 s.
- 2026-12-06: the code criteria in one pass on Spark, the change criteria's facts read once, the
  flags pivoted (Spark PIVOT), the matched facts no longer kept (the ranking reads their shuffle;
  `citable` is the first relation kept), the six gold tables written concurrently. Paired warm
  runs in one JVM (ad hoc, 1 M persons, quiet machine): 61.4 → 55.7-56.1 s for the first three,
  63.5-68.9 → 59.8-61.9 s for the fourth. DuckDB on the new SQL, alone, each connection closed
  before the next: 18.8-20.3 s (the old SQL: 18.0-18.3 s step by step, the new 16.7-17.5 before
  the fourth change and 19.6-23.6 after it: within the machine's noise). `pdp bench gold
  --persons 1000000`, two rounds, twice (load 1-3, nothing else running): Spark [68.7, 65.3] s
  against DuckDB [29.7, 29.6] (before the bench closed its connections and waited for an idle
  JVM), ratio of the bests 2.21; then Spark [85.6, 73.5] against DuckDB [27.0, 26.1], ratio 2.82
  (first round 3.17). Inside the bench DuckDB takes 26-30 s where alone it takes 19-20 s, for a
  reason not yet found (the Spark JVM's memory beside it, or the machine: Spark's best moved
  65 → 73 s between the two runs too); against DuckDB alone, Spark's 65-73 s is 3.3-3.8 ×. The
  goal (<= 2.5) is **not met**: the bench's own ratio is below it once and above it once, and
  the reference inside it is slower than it should be.
- 2026-12-06, later: DuckDB run in a process of its own (`_duckdb_apart`). `pdp bench gold
  --persons 1000000 --json` on the quiet machine (load 1.8 at the start, 2.4 at the end, nothing
  else running): Spark [71.5, 76.7] s against DuckDB [28.7, 26.1] s, ratio of the bests **2.74**,
  first round 2.49; same strata (451 920 rows) and statuses; 0.1 % incremental 58.8 s. DuckDB takes
  26-29 s in its own fresh process too, so the bench's process was not what slowed it; the 19-20 s
  measured alone were three runs in a row over the same files. Stages at 1 M: citable 26.2 s,
  persons 11.6, codes 4.8, citations 4.8, care actions 4.7, the six gold writes ~20 s together.
  The goal (<= 2.5) is **not met** (the first round, Spark's cold JVM, is at 2.49; the bests are not).
- 2026-12-06, a later session: where a warm build's time goes, and what did not move it. Ad hoc
  exploration, not a repo command (three builds in a row in one JVM on a 1 010 184-person lake,
  quiet machine, load 1.4-2.5; the second and third are the warm ones): warm builds 61.7-72.8 s,
  the first 88-98 s; in a 69.3 s warm build (Spark UI REST) the tasks ran 121 of the 138
  core-seconds there were, so only less work helps; a GC log of a 72.8 s warm build held 12.3 s
  of pauses (full collections with 2.7-3.4 GB live). Tried and dropped, none beyond the ±4 s
  between identical builds: no shuffle encryption, off-heap execution memory, a bigger young
  generation, the citations left unmaterialised, SHUFFLE_HASH on the evidence's joins, the
  materialised steps kept serialised (a third of the GC pauses, but slower writes). Since then
  the bench prints DuckDB's time per step and per output written (``duckdb_steps``, its best
  round) beside Spark's stages (``spark_stages``, now also its best round's), so the comparison
  step by step comes from the bench itself. `pdp bench gold --persons 1000000 --json` right
  after (quiet machine, load 0.4 at the start, 2.3 at the end, nothing else running): Spark
  [66.5, 71.2] s against DuckDB [25.1, 24.6] s, **ratio of the bests 2.71**, first round 2.64;
  same strata (451 920 rows) and statuses; 0.1 % incremental 52.8 s. Step by step, Spark's best
  round against DuckDB's: scans, matching and ranking (Spark's `codes` + `citable`) 29.5 s
  against 13.3 (×2.2); `cited` 2.6 against 0.3; the persons 9.6 against 4.1 (×2.3); care actions
  and citations 6.9 against 1.3 (×5.3); the outputs and their writes 15.8 against 5.3 (×3.0).
  The goal (<= 2.5) is **not met**.
- 2026-12-06, a later session, ad hoc (lab scripts, not repo commands; the same 1 010 184-person
  lake, three builds in one JVM each, quiet machine unless said), nothing kept: warm builds 64.8-
  65.1 s on this code; a 12 GB driver heap 62.1-71.4 s; Delta's statistics not collected 66.5-
  74.0 s. The six gold writes alone, from the materialised steps (concurrently, twice): Delta
  13.4-24.1 s against plain Parquet 6.1-7.3 s, the same rows; `LakeTable.create` and the commit
  lookup take ~1.5 s of it, so the rest is Delta's own write. Catalyst's rule timings of a warm
  plan (the 20 000-person lake, machine loaded): Delta's `PrepareDeltaScan` 5.2 s of 7.9 s, one file
  listing per silver scan per materialised step (15 a build); with data skipping off the listing
  moves to execution and the warm builds took 73.3-73.4 s against 67.8-69.4 s right after.

Where the silver comes from: the lake's own silver (e.g. `make demo`'s 20 000 persons),
replicated k times with fresh person ids until it holds N persons, so volumes are realistic
without a long ingest; replication is not timed. Events per second per core = silver events
(condition, procedure, drug, measurement, observation rows) / seconds / cores.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from pdp.bench import setting

AS_OF = date(2026, 6, 30)
EVENT_TABLES = ("condition_occurrence", "procedure_occurrence", "drug_exposure", "measurement", "observation")


def _replicate(spark: Any, source_root: str | None, target: str, persons: int) -> tuple[int, int, int]:
    """Copy silver into `target`, k copies of every person (ids offset, pseudonyms suffixed); (k, persons, events)."""
    from pyspark.sql import functions as F

    from pdp.lake import LakeTable, RunInfo, load_catalog

    base = LakeTable(spark, "silver.person", lake_root=source_root)
    if not base.exists():
        raise RuntimeError("no silver in the lake: run `make demo` (or `pdp ingest`) first")
    have = base.read().count()
    k = max(1, math.ceil(persons / have))
    copies = spark.range(k).withColumnRenamed("id", "copy")
    run = RunInfo.new("bench.gold.replicate", definitions_version="bench")
    events = 0
    from pdp.algorithms.gold import SILVER_INPUTS

    for qualified in SILVER_INPUTS.values():
        definition = load_catalog().table(qualified)
        name = definition.name
        src = LakeTable(spark, definition, lake_root=source_root)
        out = LakeTable(spark, definition, lake_root=target).create()
        if not src.exists():
            continue
        frame = src.read()
        if "person_id" in frame.columns:
            frame = frame.crossJoin(F.broadcast(copies))
            shift = F.col("copy") * F.lit(1 << 40)  # XOR, not +: xxhash64 ids use the whole 64-bit range
            frame = frame.withColumn("person_id", F.col("person_id").bitwiseXOR(shift))
            if "person_pseudonym" in frame.columns:
                frame = frame.withColumn("person_pseudonym", F.concat("person_pseudonym", F.lit("~"), F.col("copy")))
            id_col = f"{name}_id"
            if id_col in frame.columns and id_col != "person_id":  # silver.person's own id is person_id
                frame = frame.withColumn(id_col, F.col(id_col).bitwiseXOR(shift))
            frame = frame.drop("copy")
        out.append(frame.select(*definition.column_names), run=run)
        if name in EVENT_TABLES:
            events += out.read().count()
    return k, have * k, events


def _duckdb(parquet: dict[str, str], threads: int, defs: Any, out_dir: str) -> tuple[float, dict[str, float]]:
    """DuckDB's build: (seconds, seconds per step and per output written): every step as a table,
    and the gold outputs written as Parquet files under `out_dir` — the deliverable Spark's build
    writes too (as Delta), so both are timed to disk. The steps' times, beside Spark's stages, say
    where Spark loses its ground.

    Run in a process of its own (:func:`_duckdb_apart`), as a data engineer would run it: inside
    the bench's own process, beside the Spark JVM and a previous round's connection, the same data
    took 26-30 s where alone it took 19-20 s at 1 M persons (2026-12-06)."""
    import duckdb

    from pdp.algorithms import OUTPUTS, DuckDBDialect, compile_pipeline

    with duckdb.connect() as con:
        con.execute(f"SET threads = {threads}")
        start = time.perf_counter()
        for relation, path in parquet.items():
            con.execute(f"CREATE VIEW {relation} AS SELECT * FROM read_parquet('{path}/*.parquet')")
        steps: dict[str, float] = {}
        for step in compile_pipeline(defs, as_of=AS_OF, dialect=DuckDBDialect()):
            tick = time.perf_counter()
            con.execute(f"CREATE TABLE {step.name} AS {step.sql}")
            steps[f"step.{step.name}"] = time.perf_counter() - tick
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            tick = time.perf_counter()
            con.execute(f"COPY {name} TO '{Path(out_dir) / name}.parquet' (FORMAT parquet)")
            steps[f"write.{name}"] = time.perf_counter() - tick
        return time.perf_counter() - start, steps


def _duckdb_apart(parquet: dict[str, str], threads: int, defs: Any, out_dir: str) -> tuple[float, dict[str, float]]:
    """:func:`_duckdb` in a fresh spawned process: its own memory, no JVM or earlier round in it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_duckdb, parquet, threads, defs, out_dir).result()


def _duckdb_rows(out_dir: str, output: str, columns: str) -> set[tuple]:
    """The rows of one of DuckDB's Parquet outputs, as tuples of `columns`."""
    import duckdb

    with duckdb.connect() as con:
        return set(con.execute(f"SELECT {columns} FROM read_parquet('{Path(out_dir) / output}.parquet')").fetchall())


def _settle(spark: Any, quiet_cpu_s: float = 0.05, limit_s: float = 60.0) -> float:
    """Wait until the Spark JVM is idle (under `quiet_cpu_s` of CPU in a second; its compiler
    threads and cleaners work on after a job) so that the next timed run has the cores to itself;
    seconds waited. A local-mode JVM on Linux only (elsewhere: no wait)."""
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0

    def cpu() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    start = time.perf_counter()
    before = cpu()
    while time.perf_counter() - start < limit_s:
        time.sleep(1.0)
        now = cpu()
        if now - before < quiet_cpu_s:
            break
        before = now
    return time.perf_counter() - start


def bench_gold(persons: int | None = None) -> dict[str, Any]:
    """Spark gold build vs DuckDB on the same SQL and data, at `persons` (default 100 000), best of
    `PDP_BENCH_GOLD_ROUNDS` rounds (default 2; the first round's ratio printed too)."""
    from pdp.algorithms import build_gold, load_definitions
    from pdp.lake import get_spark
    from pdp.lake.session import compute_cores

    persons = persons or setting("PDP_BENCH_GOLD_PERSONS", 100_000)
    rounds = setting("PDP_BENCH_GOLD_ROUNDS", 2)
    defs = load_definitions()
    spark = get_spark(app_name="pdp-bench-gold")
    with tempfile.TemporaryDirectory(prefix="pdp-bench-gold-") as tmp:
        lake = str(Path(tmp) / "lake")
        k, people, events = _replicate(spark, None, lake, persons)
        cores = compute_cores(spark)  # once work has run: a cluster's executors register late
        parquet: dict[str, str] = {}
        from pdp.algorithms.gold import SILVER_INPUTS
        from pdp.lake import LakeTable

        for relation, name in SILVER_INPUTS.items():
            path = str(Path(tmp) / "parquet" / name)
            LakeTable(spark, name, lake_root=lake).read().write.parquet(path)
            parquet[relation] = path
        # Rounds, each engine in turn: the figures vary by a third between runs on these machines
        # (DuckDB alone, same data: 18-27 s at 1 M persons), so each engine's best is compared
        # too; the first round's Spark build runs in a JVM that has not yet compiled its plans.
        spark_runs: list[float] = []
        spark_stages: dict[str, float] = {}
        duck_runs: list[float] = []
        duck_steps: dict[str, float] = {}
        duck_out = str(Path(tmp) / "duckdb-gold")
        for _ in range(rounds):
            shutil.rmtree(Path(lake) / "gold", ignore_errors=True)  # else the build finds itself done
            shutil.rmtree(duck_out, ignore_errors=True)
            _settle(spark)
            start = time.perf_counter()
            report = build_gold(spark, as_of=AS_OF, definitions=defs, lake_root=lake)
            elapsed = time.perf_counter() - start
            if not spark_runs or elapsed < min(spark_runs):
                spark_stages = report.seconds  # the best round's
            spark_runs.append(elapsed)
            _settle(spark)
            seconds, steps = _duckdb_apart(parquet, cores, defs, duck_out)
            if not duck_runs or seconds < min(duck_runs):
                duck_steps = steps  # the best round's
            duck_runs.append(seconds)
        spark_seconds, duck_seconds = min(spark_runs), min(duck_runs)
        # incremental: the persons a lab-feed day would touch (0.1 % of them), recomputed alone
        sample = [r[0] for r in LakeTable(spark, "silver.person", lake_root=lake).read()
                  .select("person_id").limit(max(1, people // 1000)).collect()]
        start = time.perf_counter()
        build_gold(spark, as_of=AS_OF, definitions=defs, lake_root=lake, persons=sample)
        incremental_seconds = time.perf_counter() - start
        spark_strata = {(r[0], r[1], r[2]) for r in LakeTable(spark, "gold.stratum", lake_root=lake).read()
                        .select("person_id", "pyramid", "stratum").toLocalIterator()}
        duck_strata = _duckdb_rows(duck_out, "out_stratum", "person_id, pyramid, stratum")
        spark_actions = {(r[0], r[1], r[2], r[3]) for r in LakeTable(spark, "gold.care_action", lake_root=lake)
                         .read().select("person_id", "pathway", "action", "status").toLocalIterator()}
        duck_actions = _duckdb_rows(duck_out, "out_care_action", "person_id, pathway, action, status")
    return {
        "persons": people,
        "replicas": k,
        "silver_events": events,
        "cores": cores,
        "spark_seconds": round(spark_seconds, 1),
        "spark_rounds": [round(x, 1) for x in spark_runs],
        "spark_stages": {k2: round(v, 1) for k2, v in spark_stages.items()},
        "duckdb_seconds": round(duck_seconds, 1),
        "duckdb_rounds": [round(x, 1) for x in duck_runs],
        "duckdb_steps": {k2: round(v, 1) for k2, v in duck_steps.items() if v >= 0.05},
        "spark_events_per_s_per_core": round(events / spark_seconds / cores),
        "duckdb_events_per_s_per_core": round(events / duck_seconds / cores),
        "ratio_spark_over_duckdb": round(spark_seconds / duck_seconds, 2),
        "ratio_first_round": round(spark_runs[0] / duck_runs[0], 2),
        "incremental_persons": len(sample),
        "incremental_seconds": round(incremental_seconds, 1),
        "incremental_over_full": round(incremental_seconds / spark_seconds, 3),
        "goal_ratio": 2.5,
        "same_strata": spark_strata == duck_strata,
        "same_actions": spark_actions == duck_actions,
        "strata_rows": len(spark_strata),
    }
