"""A full disk under the batch's staging folder stops `pdp ingest` with one clear line and a non-zero
exit, and leaves the lake as the previous run committed it; once space is back, the same batch lands.

The full disk is real: a 16 KiB tmpfs mounted on var/staging (needs root, as CI and this machine
run; elsewhere the test says why it cannot run). The run that meets it is a `pdp` process (its
exit code and its one line are what is tested); the runs before and after are in-process, on the
session's Spark (a `pdp` process costs a JVM start and a cold JIT: ~1 min each on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from ingest_helpers import lake_settings, pdp_env, pdp_process
from pyspark.sql import SparkSession

from pdp.ingest.pipeline import ingest_directory
from pdp.pseudonym.keys import KeyStore
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _commits(lake: Path) -> dict[str, list[str]]:
    """Every table's committed log files: what a run that committed anything would change."""
    return {str(log.parent.relative_to(lake)): sorted(p.name for p in log.glob("*.json"))
            for log in sorted(lake.rglob("_delta_log"))}


def _rows(database: Path) -> list[str]:
    """Every row of the SQLite store (vault, registries), as SQL: its content, whatever its WAL holds."""
    with closing(sqlite3.connect(database)) as connection:
        return list(connection.iterdump())


def test_a_full_staging_disk_fails_the_run_cleanly_and_commits_nothing(tmp_path: Path, spark: SparkSession) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (the full disk) needs root")
    source = tmp_path / "src"
    generate(source, persons=120, seed=21, territory="douaisis", workers=1)
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(source / "pmsi", first / "pmsi")  # small batches: Spark start-up is most of the cost
    shutil.copytree(source / "pharmacy", second / "pharmacy")
    var = tmp_path / "var"
    settings = lake_settings(var)
    KeyStore.from_settings(settings).init()
    assert all(f.balanced for f in ingest_directory(first, spark=spark, settings=settings).files)
    before = _commits(var / "lake")
    vault_before = _rows(var / "pdp.db")

    staging = var / "staging"
    staging.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(staging)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run = pdp_process(["ingest", str(second)], pdp_env(var, settings.master_key.get_secret_value()))
        _, err = run.communicate(timeout=900)
    finally:
        subprocess.run(["umount", str(staging)], check=True)
    lines = [line for line in err.decode().splitlines() if line.startswith("error:")]
    assert run.returncode == 2 and len(lines) == 1, err.decode()[-800:]
    assert "No space left on device" in lines[0] and "not logged as ingested" in lines[0]
    assert _commits(var / "lake") == before, "no table committed anything"
    assert _rows(var / "pdp.db") == vault_before, "the vault is untouched"

    again = ingest_directory(second, spark=spark, settings=settings)
    assert again.files and all(f.balanced and not f.skipped for f in again.files)
    assert _commits(var / "lake") != before
