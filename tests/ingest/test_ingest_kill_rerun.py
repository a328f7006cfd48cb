"""Exactly-once under SIGKILL: `pdp ingest` killed at random points, then re-run, lands every
record once — no loss, no duplicate — and logs every file once."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from ingest_helpers import pdp_env as _env
from ingest_helpers import pdp_process as _pdp
from pyspark.sql import SparkSession

from pdp.lake import LakeTable
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_killed_ingests_rerun_to_exactly_once(tmp_path: Path, spark: SparkSession) -> None:
    source = tmp_path / "src"
    generate(source, persons=250, seed=5, territory="haute-saone", workers=1)
    manifest = json.loads((source / "manifest.json").read_text())["files"]
    expected = sum(m["records"] for rel, m in manifest.items()
                   if rel.split("/")[0] in {"pmsi", "labs", "gp", "pharmacy", "social", "insee", "questionnaires"}
                   or rel == "reports/index.csv")
    var = tmp_path / "var"
    env = _env(var, base64.b64encode(os.urandom(32)).decode("ascii"))
    assert _pdp(["keys", "init"], env).wait(timeout=60) == 0
    rng = random.Random(20261122)
    kills = 0
    for _ in range(3):
        process = _pdp(["ingest", str(source)], env)
        time.sleep(rng.uniform(8, 45))  # somewhere in Spark start-up, the edge, bronze or silver
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    final = _pdp(["ingest", str(source)], env)
    _, err = final.communicate(timeout=900)
    assert final.returncode == 0, _diagnosis(err.decode(), var / "logs" / "spark.log")
    assert kills >= 1, "at least one run was killed mid-way"
    lake = str(var / "lake")
    bronze = LakeTable(spark, "bronze.records", lake_root=lake).read()
    assert bronze.count() == expected
    assert bronze.select("record_hash").distinct().count() == expected, "no record landed twice"
    log = LakeTable(spark, "ops.ingestion_log", lake_root=lake).read().where("status = 'complete'")
    assert log.select("file").distinct().count() == log.count(), "each file logged complete once"
    assert sum(r.records_in for r in log.collect()) == expected
    drugs = LakeTable(spark, "silver.drug_exposure", lake_root=lake).read()
    assert drugs.select("drug_exposure_id").distinct().count() == drugs.count()


def _diagnosis(stderr: str, spark_log: Path) -> str:
    """What failed: the CLI's own line and the first exception lines of stderr and of Spark's log file
    (stderr's tail is the end of a stack trace, which names no file and no cause)."""
    logged = spark_log.read_text(errors="replace").splitlines() if spark_log.is_file() else []
    lines = stderr.splitlines()
    heads = [line for line in [*lines, *logged]
             if "Exception" in line or "Error" in line or "error:" in line or "Caused by" in line]
    return "\n".join([*heads[:20], "...", *lines[-3:]])
