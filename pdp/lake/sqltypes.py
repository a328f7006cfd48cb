"""Spark SQL type strings → pyspark `DataType`, without a JVM.

Why our own small parser: pyspark's DDL parser needs a running SparkContext, but the catalog
must load (and reject bad files) in processes that never start Spark — the API, the CLI's
`--help`, unit tests. The grammar covers what a table contract needs: primitives,
``DECIMAL(p,s)``, ``ARRAY<T>``, ``MAP<K,V>`` and ``STRUCT<name: T, ...>``.

>>> parse_type("ARRAY<STRUCT<code: STRING, at: DATE>>").simpleString()
'array<struct<code:string,at:date>>'
"""

from __future__ import annotations

import re

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

_PRIMITIVES: dict[str, DataType] = {
    "STRING": StringType(),
    "BOOLEAN": BooleanType(),
    "TINYINT": ByteType(),
    "BYTE": ByteType(),
    "SMALLINT": ShortType(),
    "SHORT": ShortType(),
    "INT": IntegerType(),
    "INTEGER": IntegerType(),
    "BIGINT": LongType(),
    "LONG": LongType(),
    "FLOAT": FloatType(),
    "REAL": FloatType(),
    "DOUBLE": DoubleType(),
    "DATE": DateType(),
    "TIMESTAMP": TimestampType(),
    "TIMESTAMP_LTZ": TimestampType(),
    "TIMESTAMP_NTZ": TimestampNTZType(),
    "BINARY": BinaryType(),
}
_DECIMALS = {"DECIMAL", "DEC", "NUMERIC"}
_TOKEN = re.compile(r"\s*(?:(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>\d+)|(?P<sym>[<>(),:]))")

# Types Delta can keep min/max statistics on (others raise DELTA_COLUMN_DATA_SKIPPING_NOT_SUPPORTED_TYPE).
STATS_ELIGIBLE: tuple[type[DataType], ...] = (
    ByteType, ShortType, IntegerType, LongType, FloatType, DoubleType, DecimalType,
    DateType, TimestampType, TimestampNTZType, StringType,
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        i = 0
        while i < len(text):
            if text[i:].strip() == "":
                break
            match = _TOKEN.match(text, i)
            if match is None:
                raise ValueError(f"unexpected character {text[i:].strip()[0]!r} in type {text!r}")
            tokens.append(match.group(match.lastgroup or "sym"))
            i = match.end()
        return tokens

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise ValueError(f"type {self.text!r} ends too early")
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r} but found {token!r} in type {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> DataType:
        data_type = self.data_type()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r} after the end of type {self.text!r}")
        return data_type

    def data_type(self) -> DataType:
        word = self.take()
        upper = word.upper()
        if upper in _PRIMITIVES:
            return _PRIMITIVES[upper]
        if upper in _DECIMALS:
            return self.decimal()
        if upper == "ARRAY":
            self.take("<")
            element = self.data_type()
            self.take(">")
            return ArrayType(element, containsNull=True)
        if upper == "MAP":
            self.take("<")
            key = self.data_type()
            self.take(",")
            value = self.data_type()
            self.take(">")
            return MapType(key, value, valueContainsNull=True)
        if upper == "STRUCT":
            return self.struct()
        known = ", ".join([*_PRIMITIVES, "DECIMAL(p,s)", "ARRAY<T>", "MAP<K,V>", "STRUCT<name: T, ...>"])
        raise ValueError(f"unknown Spark SQL type {word!r} (known: {known})")

    def decimal(self) -> DecimalType:
        if self.peek() != "(":
            return DecimalType(10, 0)
        self.take("(")
        precision = int(self.take())
        scale = 0
        if self.peek() == ",":
            self.take(",")
            scale = int(self.take())
        self.take(")")
        if not 1 <= precision <= 38 or not 0 <= scale <= precision:
            raise ValueError(f"DECIMAL({precision},{scale}) needs 1 <= precision <= 38 and 0 <= scale <= precision")
        return DecimalType(precision, scale)

    def struct(self) -> StructType:
        self.take("<")
        fields: list[StructField] = []
        while self.peek() != ">":
            if fields:
                self.take(",")
            name = self.take()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"bad field name {name!r} in type {self.text!r}")
            if self.peek() == ":":
                self.take(":")
            fields.append(StructField(name, self.data_type(), nullable=True))
        self.take(">")
        if not fields:
            raise ValueError(f"STRUCT needs at least one field (Parquet cannot store an empty struct): {self.text!r}")
        return StructType(fields)


def parse_type(text: str) -> DataType:
    """Parse one Spark SQL type string (case-insensitive keywords); raise ValueError if invalid."""
    return _Parser(text).parse()


def sql_type(data_type: DataType) -> str:
    """Render a DataType as Spark SQL DDL, keywords upper-case and field names kept as written."""
    if isinstance(data_type, ArrayType):
        return f"ARRAY<{sql_type(data_type.elementType)}>"
    if isinstance(data_type, MapType):
        return f"MAP<{sql_type(data_type.keyType)}, {sql_type(data_type.valueType)}>"
    if isinstance(data_type, StructType):
        inner = ", ".join(f"{f.name}: {sql_type(f.dataType)}" for f in data_type.fields)
        return f"STRUCT<{inner}>"
    if isinstance(data_type, DecimalType):
        return f"DECIMAL({data_type.precision},{data_type.scale})"
    return data_type.simpleString().upper()


def stats_eligible(data_type: DataType) -> bool:
    """Whether Delta accepts this column type in `delta.dataSkippingStatsColumns`."""
    return isinstance(data_type, STATS_ELIGIBLE)


def comparable(data_type: DataType) -> bool:
    """Whether Spark can compare two values of this type with `<=>` (maps cannot be compared)."""
    if isinstance(data_type, MapType):
        return False
    if isinstance(data_type, ArrayType):
        return comparable(data_type.elementType)
    if isinstance(data_type, StructType):
        return all(comparable(f.dataType) for f in data_type.fields)
    return True


def same_type(left: DataType, right: DataType) -> bool:
    """Type equality ignoring nullability and metadata (Delta enforces NOT NULL at write time)."""
    if isinstance(left, ArrayType) and isinstance(right, ArrayType):
        return same_type(left.elementType, right.elementType)
    if isinstance(left, MapType) and isinstance(right, MapType):
        return same_type(left.keyType, right.keyType) and same_type(left.valueType, right.valueType)
    if isinstance(left, StructType) and isinstance(right, StructType):
        return len(left.fields) == len(right.fields) and all(
            a.name == b.name and same_type(a.dataType, b.dataType)
            for a, b in zip(left.fields, right.fields, strict=True)
        )
    return left == right
