"""What a cluster master needs from the session's configuration, checked without starting Spark.

Why: on a standalone or Kubernetes master the executors are other processes, in another working
directory, possibly on other machines. They get jars only through ``spark.jars`` (the driver's
classpath is the driver's), and a relative path would be resolved against their cwd, not the
driver's. Local mode stays the default. The cluster itself is exercised by
``tests/ingest/test_ingest_on_cluster.py`` (slow).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.config import Settings
from pdp.lake.session import spark_conf


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> Settings:
    monkeypatch.chdir(tmp_path)  # so that the relative default ./var is relative to somewhere known
    return Settings(_env_file=None, var_dir=Path("./var"), lake_uri="./var/lake", **overrides)  # type: ignore[call-arg]


def test_local_mode_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDP_SPARK_MASTER", raising=False)
    assert spark_conf(_settings(tmp_path, monkeypatch))["spark.master"] == "local[*]"


def test_a_cluster_master_gets_the_jars_through_spark_jars_as_absolute_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = spark_conf(_settings(tmp_path, monkeypatch, spark_master="spark://127.0.0.1:7177"))
    assert conf["spark.master"] == "spark://127.0.0.1:7177"
    jars = conf["spark.jars"].split(",")
    assert any("delta-spark" in jar for jar in jars), "the Delta jars reach the executors"
    assert all(Path(jar).is_absolute() and Path(jar).is_file() for jar in jars), jars
    assert not any(key.endswith("extraClassPath") for key in conf), "a classpath setting would reach the driver only"


def test_every_local_path_in_the_conf_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = spark_conf(_settings(tmp_path, monkeypatch, spark_master="spark://127.0.0.1:7177"))
    assert Path(conf["spark.sql.warehouse.dir"]).is_absolute()
    assert "-XX:+UseParallelGC" in conf["spark.executor.extraJavaOptions"].split(), "the executors' JVMs too"
    for option in conf["spark.driver.extraJavaOptions"].split():
        if not option.startswith("-D"):  # a JVM flag, not a setting naming a path
            continue
        value = option.split("=", 1)[1]
        assert Path(value).is_absolute(), option
