"""Fixtures for the lake tests: a throw-away catalog holding one silver table, and a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from lake_samples import PATIENT_STATE, write_table_file

from pdp.lake import RunInfo, TableDef, load_catalog


@pytest.fixture()
def catalog_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tables"
    write_table_file(directory, "silver", "patient_state", PATIENT_STATE)
    return directory


@pytest.fixture()
def patient_state(catalog_dir: Path) -> TableDef:
    return load_catalog(catalog_dir).table("silver.patient_state")


@pytest.fixture()
def run() -> RunInfo:
    return RunInfo(run_id="run-test-1", job="tests.lake", definitions_version="defs-1")
