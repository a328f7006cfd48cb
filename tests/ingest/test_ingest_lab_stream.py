"""The lab feed: a file dropped in the landing folder is in silver within seconds, exactly once."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from pdp.config import Settings
from pdp.ingest.stream import start_lab_stream
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_a_dropped_lab_file_reaches_silver_once(tmp_path: Path, spark: SparkSession) -> None:
    var = tmp_path / "var"
    settings = Settings(_env_file=None, var_dir=var, lake_uri=str(var / "lake"), db_url=f"sqlite:///{var / 'pdp.db'}",
                        key_store=var / "keys", master_key=base64.b64encode(os.urandom(32)).decode("ascii"))
    KeyStore.from_settings(settings).init()
    source = tmp_path / "src"
    generate(source, persons=300, seed=9, territory="douaisis", workers=1)
    lab_file = sorted((source / "labs").glob("*.hl7"))[0]
    expected = lab_file.read_bytes().count(b"\rOBX|")
    landing = tmp_path / "landing"
    landing.mkdir()
    reports = []
    query = start_lab_stream(landing, spark=spark, settings=settings, trigger_seconds=1, on_batch=reports.append)
    try:
        measurement = LakeTable(spark, "silver.measurement", lake_root=settings.lake_uri)
        dropped = time.perf_counter()
        shutil.copy(lab_file, landing / lab_file.name)
        deadline = dropped + 240
        while time.perf_counter() < deadline and not reports:
            time.sleep(0.5)
        latency = time.perf_counter() - dropped
        assert reports, "the dropped file was ingested"
        assert measurement.read().count() == expected
        print(f"\nlab feed: file in silver {latency:.1f} s after the drop")
        # the same content dropped again under another name: fingerprinted, nothing twice
        shutil.copy(lab_file, landing / ("again-" + lab_file.name))
        deadline = time.perf_counter() + 240
        while time.perf_counter() < deadline and len(reports) < 2:
            time.sleep(0.5)
        assert len(reports) == 2
        assert measurement.read().count() == expected
    finally:
        query.stop()
