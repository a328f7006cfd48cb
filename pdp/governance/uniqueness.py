"""How many persons of ``silver.person`` are unique on their quasi-identifiers.

Why measure it: the lake holds no name, NIR or address, yet a person alone in the territory
with their sex, birth year and month and commune of residence is re-identifiable by anyone who
knows those four facts about a neighbour (the classic linkage attack on "anonymous" data). The
lake keeps these quasi-identifiers at that precision because the population definitions need
them (age bands at a date, commune denominators), so the share of persons unique on them is the
figure that says how much protection pseudonymisation alone gives, and what coarsening (birth
year only, a commune grouping) would buy. The share in classes smaller than ``k`` (5 by default,
the usual k-anonymity threshold) is reported beside it.

A missing value (a person whose sources gave no commune) is a value of its own: such persons
form their own classes, as an attacker who knows the value is missing would see them.

Example (a Spark session and an ingested lake)::

    >>> report = person_uniqueness(spark, k=5)          # doctest: +SKIP
    >>> f"{report.unique_share:.1%} unique"              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["QUASI_IDENTIFIERS", "Uniqueness", "UniquenessError", "person_uniqueness"]

QUASI_IDENTIFIERS: tuple[str, ...] = ("gender", "year_of_birth", "month_of_birth", "location_id")
"""``silver.person``'s columns for sex, birth year, birth month and commune of residence."""


class UniquenessError(ValueError):
    """The measure cannot be taken (bad ``k``, no ``silver.person`` yet); one line, no value."""


@dataclass(frozen=True, slots=True)
class Uniqueness:
    """Counts of one measure: persons, equivalence classes, persons alone in theirs, persons in classes below ``k``."""

    persons: int
    classes: int
    unique: int
    below_k: int
    k: int
    columns: tuple[str, ...] = QUASI_IDENTIFIERS

    @property
    def unique_share(self) -> float:
        return self.unique / self.persons if self.persons else 0.0

    @property
    def below_k_share(self) -> float:
        return self.below_k / self.persons if self.persons else 0.0


def person_uniqueness(
    spark: SparkSession, *, lake_root: str | Path | None = None, k: int = 5,
    columns: tuple[str, ...] = QUASI_IDENTIFIERS,
) -> Uniqueness:
    """Equivalence classes of ``silver.person`` on ``columns`` and how many persons are alone or below ``k``.

    One Spark job (a group-by, then one aggregate row): the counts only reach the driver.
    """
    from pyspark.sql import functions as F

    from pdp.lake import LakeTable

    if k < 2:
        raise UniquenessError(f"k must be at least 2 (got {k}): k = 2 counts the unique persons")
    table = LakeTable(spark, "silver.person", lake_root=lake_root)
    unknown = sorted(set(columns) - set(table.definition.column_names))
    if unknown or not columns:
        raise UniquenessError(f"not columns of silver.person: {', '.join(unknown) or '(none given)'}")
    if not table.exists():
        raise UniquenessError("silver.person does not exist yet: run `pdp ingest` first")
    sizes = table.read().groupBy(*columns).count()
    row = sizes.agg(
        F.coalesce(F.sum("count"), F.lit(0)).alias("persons"),
        F.count("*").alias("classes"),
        F.coalesce(F.sum(F.when(F.col("count") == 1, 1)), F.lit(0)).alias("unique"),
        F.coalesce(F.sum(F.when(F.col("count") < k, F.col("count"))), F.lit(0)).alias("below_k"),
    ).first()
    assert row is not None  # an aggregate without grouping always has one row
    return Uniqueness(persons=int(row["persons"]), classes=int(row["classes"]), unique=int(row["unique"]),
                      below_k=int(row["below_k"]), k=k, columns=tuple(columns))
