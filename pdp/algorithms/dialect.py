"""Where Spark SQL and DuckDB differ, for the SQL the definitions compile to: dates, and only dates.

Why a dialect class (as Splink does): the population logic is written once, as SQL built from
the definitions; the two engines disagree only on date arithmetic, so that difference lives
here instead of in `if spark:` branches.

>>> SparkDialect().minus_days("DATE '2026-06-30'", 365)
"date_sub(DATE '2026-06-30', 365)"
>>> DuckDBDialect().days_between("b", "a")
"datediff('day', a, b)"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date


class Dialect(ABC):
    name = "ansi"

    def date(self, day: date) -> str:
        return f"DATE '{day.isoformat()}'"

    @abstractmethod
    def minus_days(self, expr: str, days: int | str) -> str:
        """The date `days` days before `expr`."""

    @abstractmethod
    def plus_days(self, expr: str, days: int | str) -> str:
        """The date `days` days after `expr`."""

    @abstractmethod
    def days_between(self, later: str, earlier: str) -> str:
        """Whole days from `earlier` to `later`."""


class SparkDialect(Dialect):
    name = "spark"

    def minus_days(self, expr: str, days: int | str) -> str:
        return f"date_sub({expr}, {days})"

    def plus_days(self, expr: str, days: int | str) -> str:
        return f"date_add({expr}, {days})"

    def days_between(self, later: str, earlier: str) -> str:
        return f"datediff({later}, {earlier})"


class DuckDBDialect(Dialect):
    name = "duckdb"

    def minus_days(self, expr: str, days: int | str) -> str:
        return f"CAST({expr} - CAST({days} AS INTEGER) AS DATE)"

    def plus_days(self, expr: str, days: int | str) -> str:
        return f"CAST({expr} + CAST({days} AS INTEGER) AS DATE)"

    def days_between(self, later: str, earlier: str) -> str:
        return f"datediff('day', {earlier}, {later})"
