"""`pdp bench ingest`: a synthetic territory through the edge into silver, end to end.

Prints records/s per core end to end and per stage, and the share of the time spent
normalising identities and keying pseudonyms. Reference, measured in the same run: the
parse stage alone (the parsers over the same files, no edge, no lake), so the ratio says what
the edge and the lake cost on top of reading the formats. Everything happens in a throw-away
directory with a fresh random master key.

`PDP_BENCH_INGEST_PERSONS` sets the territory size (default 300 000, the issue's figure);
`PDP_BENCH_INGEST_WORKERS` the parse+edge worker processes (default: one per core; 0: in-process).
The reference stays one process, as before, so the ratio shows what the workers win.

The pseudonymisation share is its core-seconds (summed over the worker processes) over the
core-seconds of the run (wall seconds × cores): with workers, time summed across processes
would otherwise read as more than the wall clock.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from pathlib import Path
from typing import Any

PERSONS = 300_000


def bench_ingest() -> dict[str, Any]:
    from pdp.config import Settings
    from pdp.ingest.parse import parse_directory
    from pdp.ingest.pipeline import ingest_directory
    from pdp.lake.session import compute_cores, get_spark
    from pdp.pseudonym.keys import KeyStore
    from pdp.synth import generate

    persons = int(os.environ.get("PDP_BENCH_INGEST_PERSONS", PERSONS))
    workers_env = os.environ.get("PDP_BENCH_INGEST_WORKERS")
    workers = int(workers_env) if workers_env else None
    with tempfile.TemporaryDirectory(prefix="pdp-bench-ingest-") as tmp:
        var = Path(tmp)
        settings = Settings(
            _env_file=None,
            var_dir=var,
            lake_uri=str(var / "lake"),
            db_url=f"sqlite:///{var / 'pdp.db'}",
            key_store=var / "keys",
            master_key=base64.b64encode(os.urandom(32)).decode("ascii"),
        )
        KeyStore.from_settings(settings).init()
        sources = var / "sources"
        generate(sources, persons=persons, seed=1, territory="douaisis")
        start, cpu = time.perf_counter(), time.process_time()
        parsed = sum(1 for _ in parse_directory(sources))
        parse_seconds, parse_cpu = time.perf_counter() - start, time.process_time() - cpu
        spark = get_spark(app_name="pdp-bench-ingest")
        cores = compute_cores(spark)
        start = time.perf_counter()
        report = ingest_directory(sources, spark=spark, settings=settings, workers=workers)
        seconds = time.perf_counter() - start
    records_in, landed, quarantined = report.totals()
    edge = report.seconds.get("parse_and_edge", 0.0)
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
        "records_per_s_per_core": round(records_in / seconds / cores),
        "stage_seconds": report.seconds,
        "stage_records_per_s": {k: round(records_in / v) for k, v in report.seconds.items() if v > 0},
        "pseudonymisation_share": round(report.pseudonymise_seconds / (seconds * cores), 3),
        "pseudonymisation_core_seconds": round(report.pseudonymise_seconds, 1),
        "reference_parse_only_records_per_s": round(parsed / parse_seconds),
        "reference_parse_only_records_per_cpu_s": round(parsed / parse_cpu) if parse_cpu else None,
        "ratio_end_to_end_vs_parse_only": round((records_in / seconds) / (parsed / parse_seconds), 3),
        "edge_share": round(edge / seconds, 3),
    }
