"""The Spark path pseudonymises like the Python path with either engine (JVM UDF, Arrow), and
its key never shows: not in the query plan, not in the logs (Spark's JVM log at DEBUG, py4j's
Python log at DEBUG), not in the Spark properties the UI shows, not in an exception."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
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
from pdp.pseudonym.spark_path import SparkPseudonymiser, jvm_engine_available

pytestmark = pytest.mark.spark
ENGINES = ["jvm", "arrow"]

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


def test_the_jvm_engine_is_built_and_loaded_by_default(spark: SparkSession, store: KeyStore) -> None:
    """Set-up compiles the UDF jar and every session loads it: the fast engine is the default."""
    assert jvm_engine_available(spark)
    with SparkPseudonymiser(spark, store) as sp:
        assert sp.engine == "jvm"
    with pytest.raises(ValueError, match="unknown pseudonymisation engine"):
        SparkPseudonymiser(spark, store, engine="gpu")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "message", "expected"),
    [  # RFC 4231 test cases 1, 2 and 6 (key shorter than, and longer than, the 64-byte block)
        (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (
            b"\xaa" * 131,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ],
)
def test_the_jvm_hmac_matches_rfc_4231(spark: SparkSession, key: bytes, message: bytes, expected: str) -> None:
    jvm_hmac = spark.sparkContext._jvm.org.pdp.spark.KeyedPseudonym.hmac  # type: ignore[union-attr]
    assert bytes(jvm_hmac(bytearray(key), bytearray(message))).hex() == expected
    assert hmac.new(key, message, hashlib.sha256).hexdigest() == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_the_spark_path_gives_the_python_path_pseudonyms(spark: SparkSession, store: KeyStore, engine: str) -> None:
    rows = [(i, c.canonical_bytes) for i, c in enumerate(canonicals())]
    with SparkPseudonymiser(spark, store, engine=engine) as sp:  # type: ignore[arg-type]
        out = sp.apply(spark.createDataFrame(rows, SCHEMA)).orderBy("record").collect()
    expected = Pseudonymiser(store).pseudonymise_many(canonicals())
    assert [r.pseudonym for r in out] == expected
    assert out[0].pseudonym == out[1].pseudonym, "two spellings of one person, one pseudonym"
    assert len({r.pseudonym for r in out}) == 3
    assert "canonical" not in out[0].asDict(), "identity bytes never go past the pseudonymiser"


def test_both_engines_agree_on_many_identities(spark: SparkSession, store: KeyStore) -> None:
    """Thousands of canonical identities of both schemes and every length: one pseudonym each,
    identical across engines and with the Python path."""
    from pdp.pseudonym.bench import _canonical_sql

    source = spark.range(3000).selectExpr("id", _canonical_sql())
    with (
        SparkPseudonymiser(spark, store, engine="jvm") as jvm,
        SparkPseudonymiser(spark, store, engine="arrow") as arrow,
    ):
        left = {r.id: r.pseudonym for r in jvm.apply(source).collect()}
        right = {r.id: r.pseudonym for r in arrow.apply(source).collect()}
    assert left == right and len(left) == 3000
    sample = source.where("id < 50").orderBy("id").collect()
    python = Pseudonymiser(store)
    assert [left[r.id] for r in sample] == [python.pseudonym_of_bytes(bytes(r.canonical)) for r in sample]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_key_never_appears_in_plans_logs_properties_or_errors(
    spark: SparkSession, store: KeyStore, capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    forms = key_forms(store.current("pseudonym").material)
    log = spark_log_path()
    log_start = log.stat().st_size
    rows = [(i, c.canonical_bytes) for i, c in enumerate(canonicals())]
    py4j_records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            py4j_records.append(record.getMessage())

    py4j_logger = logging.getLogger("py4j")
    handler, level = Capture(level=logging.DEBUG), py4j_logger.level
    py4j_logger.addHandler(handler)
    py4j_logger.setLevel(logging.DEBUG)
    spark.sparkContext.setLogLevel("DEBUG")
    try:
        with SparkPseudonymiser(spark, store, engine=engine) as sp:  # type: ignore[arg-type]
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
        py4j_logger.removeHandler(handler)
        py4j_logger.setLevel(level)
    captured = capsys.readouterr()
    with open(log, encoding="utf-8", errors="replace") as handle:
        handle.seek(log_start)
        spark_log = handle.read()
    error_text = str(failure.value)
    assert "without canonical identity bytes" in error_text
    properties = "\n".join(f"{k}={v}" for k, v in spark.sparkContext.getConf().getAll())
    haystacks = {"plans": "\n".join(plans), "logs": spark_log, "explain": captured.out, "error": error_text,
                 "properties": properties, "py4j": "\n".join(py4j_records)}
    assert len(spark_log) > 10_000 and "DEBUG" in spark_log, "Spark's DEBUG log was read back"
    assert len(py4j_records) > 10, "py4j's DEBUG command log was captured"
    assert ("MapInArrow" if engine == "arrow" else "pdp_pseudonym_") in captured.out
    for where, text in haystacks.items():
        for form in forms:
            assert form not in text, f"key bytes found in {where}"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_closed_pseudonymiser_and_a_wrong_column_type_are_refused(
    spark: SparkSession, store: KeyStore, engine: str
) -> None:
    df = spark.createDataFrame([(1, b"x")], SCHEMA)
    sp = SparkPseudonymiser(spark, store, engine=engine)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sp.apply(df.withColumn("canonical", df.record.cast("string")))
    sp.close()
    with pytest.raises(KeyStoreError):
        sp.apply(df)
