"""The Spark path pseudonymises like the Python path, and its key never shows: not in the
query plan, not in the logs, not in the Spark properties the UI shows, not in an exception."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import BinaryType, LongType, StructField, StructType

from pdp.config import Settings
from pdp.lake.session import spark_log_path
from pdp.pseudonym.keys import KeyStore, KeyStoreError
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise
from pdp.pseudonym.pseudonymise import Pseudonymiser
from pdp.pseudonym.spark_path import SparkPseudonymiser

pytestmark = pytest.mark.spark

SCHEMA = StructType([StructField("record", LongType(), False), StructField("canonical", BinaryType(), True)])
PEOPLE = [
    {"birth_name": "Lefèvre", "first_names": "Jean-Marie", "sex": "M", "birth_date": "1950-03-02"},
    {"birth_name": "LE FEVRE", "first_names": "JEAN MARIE", "sex": "M", "birth_date": "02/03/1950"},
    {"birth_name": "d'Arcy", "first_names": "Anne", "sex": "F", "birth_date": "1977-11-30"},
    {"birth_name": "Martin", "first_names": "Paul", "sex": "M", "birth_date": "2001-01-15"},
]


@pytest.fixture()
def store(tmp_path: Path) -> KeyStore:
    master_key = base64.b64encode(os.urandom(32)).decode("ascii")
    key_store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master_key))
    key_store.init()
    return key_store


def canonicals() -> list[CanonicalIdentity]:
    out = [normalise(RawIdentity(**p)) for p in PEOPLE]
    assert all(isinstance(c, CanonicalIdentity) for c in out)
    return out  # type: ignore[return-value]


def key_forms(material: bytes) -> list[str]:
    """Every way key bytes could be printed."""
    return [
        material.hex(),
        material.hex().upper(),
        base64.b64encode(material).decode(),
        base64.urlsafe_b64encode(material).decode().rstrip("="),
        material.decode("latin-1"),
        str(list(material))[1:-1],
        repr(material)[2:-1],
    ]


def test_the_spark_path_gives_the_python_path_pseudonyms(spark: SparkSession, store: KeyStore) -> None:
    rows = [(i, c.canonical_bytes) for i, c in enumerate(canonicals())]
    with SparkPseudonymiser(spark, store) as sp:
        out = sp.apply(spark.createDataFrame(rows, SCHEMA)).orderBy("record").collect()
    expected = Pseudonymiser(store).pseudonymise_many(canonicals())
    assert [r.pseudonym for r in out] == expected
    assert out[0].pseudonym == out[1].pseudonym, "two spellings of one person, one pseudonym"
    assert len({r.pseudonym for r in out}) == 3
    assert "canonical" not in out[0].asDict(), "identity bytes never go past the pseudonymiser"


def test_the_key_never_appears_in_plans_logs_properties_or_errors(
    spark: SparkSession, store: KeyStore, capsys: pytest.CaptureFixture[str]
) -> None:
    forms = key_forms(store.current("pseudonym").material)
    log = spark_log_path()
    log_start = log.stat().st_size
    rows = [(i, c.canonical_bytes) for i, c in enumerate(canonicals())]
    spark.sparkContext.setLogLevel("DEBUG")
    try:
        with SparkPseudonymiser(spark, store) as sp:
            out = sp.apply(spark.createDataFrame(rows, SCHEMA))
            out.explain(extended=True)
            execution = out._jdf.queryExecution()
            plans = [execution.toString(), execution.logical().toString(), execution.executedPlan().toString()]
            out.collect()
            broken = sp.apply(spark.createDataFrame([(9, None)], SCHEMA))
            with pytest.raises(Exception) as failure:
                broken.collect()
    finally:
        spark.sparkContext.setLogLevel("ERROR")
    captured = capsys.readouterr()
    with open(log, encoding="utf-8", errors="replace") as handle:
        handle.seek(log_start)
        spark_log = handle.read()
    error_text = str(failure.value)
    assert "without canonical identity bytes" in error_text
    properties = "\n".join(f"{k}={v}" for k, v in spark.sparkContext.getConf().getAll())
    haystacks = {"plans": "\n".join(plans), "logs": spark_log, "explain": captured.out, "error": error_text,
                 "properties": properties}
    assert len(spark_log) > 10_000 and "DEBUG" in spark_log, "Spark's DEBUG log was read back"
    assert "MapInArrow" in captured.out
    for where, text in haystacks.items():
        for form in forms:
            assert form not in text, f"key bytes found in {where}"


def test_a_closed_pseudonymiser_and_a_wrong_column_type_are_refused(spark: SparkSession, store: KeyStore) -> None:
    df = spark.createDataFrame([(1, b"x")], SCHEMA)
    sp = SparkPseudonymiser(spark, store)
    with pytest.raises(TypeError):
        sp.apply(df.withColumn("canonical", df.record.cast("string")))
    sp.close()
    with pytest.raises(KeyStoreError):
        sp.apply(df)
