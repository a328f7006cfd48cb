"""The lab feed killed: `pdp ingest --stream` SIGKILLed at random points while files are being
dropped, restarted each time, then run to the end: every message lands once (bronze, silver, the
quarantine), every file is logged once, and no staged copy of a raw file is left on disk."""

from __future__ import annotations

import base64
import os
import random
import signal
import time
from pathlib import Path

import pytest
from ingest_helpers import Hl7File, lake_settings, pdp_env, pdp_process
from pyspark.sql import SparkSession

from pdp.ingest.stream import start_lab_stream
from pdp.lake import LakeTable
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FILES = 10


def _drop(content: bytes, landing: Path, name: str) -> None:
    part = landing / f"{name}.part"
    part.write_bytes(content)
    part.rename(landing / name)


def test_a_feed_killed_while_files_arrive_restarts_to_exactly_once(tmp_path: Path, spark: SparkSession) -> None:
    source = tmp_path / "src"
    generate(source, persons=200, seed=13, territory="douaisis", workers=1)
    lab = Hl7File.load(sorted((source / "labs").glob("*.hl7"))[0])
    size = -(-len(lab.messages) // FILES)
    batches = [lab.messages[i:i + size] for i in range(0, len(lab.messages), size)]
    files = [Hl7File(lab.path, lab.head, b, [f"BTS|{len(b)}".encode(), b"FTS|1"], lab.end).dump() for b in batches]
    obx = {f"labs/f{n:02d}.hl7": [sum(s.startswith(b"OBX") for s in m) for m in b] for n, b in enumerate(batches)}
    var = tmp_path / "var"
    env = pdp_env(var, base64.b64encode(os.urandom(32)).decode("ascii"))
    assert pdp_process(["keys", "init"], env).wait(timeout=60) == 0
    landing = tmp_path / "landing"
    landing.mkdir()
    rng = random.Random(20261205)
    dropped, kills = 0, 0
    for _ in range(3):
        feed = pdp_process(["ingest", "--stream", str(landing)], env)
        deadline = time.monotonic() + rng.uniform(15, 40)  # Spark start-up, a micro-batch, or between two
        while time.monotonic() < deadline:
            if dropped < len(files) and rng.random() < 0.5:
                _drop(files[dropped], landing, f"f{dropped:02d}.hl7")
                dropped += 1
            time.sleep(rng.uniform(0.5, 4))
        if feed.poll() is None:
            os.killpg(feed.pid, signal.SIGKILL)
            kills += 1
        feed.wait(timeout=60)
    for n in range(dropped, len(files)):
        _drop(files[n], landing, f"f{n:02d}.hl7")
    assert kills >= 2, "the feed was killed while running"
    # The last start in-process, on the session's Spark (`pdp ingest --stream --once` is this call;
    # a `pdp` process would add a JVM start and a cold JIT to what is tested here).
    start_lab_stream(landing, spark=spark, settings=lake_settings(var, env["PDP_MASTER_KEY"]),
                     available_now=True).awaitTermination()

    lake = str(var / "lake")

    def read(table: str):
        return LakeTable(spark, table, lake_root=lake).read()

    log = read("ops.ingestion_log").collect()
    assert sorted(r.file for r in log) == sorted(obx), "every file logged, once"
    assert all(r.status == "complete" for r in log)
    bronze = read("bronze.records")
    quarantine = read("ops.quarantine").collect()
    assert bronze.count() + len(quarantine) == len(lab.messages), "every message landed or quarantined"
    assert bronze.select("record_hash").distinct().count() == bronze.count(), "no message landed twice"
    assert len({(q.file, q.record_position) for q in quarantine}) == len(quarantine)
    bad = {(q.file, q.record_position) for q in quarantine}
    expected = sum(n for file, counts in obx.items() for i, n in enumerate(counts, 1) if (file, i) not in bad)
    measurement = read("silver.measurement")
    assert measurement.count() == expected and measurement.select("measurement_id").distinct().count() == expected
    staging = var / "stream-staging"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*")), "a staged raw file was left"
