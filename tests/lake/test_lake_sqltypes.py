"""Spark SQL type strings are parsed without a JVM, rendered back canonically, and rejected clearly."""

from __future__ import annotations

import pytest
from pyspark.sql.types import ArrayType, DecimalType, LongType, MapType, StringType, StructType

from pdp.lake.sqltypes import comparable, parse_type, same_type, sql_type, stats_eligible


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("string", "STRING"),
        ("BIGINT", "BIGINT"),
        ("long", "BIGINT"),
        ("decimal(10, 2)", "DECIMAL(10,2)"),
        ("timestamp_ntz", "TIMESTAMP_NTZ"),
        ("array<string>", "ARRAY<STRING>"),
        ("MAP<STRING, ARRAY<INT>>", "MAP<STRING, ARRAY<INT>>"),
        ("struct<code: string, at date>", "STRUCT<code: STRING, at: DATE>"),
    ],
)
def test_types_are_parsed_and_rendered_canonically(text: str, canonical: str) -> None:
    assert sql_type(parse_type(text)) == canonical
    assert parse_type(canonical) == parse_type(text)


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("STRNG", "unknown Spark SQL type 'STRNG'"),
        ("ARRAY<INT", "ends too early"),
        ("INT x", "unexpected 'x'"),
        ("DECIMAL(40,2)", "precision"),
        ("STRUCT<>", "at least one field"),
        ("MAP<STRING>", "expected ','"),
    ],
)
def test_bad_types_are_rejected_with_the_reason(text: str, fault: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_type(text)
    assert fault in str(caught.value)


def test_statistics_and_comparison_rules_follow_delta_and_spark() -> None:
    assert stats_eligible(LongType()) and stats_eligible(DecimalType(10, 2)) and stats_eligible(StringType())
    assert not stats_eligible(parse_type("BOOLEAN")) and not stats_eligible(parse_type("BINARY"))
    assert not stats_eligible(ArrayType(StringType()))
    assert comparable(parse_type("ARRAY<STRUCT<a: INT>>"))
    assert not comparable(MapType(StringType(), StringType()))


def test_type_equality_ignores_nullability() -> None:
    strict = StructType.fromJson(
        {"type": "struct", "fields": [{"name": "a", "type": "long", "nullable": False, "metadata": {}}]}
    )
    loose = parse_type("STRUCT<a: BIGINT>")
    assert same_type(strict, loose)
    assert not same_type(parse_type("ARRAY<INT>"), parse_type("ARRAY<BIGINT>"))
