"""Shared fixtures: one Spark session for the whole run (start-up costs ~10 s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_VAR = None


@pytest.fixture(scope="session")
def pdp_var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private var/ directory for the run, so tests never touch the developer's lake."""
    var = tmp_path_factory.mktemp("var")
    os.environ["PDP_VAR_DIR"] = str(var)
    os.environ["PDP_LAKE_URI"] = str(var / "lake")
    os.environ["PDP_DB_URL"] = f"sqlite:///{var / 'pdp.db'}"
    os.environ["PDP_KEY_STORE"] = str(var / "keys")
    os.environ.setdefault("PDP_SPARK_MASTER", "local[2]")
    os.environ.setdefault("PDP_SPARK_DRIVER_MEMORY", "3g")
    os.environ.setdefault("PDP_SPARK_SHUFFLE_PARTITIONS", "4")
    from pdp.config import get_settings

    get_settings.cache_clear()
    return var


@pytest.fixture(scope="session")
def spark(pdp_var: Path) -> Iterator:
    """The session-scoped SparkSession with Delta, on the run's private var/."""
    from pdp.lake.session import get_spark

    session = get_spark(app_name="pdp-tests")
    yield session
    session.stop()


@pytest.fixture()
def lake_root(pdp_var: Path, tmp_path: Path) -> Path:
    """A fresh lake root for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return root
