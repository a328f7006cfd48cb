"""Schema enforcement against the catalog, before Spark sees the write.

Why our own check: Delta refuses an extra column, but accepts a missing nullable column
(filling nulls) and reports a wrong type as "Failed to merge fields" deep in a stack trace.
A data contract deserves one readable message listing every difference; and schema changes
are catalog migrations, never a side effect of a write (``autoMerge`` is off in the session).
Nullability is left to Delta, which checks NOT NULL row by row at write time — a DataFrame's
own nullability flags say little (any join makes a column nullable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pdp.lake.errors import SchemaMismatchError
from pdp.lake.sqltypes import same_type, sql_type

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from pdp.lake.catalog import TableDef


def differences(
    actual: StructType, table: TableDef, *, check_nullability: bool = False, written: bool = False
) -> list[str]:
    """Every way `actual` differs from the table's catalog schema (empty when it matches).

    `written`: compare with the columns a writer supplies (a bucket the table computes is left out).
    """
    expected = {c.name: c for c in table.columns if not written or c.bucket is None}
    given = {f.name: f for f in actual.fields}
    problems = []
    missing = [name for name in expected if name not in given]
    if missing:
        problems.append(f"missing columns {missing}")
    unexpected = [name for name in given if name not in expected]
    if unexpected:
        problems.append(f"unexpected columns {unexpected}")
    wrong = [
        f"{name} is {sql_type(given[name].dataType)} not {column.type}"
        for name, column in expected.items()
        if name in given and not same_type(given[name].dataType, column.spark_type)
    ]
    if wrong:
        problems.append("wrong types: " + ", ".join(wrong))
    if check_nullability:
        flipped = [
            f"{name} is {'nullable' if given[name].nullable else 'NOT NULL'}"
            for name, column in expected.items()
            if name in given and given[name].nullable != column.nullable
        ]
        if flipped:
            problems.append("nullability differs: " + ", ".join(flipped))
    return problems


def conform(df: DataFrame, table: TableDef) -> DataFrame:
    """`df` with its columns in catalog order; SchemaMismatchError if names or types differ.

    Columns the table computes (person buckets) are dropped if given: Delta computes them.
    """
    computed = [c.name for c in table.columns if c.bucket is not None]
    if computed:
        df = df.drop(*computed)
    problems = differences(df.schema, table, written=True)
    if problems:
        raise SchemaMismatchError(
            f"{table.qualified_name}: the DataFrame does not match the catalog schema: {'; '.join(problems)}"
        )
    return df.select(*table.written_columns)
