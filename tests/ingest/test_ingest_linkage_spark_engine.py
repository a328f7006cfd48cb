"""The edge links a batch on Spark when the setting says so, with the in-memory engine's outcome:
the same re-keying, the same superseded known persons, the same vault records."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from ingest_helpers import lake_settings
from pyspark.sql import SparkSession
from test_ingest_linkage_known import _edge, vault_with_first_batch

from pdp.config import Settings
from pdp.ingest import Registry
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.linkage import LinkageOptions
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS
from pdp.pseudonym.linkage_spark import engine_for


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("spark-engine-var")
    key_file = var / "master.key"  # the executors open the key store themselves, from this file
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    s = lake_settings(var).model_copy(update={"master_key": None, "master_key_file": key_file})
    KeyStore.from_settings(s).init()
    return s


@pytest.mark.parametrize(
    ("engine", "identities", "expected"),
    [("auto", 10, "memory"), ("auto", 200_000, "spark"), ("memory", 10**7, "memory"), ("spark", 1, "spark")],
)
def test_the_setting_chooses_the_engine_and_auto_keeps_small_batches_in_memory(
    settings: Settings, engine: str, identities: int, expected: str
) -> None:
    chosen = settings.model_copy(update={"linkage_engine": engine, "linkage_spark_min_identities": 200_000})
    assert engine_for(identities, chosen) == expected


def test_the_default_keeps_todays_in_memory_linkage_for_batches_of_the_tests() -> None:
    default = Settings(_env_file=None)
    assert default.linkage_engine == "auto" and engine_for(50_000, default) == "memory"


def test_a_second_batch_linked_on_spark_rekeys_as_in_memory(
    spark: SparkSession, territory: Path, registry: Registry, settings: Settings
) -> None:
    vault = vault_with_first_batch(territory, registry, settings, "s1")

    options = LinkageOptions(parameters=DEFAULT_PARAMETERS, model_version="test")
    in_memory = _edge(territory, registry, settings, None, "s2")
    known = vault.linkable(in_memory.canonicals.values())
    expected = in_memory.link(known, options)
    on_spark = _edge(territory, registry, settings, None, "s3")
    outcome = on_spark.link(known, options, spark=spark, settings=settings)
    assert expected.mapping and expected.superseded is not None
    assert outcome.mapping == expected.mapping
    assert outcome.superseded == expected.superseded
    assert outcome.rule_counts == expected.rule_counts
    assert outcome.model_version == expected.model_version == "test"
    assert {p: r.canonical for p, r in on_spark.vault_records.items()} == {
        p: r.canonical for p, r in in_memory.vault_records.items()
    }
