"""A run that dies between its bronze commit and silver: the re-run completes silver.

Fault injection at that exact point (the random SIGKILLs of test_ingest_kill_rerun.py may or
may not hit it): `build_silver` raises as a crash would, the re-run's insert-only bronze MERGE
adds nothing, and silver must still receive every landed record's events.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ingest_helpers import lake_settings
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pdp.ingest import silver
from pdp.ingest.pipeline import ingest_directory
from pdp.ingest.silver import EVENT_TABLES
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]


class Crash(RuntimeError):
    pass


def test_a_crash_after_bronze_is_completed_in_silver_by_the_rerun(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    generate(source, persons=80, seed=3, territory="deux-sevres", workers=1)
    var = tmp_path / "var"
    settings = lake_settings(var)
    KeyStore.from_settings(settings).init()

    def crash(*args: object, **kwargs: object) -> dict[str, int]:
        raise Crash("killed after the bronze commit")

    monkeypatch.setattr(silver, "build_silver", crash)  # the pipeline imports it at call time
    with pytest.raises(Crash):
        ingest_directory(source, spark=spark, settings=settings, workers=0)
    monkeypatch.undo()
    lake = settings.lake_uri
    bronze = LakeTable(spark, "bronze.records", lake_root=lake).read()
    landed = bronze.count()
    assert landed > 0 and not LakeTable(spark, "silver.measurement", lake_root=lake).exists()

    rerun = ingest_directory(source, spark=spark, settings=settings, workers=0)
    assert rerun.bronze_inserted == 0, "bronze already held every record"
    assert bronze.count() == landed
    events = bronze.where("person_pseudonym IS NOT NULL").select(F.explode("events").alias("e"))
    for domain, (name, _) in EVENT_TABLES.items():
        expected = events.where(F.col("e.domain") == domain).count()
        table = LakeTable(spark, f"silver.{name}", lake_root=lake)
        got = table.read().count() if table.exists() else 0
        assert got == expected, f"silver.{name}: {got} rows for {expected} bronze events"
    persons = bronze.where("person_pseudonym IS NOT NULL").select("person_pseudonym").distinct().count()
    assert LakeTable(spark, "silver.person", lake_root=lake).read().count() == persons
